// The metrics endpoint against a real bridge in the private lab: three twins of tor 0.4.9 under the
// Bridge orchestrator, sessions through the balancer, one scrape showing every twin (issue 5: "a
// scrape of the metrics endpoint showing every twin").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startLab, freePort, type Lab } from '../src/lab/index.js';
import { loadConfig, instanceLayout, type ResolvedConfig } from '../src/config/index.js';
import { Bridge } from '../src/supervisor/index.js';
import { readCookieFile, dialExtOr, CMD } from '../src/extorport/index.js';
import { startMetricsServer, parseExposition, type MetricsServer } from '../src/metrics/index.js';
import { cli, pidsWith, procName, tmp, waitFor, testLogger } from './helpers.js';

const NAMES = ['metlab1', 'metlab2', 'metlab3'];
let lab: Lab;
let dir: string;
let config: ResolvedConfig;
let bridge: Bridge | null = null;
let metrics: MetricsServer | null = null;

before(async () => {
  dir = await tmp('metrics-lab');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  const file = join(dir, 'bridgectl.yaml');
  await writeFile(
    file,
    stringify({
      nickname: 'metlab',
      instances: 3,
      dataDir: join(dir, 'bridge'),
      contactInfo: 'lab@localhost',
      // Ports of their own: other lab tests run at the same time in the same namespace.
      extOrPort: 10900,
      torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
      restart: { initialDelayMs: 300 },
      balancer: { listen: `127.0.0.1:${await freePort()}` },
      // The Bridge opens an endpoint at metrics.listen (and so the twins' MetricsPorts); this test
      // also starts one itself, on a port of its own, to drive it directly.
      metrics: { listen: `127.0.0.1:${await freePort()}`, torMetricsPort: 10700 },
    }),
  );
  const init = await cli(['init', '--config', file]);
  assert.equal(init.exitCode, 0, init.all);
  config = loadConfig(file).config;
});

after(async () => {
  await metrics?.stop();
  await bridge?.stop();
  for (const p of pidsWith(join(dir, 'bridge'))) if (procName(p) === 'tor') process.kill(p, 'SIGKILL');
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

const scrape = async (): Promise<{ status: number; body: string; lines: string[] }> => {
  const r = await fetch(`http://${metrics!.address.host}:${metrics!.address.port}/metrics`);
  const body = await r.text();
  return { status: r.status, body, lines: body.split('\n').filter((l) => l && !l.startsWith('#')) };
};

/** The value of the sample `name{labels...}` (labels as written, instance first). */
const value = (lines: string[], series: string): number | undefined => {
  const l = lines.find((x) => x.startsWith(`${series} `));
  return l === undefined ? undefined : Number(l.slice(series.length + 1).split(' ')[0]);
};

test('every twin appears with twin= on its tor metrics and on the balancer\'s; counters count sessions', { timeout: 240_000 }, async () => {
  bridge = new Bridge(config, testLogger);
  await bridge.start();
  metrics = await startMetricsServer({
    listen: '127.0.0.1:0',
    logger: testLogger,
    getStatus: () => bridge!.status(),
    instances: () => bridge!.status().instances.map((i) => ({ name: i.name, metricsAddress: instanceLayout(config, i.index).metricsPortAddress })),
  });
  await waitFor(
    'every twin bootstrapped and up in the balancer',
    () => bridge!.status().instances.every((i) => i.state === 'running' && i.balancerUp),
    180_000,
    250,
  );

  // Six sessions through the balancer, as the transport would open them.
  const cookie = await readCookieFile(config.balancer.cookieFile);
  const [host, port] = config.balancer.listen.split(':');
  const SESSIONS = 6;
  for (let i = 0; i < SESSIONS; i++) {
    const s = await dialExtOr({ host: host!, port: Number(port), cookie, userAddr: `192.0.2.${i + 1}:1234`, transport: 'obfs4' });
    assert.equal(s.reply.type, CMD.OKAY);
    s.socket.write(Buffer.alloc(100));
    await new Promise((r) => setTimeout(r, 100));
    s.socket.destroy();
  }
  await waitFor('the balancer to count the sessions', () => bridge!.status().balancer!.sessions.established >= SESSIONS, 10_000);

  const r = await scrape();
  assert.equal(r.status, 200);
  const parsed = parseExposition(r.body);
  assert.deepEqual(parsed.invalid, [], 'the whole scrape is valid exposition text');
  for (const kind of ['HELP', 'TYPE']) {
    const decl = r.body.split('\n').filter((l) => l.startsWith(`# ${kind} `));
    assert.equal(new Set(decl.map((l) => l.split(' ')[2])).size, decl.length, `one ${kind} per family`);
  }
  let sessions = 0;
  for (const n of NAMES) {
    const i = `twin="${n}"`;
    assert.equal(value(r.lines, `bridgectl_tor_metrics_scrape_ok{${i}}`), 1, `${n} scraped`);
    // tor's own metrics, from this twin's MetricsPort.
    assert.ok((value(r.lines, `tor_relay_traffic_bytes{${i},direction="read"}`) ?? 0) > 0, `${n}: tor_relay_traffic_bytes`);
    assert.ok(r.lines.some((l) => l.startsWith(`tor_relay_connections{${i},type="OR",`)), `${n}: tor_relay_connections`);
    // The supervisor's and the balancer's, per twin.
    assert.equal(value(r.lines, `bridgectl_instance_up{${i}}`), 1);
    assert.equal(value(r.lines, `bridgectl_instance_bootstrap_percent{${i}}`), 100);
    assert.equal(value(r.lines, `bridgectl_balancer_backend_up{${i}}`), 1);
    assert.equal(value(r.lines, `bridgectl_balancer_backend_connect_failures_total{${i}}`), 0);
    const total = value(r.lines, `bridgectl_balancer_backend_sessions_total{${i}}`) ?? 0;
    assert.ok(total >= 1, `${n} took sessions`);
    assert.ok((value(r.lines, `bridgectl_balancer_backend_bytes_total{${i},direction="to_twin"}`) ?? 0) >= 100 * total);
    sessions += total;
  }
  assert.equal(sessions, SESSIONS);
  assert.equal(value(r.lines, 'bridgectl_balancer_established_total'), SESSIONS);
  assert.equal(value(r.lines, 'bridgectl_ready'), 1);
  const ownTor = r.lines.filter((l) => l.startsWith('tor_'));
  assert.ok(ownTor.length > 100);
  assert.deepEqual(ownTor.filter((l) => !NAMES.some((n) => l.includes(`{twin="${n}"`))), [], 'every tor sample has twin=');
});

test('a twin whose MetricsPort hangs costs only its own samples; the scrape answers in time', { timeout: 60_000 }, async () => {
  const victim = bridge!.status().instances.find((i) => i.name === 'metlab2')!.pid!;
  process.kill(victim, 'SIGSTOP');
  try {
    const t0 = Date.now();
    const r = await scrape();
    assert.ok(Date.now() - t0 < 5_000, 'bounded by the per-twin timeout');
    assert.equal(r.status, 200);
    assert.equal(value(r.lines, 'bridgectl_tor_metrics_scrape_ok{twin="metlab2"}'), 0);
    assert.equal(value(r.lines, 'bridgectl_tor_metrics_scrape_ok{twin="metlab1"}'), 1);
    assert.ok(!r.lines.some((l) => l.startsWith('tor_') && l.includes('twin="metlab2"')));
    assert.ok(r.lines.some((l) => l.startsWith('tor_') && l.includes('twin="metlab3"')));
    assert.ok(r.lines.some((l) => l.startsWith('bridgectl_balancer_backend_sessions_total{twin="metlab2"}')), 'the balancer still reports it');
  } finally {
    process.kill(victim, 'SIGCONT');
  }
});

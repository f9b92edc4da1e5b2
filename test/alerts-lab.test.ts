// The shipped alert rules (deploy/prometheus/bridgectl-alerts.yml) against real scrapes of a lab
// bridge (real tor 0.4.9, obfs4proxy, the balancer): promtool accepts the rules; each alert's
// expression is silent on the healthy bridge and fires on a scrape of the bridge put in its state
// (a twin killed, every twin killed, the transport killed, a small ephemeral port range with
// sessions held, a tor near its descriptor limit, a twin out for a rolling restart, onion keys past
// their rotation). Where a lab cannot reach the state (a 262,144-entry conntrack table, tor
// dropping onionskins or hitting its limits), the real scrape's series are used with that one value
// changed. Each case runs through `promtool test rules`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, rm, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { parse as parseYaml, stringify } from 'yaml';
import { startLab, freePort, type Lab } from '../src/lab/index.js';
import { controlRequest, type BridgeStatus } from '../src/supervisor/index.js';
import { parseExposition, escapeLabelValue } from '../src/metrics/index.js';
import { dialExtOr, readCookieFile } from '../src/extorport/index.js';
import { identityDir } from '../src/config/index.js';
import { cli, cliBackground, tmp, waitFor, testLogger } from './helpers.js';

const RULES = fileURLToPath(new URL('../../deploy/prometheus/bridgectl-alerts.yml', import.meta.url));
let lab: Lab;
let dir: string;
let dataDir: string;
let configFile: string;
let balancerPort: number;
let metricsPort: number;
let sup: ReturnType<typeof cliBackground> | null = null;
/** Scrapes of the bridge by state. */
const scrapes = new Map<string, string>();

const status = async (): Promise<BridgeStatus> => (await controlRequest(join(dataDir, 'run'), 'status', {}, 10_000)) as BridgeStatus;
const healthy = (): Promise<BridgeStatus> =>
  waitFor(
    'every twin running and in the balancer, the transport running',
    async () => {
      const s = await status().catch(() => null);
      return s && s.instances.length === 2 && s.instances.every((i) => i.state === 'running' && i.balancerUp) && s.transport?.state === 'running' ? s : null;
    },
    150_000,
    300,
  );
const scrape = async (state: string): Promise<void> => {
  const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  assert.equal(r.status, 200);
  scrapes.set(state, await r.text());
};
const pidOf = (s: BridgeStatus, n: string): number => s.instances.find((i) => i.name === n)!.pid!;
const holdSessions = async (n: number): Promise<Array<{ destroy: () => void }>> => {
  const cookie = await readCookieFile(join(dataDir, 'static_extended_orport_auth_cookie'));
  const held = [];
  for (let i = 0; i < n; i++) {
    const r = await dialExtOr({ host: '127.0.0.1', port: balancerPort, cookie, userAddr: `198.51.100.7:${2000 + i}`, transport: 'obfs4', timeoutMs: 20_000 });
    held.push(r.socket);
  }
  return held;
};

before(async () => {
  dir = await tmp('alerts');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  dataDir = join(dir, 'bridge');
  configFile = join(dir, 'bridgectl.yaml');
  balancerPort = await freePort();
  metricsPort = await freePort();
  await writeFile(
    configFile,
    stringify({
      nickname: 'alrt',
      instances: 2,
      dataDir,
      extOrPort: 10800,
      torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
      // Crashed twins and transports stay down long enough to be scraped.
      restart: { initialDelayMs: 15_000 },
      balancer: { listen: `127.0.0.1:${balancerPort}` },
      metrics: { listen: `127.0.0.1:${metricsPort}`, torMetricsPort: 10810 },
      transport: { name: 'obfs4', command: ['/usr/bin/obfs4proxy'], listen: `127.0.0.1:${await freePort()}` },
      logLevel: 'debug',
    }),
  );
  const init = await cli(['init', '--config', configFile]);
  assert.equal(init.exitCode, 0, init.all);
  sup = cliBackground(['run', '--config', configFile]);
});

after(async () => {
  sup?.kill('SIGTERM');
  await sup;
  await lab?.stop();
  if (process.env.KEEP_LAB) console.error(`kept ${dir}`);
  else await rm(dir, { recursive: true, force: true });
});

test('promtool accepts the shipped rules', async () => {
  const r = await execa('promtool', ['check', 'rules', RULES], { reject: false, all: true });
  assert.equal(r.exitCode, 0, r.all);
});

test('scrapes of the lab bridge: healthy, then in each state', { timeout: 400_000 }, async () => {
  const s0 = await healthy();
  await scrape('healthy');

  // A twin and the transport killed (they stay down for the 15 s restart delay).
  process.kill(pidOf(s0, 'alrt2'), 'SIGKILL');
  process.kill(s0.transport!.pid!, 'SIGKILL');
  await waitFor('alrt2 and the transport down', async () => {
    const s = await status();
    return s.instances.find((i) => i.name === 'alrt2')!.state !== 'running' && s.transport?.state !== 'running';
  }, 10_000, 50);
  await scrape('twin-and-transport-down');
  assert.match(scrapes.get('twin-and-transport-down')!, /^bridgectl_instance_up\{twin="alrt2"\} 0$/m);
  // Then every twin (again if a killed one came back before the scrape on a loaded machine).
  for (let attempt = 1; ; attempt++) {
    const s = await status();
    for (const i of s.instances) if (i.pid && i.state === 'running') process.kill(i.pid, 'SIGKILL');
    if (s.transport?.state === 'running' && s.transport.pid) process.kill(s.transport.pid, 'SIGKILL');
    await waitFor('both twins down (the transport still)', async () => {
      const t = await status();
      return t.instances.every((i) => i.state !== 'running' && !i.balancerUp) && t.transport?.state !== 'running';
    }, 10_000, 50);
    await scrape('no-twin');
    const text = scrapes.get('no-twin')!;
    const down = ['alrt1', 'alrt2'].every((n) => text.includes(`bridgectl_balancer_backend_up{twin="${n}"} 0`));
    if ((down && /^bridgectl_transport_up\{transport="obfs4"\} 0$/m.test(text)) || attempt === 3) break;
  }
  const s1 = await healthy();

  // Ephemeral ports: a range of 20 ports and 17 sessions held from the transport's side.
  const range = join('/proc/sys/net/ipv4/ip_local_port_range');
  const saved = await readFile(range, 'utf8');
  await writeFile(range, '61000 61019');
  try {
    const held = await holdSessions(17);
    await waitFor('17 sessions open', async () => ((await status()).balancer?.sessions.current ?? 0) >= 17, 20_000);
    await scrape('ports');
    for (const h of held) h.destroy();
  } finally {
    await writeFile(range, saved);
  }

  // A tor near its descriptor limit (soft RLIMIT_NOFILE lowered to what it uses plus 2). Tor opens
  // and closes descriptors as it goes (directory fetches), so the count can fall between reading it
  // and the scrape: lower the limit again until a scrape shows the twin above the alert's 80 %.
  const torPid = pidOf(s1, 'alrt1');
  const hard = /^Max open files\s+\d+\s+(\d+)/m.exec(await readFile(`/proc/${torPid}/limits`, 'utf8'))![1]!;
  const gauge = (text: string, name: string): number => Number(new RegExp(`^${name}\\{process="alrt1"\\} (\\d+)$`, 'm').exec(text)?.[1] ?? NaN);
  try {
    for (let attempt = 1; attempt <= 5; attempt++) {
      const open = (await readdir(`/proc/${torPid}/fd`)).length;
      await execa('prlimit', ['--pid', String(torPid), `--nofile=${open + 2}:${hard}`]);
      await scrape('fds');
      const t = scrapes.get('fds')!;
      if (gauge(t, 'bridgectl_process_open_fds') / gauge(t, 'bridgectl_process_max_fds') > 0.85) break;
    }
  } finally {
    await execa('prlimit', ['--pid', String(torPid), `--nofile=${hard}:${hard}`]);
  }
  const fdsText = scrapes.get('fds')!;
  assert.ok(gauge(fdsText, 'bridgectl_process_open_fds') / gauge(fdsText, 'bridgectl_process_max_fds') > 0.8, fdsText.split('\n').filter((l) => l.includes('process_')).join('\n'));

  // A twin out for a rolling restart: its held sessions keep it draining.
  const held = await holdSessions(4);
  await waitFor('sessions on alrt1', async () => ((await status()).instances.find((i) => i.name === 'alrt1')?.sessions ?? 0) > 0, 10_000);
  const restart = cli(['restart', '--drain-seconds', '120', '--config', configFile]);
  await waitFor('alrt1 draining for the restart', async () => (await status()).restart?.current === 'alrt1', 20_000, 100);
  await scrape('restarting');
  for (const h of held) h.destroy();
  const r = await restart;
  assert.equal(r.exitCode, 0, r.all);
  await healthy();

  // Onion keys past their rotation: the state says they became current 30 days ago.
  sup!.kill('SIGTERM');
  await sup;
  const stateFile = join(identityDir({ dataDir }), 'onion-rotation.json');
  const st = JSON.parse(await readFile(stateFile, 'utf8')) as { rotatedAt: string };
  await writeFile(stateFile, JSON.stringify({ ...st, rotatedAt: new Date(Date.now() - 30 * 86400_000).toISOString() }));
  sup = cliBackground(['run', '--config', configFile]);
  await healthy();
  await scrape('overdue');
});

test('the Grafana dashboard: every query is valid PromQL (promtool) over metrics a lab bridge exports', { timeout: 60_000 }, async () => {
  const dash = JSON.parse(await readFile(RULES.replace('prometheus/bridgectl-alerts.yml', 'grafana/bridgectl-dashboard.json'), 'utf8')) as {
    panels: Array<{ title: string; targets: Array<{ expr: string }> }>;
  };
  const exprs = dash.panels.flatMap((p) => p.targets.map((t) => ({ panel: p.title, expr: t.expr.replaceAll('$instance', '.+') })));
  assert.ok(exprs.length >= 12);
  const file = join(dir, 'dashboard-rules.yml');
  await writeFile(file, stringify({ groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `dashboard:q${i}`, expr: e.expr })) }] }));
  const r = await execa('promtool', ['check', 'rules', file], { reject: false, all: true });
  assert.equal(r.exitCode, 0, r.all);
  const healthyText = scrapes.get('healthy')!;
  for (const e of exprs) {
    for (const m of e.expr.match(/\b(?:bridgectl|tor)_[a-z0-9_]+/g) ?? []) {
      assert.match(healthyText, new RegExp(`^${m}[{ ]`, 'm'), `${e.panel}: ${m} is in a scrape of the lab bridge`);
    }
  }
});

/** input_series for promtool from one scrape: every sample, as Prometheus would store it, constant for 10 min. */
function seriesOf(text: string, change: (name: string, labels: Record<string, string>, v: number) => string | null = () => null) {
  const e = parseExposition(text);
  assert.deepEqual(e.invalid, []);
  const out: Array<{ series: string; values: string }> = [];
  for (const f of e.families) {
    for (const s of f.samples) {
      const v = Number(s.value);
      if (!Number.isFinite(v)) continue;
      const labels = Object.fromEntries(s.labels);
      const all = [...s.labels, ['instance', 'lab:9052'], ['job', 'bridgectl']] as Array<[string, string]>;
      out.push({
        series: `${s.name}{${all.map(([k, x]) => `${k}="${escapeLabelValue(x)}"`).join(',')}}`,
        values: change(s.name, labels, v) ?? `${v}+0x10`,
      });
    }
  }
  return out;
}

test('each alert expression is silent when healthy and fires in its state (promtool test rules)', { timeout: 60_000 }, async () => {
  const rules = parseYaml(await readFile(RULES, 'utf8')) as { groups: Array<{ rules: Array<{ alert: string; expr: string }> }> };
  const alerts = rules.groups.flatMap((g) => g.rules);
  const healthyText = scrapes.get('healthy')!;
  assert.match(healthyText, /^bridgectl_conntrack_max \d+/m, 'the lab scrape has the conntrack gauges');
  assert.match(healthyText, /^tor_relay_load_onionskins_total\{twin="alrt1",type="ntor",action="dropped"\}/m, 'the lab scrape has tor\'s own metrics per twin');
  const cases: Array<{ name: string; series: ReturnType<typeof seriesOf>; fires: Record<string, number> }> = [
    { name: 'healthy', series: seriesOf(healthyText), fires: {} },
    { name: 'twin-and-transport-down', series: seriesOf(scrapes.get('twin-and-transport-down')!), fires: { BridgectlTwinDown: 1, BridgectlTransportDown: 1 } },
    { name: 'no-twin', series: seriesOf(scrapes.get('no-twin')!), fires: { BridgectlTwinDown: 2, BridgectlNoTwinInBalancer: 1, BridgectlTransportDown: 1 } },
    { name: 'ports', series: seriesOf(scrapes.get('ports')!), fires: { BridgectlEphemeralPortsNearLimit: 1 } },
    { name: 'fds', series: seriesOf(scrapes.get('fds')!), fires: { BridgectlDescriptorsNearLimit: 1 } },
    { name: 'restarting', series: seriesOf(scrapes.get('restarting')!), fires: { BridgectlTwinRestarting: 1, BridgectlRollingRestartUnfinished: 1 } },
    { name: 'overdue', series: seriesOf(scrapes.get('overdue')!), fires: { BridgectlOnionKeyRotationOverdue: 1 } },
    // The healthy scrape with one value changed (states a lab cannot reach).
    {
      name: 'conntrack (healthy scrape, entries set to 90% of max)',
      series: seriesOf(healthyText, (n) => (n === 'bridgectl_conntrack_entries' ? `${Math.round(0.9 * Number(/^bridgectl_conntrack_max (\d+)/m.exec(healthyText)![1]))}+0x10` : null)),
      fires: { BridgectlConntrackNearLimit: 1 },
    },
    {
      name: 'onionskins (healthy scrape, alrt1 dropping 10 ntor onionskins a minute)',
      series: seriesOf(healthyText, (n, l, v) => (n === 'tor_relay_load_onionskins_total' && l.twin === 'alrt1' && l.type === 'ntor' && l.action === 'dropped' ? `${v}+10x10` : null)),
      fires: { BridgectlTorDroppingOnionskins: 1 },
    },
    {
      name: 'overload (healthy scrape, alrt2 hitting its global rate limit)',
      series: seriesOf(healthyText, (n, l, v) => (n === 'tor_relay_load_global_rate_limit_reached_total' && l.twin === 'alrt2' && l.side === 'read' ? `${v}+3x10` : null)),
      fires: { BridgectlTorOverloaded: 1 },
    },
  ];
  for (const a of Object.keys(Object.assign({}, ...cases.map((c) => c.fires)) as object)) {
    assert.ok(alerts.some((r) => r.alert === a), `${a} is a shipped alert`);
  }
  for (const r of alerts) assert.ok(cases.some((c) => c.fires[r.alert]), `${r.alert} is shown firing in some case`);
  const testFile = join(dir, 'alerts-test.yml');
  await writeFile(
    testFile,
    stringify({
      rule_files: [RULES],
      evaluation_interval: '1m',
      tests: cases.map((c) => ({
        name: c.name,
        interval: '1m',
        input_series: c.series,
        promql_expr_test: alerts.map((r) => ({
          expr: `count(${r.expr}) or vector(0)`,
          eval_time: '10m',
          exp_samples: [{ labels: '{}', value: c.fires[r.alert] ?? 0 }],
        })),
      })),
    }),
  );
  const r = await execa('promtool', ['test', 'rules', testFile], { reject: false, all: true });
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.stdout, /SUCCESS/);
});

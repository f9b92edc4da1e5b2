// Running it like a service (issue 5): systemd readiness, status, live add/remove under load,
// reload with a broken and a good config. Real tor twins and obfs4proxy in the lab.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { stringify, parse as parseYaml } from 'yaml';
import { startLab, freePort, type Lab } from '../src/lab/index.js';
import { connectControl } from '../src/tor/index.js';
import { controlRequest, type BridgeStatus } from '../src/supervisor/index.js';
import { CLI, cli, extOrLoad, pidsWith, procName, tmp, waitFor, testLogger } from './helpers.js';

const RECV = fileURLToPath(new URL('../../test/fixtures/notify-recv.py', import.meta.url));
let lab: Lab;
let dir: string;
let dataDir: string;
let configFile: string;
let balancerPort: number;
let metricsPort: number;
let sup: ReturnType<typeof execa> | null = null;
let supLog = '';
const notes: string[] = [];
let recv: ReturnType<typeof execa> | null = null;

async function baseConfig(): Promise<Record<string, unknown>> {
  return {
    nickname: 'svc',
    instances: 3,
    dataDir,
    contactInfo: 'before@localhost',
    extOrPort: 10400,
    torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
    restart: { initialDelayMs: 300 },
    balancer: { listen: `127.0.0.1:${balancerPort}` },
    metrics: { listen: `127.0.0.1:${metricsPort}`, torMetricsPort: 10410 },
    transport: { name: 'obfs4', command: ['/usr/bin/obfs4proxy'], listen: `127.0.0.1:${await freePort()}` },
  };
}

const status = async (): Promise<BridgeStatus> => {
  const r = await cli(['status', '--json', '--config', configFile]);
  assert.equal(r.exitCode, 0, r.all);
  return JSON.parse(r.stdout) as BridgeStatus;
};

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`HTTP ${res.statusCode}`))));
      })
      .on('error', reject);
  });
}

before(async () => {
  dir = await tmp('svc');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  dataDir = join(dir, 'bridge');
  configFile = join(dir, 'bridgectl.yaml');
  balancerPort = await freePort();
  metricsPort = await freePort();
  await writeFile(configFile, stringify(await baseConfig()));
  const init = await cli(['init', '--config', configFile]);
  assert.equal(init.exitCode, 0, init.all);
});

after(async () => {
  sup?.kill('SIGTERM');
  await sup?.catch(() => undefined);
  recv?.kill('SIGKILL');
  await recv?.catch(() => undefined);
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('systemd: READY=1 once the balancer listens, the transport is set up and a twin is up; STATUS= kept current; watchdog pings', { timeout: 150_000 }, async () => {
  const sockPath = join(dir, 'notify.sock');
  recv = execa('python3', [RECV, sockPath], { reject: false, buffer: false });
  recv.stdout!.setEncoding('utf8');
  let buf = '';
  recv.stdout!.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      notes.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  await waitFor('the notify receiver', () => notes.includes('LISTENING'), 10_000);
  sup = execa(process.execPath, [CLI, 'run', '--config', configFile], {
    reject: false,
    env: { NOTIFY_SOCKET: sockPath, WATCHDOG_USEC: '2000000' },
    buffer: false,
  });
  sup.stdout!.on('data', (d: Buffer) => (supLog += d.toString()));
  sup.stderr!.on('data', (d: Buffer) => (supLog += d.toString()));
  await waitFor('READY=1', () => notes.includes('READY=1'), 120_000);
  const st = await status();
  assert.equal(st.ready, true);
  assert.equal(st.transport?.state, 'running');
  assert.ok(st.instances.some((i) => i.balancerUp), 'a twin is in the balancer');
  assert.equal(notes.filter((n) => n === 'READY=1').length, 1, 'only the supervisor announces readiness');
  for (const i of st.instances.filter((x) => x.pid)) {
    assert.doesNotMatch(readFileSync(`/proc/${i.pid}/environ`, 'utf8'), /NOTIFY_SOCKET=/, `${i.name} does not inherit NOTIFY_SOCKET`);
  }
  const statusNotes = notes.filter((n) => n.startsWith('STATUS='));
  assert.ok(statusNotes.length >= 1, notes.join(' | '));
  assert.ok(notes.indexOf('READY=1') > notes.indexOf(statusNotes[0]!), 'a STATUS came before READY');
  // WatchdogSec=2 → pings at half the interval.
  const pings = notes.filter((n) => n === 'WATCHDOG=1').length;
  await waitFor('watchdog pings', () => notes.filter((n) => n === 'WATCHDOG=1').length >= pings + 2, 5_000);
  assert.match(notes.at(-1)!.startsWith('STATUS=') ? notes.at(-1)! : statusNotes.at(-1)!, /STATUS=\d\/3 twins up, \d+ sessions, obfs4 running/);
});

test('status: a readable table and stable JSON', { timeout: 60_000 }, async () => {
  const st = await waitFor('all three twins up', async () => {
    const s = await status();
    return s.instances.every((i) => i.state === 'running' && i.balancerUp) ? s : null;
  }, 60_000, 300);
  assert.deepEqual(st.instances.map((i) => i.name), ['svc1', 'svc2', 'svc3']);
  const fp = st.instances[0]!.fingerprint;
  assert.match(fp ?? '', /^[0-9A-F]{40}$/);
  for (const i of st.instances) {
    assert.equal(i.fingerprint, fp);
    assert.equal(i.bootstrap, 100);
    assert.equal(procName(i.pid!), 'tor');
    assert.equal(typeof i.uptimeMs, 'number');
    for (const k of ['restarts', 'sessions', 'sessionsTotal', 'bytesIn', 'bytesOut', 'cpuShare'] as const) assert.equal(typeof i[k], 'number', k);
    assert.ok(i.cpuShare! >= 0 && i.cpuShare! < 2.5, `cpu share of ${i.name}: ${i.cpuShare}`);
  }
  assert.equal(st.balancer?.listen?.port, balancerPort);
  assert.equal(typeof st.cpuShare, 'number');
  assert.equal(typeof st.transport?.cpuShare, 'number');
  assert.equal(st.transport?.name, 'obfs4');
  const t = await cli(['status', '--config', configFile]);
  assert.equal(t.exitCode, 0);
  const lines = t.stdout.split('\n');
  assert.match(lines[1]!, /^INSTANCE\s+STATE\s+PID\s+BOOT\s+RESTARTS\s+UPTIME\s+SESSIONS\s+TOTAL\s+IN\s+OUT\s+CPU\s+FINGERPRINT$/);
  for (const i of st.instances) {
    assert.ok(lines.some((l) => new RegExp(`^${i.name}\\s+serving\\s+${i.pid}\\s+100%.*${fp}$`).test(l)), `row for ${i.name}:\n${t.stdout}`);
  }
  assert.match(t.stdout, /transport obfs4: running/);
  assert.match(t.stdout, new RegExp(`^balancer on 127\\.0\\.0\\.1:${balancerPort}: 3 of 3 twins taking sessions; \\d+ sessions? open`, 'm'));
  assert.doesNotMatch(t.stdout, /[{}]/, 'no raw JSON');
});

test('metrics: one scrape of the endpoint shows every twin, in tor\'s own metrics and the balancer\'s', { timeout: 60_000 }, async () => {
  const body = await waitFor('a scrape with every twin', async () => {
    const text = await httpGet(`http://127.0.0.1:${metricsPort}/metrics`);
    return ['svc1', 'svc2', 'svc3'].every((n) => text.includes(`bridgectl_tor_metrics_scrape_ok{twin="${n}"} 1`)) ? text : null;
  }, 30_000, 500);
  for (const n of ['svc1', 'svc2', 'svc3']) {
    assert.match(body, new RegExp(`^tor_\\w+\\{[^}]*twin="${n}"[^}]*\\} `, 'm'), `tor's own metrics for ${n}`);
    assert.match(body, new RegExp(`^bridgectl_\\w+\\{[^}]*twin="${n}"`, 'm'), `bridgectl's metrics for ${n}`);
  }
  assert.match(body, /^process_resident_memory_bytes /m);
});

test('add-instance under load: no failed session; the new twin carries sessions; the config file follows', { timeout: 150_000 }, async () => {
  const l = extOrLoad(balancerPort, join(dataDir, 'static_extended_orport_auth_cookie'));
  await waitFor('some sessions', () => l.ok > 20, 30_000);
  const r = await cli(['add-instance', '--config', configFile]);
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.stdout, /added svc4/);
  const st = await waitFor('svc4 to carry sessions', async () => {
    const s = await status();
    const n = s.instances.find((i) => i.name === 'svc4');
    return n && n.balancerUp && n.sessionsTotal > 0 ? s : null;
  }, 90_000, 300);
  await l.stop();
  assert.deepEqual(l.failures, []);
  assert.equal(st.instances.length, 4);
  assert.equal(st.instances.find((i) => i.name === 'svc4')!.fingerprint, st.instances[0]!.fingerprint, 'same identity');
  assert.equal((parseYaml(await readFile(configFile, 'utf8')) as { instances: number }).instances, 4);
  const v = await cli(['keys', 'verify', '--config', configFile]);
  assert.equal(v.exitCode, 0, v.all);
});

test('remove-instance under load: the twin drains and stops, no failed session, the config file follows', { timeout: 120_000 }, async () => {
  const before = await status();
  const victim = before.instances.find((i) => i.name === 'svc2')!;
  const l = extOrLoad(balancerPort, join(dataDir, 'static_extended_orport_auth_cookie'));
  await waitFor('some sessions', () => l.ok > 20, 30_000);
  const r = await cli(['remove-instance', 'svc2', '--drain-seconds', '3', '--config', configFile]);
  assert.equal(r.exitCode, 0, r.all);
  const okAtRemoval = l.ok;
  await waitFor('more sessions after the removal', () => l.ok > okAtRemoval + 20, 30_000);
  await l.stop();
  assert.deepEqual(l.failures, []);
  const st = await status();
  assert.deepEqual(st.instances.map((i) => i.name).sort(), ['svc1', 'svc3', 'svc4']);
  assert.equal(procName(victim.pid!), '', 'svc2 tor has exited');
  assert.deepEqual(pidsWith(join(dataDir, 'instances', 'svc2') + '/').filter((p) => procName(p) === 'tor'), []);
  assert.equal((parseYaml(await readFile(configFile, 'utf8')) as { instances: number }).instances, 3);
});

test('reload: a broken config is rejected with file:line and the running one kept; a good one is applied (tor re-reads its torrc)', { timeout: 120_000 }, async () => {
  const good = await readFile(configFile, 'utf8');
  // Broken: a typo'd key. Through `bridgectl reload` (exit non-zero, names file:line and key) ...
  await writeFile(configFile, good.replace('contactInfo:', 'contactInf:'));
  const r = await cli(['reload', '--config', configFile]);
  // (the CLI itself loads the config too, so it reports the same error before asking the supervisor)
  assert.notEqual(r.exitCode, 0);
  assert.match(r.all ?? '', /bridgectl\.yaml:\d+: contactInf: unknown key/);
  // ... and through SIGHUP: the supervisor logs the rejection and keeps running with the old config.
  const logBefore = supLog.length;
  sup!.kill('SIGHUP');
  await waitFor('the rejection in the log', () => /new config rejected, keeping the running one/.test(supLog.slice(logBefore)), 10_000);
  assert.match(supLog.slice(logBefore), /bridgectl\.yaml:\d+: contactInf: unknown key/);
  // (status over the control socket directly: the CLI would refuse the broken file before asking)
  const st = (await controlRequest(join(dataDir, 'run'), 'status')) as BridgeStatus;
  assert.equal(st.instances.length, 3);
  assert.ok(st.instances.every((i) => i.state === 'running'));
  // A good change, picked up by the file watcher: tor re-reads its torrc.
  await writeFile(configFile, good.replace('before@localhost', 'after@localhost'));
  const d = join(dataDir, 'instances', 'svc1');
  await waitFor('tor to have the new ContactInfo', async () => {
    const ctl = await connectControl(join(d, 'control'), join(d, 'control_auth_cookie'));
    try {
      const reply = await ctl.command('GETCONF ContactInfo');
      return reply.lines[0] === 'ContactInfo=after@localhost';
    } finally {
      ctl.close();
    }
  }, 20_000, 300);
  const after = await status();
  assert.deepEqual(after.instances.map((i) => i.pid), st.instances.map((i) => i.pid), 'no twin restarted');
});

// Faults (issue 6): start-up faults give one clear line and a non-zero exit; under session churn,
// a SIGKILLed twin costs no session and comes back; a SIGKILLed supervisor leaves no orphan.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, readFile, rm, chmod, chown, mkdir, cp } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { startLab, freePort, type Lab } from '../src/lab/index.js';
import type { BridgeStatus } from '../src/supervisor/index.js';
import { CLI, cli, cliBackground, extOrLoad, pidsWith, procName, tmp, waitFor, testLogger } from './helpers.js';

let lab: Lab;
let dir: string;
let dataDir: string;
let configFile: string;
let balancerPort: number;
let base: Record<string, unknown>;

const status = async (file = configFile): Promise<BridgeStatus> => {
  const r = await cli(['status', '--json', '--config', file]);
  assert.equal(r.exitCode, 0, r.all);
  return JSON.parse(r.stdout) as BridgeStatus;
};

/** Server-side managed transports still running (their environment names server transports). */
const serverTransports = (): number[] =>
  pidsWith('/usr/bin/obfs4proxy').filter((p) => {
    try {
      return readFileSync(`/proc/${p}/environ`, 'utf8').includes(`TOR_PT_STATE_LOCATION=${join(dataDir, 'pt_state')}\0`);
    } catch {
      return false;
    }
  });
const twinPids = (): number[] => pidsWith(join(dataDir, 'instances')).filter((p) => procName(p) === 'tor');

async function writeVariant(name: string, change: Record<string, unknown>): Promise<string> {
  const f = join(dir, `${name}.yaml`);
  await writeFile(f, stringify({ ...base, ...change }));
  return f;
}

/** Runs `bridgectl run` on a faulty config: it must exit non-zero, soon, with one clear line. */
async function expectStartFault(file: string, re: RegExp, wrap: string[] = []): Promise<void> {
  const t0 = Date.now();
  const r = await execa(wrap[0] ?? process.execPath, [...wrap.slice(1), ...(wrap.length ? [process.execPath] : []), CLI, 'run', '--config', file], {
    reject: false,
    timeout: 90_000,
  });
  assert.notEqual(r.exitCode, 0, `exit code for ${file}:\n${r.stderr.slice(-3000)}\n${r.stdout.slice(-2000)}`);
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.ok(lines.some((l) => re.test(l)), `stderr of ${file} matches ${re}:\n${r.stderr}`);
  assert.ok(lines.length <= 3, `a clear line, not a dump:\n${r.stderr}`);
  assert.ok(Date.now() - t0 < 60_000);
  assert.deepEqual(twinPids(), [], 'no twin left running');
}

before(async () => {
  dir = await tmp('faults');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  dataDir = join(dir, 'bridge');
  configFile = join(dir, 'bridgectl.yaml');
  balancerPort = await freePort();
  base = {
    nickname: 'flt',
    instances: 3,
    dataDir,
    extOrPort: 10500,
    torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
    restart: { initialDelayMs: 300 },
    balancer: { listen: `127.0.0.1:${balancerPort}` },
    metrics: { torMetricsPort: 0 },
    transport: { name: 'obfs4', command: ['/usr/bin/obfs4proxy'], listen: `127.0.0.1:${await freePort()}` },
  };
  await writeFile(configFile, stringify(base));
  const init = await cli(['init', '--config', configFile]);
  assert.equal(init.exitCode, 0, init.all);
});

after(async () => {
  for (const p of twinPids()) process.kill(p, 'SIGKILL');
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('start-up faults: missing tor, address in use, a torrc line tor rejects → one clear line, non-zero exit', { timeout: 240_000 }, async () => {
  await expectStartFault(await writeVariant('notor', { torPath: '/nonexistent/tor' }), /tor binary not found or not executable: \/nonexistent\/tor/);
  await expectStartFault(await writeVariant('badtorrc', { torrc: `${base.torrc as string}NoSuchTorOption 1\n` }), /tor rejects the torrc.*NoSuchTorOption/);
  const squat = net.createServer();
  await new Promise<void>((r) => squat.listen(balancerPort, '127.0.0.1', r));
  try {
    await expectStartFault(configFile, /balancer cannot listen on 127\.0\.0\.1:\d+: address already in use/);
  } finally {
    squat.close();
  }
  // A twin's Extended ORPort taken by someone else: tor cannot bind and exits; that is a start-up fault.
  const squat2 = net.createServer();
  await new Promise<void>((r) => squat2.listen(10500, '127.0.4.2', r));
  try {
    await expectStartFault(configFile, /tor instance flt2 cannot start .*(Address already in use|Could not bind|Failed to parse\/validate config)/i);
  } finally {
    squat2.close();
  }
});

test('start-up faults: unreadable keys, dataDir on a read-only path → one clear line, non-zero exit', { timeout: 120_000 }, async () => {
  // Unreadable keys, for real: a copy of the bridge owned by an unprivileged user, one key root's.
  const copy = join(dir, 'copy');
  await cp(dataDir, join(copy, 'bridge'), { recursive: true });
  const copyConfig = await writeVariant('copy', { dataDir: join(copy, 'bridge') });
  await cp(copyConfig, join(copy, 'bridgectl.yaml'));
  await execa('chown', ['-R', '65534:65534', copy]);
  for (const d of [dir, copy]) await chmod(d, 0o755);
  const key = join(copy, 'bridge', 'instances', 'flt2', 'keys', 'secret_onion_key_ntor');
  await chown(key, 0, 0);
  await chmod(key, 0o600);
  await expectStartFault(
    join(copy, 'bridgectl.yaml'),
    /cannot read .*flt2\/keys\/secret_onion_key_ntor: EACCES/,
    ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--'],
  );
  // dataDir on a read-only mount, in a private mount namespace of its own.
  const ro = join(dir, 'ro');
  await mkdir(ro);
  await cp(dataDir, join(ro, 'bridge'), { recursive: true });
  const roConfig = await writeVariant('ro', { dataDir: join(ro, 'bridge') });
  await expectStartFault(roConfig, /cannot write to .*ro\/bridge.*read-only file system/, [
    'unshare',
    '--mount',
    '--',
    'sh',
    '-c',
    `mount --bind -o ro ${ro} ${ro} && exec "$@"`,
    'sh',
  ]);
});

test('under session churn: SIGKILL of a twin costs no session and it is back within 5 s', { timeout: 180_000 }, async () => {
  const sup = cliBackground(['run', '--config', configFile]);
  try {
    await waitFor('all twins in the balancer', async () => {
      const s = await status().catch(() => null);
      return s?.instances.every((i) => i.balancerUp) && s.transport?.state === 'running';
    }, 120_000, 300);
    const load = extOrLoad(balancerPort, join(dataDir, 'static_extended_orport_auth_cookie'));
    await waitFor('sessions flowing', () => load.ok > 30, 30_000);
    const before = await status();
    const victim = before.instances.find((i) => i.name === 'flt2')!.pid!;
    const t0 = Date.now();
    process.kill(victim, 'SIGKILL');
    await waitFor('flt2 running again', () => twinPids().length === 3 && !twinPids().includes(victim), 5_000, 50);
    assert.ok(Date.now() - t0 <= 5_000);
    const atKill = load.ok;
    await waitFor('sessions keep flowing', () => load.ok > atKill + 50, 30_000);
    await load.stop();
    assert.deepEqual(load.failures, [], 'no failed session');
    // SIGKILL of the supervisor: no orphan twin or transport; a new supervisor reuses the identity.
    assert.equal(serverTransports().length, 1);
    sup.kill('SIGKILL');
    await sup;
    await waitFor('no orphans', () => twinPids().length === 0 && serverTransports().length === 0, 10_000);
    const again = cliBackground(['run', '--config', configFile]);
    try {
      const st = await waitFor('the new supervisor up', async () => {
        const s = await status().catch(() => null);
        return s?.instances.every((i) => i.state === 'running') ? s : null;
      }, 120_000, 300);
      for (const i of st.instances) assert.equal(i.fingerprint, before.instances[0]!.fingerprint);
    } finally {
      again.kill('SIGTERM');
      assert.equal((await again).exitCode, 0);
    }
  } finally {
    sup.kill('SIGKILL');
    await sup;
  }
});

test('the config a fault test left alone still verifies', async () => {
  assert.match(await readFile(configFile, 'utf8'), /nickname: flt/);
  const v = await cli(['keys', 'verify', '--config', configFile]);
  assert.equal(v.exitCode, 0, v.all);
});

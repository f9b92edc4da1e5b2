// Coordinated onion-key rotation (issue 6) against real tor 0.4.9 in the private lab: three twins
// behind the balancer under session load, real tor clients holding the old descriptor and fresh
// ones fetching the new one.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startLab, startClient, fetchViaSocks, freePort, type Lab, type LabClient } from '../src/lab/index.js';
import { connectControl, waitBootstrapped, spawnChild, torArgs, TOR_BIN } from '../src/tor/index.js';
import { lastRotated } from '../src/keysync/index.js';
import type { BridgeStatus } from '../src/supervisor/index.js';
import { cli, cliBackground, extOrLoad, tmp, waitFor, testLogger } from './helpers.js';

let lab: Lab;
let dir: string;
let dataDir: string;
let configFile: string;
let balancerPort: number;
let fingerprint: string;
let sup: ReturnType<typeof cliBackground> | null = null;
const names = ['rot1', 'rot2', 'rot3'];
const oldClients = new Map<string, LabClient>();
const clients: LabClient[] = [];
const keysOf = (n: string): string => join(dataDir, 'instances', n, 'keys');

/** The curve25519 public key of a `secret_onion_key_ntor` file, as descriptors write it (base64, no padding). */
async function ntorPublic(file: string): Promise<string> {
  const b = await readFile(file);
  assert.equal(b.length, 96);
  assert.equal(b.subarray(0, 32).toString('latin1').replace(/\0+$/, ''), '== c25519v1: onion ==');
  return b.subarray(64, 96).toString('base64').replace(/=+$/, '');
}

/** The ntor-onion-key of the bridge descriptor a lab client holds. */
async function clientNtorKey(c: LabClient): Promise<string> {
  const d = join(dir, c.name);
  const ctl = await connectControl(join(d, 'control'), join(d, 'control_auth_cookie'), 10_000);
  try {
    const desc = await ctl.getInfo(`desc/id/${fingerprint}`);
    const m = /^ntor-onion-key (\S+)/m.exec(desc);
    assert.ok(m, `client ${c.name} holds a descriptor with an ntor-onion-key`);
    return m[1]!.replace(/=+$/, '');
  } finally {
    ctl.close();
  }
}

/**
 * Starts a stopped lab client again from its data directory, with its cached bridge descriptor and
 * no descriptor downloads for an hour (the lab refetches every few seconds; a real client keeps a
 * descriptor for hours): it can only build circuits with the onion key it already holds.
 */
async function resumeClient(c: LabClient, orPort: string, bootstrapMs: number): Promise<LabClient> {
  const d = join(dir, c.name);
  const child = spawnChild(
    TOR_BIN,
    torArgs(join(d, 'torrc'), [
      // The restarted twin listens on another port (ORPort auto); the bridge is the same fingerprint.
      'Bridge', `${orPort} ${fingerprint}`,
      'TestingBridgeBootstrapDownloadInitialDelay', '3600',
      'TestingBridgeDownloadInitialDelay', '3600',
    ]),
    { onLine: () => undefined },
  );
  let alive = true;
  void child.exited.then(() => (alive = false));
  const resumed: LabClient = {
    ...c,
    child,
    stop: async () => {
      child.kill('SIGTERM');
      await child.exited;
    },
  };
  clients.push(resumed);
  const ctl = await connectControl(join(d, 'control'), join(d, 'control_auth_cookie'), 30_000, () => alive);
  try {
    await waitBootstrapped(ctl, bootstrapMs, () => alive);
  } finally {
    ctl.close();
  }
  return resumed;
}

/** A fresh circuit through the client's bridge (NEWNYM: new streams get new circuits), then a download. */
async function freshFetch(c: LabClient, timeoutMs = 60_000): Promise<Buffer> {
  const d = join(dir, c.name);
  const ctl = await connectControl(join(d, 'control'), join(d, 'control_auth_cookie'), 10_000);
  try {
    await ctl.signal('NEWNYM');
  } finally {
    ctl.close();
  }
  return fetchViaSocks(c.socksPort, lab.http.url, timeoutMs);
}

async function client(name: string, orPort: string, extraTorrc: string[] = []): Promise<LabClient> {
  const c = await startClient({
    name,
    dir: join(dir, name),
    labTorrc: lab.torrcLines,
    bridges: [`${orPort} ${fingerprint}`],
    logger: testLogger,
    extraTorrc,
  });
  clients.push(c);
  return c;
}

const status = async (): Promise<BridgeStatus> => {
  const r = await cli(['status', '--json', '--config', configFile]);
  assert.equal(r.exitCode, 0, r.all);
  return JSON.parse(r.stdout) as BridgeStatus;
};
const allUp = (): Promise<BridgeStatus> =>
  waitFor(
    'every twin running and in the balancer',
    async () => {
      const s = await status();
      return s.instances.length === 3 && s.instances.every((i) => i.state === 'running' && i.balancerUp && i.orPort) ? s : null;
    },
    150_000,
    500,
  );

before(async () => {
  dir = await tmp('rotation');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  dataDir = join(dir, 'bridge');
  configFile = join(dir, 'bridgectl.yaml');
  balancerPort = await freePort();
  await writeFile(
    configFile,
    stringify({
      nickname: 'rot',
      instances: 3,
      dataDir,
      contactInfo: 'lab@localhost',
      extOrPort: 10600,
      torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
      restart: { initialDelayMs: 300 },
      balancer: { listen: `127.0.0.1:${balancerPort}` },
      metrics: { torMetricsPort: 0 },
      logLevel: 'debug',
    }),
  );
  const init = await cli(['init', '--config', configFile]);
  assert.equal(init.exitCode, 0, init.all);
  fingerprint = /fingerprint ([0-9A-F]{40})/.exec(init.all ?? '')?.[1] ?? '';
});

after(async () => {
  await Promise.all(clients.map((c) => c.stop().catch(() => undefined)));
  sup?.kill('SIGTERM');
  await sup;
  await lab?.stop();
  if (process.env.KEEP_LAB) console.error(`kept ${dir}`);
  else await rm(dir, { recursive: true, force: true });
});

let oldKey: string;
let newKey: string;
let before1: BridgeStatus;

test('before: three twins up, keys verify passes, one client per twin holds the descriptor with the current key', { timeout: 300_000 }, async () => {
  sup = cliBackground(['run', '--config', configFile]);
  before1 = await allUp();
  const v = await cli(['keys', 'verify', '--config', configFile]);
  assert.equal(v.exitCode, 0, v.all);
  assert.match(v.stdout, /onion keys pinned/);
  oldKey = await ntorPublic(join(dataDir, 'identity', 'keys', 'secret_onion_key_ntor'));
  await Promise.all(
    before1.instances.map(async (i) => {
      const c = await client(`old-${i.name}`, i.orPort!);
      oldClients.set(i.name, c);
      assert.equal(await clientNtorKey(c), oldKey, `the descriptor from ${i.name} has the current key`);
      assert.ok((await fetchViaSocks(c.socksPort, lab.http.url)).equals(lab.http.file));
      // Stopped while its twin restarts: a direct client would see its only bridge refuse connections
      // for seconds and give up on it for a while (behind the balancer the other twins take its
      // sessions). It is started again from its data directory after the rotation.
      await c.stop();
    }),
  );
});

test('keys rotate-onion under session load: twins restart one at a time, no session fails, keys verify passes throughout', { timeout: 600_000 }, async () => {
  const load = extOrLoad(balancerPort, join(dataDir, 'static_extended_orport_auth_cookie'), 4);
  const verifyFailures: string[] = [];
  let verifies = 0;
  let rotating = true;
  const verifier = (async () => {
    while (rotating) {
      const v = await cli(['keys', 'verify', '--config', configFile]);
      verifies++;
      if (v.exitCode !== 0) verifyFailures.push(v.all ?? '');
    }
  })();
  const t0 = Date.now();
  let r;
  try {
    await waitFor('sessions through the balancer', () => load.ok > 20, 30_000);
    r = await cli(['keys', 'rotate-onion', '--config', configFile, '--drain-seconds', '5']);
  } finally {
    rotating = false;
    await verifier;
    await load.stop();
  }
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.stdout, /rotated the onion keys of rot1, rot2, rot3/);
  assert.deepEqual(load.failures, [], `no session failed (${load.ok} succeeded)`);
  assert.ok(load.ok > 100, `sessions went on during the rotation (${load.ok})`);
  assert.deepEqual(verifyFailures, [], 'keys verify passed at every step');
  assert.ok(verifies >= 3, `keys verify ran during the rotation (${verifies} times)`);

  const after1 = await allUp();
  for (const i of after1.instances) {
    const b = before1.instances.find((x) => x.name === i.name)!;
    assert.notEqual(i.pid, b.pid, `${i.name} was restarted`);
    assert.ok(i.startedAt! >= t0);
  }
  // One at a time: each twin was started after the previous one bootstrapped.
  const sorted = [...after1.instances].sort((a, b) => a.index - b.index);
  for (let k = 1; k < sorted.length; k++) assert.ok(sorted[k]!.startedAt! >= sorted[k - 1]!.bootstrappedAt!, `${sorted[k]!.name} restarted after ${sorted[k - 1]!.name} was back`);

  newKey = await ntorPublic(join(dataDir, 'identity', 'keys', 'secret_onion_key_ntor'));
  assert.notEqual(newKey, oldKey);
  for (const n of names) {
    assert.equal(await ntorPublic(join(keysOf(n), 'secret_onion_key_ntor')), newKey, `${n} has the new key`);
    assert.equal(await ntorPublic(join(keysOf(n), 'secret_onion_key_ntor.old')), oldKey, `${n} keeps the previous key as .old`);
    assert.ok((await stat(join(keysOf(n), 'secret_onion_key.old'))).isFile());
    const last = lastRotated(await readFile(join(dataDir, 'instances', n, 'state'), 'utf8'));
    assert.ok(last && Math.abs(last.getTime() - t0) < 120_000, `${n}: LastRotatedOnionKey is the rotation time (${last?.toISOString()})`);
  }
  const v = await cli(['keys', 'verify', '--config', configFile]);
  assert.equal(v.exitCode, 0, v.all);
  assert.match(v.stdout, /rotation grace/);
});

test('a client that fetched the descriptor before the rotation builds fresh circuits through every twin with the old key', { timeout: 300_000 }, async () => {
  const st = await status();
  for (const n of names) {
    const c = await resumeClient(oldClients.get(n)!, st.instances.find((i) => i.name === n)!.orPort!, 90_000);
    oldClients.set(n, c);
    assert.equal(await clientNtorKey(c), oldKey, `client of ${n} still holds the old key`);
    const body = await freshFetch(c, 90_000);
    assert.ok(body.equals(lab.http.file), `bytes through ${n} match`);
    assert.equal(await clientNtorKey(c), oldKey, `client of ${n} used the old key (it has no other)`);
  }
});

test('a client that fetches the descriptor after the rotation gets the new key', { timeout: 300_000 }, async () => {
  const st = await status();
  await Promise.all(
    st.instances.map(async (i) => {
      const c = await client(`new-${i.name}`, i.orPort!);
      assert.equal(await clientNtorKey(c), newKey, `the descriptor from ${i.name} has the new key`);
      assert.ok((await fetchViaSocks(c.socksPort, lab.http.url)).equals(lab.http.file));
    }),
  );
});

test('end of the grace period: pins back, keys verify passes; a restarted twin no longer serves the old key', { timeout: 300_000 }, async () => {
  const r = await cli(['keys', 'rotate-onion', '--end-grace', '--config', configFile]);
  assert.equal(r.exitCode, 0, r.all);
  for (const n of names) {
    assert.ok((await stat(join(keysOf(n), 'secret_onion_key_ntor.old'))).isDirectory(), `${n} pinned again`);
    assert.ok((await stat(join(keysOf(n), 'secret_onion_key.old'))).isDirectory());
    assert.equal(await ntorPublic(join(keysOf(n), 'secret_onion_key_ntor')), newKey);
  }
  const v = await cli(['keys', 'verify', '--config', configFile]);
  assert.equal(v.exitCode, 0, v.all);
  assert.match(v.stdout, /onion keys pinned/);

  // The counter-proof: without the .old key, the client holding the old descriptor cannot build a
  // circuit through the twin (so the successes above are the .old files' doing).
  const c = oldClients.get('rot2')!;
  await c.stop();
  const victim = (await status()).instances.find((i) => i.name === 'rot2')!;
  process.kill(victim.pid!, 'SIGKILL');
  const back = await waitFor('rot2 back', async () => {
    const s = (await status()).instances.find((i) => i.name === 'rot2')!;
    return s.pid !== victim.pid && s.state === 'running' && s.balancerUp ? s : null;
  }, 120_000, 500);
  await assert.rejects(resumeClient(c, back.orPort!, 45_000), /bootstrap|timed out/i, 'no circuit with the old key through a twin without the .old file');
  assert.ok(
    (await readFile(join(dir, c.name, 'notice.log'), 'utf8')).split('\n').some((l) => /Bootstrapped 100%/.test(l)),
    'the same client bootstrapped before (the failure is the key, not the client)',
  );
  assert.equal(await clientNtorKey(c), oldKey, 'it tried with the old key (no other descriptor)');
});

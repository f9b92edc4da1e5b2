// Router twins against real tor 0.4.9 in the private lab (issue 2 acceptance 1-4).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startLab, startClient, fetchViaSocks, type Lab } from '../src/lab/index.js';
import { connectControl, waitBootstrapped, spawnChild, torArgs, parseQuotedList } from '../src/tor/index.js';
import { removePins } from '../src/keysync/index.js';
import { cli, cliBackground, pidsWith, procName, tmp, waitFor, testLogger } from './helpers.js';

let lab: Lab;
let dir: string;
let configFile: string;
let dataDir: string;
let fingerprint: string;
const names = ['labtwin1', 'labtwin2', 'labtwin3'];
const instDir = (n: string): string => join(dataDir, 'instances', n);

/** Tor processes of this bridge (their command line names a torrc under dataDir). */
const torPids = (name = ''): number[] => pidsWith(join(dataDir, 'instances', name)).filter((p) => procName(p) === 'tor');

async function bootstrapped(name: string): Promise<{ fingerprint: string; orPort: string }> {
  const d = instDir(name);
  const ctl = await connectControl(join(d, 'control'), join(d, 'control_auth_cookie'), 60_000);
  try {
    await waitBootstrapped(ctl, 150_000);
    return {
      fingerprint: (await ctl.getInfo('fingerprint')).trim(),
      orPort: parseQuotedList(await ctl.getInfo('net/listeners/or'))[0]!,
    };
  } finally {
    ctl.close();
  }
}

before(async () => {
  dir = await tmp('twins');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  dataDir = join(dir, 'bridge');
  configFile = join(dir, 'bridgectl.yaml');
  await writeFile(
    configFile,
    stringify({
      nickname: 'labtwin',
      instances: 3,
      dataDir,
      contactInfo: 'lab@localhost',
      extOrPort: 10100,
      torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
      restart: { initialDelayMs: 300 },
      logLevel: 'debug',
    }),
  );
});

after(async () => {
  for (const p of torPids()) process.kill(p, 'SIGKILL');
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('init creates one identity for every instance, idempotently', async () => {
  const r1 = await cli(['init', '--config', configFile]);
  assert.equal(r1.exitCode, 0, r1.all);
  fingerprint = /fingerprint ([0-9A-F]{40})/.exec(r1.all ?? '')?.[1] ?? '';
  assert.match(fingerprint, /^[0-9A-F]{40}$/);
  const r2 = await cli(['init', '--config', configFile]);
  assert.equal(r2.exitCode, 0, r2.all);
  assert.match(r2.all ?? '', new RegExp(`fingerprint ${fingerprint}`));
  assert.match(r2.all ?? '', /already in place/);
  const cookie = await readFile(join(dataDir, 'static_extended_orport_auth_cookie'));
  assert.equal(cookie.length, 64);
  assert.equal(cookie.subarray(0, 32).toString(), '! Extended ORPort Auth Cookie !\n');
});

let sup: ReturnType<typeof cliBackground>;

test('run: three twins bootstrap with one fingerprint; keys verify passes', { timeout: 240_000 }, async () => {
  sup = cliBackground(['run', '--config', configFile]);
  const st = await Promise.all(names.map(bootstrapped));
  for (const s of st) assert.equal(s.fingerprint, fingerprint);
  assert.equal(new Set(st.map((s) => s.orPort)).size, 3, 'each twin has its own ORPort');
  const torrc = await readFile(join(instDir('labtwin2'), 'torrc'), 'utf8');
  for (const line of ['Nickname labtwin2', 'BridgeRelay 1', 'BridgeDistribution none', 'ExtORPort 127.0.4.2:10100', 'SocksPort 0']) {
    assert.ok(torrc.split('\n').includes(line), `torrc has "${line}"`);
  }
  const v = await cli(['keys', 'verify', '--config', configFile]);
  assert.equal(v.exitCode, 0, v.all);
});

test('a real tor client bootstraps through each twin and downloads the file intact', { timeout: 240_000 }, async () => {
  for (const name of names) {
    const { orPort } = await bootstrapped(name);
    const c = await startClient({
      name: `client-${name}`,
      dir: join(dir, `client-${name}`),
      labTorrc: lab.torrcLines,
      bridges: [`${orPort} ${fingerprint}`],
      logger: testLogger,
    });
    try {
      const body = await fetchViaSocks(c.socksPort, lab.http.url);
      assert.ok(body.equals(lab.http.file), `bytes through ${name} match`);
    } finally {
      await c.stop();
    }
  }
});

test('SIGKILL of one instance: running again within 5 s, the others untouched', { timeout: 60_000 }, async () => {
  const before = Object.fromEntries(names.map((n) => [n, torPids(n + '/')]));
  for (const n of names) assert.equal(before[n]!.length, 1, `one tor for ${n}`);
  const victim = before.labtwin2![0]!;
  const t0 = Date.now();
  process.kill(victim, 'SIGKILL');
  const fresh = await waitFor('labtwin2 to run again', () => torPids('labtwin2/').find((p) => p !== victim), 5_000, 50);
  assert.ok(Date.now() - t0 <= 5_000);
  assert.notEqual(fresh, victim);
  assert.deepEqual(torPids('labtwin1/'), before.labtwin1);
  assert.deepEqual(torPids('labtwin3/'), before.labtwin3);
  await bootstrapped('labtwin2');
});

test('SIGKILL of the supervisor: no tor process is left', { timeout: 60_000 }, async () => {
  assert.equal(torPids().length, 3);
  sup.kill('SIGKILL');
  await sup;
  await waitFor('every tor to exit', () => torPids().length === 0, 10_000);
});

test('SIGTERM of the supervisor: exits 0 and no tor process is left (a new supervisor reuses the identity)', { timeout: 240_000 }, async () => {
  sup = cliBackground(['run', '--config', configFile]);
  const st = await Promise.all(names.map(bootstrapped));
  for (const s of st) assert.equal(s.fingerprint, fingerprint);
  sup.kill('SIGTERM');
  const r = await sup;
  assert.equal(r.exitCode, 0, r.all?.slice(-2000));
  assert.deepEqual(torPids(), []);
});

test('the pin keeps the ntor key through an aged rotation; without the pin it changes', { timeout: 120_000 }, async () => {
  const aged = new Date(Date.now() - 40 * 86400_000).toISOString().replace('T', ' ').slice(0, 19);
  const ntor = (n: string): Promise<Buffer> => readFile(join(instDir(n), 'keys', 'secret_onion_key_ntor'));
  for (const n of ['labtwin1', 'labtwin2']) {
    const p = join(instDir(n), 'state');
    const state = await readFile(p, 'utf8');
    assert.match(state, /^LastRotatedOnionKey /m, 'tor recorded the last rotation');
    await writeFile(p, state.replace(/^LastRotatedOnionKey .*$/m, `LastRotatedOnionKey ${aged}`));
  }
  await removePins(join(instDir('labtwin2'), 'keys'));
  const before1 = await ntor('labtwin1');
  const before2 = await ntor('labtwin2');
  assert.ok(before1.equals(before2));
  const lines: Record<string, string[]> = { labtwin1: [], labtwin2: [] };
  const tors = ['labtwin1', 'labtwin2'].map((n) =>
    spawnChild('tor', torArgs(join(instDir(n), 'torrc')), { onLine: (l) => lines[n]!.push(l) }),
  );
  try {
    // The unpinned twin rotates (this is what would split twins apart)...
    await waitFor('the unpinned ntor key to change', async () => !(await ntor('labtwin2')).equals(before2), 60_000, 250);
    await bootstrapped('labtwin1');
    // ...the pinned one, aged the same and started at the same moment, keeps the shared key.
    await waitFor('the pinned twin to try rotating', () => lines.labtwin1!.some((l) => /rotate onion key/i.test(l)), 10_000);
    assert.ok((await ntor('labtwin1')).equals(before1), 'pinned ntor key unchanged');
    const v = await cli(['keys', 'verify', '--config', configFile]);
    assert.notEqual(v.exitCode, 0);
    assert.match(v.all ?? '', /instance labtwin2: ntor onion key differs/);
    assert.doesNotMatch(v.all ?? '', /instance labtwin1/);
  } finally {
    for (const t of tors) t.kill('SIGTERM');
    await Promise.all(tors.map((t) => t.exited));
  }
});

test('keys verify names the instance whose ntor key was corrupted', async () => {
  const p = join(instDir('labtwin3'), 'keys', 'secret_onion_key_ntor');
  const k = await readFile(p);
  k.writeUInt8(k.readUInt8(k.length - 1) ^ 0xff, k.length - 1);
  await writeFile(p, k);
  const v = await cli(['keys', 'verify', '--config', configFile]);
  assert.equal(v.exitCode, 1);
  assert.match(v.all ?? '', /instance labtwin3: ntor onion key differs/);
});

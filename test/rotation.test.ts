// Coordinated onion-key rotation, the pure parts and the on-disk steps (tor makes the keys:
// tor --list-fingerprint touches no network; we run in the netns anyway). The lab test is rotation-lab.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, stat, readdir, rename, mkdir, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import {
  initIdentity,
  verifyIdentity,
  setLastRotated,
  lastRotated,
  torTime,
  rotationSchedule,
  generateOnionKeys,
  beginRotation,
  finishTwin,
  endGrace,
  readRotationState,
  loadOrInitRotationState,
  writeLastRotated,
  writeRotationState,
  type KeyTarget,
} from '../src/keysync/index.js';
import { listFingerprint } from '../src/tor/index.js';
import { tmp } from './helpers.js';

const DAY = 86400_000;
const gen = async (d: string): Promise<void> => void (await listFingerprint(d, 'gen'));

test('torTime and LastRotatedOnionKey: replaced in place, added when absent, read back', () => {
  const d = new Date('2026-03-04T05:06:07.890Z');
  assert.equal(torTime(d), '2026-03-04 05:06:07');
  const state = '# Tor state file\nTorVersion Tor 0.4.9.11\nLastRotatedOnionKey 2025-01-01 00:00:00\nLastWritten 2026-01-01 00:00:00\n';
  const out = setLastRotated(state, d);
  assert.equal(out, state.replace('2025-01-01 00:00:00', '2026-03-04 05:06:07'));
  assert.equal(lastRotated(out)?.toISOString(), '2026-03-04T05:06:07.000Z');
  assert.equal(setLastRotated('', d), 'LastRotatedOnionKey 2026-03-04 05:06:07\n');
  assert.equal(setLastRotated('TorVersion x', d), 'TorVersion x\nLastRotatedOnionKey 2026-03-04 05:06:07\n');
  assert.equal(lastRotated('TorVersion x\n'), null);
});

test('schedule: rotation due after rotationDays, pins back after graceDays (capped below tor\'s 28 days)', () => {
  const at = new Date('2026-01-01T00:00:00Z');
  const o = { rotationDays: 28, graceDays: 7 };
  const st = (phase: 'pinned' | 'rolling' | 'grace') => ({ phase, rotatedAt: at.toISOString() });
  const when = (days: number): Date => new Date(at.getTime() + days * DAY);
  assert.deepEqual(
    [rotationSchedule(st('grace'), when(6.99), o).repinDue, rotationSchedule(st('grace'), when(7), o).repinDue],
    [false, true],
  );
  assert.equal(rotationSchedule(st('pinned'), when(8), o).repinDue, false, 'nothing to re-pin when pinned');
  assert.equal(rotationSchedule(st('pinned'), when(27.9), o).rotateDue, false);
  assert.equal(rotationSchedule(st('pinned'), when(28), o).rotateDue, true);
  assert.equal(rotationSchedule(st('grace'), when(28), o).rotateDue, true);
  assert.equal(rotationSchedule(st('rolling'), when(40), o).rotateDue, false, 'never two rotations at once');
  assert.equal(rotationSchedule(st('grace'), when(0), o).graceEnds?.toISOString(), '2026-01-08T00:00:00.000Z');
  assert.equal(rotationSchedule(st('grace'), when(0), { rotationDays: 60, graceDays: 40 }).graceEnds?.toISOString(), when(27).toISOString());
  assert.equal(rotationSchedule(st('grace'), when(0), { rotationDays: 3, graceDays: 7 }).graceEnds?.toISOString(), when(3).toISOString());
  assert.equal(rotationSchedule(st('pinned'), when(0), o).nextRotation.toISOString(), when(28).toISOString());
});

async function bridge(n: number): Promise<{ id: string; ts: KeyTarget[]; keys: (t: KeyTarget) => string }> {
  const root = await tmp('rot');
  const ts = Array.from({ length: n }, (_, i) => ({ name: `r${i + 1}`, dataDir: join(root, `r${i + 1}`) }));
  const id = join(root, 'identity');
  await initIdentity({ identityDir: id, instances: ts, generate: gen });
  return { id, ts, keys: (t) => join(t.dataDir, 'keys') };
}

test('rotation on disk: keys verify passes at every step; .old files are the previous keys; pins come back', async () => {
  const { id, ts, keys } = await bridge(3);
  const ntor = (d: string, f = 'secret_onion_key_ntor'): Promise<Buffer> => readFile(join(d, f));
  const prevNtor = await ntor(join(id, 'keys'));
  const prevTap = await ntor(join(id, 'keys'), 'secret_onion_key');
  const st0 = await loadOrInitRotationState(id);
  assert.equal(st0.phase, 'pinned');
  assert.ok(Math.abs(Date.parse(st0.rotatedAt) - Date.now()) < 60_000, 'first state dated from the key file');

  const fresh = await generateOnionKeys(join(id, '..'), gen);
  assert.ok(!fresh.get('secret_onion_key_ntor')!.equals(prevNtor));
  assert.deepEqual((await readdir(join(id, '..'))).filter((f) => f.startsWith('onion-keygen-')), [], 'scratch dir removed');
  const at = new Date(Date.now() - 1000);
  let st = await beginRotation(id, ts.map(keys), fresh, at);
  assert.equal((await readRotationState(id))?.phase, 'rolling');
  let v = await verifyIdentity(id, ts);
  assert.deepEqual(v.problems, [], 'rolling, nobody restarted: new keys, pins');
  for (const t of ts) assert.ok((await ntor(keys(t))).equals(fresh.get('secret_onion_key_ntor')!));
  assert.ok((await stat(join(keys(ts[0]!), 'secret_onion_key_ntor.old'))).isDirectory(), 'pins kept until the restart');

  // A twin not switched yet (a crash between the bridge's copy and the twins): previous key, pins.
  const t3 = join(keys(ts[2]!), 'secret_onion_key_ntor');
  await writeFile(t3, prevNtor);
  v = await verifyIdentity(id, ts);
  assert.deepEqual(v.problems, [], 'rolling: a pinned twin with the previous key is one not restarted yet');
  await writeRotationState(id, { ...st, phase: 'grace' });
  v = await verifyIdentity(id, ts);
  assert.match(v.problems.join('\n'), /instance r3: ntor onion key differs/, 'after the rolling restart it is a problem');
  await writeRotationState(id, st);
  await writeFile(t3, fresh.get('secret_onion_key_ntor')!);

  for (const t of ts) {
    await writeFile(join(t.dataDir, 'state'), '# Tor state file\nLastRotatedOnionKey 2020-01-01 00:00:00\nLastWritten 2026-01-01 00:00:00\n');
    await finishTwin(id, t.dataDir, st);
    v = await verifyIdentity(id, ts);
    assert.deepEqual(v.problems, [], `rolling, ${t.name} restarted`);
    assert.ok((await ntor(keys(t), 'secret_onion_key_ntor.old')).equals(prevNtor));
    assert.ok((await ntor(keys(t), 'secret_onion_key.old')).equals(prevTap));
    assert.equal((await stat(join(keys(t), 'secret_onion_key_ntor.old'))).mode & 0o777, 0o600);
    const state = await readFile(join(t.dataDir, 'state'), 'utf8');
    assert.equal(lastRotated(state)?.toISOString(), new Date(Math.floor(at.getTime() / 1000) * 1000).toISOString());
    assert.match(state, /^LastWritten 2026-01-01 00:00:00$/m, 'the rest of the state file kept');
  }
  // The bug verify must catch: a twin serving other previous keys than the others.
  const bad = join(keys(ts[1]!), 'secret_onion_key_ntor.old');
  const good = await readFile(bad);
  const flipped = Buffer.from(good);
  flipped[flipped.length - 1]! ^= 0xff;
  await writeFile(bad, flipped);
  v = await verifyIdentity(id, ts);
  assert.equal(v.ok, false);
  assert.match(v.problems.join('\n'), /instance r2: previous onion key secret_onion_key_ntor\.old differs/);
  await writeFile(bad, good);
  // ...and a twin with one .old file and one pin.
  const tapOld = join(keys(ts[2]!), 'secret_onion_key.old');
  await rename(tapOld, `${tapOld}.aside`);
  await mkdir(tapOld);
  v = await verifyIdentity(id, ts);
  assert.match(v.problems.join('\n'), /instance r3: secret_onion_key\.old is a pin but secret_onion_key_ntor\.old is a file/);
  await rmdir(tapOld);
  await rename(`${tapOld}.aside`, tapOld);
  st = { ...st, phase: 'grace' };
  await writeRotationState(id, st);
  v = await verifyIdentity(id, ts);
  assert.deepEqual(v.problems, []);
  assert.equal(v.rotation, 'grace');

  // Outside a rotation the same .old files are what tor's own rotation leaves: a problem.
  await writeRotationState(id, { ...st, phase: 'pinned' });
  v = await verifyIdentity(id, ts);
  assert.match(v.problems.join('\n'), /instance r1: secret_onion_key\.old is a file, not a pin directory/);
  await writeRotationState(id, st);

  const after = await endGrace(id, ts.map(keys), st, new Date());
  assert.equal(after.phase, 'pinned');
  v = await verifyIdentity(id, ts);
  assert.deepEqual(v.problems, []);
  assert.equal(v.rotation, 'pinned');
  for (const t of ts) {
    assert.ok((await stat(join(keys(t), 'secret_onion_key_ntor.old'))).isDirectory());
    assert.ok((await ntor(keys(t))).equals(fresh.get('secret_onion_key_ntor')!), 'current key kept');
  }
  await assert.rejects(stat(join(id, 'keys', 'secret_onion_key_ntor.old')), 'the bridge copy of the expired key is gone');
});

test('writeLastRotated creates a state file tor can start from', async () => {
  const d = await tmp('rot-state');
  await writeLastRotated(d, new Date('2026-02-03T04:05:06Z'));
  assert.equal(await readFile(join(d, 'state'), 'utf8'), 'LastRotatedOnionKey 2026-02-03 04:05:06\n');
});

test('Supervisor.restartInstance: SIGTERM, the hook while tor is stopped, started again at once (no backoff)', async () => {
  const { Supervisor } = await import('../src/supervisor/index.js');
  const { parseConfigText, resolveConfig } = await import('../src/config/index.js');
  const pino = (await import('pino')).default;
  const d = await tmp('rot-sup');
  const fake = join(d, 'fake-tor');
  await writeFile(fake, '#!/bin/sh\nexec sleep 300\n', { mode: 0o755 });
  await mkdir(join(d, 'data', 'instances', 'fk1'), { recursive: true });
  const text = `nickname: fk\ninstances: 1\ndataDir: ${d}/data\ncontactInfo: me@x\ntorPath: ${fake}\nrestart: { initialDelayMs: 60000 }\n`;
  const cfg = resolveConfig(parseConfigText(text, join(d, 'c.yaml')), join(d, 'c.yaml'));
  const sup = new Supervisor(cfg, pino({ level: 'silent' }));
  try {
    await sup.start();
    const first = await waitPid(() => sup.get('fk1')?.pid ?? null);
    let hookSawAlive: boolean | null = null;
    const t0 = Date.now();
    await sup.restartInstance('fk1', async () => {
      hookSawAlive = alive(first);
    });
    assert.equal(hookSawAlive, false, 'the hook ran after the old process exited');
    const second = await waitPid(() => {
      const p = sup.get('fk1')?.pid ?? null;
      return p !== first ? p : null;
    });
    assert.ok(Date.now() - t0 < 5_000, 'no 60 s backoff for a deliberate restart');
    assert.ok(alive(second));
    assert.equal(sup.get('fk1')?.restarts, 1);
    await assert.rejects(sup.restartInstance('nope'), /no instance nope/);
    // A failing hook is reported, and tor is started anyway.
    await assert.rejects(sup.restartInstance('fk1', async () => Promise.reject(new Error('hook broke'))), /hook broke/);
    await waitPid(() => {
      const p = sup.get('fk1')?.pid ?? null;
      return p !== second ? p : null;
    });
  } finally {
    await sup.stop(1_000);
  }
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitPid(f: () => number | null): Promise<number> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const p = f();
    if (p) return p;
    if (Date.now() > deadline) throw new Error('no pid within 5 s');
    await new Promise((r) => setTimeout(r, 20));
  }
}

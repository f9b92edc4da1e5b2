// keysync on real tor-made keys (tor --list-fingerprint touches no network; we run in the netns anyway).
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, stat, mkdir, readdir, cp } from 'node:fs/promises';
import { join } from 'node:path';
import { initIdentity, verifyIdentity, rsaFingerprint, installPins, pinStatus, type KeyTarget } from '../src/keysync/index.js';
import { listFingerprint } from '../src/tor/index.js';
import { tmp } from './helpers.js';

let torMade: string; // a tor data dir with tor's own keys
let torFp: string;

before(async () => {
  torMade = await tmp('keys-src');
  torFp = await listFingerprint(torMade, 'keysrc');
});

const gen = async (d: string): Promise<void> => void (await listFingerprint(d, 'gen'));
const targets = (root: string, n: number): KeyTarget[] =>
  Array.from({ length: n }, (_, i) => ({ name: `b${i + 1}`, dataDir: join(root, `b${i + 1}`) }));

test('rsaFingerprint agrees with tor', async () => {
  assert.equal(rsaFingerprint(await readFile(join(torMade, 'keys', 'secret_id_key'))), torFp);
});

test('init generates once, copies into every instance with 0700/0600, pins both .old paths', async () => {
  const root = await tmp('keys-init');
  const ts = targets(root, 3);
  const r = await initIdentity({ identityDir: join(root, 'identity'), instances: ts, generate: gen });
  assert.equal(r.generated, true);
  for (const t of ts) {
    const keys = join(t.dataDir, 'keys');
    assert.equal((await stat(keys)).mode & 0o777, 0o700);
    assert.equal((await stat(join(keys, 'secret_id_key'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(keys, 'secret_onion_key_ntor.old'))).isDirectory(), true);
    assert.equal((await stat(join(keys, 'secret_onion_key.old'))).isDirectory(), true);
    assert.match(await readFile(join(keys, 'secret_onion_key_ntor.old', 'README'), 'utf8'), /on purpose/);
  }
  const v = await verifyIdentity(join(root, 'identity'), ts);
  assert.deepEqual(v.problems, []);
  assert.equal(v.fingerprint, r.fingerprint);
  const again = await initIdentity({ identityDir: join(root, 'identity'), instances: ts, generate: gen });
  assert.equal(again.generated, false);
  assert.deepEqual(again.actions, []);
  assert.equal(again.fingerprint, r.fingerprint);
});

test('init adopts an existing instance identity and never replaces it', async () => {
  const root = await tmp('keys-adopt');
  const ts = targets(root, 2);
  await cp(torMade, ts[0]!.dataDir, { recursive: true });
  const r = await initIdentity({ identityDir: join(root, 'identity'), instances: ts, generate: gen });
  assert.equal(r.generated, false);
  assert.equal(r.fingerprint, torFp);
  assert.ok(r.actions.some((a) => /adopted the identity of instance b1/.test(a)));
});

test('init refuses when instances disagree, and changes nothing', async () => {
  const root = await tmp('keys-conflict');
  const ts = targets(root, 2);
  await cp(torMade, ts[0]!.dataDir, { recursive: true });
  await gen(ts[1]!.dataDir);
  const before = await readdir(join(ts[1]!.dataDir, 'keys'));
  await assert.rejects(
    initIdentity({ identityDir: join(root, 'identity'), instances: ts, generate: gen }),
    /instance b2 has a different RSA identity, ed25519 identity, ntor onion key than instance b1/,
  );
  assert.deepEqual(await readdir(join(ts[1]!.dataDir, 'keys')), before);
  await assert.rejects(stat(join(root, 'identity', 'keys')), /ENOENT/);
});

test('verify names the instance and key that differ, and missing pins', async () => {
  const root = await tmp('keys-verify');
  const ts = targets(root, 3);
  await initIdentity({ identityDir: join(root, 'identity'), instances: ts, generate: gen });
  const p = join(ts[1]!.dataDir, 'keys', 'secret_onion_key_ntor');
  const k = await readFile(p);
  k.writeUInt8(k.readUInt8(40) ^ 1, 40);
  await writeFile(p, k);
  const { rm } = await import('node:fs/promises');
  await rm(join(ts[2]!.dataDir, 'keys', 'secret_onion_key.old'), { recursive: true });
  const v = await verifyIdentity(join(root, 'identity'), ts);
  assert.equal(v.ok, false);
  assert.equal(v.problems.length, 2, v.problems.join('\n'));
  assert.match(v.problems[0]!, /^instance b2: ntor onion key differs/);
  assert.match(v.problems[1]!, /^instance b3: secret_onion_key\.old pin directory is missing/);
});

test('installPins moves an old key file aside instead of deleting it', async () => {
  const d = await tmp('keys-pin');
  await mkdir(join(d, 'keys'));
  await writeFile(join(d, 'keys', 'secret_onion_key_ntor.old'), 'old key');
  const did = await installPins(join(d, 'keys'), new Date('2026-01-02T03:04:05Z'));
  assert.ok(did.some((x) => /moved old key/.test(x)));
  assert.equal(await readFile(join(d, 'keys', 'secret_onion_key_ntor.old.moved-2026-01-02T030405000Z'), 'utf8'), 'old key');
  assert.equal((await pinStatus(join(d, 'keys'))).pinned, true);
});

test('init during an onion-key grace period keeps the previous keys as .old files (it does not pin over them)', async () => {
  const root = await tmp('keys-grace');
  const ts = targets(root, 2);
  const identity = join(root, 'identity');
  await initIdentity({ identityDir: identity, instances: ts, generate: gen });
  const keys = join(ts[0]!.dataDir, 'keys');
  const { rm } = await import('node:fs/promises');
  for (const f of ['secret_onion_key.old', 'secret_onion_key_ntor.old']) {
    await rm(join(keys, f), { recursive: true });
    await writeFile(join(keys, f), `previous ${f}`);
  }
  await writeFile(
    join(identity, 'onion-rotation.json'),
    JSON.stringify({ version: 1, phase: 'grace', rotatedAt: new Date().toISOString(), current: 'a', previous: 'b', done: [] }),
  );
  await initIdentity({ identityDir: identity, instances: ts, generate: gen });
  assert.equal(await readFile(join(keys, 'secret_onion_key_ntor.old'), 'utf8'), 'previous secret_onion_key_ntor.old');
  assert.deepEqual((await readdir(keys)).filter((f) => f.includes('.moved-')), []);
  // Outside a rotation the same files are an unpinned twin's: init pins again (moving them aside).
  await writeFile(
    join(identity, 'onion-rotation.json'),
    JSON.stringify({ version: 1, phase: 'pinned', rotatedAt: new Date().toISOString(), current: 'a', previous: null, done: [] }),
  );
  await initIdentity({ identityDir: identity, instances: ts, generate: gen });
  assert.equal((await stat(join(keys, 'secret_onion_key_ntor.old'))).isDirectory(), true);
});

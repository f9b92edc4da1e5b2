// keys export / import on real tor-made keys (tor --list-fingerprint touches no network; the suite
// runs in a loopback-only namespace anyway): modes, refusal, --force moving aside, corrupt archives.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, stat, readdir, chmod, rm, cp, lstat, mkdir, chown } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { stringify } from 'yaml';
import {
  initIdentity,
  verifyIdentity,
  exportKeys,
  writeKeyArchive,
  readKeyArchive,
  parseKeyArchive,
  importKeys,
  type KeyTarget,
  type KeyArchive,
} from '../src/keysync/index.js';
import { createCookieFile } from '../src/extorport/index.js';
import { listFingerprint } from '../src/tor/index.js';
import { cli, tmp } from './helpers.js';

const gen = async (d: string): Promise<void> => void (await listFingerprint(d, 'gen'));
const noGen = async (): Promise<void> => {
  throw new Error('must not generate');
};
const targets = (root: string, n: number): KeyTarget[] =>
  Array.from({ length: n }, (_, i) => ({ name: `b${i + 1}`, dataDir: join(root, 'instances', `b${i + 1}`) }));

/** Every path under `dir` with its mode and a digest of its content: to show that nothing changed. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      const st = await lstat(p);
      out[p] = `${(st.mode & 0o7777).toString(8)} ${e.isDirectory() ? 'dir' : createHash('sha256').update(await readFile(p)).digest('hex')}`;
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return out;
}

/** A bridge data directory with an identity in identity/ and `n` instances. */
async function bridge(prefix: string, n = 2): Promise<{ root: string; identity: string; ts: KeyTarget[]; fp: string }> {
  const root = await tmp(prefix);
  const ts = targets(root, n);
  const r = await initIdentity({ identityDir: join(root, 'identity'), instances: ts, generate: gen });
  return { root, identity: join(root, 'identity'), ts, fp: r.fingerprint };
}

let src: Awaited<ReturnType<typeof bridge>>;
let archiveFile: string;
let archive: KeyArchive;

before(async () => {
  src = await bridge('arch-src');
  // A mode that is not tor's default, to see that modes travel.
  await chmod(join(src.identity, 'keys', 'ed25519_master_id_secret_key'), 0o400);
  archive = await exportKeys({ identityDir: src.identity, nickname: 'srcbridge' });
  archiveFile = join(src.root, 'keys.json');
  await writeKeyArchive(archiveFile, archive);
});

test('export: one 0600 file with a manifest (RSA fingerprint, ed25519 identity) and every key with its mode', async () => {
  assert.equal((await stat(archiveFile)).mode & 0o777, 0o600);
  const j = JSON.parse(await readFile(archiveFile, 'utf8')) as KeyArchive;
  assert.equal(j.format, 'bridgectl-keys');
  assert.equal(j.fingerprint, src.fp);
  const v = await verifyIdentity(src.identity, src.ts);
  assert.equal(j.ed25519, v.ed25519);
  assert.deepEqual(
    j.files.map((f) => f.name).sort(),
    (await readdir(join(src.identity, 'keys'))).sort(),
    'every key file of the identity directory',
  );
  assert.equal(j.files.find((f) => f.name === 'ed25519_master_id_secret_key')?.mode, '0400');
  assert.equal(j.files.find((f) => f.name === 'secret_id_key')?.mode, '0600');
  assert.equal(j.extOrPortCookie, undefined, 'no cookie unless asked');
  await assert.rejects(writeKeyArchive(archiveFile, archive), /exists; refusing to overwrite/);
});

test('import into a fresh dataDir: same identity everywhere, 0700 dirs, archived file modes, pins', async () => {
  const root = await tmp('arch-fresh');
  const ts = targets(root, 3);
  const r = await importKeys({ archive: await readKeyArchive(archiveFile), identityDir: join(root, 'identity'), instances: ts });
  assert.equal(r.outcome, 'installed');
  assert.equal(r.fingerprint, src.fp);
  for (const keys of [join(root, 'identity', 'keys'), ...ts.map((t) => join(t.dataDir, 'keys'))]) {
    assert.equal((await stat(keys)).mode & 0o777, 0o700, keys);
    assert.equal((await stat(join(keys, 'secret_id_key'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(keys, 'secret_onion_key_ntor'))).mode & 0o777, 0o600);
    assert.equal((await stat(join(keys, 'ed25519_master_id_secret_key'))).mode & 0o777, 0o400, 'the archived mode');
    for (const f of archive.files) {
      assert.ok((await readFile(join(keys, f.name))).equals(await readFile(join(src.identity, 'keys', f.name))), f.name);
    }
  }
  for (const t of ts) assert.equal((await stat(t.dataDir)).mode & 0o777, 0o700);
  const v = await verifyIdentity(join(root, 'identity'), ts);
  assert.deepEqual(v.problems, [], 'pins in place, keys shared');
  assert.equal(v.fingerprint, src.fp);
  // init afterwards finds everything in place and generates nothing.
  const init = await initIdentity({ identityDir: join(root, 'identity'), instances: ts, generate: noGen });
  assert.deepEqual(init.actions, []);
  // And importing again is a no-op.
  const before = await snapshot(root);
  const again = await importKeys({ archive: await readKeyArchive(archiveFile), identityDir: join(root, 'identity'), instances: ts });
  assert.equal(again.outcome, 'unchanged');
  assert.deepEqual(again.actions, []);
  assert.deepEqual(await snapshot(root), before);
});

test('import over another identity: refused naming both fingerprints, nothing changed', async () => {
  const other = await bridge('arch-other');
  assert.notEqual(other.fp, src.fp);
  const before = await snapshot(other.root);
  await assert.rejects(
    importKeys({ archive: await readKeyArchive(archiveFile), identityDir: other.identity, instances: other.ts }),
    (e: Error) => {
      assert.match(e.message, new RegExp(`archive .* holds identity ${src.fp}`));
      assert.match(e.message, new RegExp(`the bridge identity \\(.*\\) has identity ${other.fp}`));
      assert.match(e.message, new RegExp(`instance b1 has identity ${other.fp}`));
      assert.match(e.message, /--force/);
      return true;
    },
  );
  assert.deepEqual(await snapshot(other.root), before);
});

test('import of the same identity with another ntor key: refused; --force moves aside', async () => {
  const b = await bridge('arch-ntor', 1);
  const arch = parseKeyArchive(JSON.stringify(await exportKeys({ identityDir: b.identity })));
  const p = join(b.ts[0]!.dataDir, 'keys', 'secret_onion_key_ntor');
  const k = await readFile(p);
  k[k.length - 1]! ^= 1;
  await writeFile(p, k);
  await assert.rejects(importKeys({ archive: arch, identityDir: b.identity, instances: b.ts }), /instance b1 has identity [0-9A-F]{40}.* too, but a different ntor onion key/);
  const r = await importKeys({ archive: arch, identityDir: b.identity, instances: b.ts, force: true, now: new Date('2026-01-02T03:04:05Z') });
  assert.equal(r.outcome, 'replaced');
  const aside = join(b.ts[0]!.dataDir, 'keys.moved-2026-01-02T030405000Z');
  assert.deepEqual(r.movedAside, [aside]);
  assert.ok((await readFile(join(aside, 'secret_onion_key_ntor'))).equals(k), 'the old key kept');
  assert.deepEqual((await verifyIdentity(b.identity, b.ts)).problems, []);
});

test('import --force over another identity moves every old keys dir aside (kept, not deleted) and installs the archive', async () => {
  const other = await bridge('arch-force');
  // The old identity was in an onion-key rotation: that state must not carry over to the new keys.
  const state = join(other.identity, 'onion-rotation.json');
  await writeFile(state, JSON.stringify({ phase: 'grace', lastRotation: '2025-12-01T00:00:00Z' }));
  const before = await snapshot(other.root);
  const r = await importKeys({
    archive: await readKeyArchive(archiveFile),
    identityDir: other.identity,
    instances: other.ts,
    force: true,
    now: new Date('2026-01-02T03:04:05Z'),
  });
  assert.equal(r.outcome, 'replaced');
  const moved = [join(other.identity, 'keys'), ...other.ts.map((t) => join(t.dataDir, 'keys'))].map((k) => `${k}.moved-2026-01-02T030405000Z`);
  assert.deepEqual(r.movedAside, [...moved, `${state}.moved-2026-01-02T030405000Z`]);
  assert.equal(existsSync(state), false, 'the old rotation state is moved aside');
  for (const m of moved) {
    const original = m.replace(/\.moved-.*$/, '');
    for (const [path, sig] of Object.entries(before)) {
      if (path.startsWith(`${original}/`)) {
        const s = await snapshot(m);
        assert.equal(s[path.replace(original, m)], sig, `${path} kept as it was`);
      }
    }
  }
  const v = await verifyIdentity(other.identity, other.ts);
  assert.deepEqual(v.problems, []);
  assert.equal(v.fingerprint, src.fp);
});

test('same identity, a renewed signing certificate: kept without --force (a no-op), replaced with it', async () => {
  const root = await tmp('arch-cert');
  await cp(src.root, root, { recursive: true });
  const ts = targets(root, 2);
  const cert = join(ts[1]!.dataDir, 'keys', 'ed25519_signing_cert');
  const renewed = Buffer.concat([await readFile(cert), Buffer.from('x')]);
  await writeFile(cert, renewed);
  const before = await snapshot(root);
  const r = await importKeys({ archive: await readKeyArchive(archiveFile), identityDir: join(root, 'identity'), instances: ts });
  assert.equal(r.outcome, 'unchanged');
  assert.deepEqual(r.kept, ['instance b2: ed25519_signing_cert']);
  assert.deepEqual(await snapshot(root), before);
  const f = await importKeys({ archive: await readKeyArchive(archiveFile), identityDir: join(root, 'identity'), instances: ts, force: true });
  assert.equal(f.outcome, 'replaced');
  assert.equal(f.movedAside.length, 1);
  assert.ok(!(await readFile(cert)).equals(renewed));
});

test('a truncated or corrupt archive: a clear error, and nothing is written', async () => {
  const text = await readFile(archiveFile, 'utf8');
  const j = JSON.parse(text) as KeyArchive;
  const variants: Array<[string, string, RegExp]> = [
    ['truncated', text.slice(0, Math.floor(text.length / 2)), /not a complete bridgectl key archive .* truncated or corrupt/],
    ['empty', '', /not a complete bridgectl key archive/],
    ['not ours', JSON.stringify({ hello: 1 }), /not a bridgectl key archive/],
    [
      'a flipped byte in a key',
      JSON.stringify({ ...j, files: j.files.map((f) => (f.name === 'secret_onion_key_ntor' ? { ...f, data: `B${f.data.slice(1)}` } : f)) }),
      /secret_onion_key_ntor: its SHA-256 digest does not match/,
    ],
    [
      'a key cut short',
      JSON.stringify({ ...j, files: j.files.map((f) => (f.name === 'secret_id_key' ? { ...f, data: f.data.slice(0, 40) } : f)) }),
      /secret_id_key: \d+ bytes where the manifest says/,
    ],
    ['a missing key', JSON.stringify({ ...j, files: j.files.filter((f) => f.name !== 'secret_onion_key_ntor') }), /lacks secret_onion_key_ntor/],
    ['another fingerprint', JSON.stringify({ ...j, fingerprint: 'A'.repeat(40) }), /fingerprint .* the manifest says "AAAA/],
    [
      'a path outside keys/',
      JSON.stringify({ ...j, files: [...j.files, { ...j.files[0]!, name: '../../torrc' }] }),
      /unexpected file "..\/..\/torrc"/,
    ],
    ['a bad mode', JSON.stringify({ ...j, files: j.files.map((f) => ({ ...f, mode: 'rw' })) }), /bad mode/],
  ];
  const root = await tmp('arch-corrupt');
  // A fresh dataDir (the CLI) and an existing bridge (the library): neither may change.
  const config = join(root, 'bridge.yaml');
  await writeFile(config, stringify({ nickname: 'fresh', instances: 2, dataDir: join(root, 'data') }));
  const other = await bridge('arch-corrupt-other', 1);
  const otherBefore = await snapshot(other.root);
  for (const [what, body, re] of variants) {
    const f = join(root, `${what.replace(/\//g, '_')}.json`);
    await writeFile(f, body);
    await assert.rejects(readKeyArchive(f), re, what);
    const r = await cli(['keys', 'import', f, '--config', config]);
    assert.equal(r.exitCode, 1, `${what}: ${r.all}`);
    assert.match(r.stderr, re, what);
    assert.match(r.stderr, /Nothing was changed/, what);
  }
  assert.deepEqual(await readdir(root).then((l) => l.filter((x) => !x.endsWith('.json') && !x.endsWith('.yaml'))), [], 'nothing written');
  assert.deepEqual(await snapshot(other.root), otherBefore);
});

test('the static Extended ORPort cookie travels only when asked, and is never replaced without --force', async () => {
  const cookie = join(src.root, 'cookie');
  await createCookieFile(cookie);
  const a = parseKeyArchive(JSON.stringify(await exportKeys({ identityDir: src.identity, cookieFile: cookie })));
  const root = await tmp('arch-cookie');
  const dest = join(root, 'static_extended_orport_auth_cookie');
  await importKeys({ archive: a, identityDir: join(root, 'identity'), instances: [], cookieFile: dest });
  assert.ok((await readFile(dest)).equals(await readFile(cookie)));
  assert.equal((await stat(dest)).mode & 0o777, 0o600);
  await rm(dest);
  await createCookieFile(dest);
  const mine = await readFile(dest);
  await assert.rejects(
    importKeys({ archive: a, identityDir: join(root, 'identity'), instances: [], cookieFile: dest }),
    /static Extended ORPort cookie .* differs/,
  );
  assert.ok((await readFile(dest)).equals(mine));
});

test('CLI: keys export, then import into a fresh dataDir, and a refusal that names both fingerprints', async () => {
  const root = await tmp('arch-cli');
  const conf = async (name: string, dataDir: string): Promise<string> => {
    const f = join(root, `${name}.yaml`);
    await writeFile(f, stringify({ nickname: name, instances: 2, dataDir }));
    return f;
  };
  const a = await conf('alpha', join(root, 'a'));
  const b = await conf('beta', join(root, 'b'));
  const init = await cli(['init', '--config', a]);
  assert.equal(init.exitCode, 0, init.all);
  const fp = /fingerprint ([0-9A-F]{40})/.exec(init.all ?? '')![1]!;
  const file = join(root, 'alpha-keys.json');
  const ex = await cli(['keys', 'export', file, '--config', a]);
  assert.equal(ex.exitCode, 0, ex.all);
  assert.match(ex.all ?? '', new RegExp(`fingerprint ${fp}`));
  const im = await cli(['keys', 'import', file, '--config', b]);
  assert.equal(im.exitCode, 0, im.all);
  assert.match(im.all ?? '', new RegExp(`installed identity ${fp}`));
  const v = await cli(['keys', 'verify', '--config', b]);
  assert.equal(v.exitCode, 0, v.all);
  assert.match(v.all ?? '', new RegExp(fp));
  const again = await cli(['init', '--config', b]);
  assert.match(again.all ?? '', new RegExp(`fingerprint ${fp}`));
  assert.match(again.all ?? '', /already in place/);

  const c = await conf('gamma', join(root, 'c'));
  const cfp = /fingerprint ([0-9A-F]{40})/.exec((await cli(['init', '--config', c])).all ?? '')![1]!;
  const refused = await cli(['keys', 'import', file, '--config', c]);
  assert.equal(refused.exitCode, 1);
  assert.match(refused.all ?? '', new RegExp(`holds identity ${fp}.*has identity ${cfp}`));
  const forced = await cli(['keys', 'import', file, '--config', c, '--force']);
  assert.equal(forced.exitCode, 0, forced.all);
  assert.match(forced.all ?? '', /moved the keys of/);
  assert.match((await cli(['keys', 'verify', '--config', c])).all ?? '', new RegExp(fp));
  const usage = await cli(['keys', 'export', '--config', a]);
  assert.notEqual(usage.exitCode, 0);
});

test('CLI as root: keys import into a dataDir that belongs to the service user gives it everything it made', { skip: process.getuid?.() !== 0 && 'needs root' }, async () => {
  const root = await tmp('arch-owner');
  const src = join(root, 'src.yaml');
  await writeFile(src, stringify({ nickname: 'alpha', instances: 2, dataDir: join(root, 'a') }));
  assert.equal((await cli(['init', '--config', src])).exitCode, 0);
  const file = join(root, 'keys.json');
  assert.equal((await cli(['keys', 'export', file, '--config', src])).exitCode, 0);
  // The package's /var/lib/bridgectl: made by the package, owned by the service user (here nobody).
  const dataDir = join(root, 'b');
  await mkdir(dataDir, { mode: 0o750 });
  await chown(dataDir, 65534, 65534);
  const dst = join(root, 'dst.yaml');
  await writeFile(dst, stringify({ nickname: 'beta', instances: 2, dataDir }));
  const im = await cli(['keys', 'import', file, '--config', dst]);
  assert.equal(im.exitCode, 0, im.all);
  assert.match(im.all ?? '', /gave everything under .* to its owner \(uid 65534\)/);
  const rootOwned: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if ((await lstat(p)).uid !== 65534) rootOwned.push(p.slice(dataDir.length));
      if (e.isDirectory()) await walk(p);
    }
  };
  await walk(dataDir);
  assert.deepEqual(rootOwned, []);
  assert.ok(existsSync(join(dataDir, 'identity', 'keys', 'secret_id_key')));
});

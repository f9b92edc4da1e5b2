// bridgectl migrate without a network (issue 12): the readers, and the CLI against source trees
// laid out as Debian has them under --root (keys made by real tor --list-fingerprint). The lab run
// with real clients is migrate-lab.test.ts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile, readFile, rm, cp, readdir, lstat, symlink, utimes, chown } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { createHash } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { parseTorrc, splitWords, parseEnvironment, parseEnvironmentFile, parseExecStart, parseHaproxy, serversBehind, parseTransportOptions } from '../src/migrate/index.js';
import { listFingerprint } from '../src/tor/index.js';
import { createCookieFile } from '../src/extorport/index.js';
import { cli, tmp } from './helpers.js';

test('torrc reader: comments, continuations, quotes, case-insensitive keys', () => {
  const l = parseTorrc('# c\nNickname flakey1 # trailing\nContactInfo "a # b"\nmaxmeminqueues \\\n  2 GB\n\n');
  assert.deepEqual(l.map((x) => [x.lower, x.value, x.line]), [['nickname', 'flakey1', 2], ['contactinfo', 'a # b', 3], ['maxmeminqueues', '2 GB', 4]]);
});

test('systemd readers: ExecStart words, Environment= quoting, EnvironmentFile', () => {
  assert.deepEqual(splitWords(`/usr/bin/x --a "b c" 'd e' f\\ g`), ['/usr/bin/x', '--a', 'b c', 'd e', 'f g']);
  assert.throws(() => splitWords('"open'), /unterminated/);
  assert.deepEqual(parseEnvironment(`A=1 "B=two words" C="x y"`), [['A', '1'], ['B', 'two words'], ['C', 'x y']]);
  assert.deepEqual(parseEnvironmentFile('# x\nexport A=1\nB="q r"\n;z\nC=\'s\'\n'), [['A', '1'], ['B', 'q r'], ['C', 's']]);
  assert.deepEqual(parseExecStart('-/usr/bin/snowflake-server --acme-hostnames a.example'), { prefixes: '-', argv: ['/usr/bin/snowflake-server', '--acme-hostnames', 'a.example'] });
  assert.deepEqual(parseTransportOptions('snowflake:orport-srcaddr=127.0.2.0/24;other:a=b;snowflake:num-turbotunnel=2;snowflake:x=a\\;b', 'snowflake'), { 'orport-srcaddr': '127.0.2.0/24', 'num-turbotunnel': '2', x: 'a;b' });
});

test('HAProxy reader: the servers behind the frontend the transport connects to', () => {
  const s = parseHaproxy(HAPROXY);
  const hp = serversBehind(s, '127.0.0.1:10000');
  assert.equal(hp?.back.name, 'tor');
  assert.deepEqual(hp?.back.servers.map((x) => [x.name, x.address, x.source]), [['tor1', '127.0.0.1:10001', '127.0.2.1'], ['tor2', '127.0.0.1:10002', '127.0.2.2']]);
  assert.equal(serversBehind(s, '127.0.0.1:9999'), null);
});

const HAPROXY = `global
  maxconn 1000000
defaults
  mode tcp
  timeout client 600s
frontend tor
  bind 127.0.0.1:10000
  default_backend tor
backend tor
  balance roundrobin   # spread
  server tor1 127.0.0.1:10001 source 127.0.2.1
  server tor2 127.0.0.1:10002 source 127.0.2.2
`;

let dir: string;
let keysA: string;
let keysB: string;

async function treeHash(p: string): Promise<string> {
  const h = createHash('sha256');
  const walk = async (d: string): Promise<void> => {
    const s = await lstat(d).catch(() => null);
    if (!s) return void h.update(`${relative(p, d)}:absent\n`);
    h.update(`${relative(p, d)}:${s.mode}:${s.isDirectory() ? 'd' : 'f'}\n`);
    if (s.isDirectory()) for (const n of (await readdir(d)).sort()) await walk(join(d, n));
    else if (s.isFile()) h.update(await readFile(d));
  };
  await walk(p);
  return h.digest('hex');
}

/** A recipe bridge as the Snowflake guide lays it out, under `root`. */
async function recipeRoot(root: string): Promise<void> {
  for (const i of [1, 2]) {
    await mkdir(join(root, `etc/tor/instances/snowflake${i}`), { recursive: true });
    await writeFile(
      join(root, `etc/tor/instances/snowflake${i}/torrc`),
      `BridgeRelay 1\nAssumeReachable 1\nBridgeDistribution none\nORPort 127.0.0.1:auto # unused\nExtORPort auto\nSocksPort 0\nNickname flakey${i}\nContactInfo ops@example.org\nMaxMemInQueues 2 GB\n` +
        `ServerTransportPlugin snowflake exec /usr/local/bin/extor-static-cookie /etc/extor-static-cookie/static_extended_orport_auth_cookie\nServerTransportListenAddr snowflake 127.0.0.1:1000${i}\n`,
    );
    const data = join(root, `var/lib/tor-instances/snowflake${i}`);
    await mkdir(data, { recursive: true, mode: 0o700 });
    await cp(keysA, join(data, 'keys'), { recursive: true });
    for (const p of ['secret_onion_key.old', 'secret_onion_key_ntor.old']) await mkdir(join(data, 'keys', p));
    await writeFile(join(data, 'state'), '# Tor state file\nLastRotatedOnionKey 2026-11-20 10:00:00\nTorVersion Tor 0.4.9.11\n');
  }
  await mkdir(join(root, 'etc/extor-static-cookie'), { recursive: true });
  await createCookieFile(join(root, 'etc/extor-static-cookie/static_extended_orport_auth_cookie'));
  await mkdir(join(root, 'etc/haproxy'), { recursive: true });
  await writeFile(join(root, 'etc/haproxy/haproxy.cfg'), HAPROXY);
  await mkdir(join(root, 'etc/systemd/system'), { recursive: true });
  await mkdir(join(root, 'etc/default'), { recursive: true });
  await writeFile(join(root, 'etc/default/snowflake-server'), 'TOR_PT_SERVER_TRANSPORT_OPTIONS="snowflake:orport-srcaddr=127.0.3.0/24;snowflake:num-turbotunnel=4"\n');
  await writeFile(
    join(root, 'etc/systemd/system/snowflake-server.service'),
    `[Unit]\nDescription=snowflake-server\n[Service]\nType=exec\nUser=debian-tor\nAmbientCapabilities=CAP_NET_BIND_SERVICE\n` +
      `Environment=TOR_PT_MANAGED_TRANSPORT_VER=1 TOR_PT_SERVER_TRANSPORTS=snowflake TOR_PT_SERVER_BINDADDR=snowflake-0.0.0.0:443\n` +
      `Environment=TOR_PT_EXTENDED_SERVER_PORT=127.0.0.1:10000 TOR_PT_AUTH_COOKIE_FILE=/etc/extor-static-cookie/static_extended_orport_auth_cookie\n` +
      `Environment=TOR_PT_STATE_LOCATION=/var/lib/snowflake-server/pt_state TOR_PT_EXIT_ON_STDIN_CLOSE=0 GOMAXPROCS=4\nEnvironmentFile=-/etc/default/snowflake-server\n` +
      `ExecStart=/usr/local/bin/snowflake-server --acme-hostnames snowflake.example --log /var/log/snowflake-server/snowflake-server.log\n[Install]\nWantedBy=multi-user.target\n`,
  );
  await mkdir(join(root, 'var/lib/snowflake-server/pt_state/snowflake-certificate-cache'), { recursive: true, mode: 0o700 });
  await writeFile(join(root, 'var/lib/snowflake-server/pt_state/snowflake-certificate-cache/acme_account+key'), 'cert cache\n', { mode: 0o600 });
}

before(async () => {
  dir = await tmp('migrate');
  keysA = join(dir, 'idA', 'keys');
  keysB = join(dir, 'idB', 'keys');
  await listFingerprint(join(dir, 'idA'), 'idA');
  await listFingerprint(join(dir, 'idB'), 'idB');
  await utimes(join(keysA, 'secret_onion_key_ntor'), new Date('2026-11-25T00:00:00Z'), new Date('2026-11-25T00:00:00Z'));
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function fresh(name: string): Promise<{ root: string; cfg: string; data: string; args: string[] }> {
  const root = join(dir, name, 'root');
  await recipeRoot(root);
  const cfg = join(dir, name, 'etc-bridgectl', 'bridgectl.yaml');
  const data = join(dir, name, 'bridgectl');
  return { root, cfg, data, args: ['migrate', '--root', root, '--config', cfg, '--data-dir', data] };
}

test('recipe: the dry run shows and writes nothing; --apply keeps keys, nicknames, transport, cookie and state; a second run is a no-op', async () => {
  const { root, cfg, data, args } = await fresh('ok');
  const src = await treeHash(root);
  const dry = await cli(args);
  assert.equal(dry.exitCode, 0, dry.all);
  assert.match(dry.stdout, /identity [0-9A-F]{40} \/ ed25519 \S+, the same in all 2 instance/);
  assert.match(dry.stdout, /HAProxy .* replaced by bridgectl's balancer on 127\.0\.0\.1:10000 with source addresses from 127\.0\.2\.0\/24/);
  assert.match(dry.stdout, /not carried from .*snowflake-server\.service.*User=debian-tor/);
  assert.match(dry.stdout, /Dry run: nothing was written/);
  assert.equal((await lstat(data).catch(() => null)), null, 'the dry run made no data dir');
  assert.equal((await lstat(cfg).catch(() => null)), null, 'nor a config');

  const r = await cli([...args, '--apply']);
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.stdout, /systemctl disable --now snowflake-server\.service haproxy\.service tor@snowflake1\.service tor@snowflake2\.service/);
  assert.match(r.stdout, /Roll back:/);
  assert.equal(await treeHash(root), src, 'the source is unchanged');
  const c = parseYaml(await readFile(cfg, 'utf8')) as Record<string, unknown>;
  assert.equal(c.nickname, 'flakey');
  assert.equal(c.instances, 2);
  assert.equal(c.contactInfo, 'ops@example.org');
  assert.equal(c.torrc, 'MaxMemInQueues 2 GB\n');
  assert.deepEqual(c.balancer, { listen: '127.0.0.1:10000', sourceRange: '127.0.2.0/24' });
  assert.deepEqual(c.transport, {
    name: 'snowflake',
    // Its --log FILE is dropped: under the shipped unit it could not be opened; stderr reaches the journal.
    command: ['/usr/local/bin/snowflake-server', '--acme-hostnames', 'snowflake.example'],
    listen: '0.0.0.0:443',
    options: { 'orport-srcaddr': '127.0.3.0/24', 'num-turbotunnel': '4' },
    env: { GOMAXPROCS: '4' },
  });
  for (const i of [1, 2]) {
    for (const f of ['secret_id_key', 'ed25519_master_id_public_key', 'secret_onion_key', 'secret_onion_key_ntor']) {
      assert.deepEqual(await readFile(join(data, `instances/flakey${i}/keys`, f)), await readFile(join(keysA, f)), `flakey${i} ${f}`);
    }
    assert.match(await readFile(join(data, `instances/flakey${i}/state`), 'utf8'), /LastRotatedOnionKey 2026-11-20 10:00:00/);
  }
  assert.deepEqual(await readFile(join(data, 'static_extended_orport_auth_cookie')), await readFile(join(root, 'etc/extor-static-cookie/static_extended_orport_auth_cookie')));
  assert.equal(await readFile(join(data, 'pt_state/snowflake-certificate-cache/acme_account+key'), 'utf8'), 'cert cache\n');
  const rot = JSON.parse(await readFile(join(data, 'identity/onion-rotation.json'), 'utf8')) as { phase: string; rotatedAt: string };
  assert.deepEqual([rot.phase, rot.rotatedAt], ['pinned', '2026-11-20T10:00:00.000Z'], 'rotation dated from tor\'s state, not from the copy');
  const v = await cli(['keys', 'verify', '--config', cfg]);
  assert.equal(v.exitCode, 0, v.all);

  const target = await treeHash(join(dir, 'ok'));
  const again = await cli([...args, '--apply']);
  assert.equal(again.exitCode, 0, again.all);
  assert.match(again.stdout, /Already migrated/);
  assert.equal(await treeHash(join(dir, 'ok')), target, 'the second run changed nothing');
});

test('single tor: ServerTransportPlugin, pt_state with obfs4_state.json, a nickname without a number', async () => {
  const root = join(dir, 'single', 'root');
  const td = join(root, 'srv/tor');
  await mkdir(join(root, 'etc/tor'), { recursive: true });
  await writeFile(
    join(root, 'etc/tor/torrc'),
    'BridgeRelay 1\nORPort 9001\nORPort [2001:db8::1]:9001\nExtORPort auto\nDataDirectory /srv/tor\nNickname MyObfsBridge\nLog notice file /var/log/tor/notices.log\n' +
      'ServerTransportPlugin obfs4 exec /usr/bin/obfs4proxy\nServerTransportListenAddr obfs4 0.0.0.0:443\nServerTransportOptions obfs4 iat-mode=1\nMetricsPort 127.0.0.1:9035\n',
  );
  await mkdir(td, { recursive: true, mode: 0o700 });
  await cp(keysA, join(td, 'keys'), { recursive: true });
  await mkdir(join(td, 'pt_state'), { mode: 0o700 });
  await writeFile(join(td, 'pt_state/obfs4_state.json'), '{"node-id":"x","private-key":"y","public-key":"z","drbg-seed":"w","iat-mode":1}\n', { mode: 0o600 });
  const cfg = join(dir, 'single', 'bridgectl.yaml');
  const data = join(dir, 'single', 'bridgectl');
  // The data directory exists already, owned by the service's user: what is written gets that owner.
  await mkdir(data, { recursive: true, mode: 0o700 });
  await chown(data, 65534, 65534);
  const src = await treeHash(root);
  const r = await cli(['migrate', '--root', root, '--config', cfg, '--data-dir', data, '--apply']);
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.stdout, /MetricsPort 127\.0\.0\.1:9035 \(set metrics\.listen/);
  assert.match(r.stdout, /systemctl disable --now tor\.service/);
  assert.equal(await treeHash(root), src);
  const c = parseYaml(await readFile(cfg, 'utf8')) as Record<string, unknown>;
  assert.equal(c.nickname, 'MyObfsBridge');
  assert.equal(c.instances, 1);
  // A distributed bridge (no BridgeDistribution: tor's default, any) keeps its public ORPort, shared by the twins.
  assert.equal(c.orPort, undefined);
  assert.equal(c.distribution, 'any');
  assert.equal(c.publicOrPort, '0.0.0.0:9001');
  assert.match(r.stdout, /ORPort \[2001:db8::1\]:9001 is not carried/);
  assert.equal(c.torrc, 'Nickname MyObfsBridge\n');
  assert.deepEqual(c.transport, { name: 'obfs4', command: ['/usr/bin/obfs4proxy'], listen: '0.0.0.0:443', options: { 'iat-mode': '1' } });
  assert.deepEqual(await readFile(join(data, 'pt_state/obfs4_state.json')), await readFile(join(td, 'pt_state/obfs4_state.json')));
  for (const p of ['pt_state/obfs4_state.json', 'identity/keys/secret_id_key', 'instances/MyObfsBridge1/keys/secret_id_key', 'instances/MyObfsBridge1/keys/secret_onion_key.old']) {
    assert.equal((await lstat(join(data, p))).uid, 65534, `${p} belongs to the data directory's owner`);
  }
});

/** Runs a failing migrate: one line on stderr matching `re`, exit 1, source and target as they were. */
async function refuses(name: string, spoil: (root: string, data: string, cfg: string) => Promise<void>, re: RegExp): Promise<void> {
  const { root, cfg, data, args } = await fresh(name);
  await spoil(root, data, cfg);
  const src = await treeHash(root);
  const tgt = await treeHash(data);
  const cfgBefore = await treeHash(cfg);
  const r = await cli([...args, '--apply']);
  assert.equal(r.exitCode, 1, r.all);
  assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
  assert.match(r.stderr, re);
  assert.equal(r.stdout, '');
  assert.equal(await treeHash(root), src, 'source unchanged');
  assert.equal(await treeHash(data), tgt, 'target unchanged');
  assert.equal(await treeHash(cfg), cfgBefore, 'config unchanged');
}

test('instances that disagree: refused, naming the one that differs', async () => {
  await refuses('disagree', async (root) => {
    await rm(join(root, 'var/lib/tor-instances/snowflake2/keys'), { recursive: true });
    await cp(keysB, join(root, 'var/lib/tor-instances/snowflake2/keys'), { recursive: true });
  }, /instance snowflake2 differs from instance snowflake1 in its RSA identity, ed25519 identity, ntor onion key/);
});

test('a missing key: refused, naming the file', async () => {
  await refuses('missing', async (root) => rm(join(root, 'var/lib/tor-instances/snowflake2/keys/secret_onion_key_ntor')), /instance snowflake2: .*snowflake2\/keys\/secret_onion_key_ntor is missing/);
});

test('an unreadable source: refused, naming the file', async () => {
  await refuses('unreadable', async (root) => {
    const p = join(root, 'etc/tor/instances/snowflake1/torrc');
    await rm(p);
    await mkdir(p);
  }, /cannot read torrc .*snowflake1\/torrc: EISDIR/);
});

test('OfflineMasterKey (no ed25519 master secret key): refused with the reason', async () => {
  await refuses('offline', async (root) => {
    for (const i of [1, 2]) await rm(join(root, `var/lib/tor-instances/snowflake${i}/keys/ed25519_master_id_secret_key`));
  }, /keeps its ed25519 master key offline \(OfflineMasterKey/);
});

test('a target that already holds other keys: refused, naming both fingerprints', async () => {
  await refuses('other-keys', async (_root, data) => {
    await mkdir(join(data, 'identity'), { recursive: true, mode: 0o700 });
    await cp(keysB, join(data, 'identity/keys'), { recursive: true });
  }, /the target already holds other keys: the bridge identity .* has [0-9A-F]{40} \(differs in RSA identity.*\), not [0-9A-F]{40}/);
});

test('a step that fails half-way (the config, written last, cannot be written): what was written is removed', async () => {
  await refuses('rollback', async (_root, _data, cfg) => {
    // A dangling symlink reads as absent but cannot be created exclusively: the last write fails.
    await mkdir(join(cfg, '..'), { recursive: true });
    await symlink(join(dir, 'nowhere'), cfg);
  }, /EEXIST.*what this run wrote was removed, the source was not touched/);
});

// Issue 12 acceptance 1 and 2 in the private lab, with real tor, obfs4proxy and HAProxy: a bridge
// built the old ways (the FOCI recipe; one tor with ServerTransportPlugin), a real obfs4 client
// downloading through it, then `bridgectl migrate --apply` and `bridgectl run`: the same client, with
// the same torrc, bridge line and cached descriptor, downloads again.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, writeFile, readFile, rm, cp, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { startLab, startClient, fetchViaSocks, freePort, type Lab, type LabClient } from '../src/lab/index.js';
import { spawnChild, listFingerprint, TOR_BIN, type Child } from '../src/tor/index.js';
import { createCookieFile } from '../src/extorport/index.js';
import type { BridgeStatus } from '../src/supervisor/index.js';
import { CLI, cli, cliBackground, tmp, waitFor, testLogger } from './helpers.js';

const OBFS4 = '/usr/bin/obfs4proxy';
const KEYS = ['secret_id_key', 'ed25519_master_id_public_key', 'secret_onion_key', 'secret_onion_key_ntor'];
let lab: Lab;
let dir: string;
const children: Child[] = [];
const clients: LabClient[] = [];
let sup: ReturnType<typeof cliBackground> | null = null;
/** Every supervisor started, so that one left by a failed test is stopped too. */
const sups: Array<ReturnType<typeof cliBackground>> = [];

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const exists = async (p: string): Promise<boolean> => !!(await stat(p).catch(() => null));
const noticeHas = async (p: string, s: string): Promise<boolean> => (await readFile(p, 'utf8').catch(() => '')).includes(s);

before(async () => {
  dir = await tmp('migrate-lab');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger, fileSize: 256 << 10 });
});

after(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  for (const s of sups) s.kill('SIGTERM');
  await Promise.all(sups);
  await Promise.all(children.map((c) => c.stop(5_000)));
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

/** The obfs4 bridge line obfs4proxy wrote into its state directory, for `addr` and `fp`. */
async function bridgeLine(stateDir: string, addr: string, fp: string): Promise<string> {
  const text = await waitFor('obfs4_bridgeline.txt', () => readFile(join(stateDir, 'obfs4_bridgeline.txt'), 'utf8'), 30_000);
  const cert = /cert=(\S+) iat-mode=(\d)/.exec(text);
  assert.ok(cert, text);
  return `obfs4 ${addr} ${fp} cert=${cert[1]} iat-mode=${cert[2]}`;
}

async function client(name: string, line: string, keep?: LabClient): Promise<LabClient> {
  const c = await startClient({
    name,
    dir: join(dir, name),
    labTorrc: lab.torrcLines,
    bridges: [line],
    transportPlugins: [`obfs4 exec ${OBFS4}`],
    logger: testLogger,
    keepDir: !!keep,
    socksPort: keep?.socksPort,
  });
  clients.push(c);
  return c;
}

async function download(c: LabClient): Promise<void> {
  const body = await waitFor(`a download through ${c.name}`, () => fetchViaSocks(c.socksPort, lab.http.url, 20_000), 60_000, 1000);
  assert.equal(sha(body), lab.http.sha256);
}

async function stopOld(c: LabClient, old: Child[]): Promise<void> {
  await c.stop();
  clients.splice(clients.indexOf(c), 1);
  for (const ch of old) {
    await ch.stop(5_000);
    children.splice(children.indexOf(ch), 1);
  }
}

/** bridgectl run on the migrated config; resolves to its status once every twin runs. */
async function runBridgectl(cfg: string): Promise<BridgeStatus> {
  sup?.kill('SIGTERM'); // left running by a failed test before
  await sup;
  sup = cliBackground(['run', '--config', cfg]);
  sups.push(sup);
  return waitFor('the migrated bridge to be ready', async () => {
    const r = await cli(['status', '--json', '--config', cfg]);
    const s = r.exitCode === 0 ? (JSON.parse(r.stdout) as BridgeStatus) : null;
    return s?.ready && s.instances.every((i) => i.state === 'running') ? s : null;
  }, 120_000, 500);
}

async function stopBridgectl(): Promise<void> {
  sup?.kill('SIGTERM');
  assert.equal((await sup!)?.exitCode, 0);
  sup = null;
}

test('acceptance 1: a FOCI-recipe bridge (tor@ instances, static-cookie shims, HAProxy, standalone obfs4proxy) moves to bridgectl and its users keep working', { timeout: 300_000 }, async () => {
  const r = join(dir, 'recipe');
  const inst = join(r, 'etc/tor/instances');
  const data = join(r, 'var/lib/tor-instances');
  const cookie = join(r, 'etc/extor-static-cookie/static_extended_orport_auth_cookie');
  await mkdir(join(r, 'etc/extor-static-cookie'), { recursive: true });
  await createCookieFile(cookie);
  // One identity, made in instance 1 and copied into 2, pins in both (the paper's way).
  await mkdir(join(data, 'labflake1'), { recursive: true, mode: 0o700 });
  const fp = await listFingerprint(join(data, 'labflake1'), 'labflake1');
  await cp(join(data, 'labflake1/keys'), join(data, 'labflake2/keys'), { recursive: true });
  const shimPorts = [await freePort(), await freePort()];
  const tors: Child[] = [];
  for (const i of [1, 2]) {
    const d = join(data, `labflake${i}`);
    for (const p of ['secret_onion_key.old', 'secret_onion_key_ntor.old']) await mkdir(join(d, 'keys', p));
    await mkdir(join(inst, `labflake${i}`), { recursive: true });
    const torrc = join(inst, `labflake${i}/torrc`);
    await writeFile(torrc, [
      ...lab.torrcLines,
      'BridgeRelay 1', 'AssumeReachable 1', 'BridgeDistribution none', 'PublishServerDescriptor 0',
      'ORPort 127.0.0.1:auto', 'ExtORPort auto', 'SocksPort 0', `Nickname labflake${i}`, 'ContactInfo lab@localhost',
      // bridgectl's own extor-static-cookie in place of the Go shim, named after the transport as in the recipe
      `ServerTransportPlugin obfs4 exec ${process.execPath} ${CLI} extor-static-cookie ${cookie}`,
      `ServerTransportListenAddr obfs4 127.0.0.1:${shimPorts[i - 1]}`,
      `Log notice file ${join(d, 'notice.log')}`,
    ].join('\n') + '\n');
    // As Debian's tor@.service does it: the DataDirectory comes from a defaults torrc.
    const defaults = join(r, `defaults-${i}`);
    await writeFile(defaults, `DataDirectory ${d}\n`);
    tors.push(spawnChild(TOR_BIN, ['-f', torrc, '--defaults-torrc', defaults]));
  }
  children.push(...tors);
  const front = await freePort();
  const haproxyCfg = join(r, 'etc/haproxy/haproxy.cfg');
  await mkdir(join(r, 'etc/haproxy'), { recursive: true });
  await writeFile(haproxyCfg, `defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 600s\n  timeout server 600s\nfrontend tor\n  bind 127.0.0.1:${front}\n  default_backend tor\nbackend tor\n  balance roundrobin\n` +
    shimPorts.map((p, k) => `  server labflake${k + 1} 127.0.0.1:${p} source 127.0.2.${k + 1}\n`).join(''));
  const haproxy = spawnChild('/usr/sbin/haproxy', ['-f', haproxyCfg, '-db']);
  children.push(haproxy);
  // obfs4proxy as its own service with a hand-made pt-spec environment.
  const listen = `127.0.0.1:${await freePort()}`;
  const state = join(r, 'var/lib/obfs4/pt_state');
  const env = {
    TOR_PT_MANAGED_TRANSPORT_VER: '1', TOR_PT_SERVER_TRANSPORTS: 'obfs4', TOR_PT_SERVER_BINDADDR: `obfs4-${listen}`,
    TOR_PT_EXTENDED_SERVER_PORT: `127.0.0.1:${front}`, TOR_PT_AUTH_COOKIE_FILE: cookie, TOR_PT_STATE_LOCATION: state,
    TOR_PT_SERVER_TRANSPORT_OPTIONS: 'obfs4:iat-mode=0', TOR_PT_EXIT_ON_STDIN_CLOSE: '1',
  };
  const unit = join(r, 'etc/systemd/system/obfs4-bridge.service');
  await mkdir(join(r, 'etc/systemd/system'), { recursive: true });
  await mkdir(join(r, 'etc/default'), { recursive: true });
  await writeFile(join(r, 'etc/default/obfs4-bridge'), `TOR_PT_STATE_LOCATION=${state}\nTOR_PT_SERVER_TRANSPORT_OPTIONS="obfs4:iat-mode=0"\n`);
  await writeFile(unit, `[Service]\nUser=debian-tor\nEnvironment=${Object.entries(env).filter(([k]) => !['TOR_PT_STATE_LOCATION', 'TOR_PT_SERVER_TRANSPORT_OPTIONS'].includes(k)).map(([k, v]) => `"${k}=${v}"`).join(' ')}\n` +
    `EnvironmentFile=${join(r, 'etc/default/obfs4-bridge')}\nExecStart=${OBFS4}\n`);
  await mkdir(state, { recursive: true, mode: 0o700 });
  let ptOut = '';
  const pt = spawnChild(OBFS4, [], { env, keepStdin: true, onLine: (l) => (ptOut += `${l}\n`) });
  children.push(pt);
  await waitFor('obfs4proxy set up', () => ptOut.includes('SMETHODS DONE'), 30_000);
  assert.match(ptOut, new RegExp(`SMETHOD obfs4 ${listen.replace(/\./g, '\\.')}`));
  for (const i of [1, 2]) {
    const log = join(data, `labflake${i}/notice.log`);
    await waitFor(`labflake${i} bootstrapped with its shim`, async () => (await noticeHas(log, 'Bootstrapped 100%')) && (await noticeHas(log, "Registered server transport 'obfs4'")), 90_000, 250);
  }
  const line = await bridgeLine(state, listen, fp);
  const c1 = await client('recipe-client', line);
  await download(c1);
  assert.ok(await exists(join(dir, 'recipe-client/cached-microdesc-consensus')), 'the client cached what it learned');

  await stopOld(c1, [pt, haproxy, ...tors]);
  const cfg = join(dir, 'recipe-bridgectl/bridgectl.yaml');
  const target = join(dir, 'recipe-bridgectl/data');
  const m = await cli(['migrate', '--from', 'recipe', '--instances-dir', inst, '--instances-data-dir', data, '--transport-unit', unit, '--haproxy', haproxyCfg, '--config', cfg, '--data-dir', target, '--apply']);
  assert.equal(m.exitCode, 0, m.all);
  const st = await runBridgectl(cfg);
  assert.deepEqual(st.instances.map((i) => [i.name, i.fingerprint]), [['labflake1', fp], ['labflake2', fp]], 'nicknames and fingerprint kept');
  for (const i of [1, 2]) {
    assert.match(await readFile(join(target, `instances/labflake${i}/torrc`), 'utf8'), new RegExp(`^Nickname labflake${i}$`, 'm'));
    for (const f of KEYS) assert.deepEqual(await readFile(join(target, `instances/labflake${i}/keys`, f)), await readFile(join(data, `labflake${i}/keys`, f)), f);
  }
  const bl = await cli(['bridgeline', '--config', cfg]);
  assert.equal(bl.stdout.trim(), line, 'the same bridge line (cert=) as the old obfs4proxy printed');
  const v = await cli(['keys', 'verify', '--config', cfg]);
  assert.equal(v.exitCode, 0, v.all);
  const c2 = await client('recipe-client', line, c1);
  await download(c2);
  await c2.stop();
  clients.splice(clients.indexOf(c2), 1);
  await stopBridgectl();
});

test('acceptance 2: a single tor obfs4 bridge moves to bridgectl and the bridge line it printed keeps working', { timeout: 240_000 }, async () => {
  const r = join(dir, 'single');
  const d = join(r, 'var/lib/tor');
  await mkdir(d, { recursive: true, mode: 0o700 });
  const listen = `127.0.0.1:${await freePort()}`;
  const torrc = join(r, 'etc/tor/torrc');
  await mkdir(join(r, 'etc/tor'), { recursive: true });
  await writeFile(torrc, [
    ...lab.torrcLines,
    `DataDirectory ${d}`, 'BridgeRelay 1', 'PublishServerDescriptor 0', 'ORPort 127.0.0.1:auto', 'ExtORPort auto', 'SocksPort 0',
    'Nickname labobfs', 'ContactInfo lab@localhost', 'MaxMemInQueues 256 MB',
    `ServerTransportPlugin obfs4 exec ${OBFS4}`, `ServerTransportListenAddr obfs4 ${listen}`, 'ServerTransportOptions obfs4 iat-mode=0',
    `Log notice file ${join(d, 'notice.log')}`,
  ].join('\n') + '\n');
  const tor = spawnChild(TOR_BIN, ['-f', torrc, '--defaults-torrc', '/dev/null']);
  children.push(tor);
  await waitFor('the bridge bootstrapped', () => noticeHas(join(d, 'notice.log'), 'Bootstrapped 100%'), 90_000, 250);
  const fp = (await readFile(join(d, 'fingerprint'), 'utf8')).trim().split(' ')[1]!;
  const line = await bridgeLine(join(d, 'pt_state'), listen, fp);
  const c1 = await client('single-client', line);
  await download(c1);

  await stopOld(c1, [tor]);
  const cfg = join(dir, 'single-bridgectl/bridgectl.yaml');
  const target = join(dir, 'single-bridgectl/data');
  const m = await cli(['migrate', '--from', 'tor', '--torrc', torrc, '--config', cfg, '--data-dir', target, '--apply']);
  assert.equal(m.exitCode, 0, m.all);
  const st = await runBridgectl(cfg);
  assert.deepEqual(st.instances.map((i) => i.fingerprint), [fp]);
  assert.match(await readFile(join(target, `instances/${st.instances[0]!.name}/torrc`), 'utf8'), /^Nickname labobfs$(?![\s\S]*^Nickname )/m, 'the nickname is kept (the last Nickname line wins)');
  for (const f of KEYS) assert.deepEqual(await readFile(join(target, `instances/${st.instances[0]!.name}/keys`, f)), await readFile(join(d, 'keys', f)), f);
  assert.deepEqual(await readFile(join(target, 'pt_state/obfs4_state.json')), await readFile(join(d, 'pt_state/obfs4_state.json')));
  const bl = await cli(['bridgeline', '--config', cfg]);
  assert.equal(bl.stdout.trim(), line);
  const v = await cli(['keys', 'verify', '--config', cfg]);
  assert.equal(v.exitCode, 0, v.all);
  const c2 = await client('single-client', line, c1);
  await download(c2);
  await stopBridgectl();
});

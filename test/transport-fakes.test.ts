// How the supervisor handles the transport servers CI cannot run (snowflake-server, meek-server,
// webtunnel, lyrebird), with the fakes in test/fakes/ that reproduce the real servers' behaviours
// (issue 13). The real-path tests with obfs4proxy are in transport-lab.test.ts and
// transports-lab.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { TransportRunner, type TransportStatus } from '../src/supervisor/index.js';
import type { ResolvedTransport } from '../src/config/index.js';
import { freePort } from '../src/lab/index.js';
import { tmp, procName } from './helpers.js';

const fake = (f: string): string => fileURLToPath(new URL(`./fakes/${f}.js`, import.meta.url));
const dirs: string[] = [];
after(() => Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true }))));

interface Rec { level: number; msg: string; stderr?: boolean }

async function run(name: string, script: string, args: string[], extra: Partial<ResolvedTransport> = {}) {
  const dir = await tmp('fake-pt');
  dirs.push(dir);
  await writeFile(join(dir, 'cookie'), Buffer.alloc(64));
  const logs: Rec[] = [];
  const logger = pino({ level: 'debug' }, { write: (s: string) => void logs.push(JSON.parse(s) as Rec) });
  const entry: ResolvedTransport = { name, command: [process.execPath, fake(script), ...args], listen: `127.0.0.1:${await freePort()}`, options: {}, env: {}, stateDir: join(dir, 'state'), ...extra };
  const r = new TransportRunner(entry, { dataDir: dir, extendedServerPort: '127.0.0.1:10000', authCookieFile: join(dir, 'cookie') }, logger, { initialDelayMs: 50, maxDelayMs: 100, stableAfterMs: 60_000 });
  const outcome = new Promise<{ ready: TransportStatus } | { fatal: string }>((resolve) => {
    r.once('ready', (s) => resolve({ ready: s }));
    r.once('fatal', (m) => resolve({ fatal: m }));
  });
  r.start();
  const o = await Promise.race([outcome, new Promise<never>((_, rej) => setTimeout(() => rej(new Error(`no outcome; logs: ${JSON.stringify(logs.slice(-5))}`)), 20_000))]);
  return { r, o, logs, entry, dir };
}

const ready = (o: { ready: TransportStatus } | { fatal: string }): TransportStatus => {
  assert.ok('ready' in o, `ready, not: ${JSON.stringify(o)}`);
  return o.ready;
};
const fatal = (o: { ready: TransportStatus } | { fatal: string }): string => {
  assert.ok('fatal' in o, `fatal, not: ${JSON.stringify(o)}`);
  return o.fatal;
};
const squat = async (): Promise<{ port: number; close(): void }> => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { port: (s.address() as net.AddressInfo).port, close: () => s.close() };
};

test('snowflake-server: its SMETHOD while its port is taken is caught (probe + stderr), not reported running', { timeout: 30_000 }, async () => {
  const sq = await squat();
  try {
    const { r, o } = await run('snowflake', 'snowflake-server', ['--disable-tls'], { listen: `127.0.0.1:${sq.port}` });
    assert.match(fatal(o), /transport snowflake cannot start: .*(address already in use|no socket of its own listens)/);
    assert.equal(r.status().state, 'failed');
    assert.equal(r.status().smethod, null);
  } finally {
    sq.close();
  }
});

test('snowflake-server --disable-tls: running after the probe; tls=no; stderr lines logged at their level, addresses scrubbed', { timeout: 30_000 }, async () => {
  const { r, o, logs, entry } = await run('snowflake', 'snowflake-server', ['--disable-tls', '--unsafe-logging']);
  const st = ready(o);
  assert.deepEqual(st.smethod?.args, { tls: 'no' });
  const pid = st.pid!;
  // A connection makes it log the client's address (unsafe logging): bridgectl scrubs it anyway.
  // (A documentation address on this namespace's loopback stands for a client.)
  await execa('ip', ['addr', 'replace', '192.0.2.77/32', 'dev', 'lo']);
  const port = Number(entry.listen.split(':')[1]);
  const c = net.connect({ port, host: '127.0.0.1', localAddress: '192.0.2.77' });
  await new Promise((res) => c.on('close', res).on('error', res));
  const seen = Date.now() + 5000;
  while (!logs.some((l) => /new WebSocket connection/.test(l.msg)) && Date.now() < seen) await new Promise((res) => setTimeout(res, 50));
  await r.stop();
  assert.equal(procName(pid), '');
  const stderr = logs.filter((l) => l.stderr);
  assert.ok(stderr.every((l) => !/^\d{4}\/\d\d\/\d\d /.test(l.msg)), 'Go timestamps stripped');
  assert.ok(stderr.some((l) => /new WebSocket connection from \[scrubbed\]$/.test(l.msg) && l.level === 30), JSON.stringify(stderr));
  assert.ok(!JSON.stringify(logs).includes('192.0.2.77'), 'the client address is in no log line');
  assert.ok(!logs.some((l) => l.level >= 40), `nothing at warn or above: ${JSON.stringify(logs.filter((l) => l.level >= 40))}`);
});

test('snowflake-server: num-turbotunnel 0 gives SMETHOD-ERROR while the process stays: fatal, and the process is stopped', { timeout: 30_000 }, async () => {
  const { r, o } = await run('snowflake', 'snowflake-server', ['--disable-tls'], { options: { 'num-turbotunnel': '0' } });
  assert.match(fatal(o), /SMETHOD-ERROR snowflake: num-turbotunnel/);
  await r.stop();
  assert.equal(r.status().pid, null);
});

test('snowflake-server without TOR_PT_AUTH_COOKIE_FILE: ENV-ERROR and exit 1 is fatal', { timeout: 30_000 }, async () => {
  const { o } = await run('snowflake', 'snowflake-server', ['--disable-tls'], { env: { TOR_PT_AUTH_COOKIE_FILE: '' } });
  assert.match(fatal(o), /ENV-ERROR: TOR_PT_AUTH_COOKIE_FILE is not set/);
});

test('snowflake-server ACME: port 80 too, certificate cache in the state dir, hostname/tls=yes, and its exit 1 at stop is normal', { timeout: 30_000 }, async () => {
  const { r, o, logs, entry } = await run('snowflake', 'snowflake-server', ['--acme-hostnames', 'sf.example.org', '--acme-email', 'op@example.org']);
  const st = ready(o);
  assert.deepEqual(st.smethod?.args, { hostname: 'sf.example.org', tls: 'yes' });
  assert.ok(existsSync(join(entry.stateDir, 'snowflake-certificate-cache')));
  const tcp = await readFile('/proc/net/tcp', 'utf8');
  assert.match(tcp, /0100007F:0050 00000000:0000 0A/, 'listening on 127.0.0.1:80');
  await r.stop();
  const stopLogs = logs.filter((l) => /when asked to stop|transport stopped/.test(l.msg));
  assert.ok(stopLogs.length === 1 && stopLogs[0]!.level === 20 && /code 1/.test(stopLogs[0]!.msg), JSON.stringify(stopLogs));
});

test('snowflake-server ACME with port 80 taken: its SMETHOD-ERROR for the HTTP-01 listener is fatal and says so', { timeout: 30_000 }, async () => {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(80, '127.0.0.1', r));
  try {
    const { o } = await run('snowflake', 'snowflake-server', ['--acme-hostnames', 'sf.example.org']);
    assert.match(fatal(o), /SMETHOD-ERROR snowflake: HTTP-01 ACME listener: .*EADDRINUSE/);
  } finally {
    s.close();
  }
});

test('meek-server: SMETHOD meek ADDR without ARGS runs; a taken port (SMETHOD-ERROR) is fatal', { timeout: 30_000 }, async () => {
  const ok = await run('meek', 'meek-server', ['--disable-tls']);
  assert.deepEqual(ready(ok.o).smethod?.args, {});
  await ok.r.stop();
  const sq = await squat();
  try {
    const bad = await run('meek', 'meek-server', ['--disable-tls'], { listen: `127.0.0.1:${sq.port}` });
    assert.match(fatal(bad.o), /SMETHOD-ERROR meek: .*EADDRINUSE/);
  } finally {
    sq.close();
  }
});

test('webtunnel: the synthetic address is advertised while the probe checks the real listen address; no url: fatal; taken port: exit 1 until it gives up', { timeout: 60_000 }, async () => {
  const ok = await run('webtunnel', 'webtunnel-server', [], { options: { url: 'https://www.example.org/p' } });
  const st = ready(ok.o);
  assert.equal(st.smethod?.address, '[2001:db8:9443:367a:3276:1e74:91c3:7a5a]:443');
  assert.deepEqual(st.smethod?.args, { url: 'https://www.example.org/p', ver: '0.0.1' });
  await ok.r.stop();
  const nourl = await run('webtunnel', 'webtunnel-server', []);
  assert.match(fatal(nourl.o), /SMETHOD-ERROR webtunnel: missing url option/);
  const sq = await squat();
  try {
    const taken = await run('webtunnel', 'webtunnel-server', [], { options: { url: 'https://a/b' }, listen: `127.0.0.1:${sq.port}` });
    assert.match(fatal(taken.o), /exited 5 times before finishing setup.*listen error/);
  } finally {
    sq.close();
  }
});

test('lyrebird: obfs4 cert kept in the state dir across a restart; its [NOTICE] line is info', { timeout: 30_000 }, async () => {
  const { r, o, logs, entry } = await run('obfs4', 'lyrebird', []);
  const first = ready(o);
  assert.match(first.smethod?.args.cert ?? '', /^[A-Za-z0-9+/]{60,}$/);
  assert.ok(existsSync(join(entry.stateDir, 'obfs4_bridgeline.txt')));
  const again = new Promise<TransportStatus>((res) => r.once('ready', res));
  await r.restart();
  const second = await again;
  assert.notEqual(second.pid, first.pid);
  assert.equal(second.smethod?.args.cert, first.smethod?.args.cert);
  assert.equal(second.restarts, 1);
  await r.stop();
  assert.ok(logs.some((l) => l.stderr && l.msg === '[NOTICE]: lyrebird - launched' && l.level === 30));
});

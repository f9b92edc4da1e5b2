// The balancer's own logic and its handling of peers tor can't play: malformed or silent
// transports, twins that vanish after auth, stay silent, say DENY, or echo bulk data (tor only
// speaks TLS after its OKAY). The real-tor path is in balancer-lab.test.ts. Runs inside scripts/netns.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { cp, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import {
  CMD,
  ExtOrServerHandshake,
  dialExtOr,
  encodeCommand,
  createCookieFile,
  transportCommands,
  ExtOrClientHandshake,
} from '../src/extorport/index.js';
import { createBalancer, parseEndpoint, type Balancer, type BalancerOptions } from '../src/balancer/index.js';
import { parseSourceRange } from '../src/balancer/address.js';
import { CLI, tmp, testLogger, waitFor } from './helpers.js';
import { freePort } from '../src/lab/index.js';

const OKAY = Buffer.from([0x10, 0, 0, 0]);
const DENY = Buffer.from([0x10, 0x01, 0, 0]);

test('endpoints and source ranges', () => {
  assert.deepEqual(parseEndpoint('127.0.0.1:10000'), { host: '127.0.0.1', port: 10000 });
  assert.deepEqual(parseEndpoint('[::1]:5'), { host: '::1', port: 5 });
  assert.deepEqual(parseEndpoint('localhost:0', 'x', true), { host: 'localhost', port: 0 });
  for (const bad of ['127.0.0.1', '127.0.0.1:0', '1.2.3.4:70000', '[1.2.3.4]:5', ':5']) assert.throws(() => parseEndpoint(bad), /HOST:PORT|IPv6/, bad);
  const r = parseSourceRange('127.0.2.0/24');
  assert.equal(r.size, 254);
  assert.equal(r.at(0), '127.0.2.1');
  assert.equal(r.at(253), '127.0.2.254');
  const seen = new Set<string>();
  for (let i = 0; i < 5000; i++) seen.add(r.pick());
  assert.ok(seen.size > 200, `picks spread over the range (${seen.size})`);
  for (const a of seen) assert.ok(/^127\.0\.2\.\d+$/.test(a) && !['127.0.2.0', '127.0.2.255'].includes(a), a);
  assert.equal(parseSourceRange('127.0.2.1/32').pick(), '127.0.2.1');
  assert.equal(parseSourceRange('10.1.2.3').pick(), '10.1.2.3');
  assert.equal(parseSourceRange('127.0.2.77/24').cidr, '127.0.2.0/24');
  assert.throws(() => parseSourceRange('fd00::/64'), /IPv4/);
  assert.throws(() => parseSourceRange('127.0.2.0/33'), /CIDR/);
});

test('IP_BIND_ADDRESS_NO_PORT lets one source address serve more sessions than there are ephemeral ports', async (t) => {
  const fixture = fileURLToPath(new URL('./fixtures/no-port-effect.js', import.meta.url));
  const run = async (mode: string): Promise<{ ok: number; failed: number; localErrors: number; open: number }> => {
    // A fresh namespace of its own, so that narrowing the port range touches nothing else.
    const r = await execa('unshare', ['--net', '--', 'sh', '-c', `ulimit -n 16384 && ip link set lo up && echo "40000 40999" > /proc/sys/net/ipv4/ip_local_port_range && exec "$0" "$@"`, process.execPath, fixture, mode, '1500'], { reject: false });
    assert.equal(r.exitCode, 0, r.stderr);
    return JSON.parse(r.stdout) as { ok: number; failed: number; localErrors: number; open: number };
  };
  const withOpt = await run('on');
  const without = await run('off');
  t.diagnostic(JSON.stringify({ withOpt, without }));
  assert.deepEqual(withOpt, { ok: 1500, failed: 0, localErrors: 0, open: 1500 });
  assert.ok(without.ok <= 1000 && without.failed >= 500, JSON.stringify(without));
  assert.ok(without.localErrors >= without.failed, 'out of ports is a local error, not the twins\' fault');
});

// ---- fake twins for what tor can't do ----

type TwinMode = 'echo' | 'close-after-auth' | 'silent' | 'deny' | 'refuse';

interface FakeTwin {
  name: string;
  address: string;
  cookieFile: string;
  server: net.Server;
  mode: TwinMode;
  /** Commands each accepted session sent, raw. */
  received: Buffer[];
}

let dir: string;
const fakes: FakeTwin[] = [];
const balancers: Balancer[] = [];
const staticCookie = randomBytes(32);

async function fakeTwin(name: string, mode: TwinMode): Promise<FakeTwin> {
  const cookieFile = join(dir, `${name}_cookie`);
  const cookie = await createCookieFile(cookieFile, { overwrite: true });
  const f: FakeTwin = { name, address: '', cookieFile, server: net.createServer(), mode, received: [] };
  f.server.on('connection', (sock) => {
    sock.on('error', () => {});
    if (f.mode === 'refuse') return void sock.destroy();
    const hs = new ExtOrServerHandshake(cookie);
    sock.write(hs.greeting());
    const onData = (d: Buffer): void => {
      const st = hs.feed(d);
      if (st.send.length) sock.write(st.send);
      if (st.status === 'failed') return void sock.end();
      if (f.mode === 'close-after-auth' && st.send.includes(0x01)) return void sock.destroy();
      if (st.status !== 'done') return;
      sock.off('data', onData);
      f.received.push(hs.rawCommands());
      if (f.mode === 'silent') return;
      sock.write(f.mode === 'deny' ? DENY : OKAY);
      if (hs.rest.length) sock.write(hs.rest);
      sock.pipe(sock);
    };
    sock.on('data', onData);
  });
  await new Promise<void>((r) => f.server.listen(0, `127.0.4.${fakes.length + 1}`, r));
  const a = f.server.address() as net.AddressInfo;
  f.address = `${a.address}:${a.port}`;
  fakes.push(f);
  return f;
}

async function startBalancer(twins: FakeTwin[], o: Partial<BalancerOptions> = {}): Promise<{ b: Balancer; port: number; down: string[] }> {
  const down: string[] = [];
  const b = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger, onTwinDown: (n) => down.push(n), ...o });
  balancers.push(b);
  const { port } = await b.start();
  for (const t of twins) b.addTwin({ name: t.name, address: t.address, cookieFile: t.cookieFile });
  for (const t of twins) await b.markUp(t.name);
  return { b, port, down };
}

/** Resolves when `s` closes; rejects if it is still open after `ms`. */
function closed(s: net.Socket, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed) return resolve();
    const t = setTimeout(() => reject(new Error(`socket still open after ${ms} ms`)), ms);
    s.once('close', () => {
      clearTimeout(t);
      resolve();
    });
  });
}

function dial(port: number, extra: { userAddr?: string } = {}) {
  return dialExtOr({ host: '127.0.0.1', port, cookie: staticCookie, userAddr: extra.userAddr ?? '192.0.2.1:1', transport: 'snowflake', timeoutMs: 5000 });
}

before(async () => {
  dir = await tmp('balancer');
});

after(async () => {
  for (const b of balancers) await b.stop();
  for (const f of fakes) f.server.close();
});

test('bulk data both ways with backpressure, byte-exact, counted', async () => {
  const echo = await fakeTwin('echo', 'echo');
  const { b, port } = await startBalancer([echo]);
  const r = await dial(port);
  assert.deepEqual(r.rawReply, OKAY);
  assert.deepEqual(echo.received[0], transportCommands({ userAddr: '192.0.2.1:1', transport: 'snowflake' }), 'the commands reach the twin unchanged');
  const s = r.socket;
  const data = randomBytes(64 << 20);
  // The transport writes 64 MiB and reads nothing yet: with backpressure the balancer stops reading
  // once the sockets' buffers are full, so most of it stays queued at the transport.
  s.pause();
  s.write(data);
  let last = -1;
  await waitFor('the pipeline to stall', () => {
    const now = s.writableLength;
    const stable = now === last;
    last = now;
    return stable;
  }, 20_000, 300);
  assert.ok(s.writableLength > 24 << 20, `the balancer kept reading without backpressure (${s.writableLength} bytes left at the transport)`);
  const hash = createHash('sha256');
  let got = 0;
  const done = new Promise<void>((resolve) => {
    s.on('data', (d: Buffer) => {
      hash.update(d);
      got += d.length;
      if (got === data.length) resolve();
    });
  });
  s.resume();
  await done;
  assert.equal(hash.digest('hex'), createHash('sha256').update(data).digest('hex'));
  const st = b.stats().twins[0]!;
  assert.equal(st.bytesToTwin, data.length);
  assert.equal(st.bytesFromTwin, data.length);
  s.destroy();
});

test('a twin that dies after auth, one that refuses, one that stays silent: marked down, session replayed', async () => {
  const dies = await fakeTwin('dies', 'close-after-auth');
  const refuses = await fakeTwin('refuses', 'refuse');
  const silent = await fakeTwin('silent', 'silent');
  const good = await fakeTwin('good', 'echo');
  const { b, port, down } = await startBalancer([dies, refuses, silent, good], { twinTimeoutMs: 300 });
  const r = await dial(port);
  assert.deepEqual(r.rawReply, OKAY);
  r.socket.destroy();
  assert.deepEqual(down, ['dies', 'refuses', 'silent']);
  const st = b.stats();
  assert.equal(st.sessions.replays, 3);
  assert.deepEqual(st.twins.map((x) => [x.name, x.up, x.total]), [
    ['dies', false, 0],
    ['refuses', false, 0],
    ['silent', false, 0],
    ['good', true, 1],
  ]);
  // Down twins get nothing until markUp.
  for (let i = 0; i < 3; i++) (await dial(port)).socket.destroy();
  assert.equal(b.stats().twins[3]!.total, 4);
  // With every twin down the transport is closed, not left hanging.
  b.markDown('good', 'test');
  await assert.rejects(dial(port), /closed/);
  assert.equal(b.stats().sessions.noTwin, 1);
});

test('DENY passes through unchanged; bytes sent right after DONE reach the twin after its OKAY', async () => {
  const deny = await fakeTwin('deny', 'deny');
  const { port } = await startBalancer([deny]);
  assert.deepEqual((await dial(port)).rawReply, DENY);

  const echo = await fakeTwin('echo2', 'echo');
  const { port: p2 } = await startBalancer([echo]);
  const s = net.connect(p2, '127.0.0.1');
  const c = new ExtOrClientHandshake(staticCookie, { commands: Buffer.concat([transportCommands({ transport: 'x' }), Buffer.from('early bytes')]) });
  const got: Buffer[] = [];
  s.on('data', (d) => {
    if (c.reply) got.push(d);
    else {
      const st = c.feed(d);
      if (st.send.length) s.write(st.send);
      if (c.reply) got.push(c.rest);
    }
  });
  await waitFor('echo', () => Buffer.concat(got).toString() === 'early bytes', 5000, 10);
  assert.equal(c.reply?.type, CMD.OKAY);
  s.destroy();
});

test('timeouts and the session cap', async () => {
  const echo = await fakeTwin('echo3', 'echo');
  const { b, port } = await startBalancer([echo], { handshakeTimeoutMs: 300, idleTimeoutMs: 400, maxSessions: 3 });
  // A transport that says nothing is dropped after the handshake timeout.
  const quiet = net.connect(port, '127.0.0.1');
  quiet.resume();
  const t0 = Date.now();
  await closed(quiet);
  assert.ok(Date.now() - t0 >= 250);
  assert.equal(b.stats().sessions.handshakeTimeouts, 1);
  // An idle session is closed after the idle timeout; an active one is not.
  const idle = (await dial(port)).socket;
  const busy = (await dial(port)).socket;
  idle.resume();
  busy.resume();
  const timer = setInterval(() => busy.write('x'), 100);
  await closed(idle);
  await sleep(300);
  assert.equal(busy.destroyed, false);
  clearInterval(timer);
  assert.equal(b.stats().sessions.idleTimeouts, 1);
  // The cap: with 3 open (busy + 2 more), a 4th connection is closed at once.
  const more = [(await dial(port)).socket, (await dial(port)).socket];
  await assert.rejects(dial(port), /closed/);
  assert.equal(b.stats().sessions.rejectedOverCap, 1);
  for (const s of [busy, ...more]) s.destroy();
});

test('malformed transports never crash it or disturb other sessions', async () => {
  const echo = await fakeTwin('echo4', 'echo');
  const { b, port } = await startBalancer([echo]);
  const keep = (await dial(port)).socket;
  keep.resume();
  const authed = (nonce: Buffer) => Buffer.concat([Buffer.from([1]), nonce]);
  const inputs: Buffer[] = [];
  for (let i = 0; i < 150; i++) inputs.push(randomBytes(1 + (i % 97)));
  inputs.push(Buffer.from([1])); // then close
  inputs.push(authed(randomBytes(32)).subarray(0, 20));
  inputs.push(Buffer.concat([authed(randomBytes(32)), randomBytes(32)])); // wrong hash
  await Promise.all(
    inputs.map(
      (data) =>
        new Promise<void>((resolve) => {
          const s = net.connect(port, '127.0.0.1', () => {
            s.write(data);
            if (data.length < 5) s.end();
          });
          s.on('error', () => {});
          s.resume();
          s.on('close', () => resolve());
          setTimeout(() => s.destroy(), 3000);
        }),
    ),
  );
  // Valid auth, then a command tor would refuse: dropped.
  const s = net.connect(port, '127.0.0.1');
  const c = new ExtOrClientHandshake(staticCookie, { commands: Buffer.concat([encodeCommand(CMD.USERADDR, 'nonsense'), encodeCommand(CMD.DONE)]) });
  s.on('data', (d) => {
    const st = c.feed(d);
    if (st.send.length) s.write(st.send);
  });
  s.on('error', () => {});
  await closed(s);
  assert.equal(c.reply, null);
  assert.equal(echo.received.length, 1, 'nothing malformed reached the twin');

  await waitFor('sessions to clear', () => b.stats().sessions.current === 1, 5000, 20);
  assert.equal(keep.destroyed, false);
  keep.write('still here');
  await new Promise((r) => keep.once('data', r));
  const st = b.stats();
  assert.ok(st.sessions.protocolErrors + st.sessions.authFailures >= 140, JSON.stringify(st.sessions));
  assert.deepEqual((await dial(port)).rawReply, OKAY);
  keep.destroy();
});

test('removeTwin stops new sessions and ends the open ones after drainMs', async () => {
  const a = await fakeTwin('drainA', 'echo');
  const b2 = await fakeTwin('drainB', 'echo');
  const { b, port } = await startBalancer([a, b2]);
  const s1 = (await dial(port)).socket; // to drainA
  s1.resume();
  const closedP = closed(s1, 5000);
  const t0 = Date.now();
  const removing = b.removeTwin('drainA', { drainMs: 400 });
  for (let i = 0; i < 3; i++) (await dial(port)).socket.destroy();
  assert.equal(s1.destroyed, false, 'an open session is not cut while draining');
  await removing;
  await closedP;
  assert.ok(Date.now() - t0 >= 350);
  assert.deepEqual(b.stats().twins.map((x) => [x.name, x.total]), [['drainB', 3]]);
});

test('drain: resolves when the twin\'s last session ends, or at the timeout with the sessions still open', async () => {
  const a = await fakeTwin('drainC', 'echo');
  const { b, port } = await startBalancer([a]);
  assert.equal(await b.drain('drainC', 5000), 0, 'no session: at once');
  assert.equal(await b.drain('nosuch', 5000), 0, 'a twin it does not know has none');
  const s1 = (await dial(port)).socket;
  const s2 = (await dial(port)).socket;
  await waitFor('two sessions on the twin', () => b.stats().twins[0]!.current === 2, 5000, 20);
  b.markDown('drainC', 'test');
  const t0 = Date.now();
  assert.equal(await b.drain('drainC', 300), 2, 'the timeout passes with both open');
  assert.ok(Date.now() - t0 >= 300);
  const draining = b.drain('drainC', 20_000);
  let settled = false;
  void draining.then(() => (settled = true));
  s1.destroy();
  await waitFor('one session left', () => b.stats().twins[0]!.current === 1, 5000, 20);
  await sleep(150);
  assert.equal(settled, false, 'not while a session is open');
  const t1 = Date.now();
  s2.destroy();
  assert.equal(await draining, 0);
  assert.ok(Date.now() - t1 < 5000, 'soon after the last session ended, not at the timeout');
});

/** The static cookie in a cookie file, for the standalone command. */
async function staticCookieFile(name: string): Promise<string> {
  const file = join(dir, name);
  const { writeCookieFile } = await import('../src/extorport/index.js');
  await writeCookieFile(file, staticCookie, { overwrite: true });
  return file;
}

test('the standalone balancer command: usage errors, serves sessions, stops on SIGTERM', async () => {
  const bad = await execa(process.execPath, [CLI, 'balancer', '--backend', 'x'], { reject: false });
  assert.equal(bad.exitCode, 2);
  assert.match(bad.stderr, /usage: bridgectl balancer/);
  const echo = await fakeTwin('cmdEcho', 'echo');
  const staticFile = await staticCookieFile('static_cookie');
  const port = await freePort();
  const child = execa(process.execPath, [CLI, 'balancer', '--listen', `127.0.0.1:${port}`, '--cookie', staticFile, '--backend', `${echo.address}=${echo.cookieFile}`], { reject: false });
  try {
    const r = await waitFor('the balancer command to serve', async () => dial(port), 10_000, 100);
    assert.deepEqual(r.rawReply, OKAY);
    r.socket.destroy();
  } finally {
    child.kill('SIGTERM');
  }
  const res = await child;
  assert.equal(res.exitCode, 0, res.stderr);
  assert.match(res.stderr, /balancer listening/);
});

test('out of descriptors, the native engine rests its listener instead of spinning, then serves again', async () => {
  const echo = await fakeTwin('fdEcho', 'echo');
  const staticFile = await staticCookieFile('static_cookie_fd');
  const port = await freePort();
  // 64 descriptors: Node and the engine take some; 80 connections exhaust the rest.
  // The limit drops once it listens (loading the CLI's modules takes more than 64 at once).
  const child = execa(process.execPath, [CLI, 'balancer', '--listen', `127.0.0.1:${port}`, '--cookie', staticFile,
    '--backend', `${echo.address}=${echo.cookieFile}`, '--log-level', 'debug'], { reject: false, all: true });
  let log = '';
  child.all!.on('data', (d: Buffer) => (log += d.toString()));
  const socks: net.Socket[] = [];
  try {
    await waitFor('the balancer command to listen', () => log.includes('balancer listening'), 10_000, 50);
    await execa('prlimit', ['--pid', String(child.pid), '--nofile=64:64']);
    for (let i = 0; i < 80; i++) {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.on('error', () => {});
      socks.push(s);
    }
    await waitFor('accept to run out of descriptors', () => /accept: Too many open files/.test(log), 10_000, 20);
    const mark = log.length;
    await sleep(1000);
    // Resting: about one line per 100 ms. Spinning on a level-triggered listener: thousands.
    const lines = (log.slice(mark).match(/accept: Too many open files/g) ?? []).length;
    assert.ok(lines <= 30, `${lines} accept failures logged in a second: the listener spins`);
    for (const s of socks) s.destroy();
    const r = await waitFor('a session once descriptors are free', async () => dial(port), 15_000, 200);
    assert.deepEqual(r.rawReply, OKAY);
    r.socket.destroy();
  } finally {
    for (const s of socks) s.destroy();
    child.kill('SIGTERM');
  }
  const res = await child;
  assert.equal(res.exitCode, 0, log.slice(-2000));
});

// Not under scripts/sanitize.sh (BRIDGECTL_ADDON names its build): this is about running without any.
test('without the native engine: bridgectl does not start, in one line that says how to build it; doctor fails with that fix', { skip: process.env.BRIDGECTL_ADDON ? 'an alternate addon build is in use' : false }, async () => {
  // A copy of the built tree without build/ (as a checkout before npm ci), then with a broken addon.
  const root = fileURLToPath(new URL('../..', import.meta.url));
  const copy = await tmp('no-engine');
  await cp(join(root, 'dist', 'src'), join(copy, 'dist', 'src'), { recursive: true });
  for (const f of ['package.json', 'binding.gyp']) await cp(join(root, f), join(copy, f));
  await symlink(join(root, 'node_modules'), join(copy, 'node_modules'));
  const config = join(copy, 'bridgectl.yaml');
  await writeFile(config, `nickname: noengine\ninstances: 1\ndataDir: ${join(copy, 'data')}\n`);
  const main = join(copy, 'dist', 'src', 'cli', 'main.js');
  const bridgectl = (args: string[]) => execa(process.execPath, [main, ...args], { reject: false });
  const oneLine = (r: { exitCode?: number; stderr: string }, why: RegExp): void => {
    assert.equal(r.exitCode, 1, r.stderr);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, r.stderr);
    const [line] = lines as [string];
    assert.ok(line.startsWith('bridgectl: the native engine is not built ('), line);
    assert.ok(line.endsWith(`): run npm rebuild in ${copy}`), line);
    assert.match(line, why);
  };
  oneLine(await bridgectl(['run', '--config', config]), /.*bind_no_port\.node not found/);
  oneLine(await bridgectl(['balancer', '--cookie', config, '--backend', `127.0.0.1:1=${config}`]), /.*not found/);
  const doctor = await bridgectl(['doctor', '--config', config, '--json']);
  assert.equal(doctor.exitCode, 1);
  const check = (JSON.parse(doctor.stdout) as { checks: Array<{ id: string; status: string; fix: string | null }> }).checks.find((c) => c.id === 'balancer.engine');
  assert.deepEqual(check && [check.status, check.fix], ['fail', `run npm rebuild in ${copy}`]);
  // A file that is not a loadable addon: the same one line, with the loader's reason.
  await mkdir(join(copy, 'build', 'Release'), { recursive: true });
  await writeFile(join(copy, 'build', 'Release', 'bind_no_port.node'), 'not an ELF file');
  oneLine(await bridgectl(['run', '--config', config]), /.*(invalid ELF header|too short).*/);
  // The real tree has it built: doctor's check passes there.
  const real = await execa(process.execPath, [CLI, 'doctor', '--config', config, '--json'], { reject: false });
  const ok = (JSON.parse(real.stdout) as { checks: Array<{ id: string; status: string }> }).checks.find((c) => c.id === 'balancer.engine');
  assert.equal(ok?.status, 'pass');
});

// The audit of the native engine (issue 10, item 3): one test per finding, each shown failing
// against the engine before its fix (see the commit that added this file). Fake twins play what
// tor can't (a twin that resets after a wrong server hash, one that holds its answer, one that
// stalls); the balancer runs in a child process where a test must freeze it (SIGSTOP, so that
// bytes and a reset arrive in one epoll event) or lower its descriptor limit (prlimit).
// Runs inside scripts/netns.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import { ExtOrServerHandshake, createCookieFile, dialExtOr, readCookieFile, writeCookieFile } from '../src/extorport/index.js';
import { createBalancer, type Balancer } from '../src/balancer/index.js';
import { echoTwin, testLogger, tmp, waitFor, type EchoTwin } from './helpers.js';
import { freePort } from '../src/lab/index.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const OKAY = Buffer.from([0x10, 0, 0, 0]);
const GREETING = Buffer.from([1, 0]);

let dir: string;
const staticCookie = randomBytes(32);
let staticFile: string;
const servers: net.Server[] = [];
const balancers: Balancer[] = [];

before(async () => {
  dir = await tmp('balancer-audit');
  staticFile = join(dir, 'static_cookie');
  await writeCookieFile(staticFile, staticCookie, { overwrite: true });
});

after(async () => {
  for (const b of balancers) await b.stop();
  for (const s of servers) s.close();
});

function dial(port: number) {
  return dialExtOr({ host: '127.0.0.1', port, cookie: staticCookie, userAddr: '192.0.2.1:1', transport: 'snowflake', timeoutMs: 10_000 });
}

async function listen(server: net.Server, host: string): Promise<string> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, host, r));
  return `${host}:${(server.address() as net.AddressInfo).port}`;
}

async function twin(name: string, host: string): Promise<EchoTwin> {
  const t = await echoTwin(join(dir, `${name}_cookie`), host);
  servers.push(t.server);
  return t;
}

interface ChildBalancer {
  child: ResultPromise<{ reject: false; all: true }>;
  pid: number;
  port: number;
  log(): string;
}

/** `bridgectl balancer` in a child process (debug logs), serving once it says it listens. */
async function childBalancer(backends: { address: string; cookieFile: string }[], env: Record<string, string> = {}): Promise<ChildBalancer> {
  const port = await freePort();
  const args = [MAIN, 'balancer', '--listen', `127.0.0.1:${port}`, '--cookie', staticFile, '--log-level', 'debug'];
  for (const b of backends) args.push('--backend', `${b.address}=${b.cookieFile}`);
  const child = execa(process.execPath, args, { reject: false, all: true, env });
  let log = '';
  child.all!.on('data', (d: Buffer) => (log += d.toString()));
  await waitFor('the balancer to listen', () => log.includes('twin marked up') && log.includes('balancer listening'), 15_000, 20);
  return { child, pid: child.pid!, port, log: () => log };
}

async function stopChild(c: ChildBalancer): Promise<void> {
  process.kill(c.pid, 'SIGCONT');
  c.child.kill('SIGTERM');
  await c.child;
}

function downLines(log: string, address: string): string[] {
  return log.split('\n').filter((l) => l.includes('twin marked down') && l.includes(address));
}

function write(sock: net.Socket, data: Buffer): Promise<void> {
  return new Promise((resolve, reject) => sock.write(data, (e) => (e ? reject(e) : resolve())));
}

/** Runs `fn` while the balancer's process is frozen: what the peers do meanwhile arrives at once. */
async function frozen(c: ChildBalancer, fn: () => Promise<void>): Promise<void> {
  process.kill(c.pid, 'SIGSTOP');
  try {
    await fn();
    await sleep(200);
  } finally {
    process.kill(c.pid, 'SIGCONT');
  }
}

test('a twin that resets after a wrong server hash is blamed, never the healthy twin tried next on the same descriptor', { timeout: 120_000 }, async () => {
  // The bad twin offers SAFE_COOKIE, takes our nonce, then (balancer frozen) answers 64 wrong bytes
  // and resets: the balancer sees the bytes and the reset in one event, fails the attempt on the
  // bytes, connects to the good twin (usually on the same descriptor number) and must not apply
  // the reset to that new attempt.
  let hook: ((sock: net.Socket) => Promise<void>) | null = null;
  const badCookie = join(dir, 'bad_cookie');
  await createCookieFile(badCookie, { overwrite: true });
  const bad = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.write(GREETING);
    let got = 0;
    sock.on('data', (d) => {
      got += d.length;
      if (got >= 33 && hook) {
        const h = hook;
        hook = null;
        void h(sock);
      }
    });
  });
  const badAddress = await listen(bad, '127.0.4.1');
  const good = await twin('reuse_good', '127.0.4.2');
  const c = await childBalancer([{ address: badAddress, cookieFile: badCookie }, { address: good.address, cookieFile: good.cookieFile }]);
  try {
    for (let round = 0; round < 3; round++) {
      // Each round starts with both twins up (the command re-marks a down twin up every 5 s).
      if (round > 0) await waitFor('the bad twin to be marked up again', () => c.log().split('twin marked up').length - 1 >= 2 + round, 15_000, 50);
      let fired = false;
      hook = (sock) =>
        frozen(c, async () => {
          await write(sock, randomBytes(64));
          sock.resetAndDestroy();
          fired = true;
        });
      const r = await dial(c.port);
      assert.equal(fired, true, 'the session tried the bad twin first');
      assert.deepEqual(r.rawReply, OKAY);
      r.socket.destroy();
      await waitFor('the bad twin to be marked down', () => downLines(c.log(), badAddress).length === round + 1, 10_000, 20);
      assert.deepEqual(downLines(c.log(), good.address), [], `the healthy twin was blamed in round ${round}`);
    }
  } finally {
    await stopChild(c);
  }
  assert.equal(downLines(c.log(), good.address).length, 0);
});

test('a twin re-marked up with a fresh cookie is not marked down by an attempt that used its old cookie', { timeout: 60_000 }, async () => {
  // The held twin takes our nonce and answers only when released, with the cookie it has then.
  const cookieFile = join(dir, 'held_cookie');
  await createCookieFile(cookieFile, { overwrite: true });
  let hold = true;
  let release: (() => Promise<void>) | null = null;
  const held = net.createServer((sock) => {
    sock.on('error', () => {});
    sock.write(GREETING);
    const buf: Buffer[] = [];
    let hs: ExtOrServerHandshake | null = null;
    const feed = (d: Buffer): void => {
      const st = hs!.feed(d);
      if (st.send.length) sock.write(st.send);
      if (st.status === 'failed') return void sock.destroy();
      if (st.status !== 'done') return;
      sock.off('data', onData);
      sock.write(hs!.rest.length ? Buffer.concat([OKAY, hs!.rest]) : OKAY);
      sock.pipe(sock);
    };
    const start = async (): Promise<void> => {
      hs = new ExtOrServerHandshake(await readCookieFile(cookieFile));
      // The greeting went out already; the machine expects to have sent it.
      hs.greeting();
      feed(Buffer.concat(buf));
    };
    const onData = (d: Buffer): void => {
      if (hs) return feed(d);
      buf.push(d);
    };
    sock.on('data', onData);
    if (hold) {
      hold = false;
      release = start;
    } else void start();
  });
  const heldAddress = await listen(held, '127.0.4.3');
  const other = await twin('gen_other', '127.0.4.4');
  const down: string[] = [];
  const b = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger, onTwinDown: (n) => down.push(n) });
  balancers.push(b);
  const { port } = await b.start();
  b.addTwin({ name: 'held', address: heldAddress, cookieFile });
  b.addTwin({ name: 'other', address: other.address, cookieFile: other.cookieFile });
  await b.markUp('held');
  await b.markUp('other');
  const session = dial(port);
  await waitFor('the attempt on the held twin', () => release, 10_000, 10);
  // The twin restarts meanwhile: a fresh cookie, and the supervisor marks it up with it.
  await createCookieFile(cookieFile, { overwrite: true });
  await b.markUp('held');
  await release!();
  const r = await session;
  assert.deepEqual(r.rawReply, OKAY, 'the session went to the other twin');
  r.socket.destroy();
  assert.deepEqual(down, [], 'the twin was marked down for a cookie it no longer has');
  assert.equal(b.stats().twins.find((x) => x.name === 'held')?.up, true);
  // And it serves with the fresh cookie.
  for (let i = 0; i < 2; i++) (await dial(port)).socket.destroy();
  assert.ok((b.stats().twins.find((x) => x.name === 'held')?.total ?? 0) >= 1);
});

test('a twin that resets right after sending: the bytes in the receive queue still reach the transport', { timeout: 60_000 }, async () => {
  let onSession: ((sock: net.Socket) => void) | null = null;
  const cookieFile = join(dir, 'reset_cookie');
  const cookie = await createCookieFile(cookieFile, { overwrite: true });
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    const hs = new ExtOrServerHandshake(cookie);
    sock.write(hs.greeting());
    const onData = (d: Buffer): void => {
      const st = hs.feed(d);
      if (st.send.length) sock.write(st.send);
      if (st.status !== 'done') return;
      sock.off('data', onData);
      sock.write(OKAY);
      onSession?.(sock);
    };
    sock.on('data', onData);
  });
  const address = await listen(server, '127.0.4.5');
  const c = await childBalancer([{ address, cookieFile }]);
  try {
    const twinSide = new Promise<net.Socket>((r) => (onSession = r));
    const r = await dial(c.port);
    const sock = await twinSide;
    const got: Buffer[] = [];
    r.socket.on('data', (d: Buffer) => got.push(d));
    r.socket.on('error', () => {});
    r.socket.resume(); // dialExtOr hands it over paused
    const closed = new Promise((res) => r.socket.once('close', res));
    await sleep(300); // the session is relaying
    const data = randomBytes(16 * 1024);
    await frozen(c, async () => {
      await write(sock, data);
      sock.resetAndDestroy();
    });
    await Promise.race([closed, sleep(10_000).then(() => assert.fail(`the transport is still open; balancer log:\n${c.log().slice(-1500)}`))]);
    const all = Buffer.concat([r.rest, ...got]);
    assert.equal(all.length, data.length, 'bytes the twin sent before its reset were dropped');
    assert.equal(createHash('sha256').update(all).digest('hex'), createHash('sha256').update(data).digest('hex'));
  } finally {
    await stopChild(c);
  }
});

test('out of descriptors while relaying: stalled directions wait for a pipe, no healthy session ends', { timeout: 120_000 }, async () => {
  const SESSIONS = 20;
  const BYTES = 8 << 20;
  // A twin that takes the handshake, then reads nothing until told: each session's upstream stalls
  // in the balancer holding a pipe, so every session needs a pipe of its own.
  const cookieFile = join(dir, 'stall_cookie');
  const cookie = await createCookieFile(cookieFile, { overwrite: true });
  const twinSocks: net.Socket[] = [];
  const received: number[] = [];
  const server = net.createServer((sock) => {
    sock.on('error', () => {});
    const hs = new ExtOrServerHandshake(cookie);
    sock.write(hs.greeting());
    const onData = (d: Buffer): void => {
      const st = hs.feed(d);
      if (st.send.length) sock.write(st.send);
      if (st.status !== 'done') return;
      sock.off('data', onData);
      sock.write(OKAY);
      sock.pause();
      const i = twinSocks.push(sock) - 1;
      received[i] = hs.rest.length;
      sock.on('data', (x: Buffer) => (received[i]! += x.length));
    };
    sock.on('data', onData);
  });
  const address = await listen(server, '127.0.4.6');
  const c = await childBalancer([{ address, cookieFile }]);
  const socks: net.Socket[] = [];
  try {
    for (let i = 0; i < SESSIONS; i++) {
      const r = await dial(c.port);
      r.socket.on('error', () => {});
      r.socket.resume();
      socks.push(r.socket);
    }
    await waitFor('every session at the twin', () => twinSocks.length === SESSIONS, 10_000, 20);
    // No descriptor to spare: the next pipe2 fails with EMFILE.
    const open = readdirSync(`/proc/${c.pid}/fd`).length;
    const hard = readFileSync(`/proc/${c.pid}/limits`, 'utf8').match(/Max open files\s+\d+\s+(\d+)/)![1]!;
    await execa('prlimit', ['--pid', String(c.pid), `--nofile=${open}:${hard}`]);
    const data = randomBytes(BYTES);
    for (const s of socks) s.write(data);
    await waitFor('the balancer to run out of descriptors', () => /Too many open files|EMFILE|no pipe/i.test(c.log()), 10_000, 20).catch(() => undefined);
    await sleep(1000);
    const ended = socks.filter((s) => s.destroyed || s.readableEnded).length;
    assert.equal(ended, 0, `${ended} of ${SESSIONS} healthy sessions were closed for want of a pipe:\n${c.log().split('\n').filter((l) => /closed/.test(l)).slice(0, 3).join('\n')}`);
    // Descriptors again: every stalled direction resumes and delivers every byte.
    await execa('prlimit', ['--pid', String(c.pid), `--nofile=${hard}:${hard}`]);
    for (const t of twinSocks) t.resume();
    await waitFor('every byte at the twin', () => received.every((n) => n === BYTES) && received.length === SESSIONS, 30_000, 50);
    assert.equal(socks.filter((s) => s.destroyed).length, 0);
  } finally {
    for (const s of socks) s.destroy();
    await stopChild(c);
  }
});

test('balancers that stop, or fail to listen, leave nothing behind (the engine frees them)', { timeout: 120_000 }, async () => {
  // Each balancer's engine state is about 90 kB: 2,000 leaked ones are 180 MB of heap.
  const script = `
    import pino from 'pino';
    import net from 'node:net';
    import { readFileSync } from 'node:fs';
    import { createBalancer } from ${JSON.stringify(new URL('../src/balancer/index.js', import.meta.url).href)};
    const logger = pino({ level: 'silent' });
    const taken = net.createServer().listen(0, '127.0.0.1');
    await new Promise((r) => taken.once('listening', r));
    const busy = '127.0.0.1:' + taken.address().port;
    const data = () => Number(readFileSync('/proc/self/status', 'utf8').match(/VmData:\\s+(\\d+)/)[1]);
    const round = async () => {
      for (let i = 0; i < 1000; i++) {
        const ok = createBalancer({ listen: '127.0.0.1:0', staticCookie: Buffer.alloc(32), logger });
        await ok.start();
        await ok.stop();
        const bad = createBalancer({ listen: busy, staticCookie: Buffer.alloc(32), logger });
        await bad.start().then(() => { throw new Error('listened on a busy port'); }, () => undefined);
        await bad.stop();
      }
    };
    await round();
    const before = data();
    await round();
    console.log(JSON.stringify({ growthKiB: data() - before }));
    taken.close();`;
  const r = await execa(process.execPath, ['--input-type=module', '-e', script], { cwd: fileURLToPath(new URL('..', import.meta.url)), reject: false });
  assert.equal(r.exitCode, 0, r.stderr);
  const { growthKiB } = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { growthKiB: number };
  // 2,000 leaked balancers: ~180,000 KiB. Allow a tenth of that for the JS heap's own growth.
  assert.ok(growthKiB < 18_000, `the heap grew by ${growthKiB} KiB over 2,000 balancers`);
});

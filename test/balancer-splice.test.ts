// The balancer's kernel data path: the native splice(2) relay (src/balancer/native/splice_relay.c)
// driven directly on socket pairs, then through the balancer, and the JS relay it falls back to.
// Runs inside scripts/netns.sh. Speed is the bench's business (bench/), not asserted here.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExtOrClientHandshake, dialExtOr, driveHandshake, transportCommands } from '../src/extor-cookie/index.js';
import { createBalancer, spliceRelay, type Balancer, type SpliceRelay } from '../src/balancer/index.js';
import { echoTwin, testLogger, tmp, waitFor, type EchoTwin } from './helpers.js';

const MiB = 1 << 20;
const servers: net.Server[] = [];
const balancers: Balancer[] = [];

after(async () => {
  for (const b of balancers) await b.stop();
  for (const s of servers) s.close();
});

function relay(): SpliceRelay {
  const r = spliceRelay();
  assert.ok(r, 'the splice relay is built into the native addon (npm install runs node-gyp)');
  return r;
}

/** A connected pair on loopback: [client end, accepted end]. */
async function pair(): Promise<[net.Socket, net.Socket]> {
  const srv = net.createServer({ noDelay: true });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<net.Socket>((r) => srv.once('connection', r));
  const c = net.connect({ port: (srv.address() as net.AddressInfo).port, host: '127.0.0.1', noDelay: true });
  await new Promise((r) => c.once('connect', r));
  const a = await accepted;
  srv.close();
  for (const s of [a, c]) s.on('error', () => {});
  return [c, a];
}

interface Relayed {
  /** The test's ends: `a` talks through the relay to `b`. */
  a: net.Socket;
  b: net.Socket;
  id: number;
  closed: Promise<{ reason: string; aToB: number; bToA: number }>;
}

/** Two pairs, the middle two ends handed to the relay: a ⇄ [a' ⇄ relay ⇄ b'] ⇄ b. */
async function relayed(opts: { idleMs?: number; firstAtoB?: Buffer; firstBtoA?: Buffer } = {}): Promise<Relayed> {
  const [a, a2] = await pair();
  const [b2, b] = await pair();
  let onClose!: (v: { reason: string; aToB: number; bToA: number }) => void;
  const closed = new Promise<{ reason: string; aToB: number; bToA: number }>((r) => (onClose = r));
  a2.pause();
  b2.pause();
  const id = relay().handOff(a2, b2, { idleMs: opts.idleMs ?? 0, firstAtoB: opts.firstAtoB, firstBtoA: opts.firstBtoA }, (reason, aToB, bToA) =>
    onClose({ reason, aToB, bToA }),
  );
  assert.ok(id !== null && id >= 0, 'handed off');
  assert.ok(a2.destroyed && b2.destroyed, 'the Node sockets are let go');
  return { a, b, id, closed };
}

/** Reads `s` until `n` bytes came; resolves with their SHA-256 (and fails on more or on a close before). */
function readN(s: net.Socket, n: number, ms = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let got = 0;
    const t = setTimeout(() => reject(new Error(`got ${got} of ${n} bytes in ${ms} ms`)), ms);
    const onData = (d: Buffer): void => {
      h.update(d);
      got += d.length;
      if (got > n) reject(new Error(`got ${got} bytes, more than ${n}`));
      if (got === n) {
        clearTimeout(t);
        s.off('data', onData);
        resolve(h.digest('hex'));
      }
    };
    s.on('data', onData);
    s.once('close', () => got < n && reject(new Error(`closed after ${got} of ${n} bytes`)));
    s.resume();
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function closedWithin(s: net.Socket, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (s.destroyed || s.readableEnded) return resolve();
    const t = setTimeout(() => reject(new Error(`still open after ${ms} ms`)), ms);
    const done = (): void => {
      clearTimeout(t);
      resolve();
    };
    s.once('end', done);
    s.once('close', done);
    s.resume();
  });
}

test('splice relay: byte-exact both ways at once, first bytes first, counted', async () => {
  const firstAtoB = Buffer.from('early bytes from the transport');
  const firstBtoA = Buffer.from([0x10, 0, 0, 0]);
  const r = await relayed({ firstAtoB, firstBtoA });
  const up = randomBytes(24 * MiB);
  const down = randomBytes(40 * MiB);
  const gotAtB = readN(r.b, firstAtoB.length + up.length);
  const gotAtA = readN(r.a, firstBtoA.length + down.length);
  r.a.write(up);
  r.b.write(down);
  assert.equal(await gotAtB, sha(Buffer.concat([firstAtoB, up])));
  assert.equal(await gotAtA, sha(Buffer.concat([firstBtoA, down])));
  assert.deepEqual(relay().bytes(r.id), [firstAtoB.length + up.length, firstBtoA.length + down.length]);
  r.a.destroy();
  const c = await r.closed;
  assert.equal(c.reason, 'transport closed');
  assert.deepEqual([c.aToB, c.bToA], [firstAtoB.length + up.length, firstBtoA.length + down.length]);
  await closedWithin(r.b);
  assert.equal(relay().bytes(r.id), null, 'no counts once closed');
});

test('splice relay: backpressure — a peer that does not read stops the relay from reading', async () => {
  const r = await relayed();
  r.b.pause();
  const data = randomBytes(64 * MiB);
  r.a.write(data);
  let last = -1;
  await waitFor('the pipeline to stall', () => {
    const now = r.a.writableLength;
    const stable = now === last;
    last = now;
    return stable;
  }, 20_000, 300);
  // Socket buffers on loopback hold a few MiB; the relay holds one pipe. The rest stays at the writer.
  assert.ok(r.a.writableLength > 40 * MiB, `the relay kept reading without backpressure (${r.a.writableLength} bytes left at the writer)`);
  const moved = relay().bytes(r.id)![0];
  assert.ok(moved < 24 * MiB, `moved ${moved} bytes to a peer that reads nothing`);
  assert.equal(await readN(r.b, data.length), sha(data));
  r.b.destroy();
  assert.equal((await r.closed).reason, 'twin closed');
});

test('splice relay: close propagation — EOF after data flushes it, then closes the other side', async () => {
  // The twin writes and closes at once: everything it wrote still reaches the transport, then EOF.
  const r = await relayed();
  const data = randomBytes(16 * MiB);
  const got = readN(r.a, data.length);
  r.b.end(data);
  assert.equal(await got, sha(data));
  await closedWithin(r.a);
  const c = await r.closed;
  assert.equal(c.reason, 'twin closed');
  assert.equal(c.bToA, data.length);

  // A transport that closes: the twin's end sees the close.
  const r2 = await relayed();
  r2.a.end();
  await closedWithin(r2.b);
  assert.equal((await r2.closed).reason, 'transport closed');
});

test('splice relay: a reset closes both at once; close(id) closes both; reasons say which', async () => {
  const r = await relayed();
  r.b.write('x');
  await readN(r.a, 1);
  r.b.resetAndDestroy();
  await closedWithin(r.a);
  const c = await r.closed;
  assert.match(c.reason, /^twin: |^twin closed$/, c.reason);

  const r2 = await relayed();
  relay().close(r2.id);
  await Promise.all([closedWithin(r2.a), closedWithin(r2.b)]);
  assert.equal((await r2.closed).reason, 'closed');
  relay().close(r2.id); // a second close of a gone id is a no-op
});

test('splice relay: when one side is already reset, what came from it still reaches the other (tor\'s OKAY)', async () => {
  // The twin wrote its OKAY and reset at once; the relay then has the transport's early bytes to send
  // to a dead socket and the OKAY to send to a live one. The OKAY must get through, then a close.
  const [a, a2] = await pair();
  const [b2, b] = await pair();
  a2.pause();
  b2.pause();
  let onClose!: (v: string) => void;
  const closed = new Promise<string>((r) => (onClose = r));
  const okay = Buffer.from([0x10, 0, 0, 0]);
  // The reset is sent at once (close with SO_LINGER 0); b2 is handed off in the same turn, before
  // Node could notice it, so the relay finds its twin side already reset.
  b.resetAndDestroy();
  const id = relay().handOff(a2, b2, { idleMs: 0, firstAtoB: Buffer.from('early bytes'), firstBtoA: okay }, (reason) => onClose(reason));
  assert.ok(id !== null && id >= 0);
  const got: Buffer[] = [];
  a.on('data', (d: Buffer) => got.push(d));
  await closedWithin(a);
  assert.deepEqual(Buffer.concat(got), okay, 'the OKAY reached the transport before the close');
  assert.match(await closed, /^twin: /);
});

test('splice relay: idle timeout closes a silent session, not a busy one', async () => {
  const quiet = await relayed({ idleMs: 600 });
  const busy = await relayed({ idleMs: 600 });
  busy.b.resume();
  const t0 = Date.now();
  const timer = setInterval(() => busy.a.write('x'), 100);
  try {
    const c = await quiet.closed;
    assert.equal(c.reason, 'idle');
    assert.ok(Date.now() - t0 >= 500, 'not before the timeout');
    await closedWithin(quiet.a);
    await sleep(700);
    assert.equal(busy.a.destroyed || busy.a.readableEnded, false, 'a busy session stays');
  } finally {
    clearInterval(timer);
  }
  relay().close(busy.id);
  await busy.closed;
});

test('splice relay: hundreds of sessions at once, twice over (ids reused), no crosstalk', async () => {
  for (let round = 0; round < 2; round++) {
    const rs = await Promise.all(Array.from({ length: 200 }, () => relayed()));
    const ids = new Set(rs.map((r) => r.id));
    assert.equal(ids.size, rs.length, 'ids are unique among open sessions');
    await Promise.all(
      rs.map(async (r, i) => {
        const up = randomBytes(1000 + i * 97);
        const down = randomBytes(5000 + i * 13);
        const gb = readN(r.b, up.length);
        const ga = readN(r.a, down.length);
        r.a.write(up);
        r.b.write(down);
        assert.equal(await gb, sha(up));
        assert.equal(await ga, sha(down));
        r.a.destroy();
        const c = await r.closed;
        assert.deepEqual([c.aToB, c.bToA], [up.length, down.length]);
      }),
    );
  }
  await waitFor('the relay to be empty', () => relay().stats().sessions === 0, 5000, 20);
});

// ---- through the balancer ----

const OKAY = Buffer.from([0x10, 0, 0, 0]);

/** A fake echo twin for this file (closed after the tests). */
async function startEcho(dir: string, host = '127.0.4.9'): Promise<EchoTwin> {
  const t = await echoTwin(join(dir, 'twin_cookie'), host);
  servers.push(t.server);
  return t;
}

for (const engine of ['native', 'js'] as const) {
  test(`balancer (${engine} engine): echo byte-exact with counts, idle timeout, removeBackend ends relayed sessions`, async () => {
    const dir = await tmp('splice');
    const twin = await startEcho(dir);
    const staticCookie = randomBytes(32);
    const b = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger, idleTimeoutMs: 700, engine });
    balancers.push(b);
    const { port } = await b.start();
    b.addBackend({ name: 'echo', address: twin.address, cookieFile: twin.cookieFile });
    await b.markUp('echo');
    assert.equal(b.stats().engine, engine);
    assert.equal(b.stats().splice, engine === 'native');
    const dial = () => dialExtOr({ host: '127.0.0.1', port, cookie: staticCookie, userAddr: '192.0.2.1:1', transport: 'x', timeoutMs: 5000 });

    const r = await dial();
    assert.deepEqual(r.rawReply, OKAY);
    const data = randomBytes(32 * MiB);
    const got = readN(r.socket, data.length);
    r.socket.write(data);
    assert.equal(await got, sha(data));
    let st = b.stats().backends[0]!;
    assert.equal(st.bytesToBackend, data.length);
    assert.equal(st.bytesFromBackend, data.length);
    assert.equal(st.current, 1);
    r.socket.destroy();
    await waitFor('the session to end', () => b.stats().backends[0]!.current === 0, 5000, 20);
    st = b.stats().backends[0]!;
    assert.equal(st.bytesToBackend, data.length, 'final counts, not counted twice');
    assert.equal(st.bytesFromBackend, data.length);

    const idle = await dial();
    await closedWithin(idle.socket, 5000);
    // The relay's report comes a moment after the sockets close.
    await waitFor('the idle timeout to be counted', () => b.stats().sessions.idleTimeouts === 1, 2000, 10);

    const held = await dial();
    held.socket.resume();
    await b.removeBackend('echo', { drainMs: 100 });
    await closedWithin(held.socket, 5000);
    await waitFor('no session open', () => b.stats().sessions.current === 0, 5000, 20);
  });
}

test('native engine: a twin given by host name is resolved; a bad listen address is a clear error', async () => {
  const dir = await tmp('splice-name');
  const twin = await startEcho(dir, 'localhost');
  assert.match(twin.address, /^localhost:\d+$/);
  const staticCookie = randomBytes(32);
  const b = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger, engine: 'native' });
  balancers.push(b);
  const { port } = await b.start();
  b.addBackend({ name: 'byname', address: twin.address, cookieFile: twin.cookieFile });
  await b.markUp('byname');
  const r = await dialExtOr({ host: '127.0.0.1', port, cookie: staticCookie, userAddr: '192.0.2.1:1', transport: 'x', timeoutMs: 5000 });
  assert.deepEqual(r.rawReply, OKAY);
  const got = readN(r.socket, 5);
  r.socket.write('hello');
  assert.equal(await got, sha(Buffer.from('hello')));
  r.socket.destroy();

  const taken = createBalancer({ listen: `127.0.0.1:${port}`, staticCookie, logger: testLogger, engine: 'native' });
  await assert.rejects(taken.start(), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE' && /address already in use 127\.0\.0\.1:\d+/.test(e.message));
  await taken.stop();
});

test('native engine: the twin attempt starts with the transport\'s handshake; a flood of bad handshakes makes it wait for DONE', async () => {
  const dir = await tmp('splice-early');
  const twin = await startEcho(dir);
  const staticCookie = randomBytes(32);
  const b = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger, engine: 'native' });
  balancers.push(b);
  const { port } = await b.start();
  b.addBackend({ name: 'echo', address: twin.address, cookieFile: twin.cookieFile });
  await b.markUp('echo');
  const open: net.Socket[] = [];
  /** A transport that authenticates and then holds back its commands. */
  const authOnly = async (): Promise<net.Socket> => {
    const s = net.connect({ port, host: '127.0.0.1', noDelay: true });
    s.on('error', () => {});
    open.push(s);
    await driveHandshake(s, new ExtOrClientHandshake(staticCookie), null, 5000);
    return s;
  };
  const finish = async (s: net.Socket): Promise<void> => {
    const got = readN(s, 4 + 5);
    s.write(Buffer.concat([transportCommands({ userAddr: '192.0.2.1:1', transport: 'x' }), Buffer.from('hello')]));
    assert.equal(await got, sha(Buffer.concat([OKAY, Buffer.from('hello')])), 'OKAY, then the echo');
  };
  const settled = async (): Promise<number> => {
    for (let last = -1; ; await sleep(150)) {
      const n = twin.accepted();
      if (n === last) return n;
      last = n;
    }
  };
  try {
    const n0 = await settled();
    const s1 = await authOnly();
    await waitFor('the twin attempt before DONE', () => twin.accepted() === n0 + 1, 2000, 10);
    await finish(s1);

    // 20 transports with a wrong auth type: answered per protocol and dropped; early attempts pause.
    await Promise.all(
      Array.from({ length: 20 }, () =>
        new Promise<void>((resolve) => {
          const s = net.connect({ port, host: '127.0.0.1' }, () => s.write(Buffer.from([0x02])));
          s.on('error', () => resolve());
          s.on('close', () => resolve());
          s.resume();
        }),
      ),
    );
    assert.equal(b.stats().sessions.protocolErrors, 20);
    const n1 = await settled();
    const s2 = await authOnly();
    await sleep(300);
    assert.equal(twin.accepted(), n1, 'no connection to the twin before DONE while paused');
    await finish(s2);
    assert.equal(twin.accepted(), n1 + 1);
  } finally {
    for (const s of open) s.destroy();
  }
});

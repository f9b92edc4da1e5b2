// The native engine through the balancer, on fake echo twins: byte-exact relaying with its counts,
// the idle timeout, removeTwin, twins by host name, a listen error, and when the twin attempt
// starts. Runs inside scripts/netns.sh. Speed is the bench's business (bench/), not asserted here.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ExtOrClientHandshake, dialExtOr, driveHandshake, transportCommands } from '../src/extorport/index.js';
import { createBalancer, type Balancer } from '../src/balancer/index.js';
import { echoTwin, testLogger, tmp, waitFor, type EchoTwin } from './helpers.js';

const MiB = 1 << 20;
const servers: net.Server[] = [];
const balancers: Balancer[] = [];

after(async () => {
  for (const b of balancers) await b.stop();
  for (const s of servers) s.close();
});

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

const OKAY = Buffer.from([0x10, 0, 0, 0]);

/** A fake echo twin for this file (closed after the tests). */
async function startEcho(dir: string, host = '127.0.4.9'): Promise<EchoTwin> {
  const t = await echoTwin(join(dir, 'twin_cookie'), host);
  servers.push(t.server);
  return t;
}

test('echo byte-exact with counts, idle timeout, removeTwin ends relayed sessions', async () => {
  const dir = await tmp('splice');
  const twin = await startEcho(dir);
  const staticCookie = randomBytes(32);
  const b = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger, idleTimeoutMs: 700 });
  balancers.push(b);
  const { port } = await b.start();
  b.addTwin({ name: 'echo', address: twin.address, cookieFile: twin.cookieFile });
  await b.markUp('echo');
  const dial = () => dialExtOr({ host: '127.0.0.1', port, cookie: staticCookie, userAddr: '192.0.2.1:1', transport: 'x', timeoutMs: 5000 });

  const r = await dial();
  assert.deepEqual(r.rawReply, OKAY);
  const data = randomBytes(32 * MiB);
  const got = readN(r.socket, data.length);
  r.socket.write(data);
  assert.equal(await got, sha(data));
  let st = b.stats().twins[0]!;
  assert.equal(st.bytesToTwin, data.length);
  assert.equal(st.bytesFromTwin, data.length);
  assert.equal(st.current, 1);
  r.socket.destroy();
  await waitFor('the session to end', () => b.stats().twins[0]!.current === 0, 5000, 20);
  st = b.stats().twins[0]!;
  assert.equal(st.bytesToTwin, data.length, 'final counts, not counted twice');
  assert.equal(st.bytesFromTwin, data.length);

  const idle = await dial();
  await closedWithin(idle.socket, 5000);
  // The relay's report comes a moment after the sockets close.
  await waitFor('the idle timeout to be counted', () => b.stats().sessions.idleTimeouts === 1, 2000, 10);

  const held = await dial();
  held.socket.resume();
  await b.removeTwin('echo', { drainMs: 100 });
  await closedWithin(held.socket, 5000);
  await waitFor('no session open', () => b.stats().sessions.current === 0, 5000, 20);
});

test('a twin given by host name is resolved; a bad listen address is a clear error', async () => {
  const dir = await tmp('splice-name');
  const twin = await startEcho(dir, 'localhost');
  assert.match(twin.address, /^localhost:\d+$/);
  const staticCookie = randomBytes(32);
  const b = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger });
  balancers.push(b);
  const { port } = await b.start();
  b.addTwin({ name: 'byname', address: twin.address, cookieFile: twin.cookieFile });
  await b.markUp('byname');
  const r = await dialExtOr({ host: '127.0.0.1', port, cookie: staticCookie, userAddr: '192.0.2.1:1', transport: 'x', timeoutMs: 5000 });
  assert.deepEqual(r.rawReply, OKAY);
  const got = readN(r.socket, 5);
  r.socket.write('hello');
  assert.equal(await got, sha(Buffer.from('hello')));
  r.socket.destroy();

  const taken = createBalancer({ listen: `127.0.0.1:${port}`, staticCookie, logger: testLogger });
  await assert.rejects(taken.start(), (e: NodeJS.ErrnoException) => e.code === 'EADDRINUSE' && /address already in use 127\.0\.0\.1:\d+/.test(e.message));
  await taken.stop();
});

test('the twin attempt starts with the transport\'s handshake; a flood of bad handshakes makes it wait for DONE', async () => {
  const dir = await tmp('splice-early');
  const twin = await startEcho(dir);
  const staticCookie = randomBytes(32);
  const b = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger });
  balancers.push(b);
  const { port } = await b.start();
  b.addTwin({ name: 'echo', address: twin.address, cookieFile: twin.cookieFile });
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

// The balancer and the Extended ORPort code against real tor 0.4.9 in the private lab
// (issue 3, acceptance 1). Runs inside scripts/netns.sh.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { writeFile, mkdir, rm } from 'node:fs/promises';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { startLab, freePort, type Lab } from '../src/lab/index.js';
import { spawnChild, torArgs, renderTorrc, TOR_BIN, type Child } from '../src/tor/index.js';
import { dialExtOr, readCookieFile, writeCookieFile, createCookieFile, ExtOrError, encodeCommand, CMD } from '../src/extorport/index.js';
import { createBalancer, type Balancer } from '../src/balancer/index.js';
import { CLI, tmp, testLogger, waitFor } from './helpers.js';

const OKAY = Buffer.from([0x10, 0x00, 0x00, 0x00]);

interface Twin {
  name: string;
  dir: string;
  host: string;
  port: number;
  cookieFile: string;
  torrc: string;
  child: Child;
}

let lab: Lab;
let dir: string;
const twins: Twin[] = [];

function hmac(key: Buffer, text: string, ...parts: Buffer[]): Buffer {
  return createHmac('sha256', key).update(Buffer.concat([Buffer.from(text), ...parts])).digest();
}

/** ESTABLISHED TCP sockets whose local end is host:port, read from the kernel (/proc/net/tcp). */
/**
 * Established connections at host:port; with `fromBalancer`, only those from the balancer's source
 * range (127.0.2.0/24), so a stray connection of another test cannot count.
 */
function establishedAt(host: string, port: number, fromBalancer = true): number {
  const hex = host.split('.').map((p) => Number(p).toString(16).padStart(2, '0')).reverse().join('').toUpperCase();
  const want = `${hex}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
  return readFileSync('/proc/net/tcp', 'utf8')
    .split('\n')
    .slice(1)
    .filter((l) => {
      const f = l.trim().split(/\s+/);
      // rem_address is little-endian hex: 127.0.2.x reads "xx02007F".
      return f[1] === want && f[3] === '01' && (!fromBalancer || /^[0-9A-F]{2}02007F:/.test(f[2] ?? ''));
    }).length;
}

function startTor(t: Omit<Twin, 'child'>): Child {
  const log = testLogger.child({ twin: t.name });
  return spawnChild(TOR_BIN, torArgs(t.torrc), { onLine: (line) => log.debug({ tor: line }) });
}

async function waitExtOrReady(t: Twin): Promise<void> {
  await waitFor(
    `${t.name}'s ExtORPort`,
    async () => {
      const cookie = await readCookieFile(t.cookieFile);
      const r = await dialExtOr({ host: t.host, port: t.port, cookie, timeoutMs: 5000 });
      r.socket.destroy();
      return r.rawReply.equals(OKAY);
    },
    60_000,
    200,
  );
}

async function startTwin(i: number, extra: string[] = []): Promise<Twin> {
  const name = `twin${i}`;
  const d = join(dir, name);
  await mkdir(d, { recursive: true, mode: 0o700 });
  const host = `127.0.4.${i}`;
  const port = await freePort(host);
  const torrc = join(d, 'torrc');
  await writeFile(
    torrc,
    renderTorrc([
      ...lab.torrcLines,
      `DataDirectory ${d}`,
      `Nickname ${name}`,
      'BridgeRelay 1',
      'BridgeDistribution none',
      'PublishServerDescriptor 0',
      'ORPort 127.0.0.1:auto',
      `ExtORPort ${host}:${port}`,
      'SocksPort 0',
      `ControlPort unix:${join(d, 'control')}`,
      'CookieAuthentication 1',
      `Log notice file ${join(d, 'notice.log')}`,
      ...extra,
    ]),
  );
  const base = { name, dir: d, host, port, cookieFile: join(d, 'extended_orport_auth_cookie'), torrc };
  const t: Twin = { ...base, child: startTor(base) };
  await waitExtOrReady(t);
  return t;
}

async function stopTwin(t: Twin): Promise<void> {
  t.child.kill('SIGTERM');
  await t.child.exited;
}

before(async () => {
  dir = await tmp('balancer-lab');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  twins.push(...(await Promise.all([1, 2, 3].map((i) => startTwin(i)))));
});

after(async () => {
  for (const h of held) h.destroy();
  await balancer?.stop();
  for (const t of twins) t.child.kill('SIGKILL');
  await Promise.all(twins.map((t) => t.child.exited));
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('tor\'s ExtORPort answers our client with OKAY, and its hashes match ours computed independently', async () => {
  const t = twins[0]!;
  const cookie = await readCookieFile(t.cookieFile);
  const ok = await dialExtOr({ host: t.host, port: t.port, cookie, userAddr: '192.0.2.1:1234', transport: 'snowflake' });
  assert.deepEqual(ok.rawReply, OKAY);
  ok.socket.destroy();

  // By hand, with HMACs computed here: tor's ServerHash is what we compute, our ClientHash is
  // what it wants, and a wrong one gets 00 and a closed connection.
  for (const wrong of [false, true]) {
    const s = net.connect(t.port, t.host);
    const got: Buffer[] = [];
    s.on('data', (d) => got.push(d));
    const closed = new Promise((r) => s.once('close', r));
    const nonce = randomBytes(32);
    await waitFor('auth types', () => Buffer.concat(got).length >= 2, 5000, 10);
    assert.deepEqual(Buffer.concat(got), Buffer.from([0x01, 0x00]));
    s.write(Buffer.concat([Buffer.from([0x01]), nonce]));
    await waitFor('server hash', () => Buffer.concat(got).length >= 66, 5000, 10);
    const all = Buffer.concat(got);
    const serverNonce = all.subarray(34, 66);
    assert.deepEqual(all.subarray(2, 34), hmac(cookie, 'ExtORPort authentication server-to-client hash', nonce, serverNonce));
    const ch = hmac(cookie, 'ExtORPort authentication client-to-server hash', nonce, serverNonce);
    if (wrong) ch[0]! ^= 0x80;
    s.write(ch);
    await waitFor('auth result', () => Buffer.concat(got).length >= 67, 5000, 10);
    assert.equal(Buffer.concat(got)[66], wrong ? 0x00 : 0x01);
    if (wrong) await closed;
    else {
      s.write(encodeCommand(CMD.DONE));
      await waitFor('OKAY', () => Buffer.concat(got).length >= 71, 5000, 10);
      assert.deepEqual(Buffer.concat(got).subarray(67), OKAY);
      s.destroy();
    }
  }

  // A client with the wrong cookie notices tor's ServerHash is wrong.
  await assert.rejects(
    dialExtOr({ host: t.host, port: t.port, cookie: randomBytes(32) }),
    (e: unknown) => e instanceof ExtOrError && e.authFailed,
  );
});

let balancer: Balancer;
let front: { host: string; port: number };
const staticCookie = randomBytes(32);
const held: net.Socket[] = [];
let closedCount = 0;

async function transportSession(n: number, cookie = staticCookie): Promise<net.Socket> {
  const r = await dialExtOr({ host: front.host, port: front.port, cookie, userAddr: `198.51.100.${n % 250}:${1000 + n}`, transport: 'snowflake' });
  assert.deepEqual(r.rawReply, OKAY, 'the twin answers OKAY through the balancer');
  held.push(r.socket);
  r.socket.once('close', () => closedCount++);
  r.socket.resume();
  return r.socket;
}

test('through the balancer: tor\'s OKAY from every twin, in round-robin order', async () => {
  // Round-robin: these tests count turns (least connections has its own test below).
  balancer = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger, choice: 'round-robin' });
  front = await balancer.start();
  for (const t of twins) balancer.addTwin({ name: t.name, address: `${t.host}:${t.port}`, cookieFile: t.cookieFile });
  for (const t of twins) await balancer.markUp(t.name);
  const order: string[] = [];
  for (let n = 0; n < 6; n++) {
    const before = twins.map((t) => establishedAt(t.host, t.port));
    await transportSession(n);
    // Which twin's ExtORPort has one more established connection, as the kernel sees it.
    const now = await waitFor('the new connection at a twin', () => {
      const c = twins.map((t) => establishedAt(t.host, t.port));
      return c.some((x, i) => x !== before[i]) ? c : null;
    }, 5000, 20);
    const grew = twins.filter((_, i) => now[i]! > before[i]!);
    assert.equal(grew.length, 1);
    order.push(grew[0]!.name);
  }
  assert.deepEqual(order, ['twin1', 'twin2', 'twin3', 'twin1', 'twin2', 'twin3']);
  const st = balancer.stats();
  assert.deepEqual(st.twins.map((b) => [b.name, b.current, b.total]), [
    ['twin1', 2, 2],
    ['twin2', 2, 2],
    ['twin3', 2, 2],
  ]);
  assert.equal(st.bindAddressNoPort, true, 'the native addon is built and used');
});

test('bytes flow both ways: a TLS handshake with tor\'s ORPort logic through the balancer', async () => {
  const s = await transportSession(100);
  const before = balancer.stats().twins.reduce((a, b) => a + b.bytesFromTwin, 0);
  const cert = await new Promise<tls.PeerCertificate>((resolve, reject) => {
    const c = tls.connect({ socket: s, rejectUnauthorized: false }, () => resolve(c.getPeerCertificate()));
    c.on('error', reject);
  });
  assert.ok(cert.subject, 'tor presented its link certificate');
  assert.ok(balancer.stats().twins.reduce((a, b) => a + b.bytesFromTwin, 0) > before);
});

test('a wrong static cookie gets 00 and a closed socket; other sessions carry on', async () => {
  const open = held.filter((s) => !s.destroyed);
  assert.ok(open.length >= 6);
  const s = net.connect(front.port, front.host);
  const got: Buffer[] = [];
  s.on('data', (d) => got.push(d));
  const closed = new Promise((r) => s.once('close', r));
  const bad = randomBytes(32);
  const nonce = randomBytes(32);
  await waitFor('auth types', () => Buffer.concat(got).length >= 2, 5000, 10);
  s.write(Buffer.concat([Buffer.from([0x01]), nonce]));
  await waitFor('server hash', () => Buffer.concat(got).length >= 66, 5000, 10);
  s.write(hmac(bad, 'ExtORPort authentication client-to-server hash', nonce, Buffer.concat(got).subarray(34, 66)));
  await closed;
  assert.equal(Buffer.concat(got).length, 67);
  assert.equal(Buffer.concat(got)[66], 0x00);
  // Garbage and silence are dropped too.
  const g = net.connect(front.port, front.host);
  g.on('error', () => {});
  g.resume();
  g.write(Buffer.concat([Buffer.from([0x07]), randomBytes(199)]));
  await new Promise((r) => g.once('close', r));

  await sleep(100);
  assert.ok(open.every((x) => !x.destroyed && x.readyState === 'open'), 'the other sessions are still open');
  await transportSession(101);
  const st = balancer.stats().sessions;
  assert.equal(st.authFailures, 1);
  assert.equal(st.protocolErrors, 1);
});

test('stopping a twin causes no failed session; markUp brings it back with its new cookie', async () => {
  const t2 = twins[1]!;
  const oldCookie = await readCookieFile(t2.cookieFile);
  await stopTwin(t2);
  // Without telling the balancer: it finds out by itself.
  const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => transportSession(200 + i)));
  assert.deepEqual(results.filter((r) => r.status === 'rejected'), []);
  let st = balancer.stats();
  const b2 = st.twins.find((b) => b.name === 'twin2')!;
  assert.equal(b2.up, false);
  assert.ok(b2.connectFailures >= 1);
  assert.ok(st.sessions.replays >= 1);

  // Restart it: tor writes a new cookie. markUp re-reads it and sessions reach twin2 again.
  t2.child = startTor(t2);
  await waitExtOrReady(t2);
  const newCookie = await readCookieFile(t2.cookieFile);
  assert.notDeepEqual(newCookie, oldCookie);
  await balancer.markUp('twin2');
  const total2 = balancer.stats().twins.find((b) => b.name === 'twin2')!.total;
  for (let i = 0; i < 3; i++) await transportSession(300 + i);
  st = balancer.stats();
  assert.equal(st.twins.find((b) => b.name === 'twin2')!.total, total2 + 1);
  assert.equal(st.twins.find((b) => b.name === 'twin2')!.authFailures, 0);
});

test('a twin that fails authentication is marked down and the session replayed', async () => {
  // A backend entry for twin3's port with a cookie file that is not twin3's.
  const fake = join(dir, 'wrong_cookie');
  await writeCookieFile(fake, randomBytes(32));
  balancer.addTwin({ name: 'stale', address: `${twins[2]!.host}:${twins[2]!.port}`, cookieFile: fake });
  await balancer.markUp('stale');
  const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => transportSession(400 + i)));
  assert.deepEqual(results.filter((r) => r.status === 'rejected'), []);
  const stale = balancer.stats().twins.find((b) => b.name === 'stale')!;
  assert.equal(stale.up, false);
  // 8 sessions at once over 4 backends: round-robin can hand 'stale' a second session before the
  // first one's failure comes back, so 1 or 2 failures are both right; each was replayed (above).
  assert.ok(stale.authFailures >= 1 && stale.authFailures <= 2, `auth failures: ${stale.authFailures}`);
  assert.equal(stale.total, 0);
  await balancer.removeTwin('stale', { drainMs: 0 });
});

test('when either side closes, the other is closed at once', async () => {
  const atTwins = (): number => twins.reduce((a, t) => a + establishedAt(t.host, t.port), 0);
  const s = await transportSession(500);
  const n = atTwins();
  // Its own 'close' comes a loop turn later; the native engine can close the twin side before that.
  const ownClose = new Promise((r) => s.once('close', r));
  s.destroy();
  await waitFor('the twin side closed', () => atTwins() === n - 1, 5000, 20);
  await ownClose;

  // And the other way: killing a twin ends the transport sessions on it, and only those.
  const t3 = twins[2]!;
  const onT3 = balancer.stats().twins.find((b) => b.name === 'twin3')!.current;
  assert.ok(onT3 > 0);
  const closedBefore = closedCount;
  t3.child.kill('SIGKILL');
  await t3.child.exited;
  await waitFor('sessions on twin3 closed', () => closedCount === closedBefore + onT3, 5000, 20);
  await sleep(200);
  assert.equal(closedCount, closedBefore + onT3);
  assert.equal(balancer.stats().twins.find((b) => b.name === 'twin3')!.current, 0);
});

/** Pids whose command line contains `needle`. */
function pidsOf(needle: string): number[] {
  return readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .filter((d) => {
      try {
        return readFileSync(`/proc/${d}/cmdline`, 'utf8').includes(needle);
      } catch {
        return false;
      }
    })
    .map(Number);
}

test('extor-static-cookie as tor\'s managed transport: static cookie in, tor\'s OKAY out; exits with tor', { timeout: 120_000 }, async () => {
  const staticFile = join(dir, 'static_cookie');
  // The process to find by its command line: the CLI given this cookie file.
  const pt = staticFile;
  const cookie = await createCookieFile(staticFile);
  const port = await freePort();
  const t = await startTwin(5, [
    `ServerTransportPlugin extor_static_cookie exec ${process.execPath} ${CLI} extor-static-cookie ${staticFile}`,
    `ServerTransportListenAddr extor_static_cookie 127.0.0.1:${port}`,
  ]);
  twins.push(t);
  await waitFor('the transport registered', () => readFileSync(join(t.dir, 'notice.log'), 'utf8').includes(`127.0.0.1:${port}`), 30_000, 100);
  assert.equal(pidsOf(pt).length, 1);
  const before = establishedAt(t.host, t.port, false);
  const r = await dialExtOr({ host: '127.0.0.1', port, cookie, userAddr: '203.0.113.9:443', transport: 'snowflake' });
  assert.deepEqual(r.rawReply, OKAY);
  assert.equal(establishedAt(t.host, t.port, false), before + 1, 'the session reached tor\'s own ExtORPort');
  await assert.rejects(dialExtOr({ host: '127.0.0.1', port, cookie: randomBytes(32) }), (e: unknown) => e instanceof ExtOrError && e.authFailed);
  r.socket.destroy();
  await stopTwin(t);
  await waitFor('the transport exited when tor closed its stdin', () => pidsOf(pt).length === 0, 10_000, 100);
});

test('least connections with real tor: a restarted twin gets the new sessions until the counts are even; round-robin does not', { timeout: 120_000 }, async (t) => {
  const counts: Record<string, number[]> = {};
  const three = twins.slice(0, 3);
  // An earlier test SIGKILLs twin3: every one of the three runs again before the counting starts.
  for (const tw of three) {
    const dead = await Promise.race([tw.child.exited.then(() => true), sleep(50).then(() => false)]);
    if (!dead) continue;
    tw.child = startTor(tw);
    await waitExtOrReady(tw);
  }
  for (const choice of ['least-connections', 'round-robin'] as const) {
    const b = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger, choice });
    const f = await b.start();
    const socks: net.Socket[] = [];
    const dial = async (n: number): Promise<void> => {
      const r = await dialExtOr({ host: f.host, port: f.port, cookie: staticCookie, userAddr: `198.51.100.7:${2000 + n}`, transport: 'snowflake' });
      assert.deepEqual(r.rawReply, OKAY);
      r.socket.on('error', () => {});
      r.socket.resume();
      socks.push(r.socket);
    };
    try {
      for (const tw of three) b.addTwin({ name: tw.name, address: `${tw.host}:${tw.port}`, cookieFile: tw.cookieFile });
      for (const tw of three) await b.markUp(tw.name);
      const current = (): number[] => b.stats().twins.map((x) => x.current);
      for (let n = 0; n < 9; n++) await dial(n);
      assert.deepEqual(current(), [3, 3, 3]);
      // twin3 restarts (tor rewrites its cookie): its sessions end with it.
      const t3 = three[2]!;
      b.markDown(t3.name, 'restarting');
      await stopTwin(t3);
      await waitFor('twin3\'s sessions to end', () => current()[2] === 0, 20_000, 50);
      t3.child = startTor(t3);
      await waitExtOrReady(t3);
      await b.markUp(t3.name);
      for (let n = 0; n < 6; n++) await dial(100 + n);
      counts[choice] = current();
    } finally {
      for (const s of socks) s.destroy();
      await b.stop();
    }
  }
  t.diagnostic(JSON.stringify(counts));
  // Least connections: 3 to the restarted twin (even again), then one each.
  assert.deepEqual(counts['least-connections'], [4, 4, 4]);
  // Round-robin: its turn, 2 of 6.
  assert.equal(counts['round-robin']![2], 2);
  assert.equal(counts['round-robin']!.reduce((a, x) => a + x, 0), 12);
});

// The choice of twin (issue 14): with least connections, a twin that restarted while the others
// hold long sessions gets the next new sessions until the counts are even; with round-robin it gets
// one in three. Echo twins stand in for tor here (their sessions last as long as the test wants);
// runs inside scripts/netns.sh.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type net from 'node:net';
import { dialExtOr } from '../src/extorport/index.js';
import { createBalancer, type Balancer } from '../src/balancer/index.js';
import { echoTwin, testLogger, tmp, waitFor, type EchoTwin } from './helpers.js';

const staticCookie = randomBytes(32);
const cleanups: (() => Promise<void> | void)[] = [];

after(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function held(port: number): Promise<net.Socket> {
  const r = await dialExtOr({ host: '127.0.0.1', port, cookie: staticCookie, userAddr: '192.0.2.1:1', transport: 'snowflake', timeoutMs: 10_000 });
  r.socket.on('error', () => {});
  r.socket.resume();
  cleanups.push(() => void r.socket.destroy());
  return r.socket;
}

/** 3 twins holding 10 sessions each; then the third restarts (its sessions end, it comes back up); then 13 new sessions. */
async function restartAndRefill(choice: 'least-connections' | 'round-robin'): Promise<number[]> {
  const dir = await tmp(`balancer-choice-${choice}`);
  const twins: (EchoTwin & { socks: net.Socket[] })[] = [];
  for (let i = 0; i < 3; i++) {
    const t = await echoTwin(join(dir, `t${i}_cookie`), `127.0.4.${i + 1}`);
    const socks: net.Socket[] = [];
    t.server.on('connection', (s) => socks.push(s));
    cleanups.push(() => void t.server.close());
    twins.push({ ...t, socks });
  }
  const b: Balancer = createBalancer({ listen: '127.0.0.1:0', staticCookie, logger: testLogger, choice });
  cleanups.push(() => b.stop());
  const { port } = await b.start();
  for (const [i, t] of twins.entries()) b.addTwin({ name: `t${i}`, address: t.address, cookieFile: t.cookieFile });
  for (let i = 0; i < 3; i++) await b.markUp(`t${i}`);
  const current = (): number[] => b.stats().twins.map((x) => x.current);
  for (let i = 0; i < 30; i++) await held(port);
  assert.deepEqual(current(), [10, 10, 10], 'an even start either way');
  // The third twin restarts: its sessions end, then it is marked up again.
  b.markDown('t2', 'restarting');
  for (const s of twins[2]!.socks) s.destroy();
  await waitFor('the restarted twin\'s sessions to end', () => current()[2] === 0, 10_000, 20);
  await b.markUp('t2');
  for (let i = 0; i < 13; i++) await held(port);
  return current();
}

test('least connections: a restarted twin gets the new sessions until the counts are even, then the spread stays even', async (t) => {
  const counts = await restartAndRefill('least-connections');
  t.diagnostic(JSON.stringify(counts));
  assert.deepEqual(counts, [11, 11, 11]);
});

test('round-robin: the restarted twin gets only its turn of the new sessions', async (t) => {
  const counts = await restartAndRefill('round-robin');
  t.diagnostic(JSON.stringify(counts));
  assert.ok(counts[2]! <= 5, `round-robin gave the restarted twin ${counts[2]} of 13`);
  assert.equal(counts[0]! + counts[1]! + counts[2]!, 33);
});

// Port exhaustion (issue 3, acceptance 2): with net.ipv4.ip_local_port_range narrowed to 1,000
// ports in this network namespace, 5,000 concurrent sessions through the balancer to one real tor
// twin hold with the default source range (127.0.2.0/24), and fail with a single source address.
// Runs inside scripts/netns.sh (root, loopback only). Narrowing the port range is per network
// namespace, and scripts/test.sh runs several files in one, so this file re-runs itself inside a
// namespace of its own (unshare --net, loopback only) and reports the inner run's results.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { writeFile, mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { startLab, freePort, assertIsolated, type Lab } from '../src/lab/index.js';
import { spawnChild, torArgs, renderTorrc, TOR_BIN, type Child } from '../src/tor/index.js';
import { dialExtOr, readCookieFile } from '../src/extorport/index.js';
import { createBalancer } from '../src/balancer/index.js';
import { tmp, testLogger, waitFor } from './helpers.js';

const SESSIONS = 5000;
const PORT_RANGE = '40000 40999';
const RANGE_FILE = '/proc/sys/net/ipv4/ip_local_port_range';
const CLIENT = fileURLToPath(new URL('./fixtures/hold-sessions.js', import.meta.url));

let lab: Lab;
let dir: string;
let tor: Child;
let extor: { host: string; port: number };
let cookieFile: string;
let savedRange = '';

/**
 * ESTABLISHED sockets whose local end is host:port and whose remote end is in 127.0.2.0/24 (tor's
 * side of the balancer's connections; the readiness probe from 127.0.0.1 must not count).
 */
function establishedAt(host: string, port: number): number {
  const hex = host.split('.').map((p) => Number(p).toString(16).padStart(2, '0')).reverse().join('').toUpperCase();
  const want = `${hex}:${port.toString(16).padStart(4, '0').toUpperCase()}`;
  let n = 0;
  for (const l of readFileSync('/proc/net/tcp', 'utf8').split('\n')) {
    const f = l.trim().split(/\s+/);
    if (f[1] === want && f[3] === '01' && /^[0-9A-F]{2}02007F:/.test(f[2] ?? '')) n++;
  }
  return n;
}

const OWN_NETNS = process.env.BRIDGECTL_OWN_NETNS === '1';

function withoutTestContext(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && k !== 'NODE_TEST_CONTEXT') out[k] = v;
  return out;
}

if (!OWN_NETNS) {
  test('port exhaustion, in a network namespace of its own', { timeout: 400_000 }, async (t) => {
    assertIsolated('the port exhaustion test');
    const r = await execa(
      'unshare',
      ['--net', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, '--test-reporter=tap', fileURLToPath(import.meta.url)],
      // Not as a child of this test runner: a plain run of the file, with its own results.
      { env: { ...withoutTestContext(process.env), BRIDGECTL_OWN_NETNS: '1' }, extendEnv: false, reject: false, all: true },
    );
    for (const line of (r.all ?? '').split('\n')) if (/^(# \{|(not )?ok |# (pass|fail))/.test(line)) t.diagnostic(line);
    assert.equal(r.exitCode, 0, r.all);
    assert.match(r.all ?? '', /^# pass 2$/m);
  });
}

if (OWN_NETNS) before(async () => {
  assertIsolated('the port exhaustion test');
  dir = await tmp('balancer-exhaustion');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  const d = join(dir, 'twin1');
  await mkdir(d, { recursive: true, mode: 0o700 });
  extor = { host: '127.0.4.1', port: await freePort('127.0.4.1') };
  cookieFile = join(d, 'extended_orport_auth_cookie');
  await writeFile(
    join(d, 'torrc'),
    renderTorrc([
      ...lab.torrcLines,
      `DataDirectory ${d}`,
      'Nickname twin1',
      'BridgeRelay 1',
      'BridgeDistribution none',
      'PublishServerDescriptor 0',
      'ORPort 127.0.0.1:auto',
      `ExtORPort ${extor.host}:${extor.port}`,
      'SocksPort 0',
      // 5,000 ExtORPort connections and then some; tor raises its own descriptor limit to the hard one.
      'ConnLimit 12000',
      `Log notice file ${join(d, 'notice.log')}`,
    ]),
  );
  tor = spawnChild(TOR_BIN, torArgs(join(d, 'torrc')));
  await waitFor('the twin\'s ExtORPort', async () => {
    const r = await dialExtOr({ ...extor, cookie: await readCookieFile(cookieFile), timeoutMs: 5000 });
    r.socket.destroy();
    return true;
  }, 60_000, 200);
  // Only now: the lab and tor picked their ports from the full range. Put back in after().
  savedRange = readFileSync(RANGE_FILE, 'utf8').trim();
  writeFileSync(RANGE_FILE, PORT_RANGE);
  assert.equal(readFileSync(RANGE_FILE, 'utf8').trim().split(/\s+/).join(' '), PORT_RANGE);
});

if (OWN_NETNS) after(async () => {
  if (savedRange) writeFileSync(RANGE_FILE, savedRange);
  tor?.kill('SIGKILL');
  await tor?.exited;
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function holdThrough(sourceRange: string | undefined): Promise<{ ok: number; failed: number; current: number; atTor: number; localErrors: number; errors: Record<string, number> }> {
  const staticCookie = randomBytes(32);
  const b = createBalancer({ listen: '127.0.0.1:0', staticCookie, sourceRange, logger: testLogger, maxSessions: SESSIONS + 100 });
  const front = await b.start();
  b.addTwin({ name: 'twin1', address: `${extor.host}:${extor.port}`, cookieFile });
  await b.markUp('twin1');
  const client = execa(process.execPath, [CLIENT, `${front.host}:${front.port}`, staticCookie.toString('hex'), String(SESSIONS)], {
    stdin: 'pipe',
    reject: false,
    buffer: false,
  });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      client.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        if (buf.includes('\n')) resolve(buf.split('\n')[0]!);
      });
      void client.then((r) => reject(new Error(`load client exited: ${r.exitCode} ${String(r.stderr ?? '')}`)));
    });
    const report = JSON.parse(line) as { ok: number; failed: number; errors: Record<string, number> };
    // Every held session is open end to end right now.
    const st = b.stats();
    const atTor = establishedAt(extor.host, extor.port);
    return { ...report, current: st.twins[0]!.current, atTor, localErrors: st.sessions.localErrors };
  } finally {
    client.stdin!.end();
    await client;
    await b.stop();
    // Let tor notice the closes before the next round.
    await waitFor('tor\'s side to close', () => establishedAt(extor.host, extor.port) === 0, 30_000, 100);
  }
}

if (OWN_NETNS) test(`${SESSIONS} concurrent sessions hold with the default source range and 1,000 ephemeral ports`, { timeout: 240_000 }, async (t) => {
  const r = await holdThrough(undefined);
  t.diagnostic(JSON.stringify(r));
  assert.deepEqual(r.errors, {});
  assert.equal(r.ok, SESSIONS);
  assert.equal(r.current, SESSIONS);
  assert.equal(r.atTor, SESSIONS, 'tor has every session open at its ExtORPort');
  assert.equal(r.localErrors, 0);
});

if (OWN_NETNS) test('the same with a single source address runs out of ports (so the test above can fail)', { timeout: 240_000 }, async (t) => {
  const r = await holdThrough('127.0.2.1/32');
  t.diagnostic(JSON.stringify(r));
  assert.ok(r.failed > 0, `expected failures, got ${JSON.stringify(r)}`);
  assert.ok(r.ok <= 1000, `at most one session per ephemeral port, got ${r.ok}`);
  assert.ok(r.localErrors > 0, 'the balancer saw EADDRNOTAVAIL');
  assert.equal(r.current, r.ok);
});

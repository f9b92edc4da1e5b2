// The text-format relabeller, fed the output of a real tor 0.4.9 MetricsPort (a lab bridge,
// captured in test/fixtures/tor-0.4.9-metricsport.txt), plus the edge cases of the format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseExposition, mergeExpositions, formatSample, startMetricsServer, type LabelledSource } from '../src/metrics/index.js';
import type { BridgeStatus } from '../src/supervisor/index.js';
import { testLogger } from './helpers.js';

const FIXTURE = new URL('../../test/fixtures/tor-0.4.9-metricsport.txt', import.meta.url);
const torText = (): Promise<string> => readFile(FIXTURE, 'utf8');

const lines = (s: string): string[] => s.split('\n').filter(Boolean);
const sampleLines = (s: string): string[] => lines(s).filter((l) => !l.startsWith('#'));

/** Each family's lines (HELP, TYPE, samples) must be one contiguous group: no name seen again after another family. */
function assertGrouped(text: string): void {
  const seen = new Set<string>();
  let current = '';
  for (const l of lines(text)) {
    const name = l.startsWith('#') ? l.split(/\s+/)[2]! : l.split(/[{ ]/)[0]!.replace(/_(bucket|sum|count)$/, '');
    if (name !== current) {
      assert.ok(!seen.has(name), `family ${name} appears in two groups`);
      seen.add(name);
      current = name;
    }
  }
}

test('a real tor MetricsPort output parses with no invalid line', async () => {
  const text = await torText();
  const e = parseExposition(text);
  assert.deepEqual(e.invalid, []);
  assert.equal(e.families.filter((f) => f.help !== undefined).length, (text.match(/^# HELP /gm) ?? []).length);
  assert.equal(e.families.reduce((n, f) => n + f.samples.length, 0), sampleLines(text).length);
  const conns = e.families.find((f) => f.name === 'tor_relay_connections');
  assert.equal(conns?.type, 'gauge');
  assert.deepEqual(conns?.samples[0]?.labels, [
    ['type', 'OR listener'],
    ['direction', 'initiated'],
    ['state', 'opened'],
    ['family', 'ipv4'],
  ]);
});

test('merging three twins: every sample once per twin with twin= first, HELP/TYPE once, families grouped', async () => {
  const text = await torText();
  const names = ['bridge1', 'bridge2', 'bridge3'];
  const merged = mergeExpositions(names.map((value) => ({ value, exposition: parseExposition(text) })));
  const original = sampleLines(text);
  const out = sampleLines(merged);
  assert.equal(out.length, original.length * 3);
  for (const name of names) {
    const mine = out.filter((l) => l.includes(`twin="${name}"`));
    assert.equal(mine.length, original.length, `${name} has every sample`);
    // Removing our label gives back tor's line exactly.
    const stripped = mine.map((l) => l.replace(`{twin="${name}"}`, '').replace(`twin="${name}",`, ''));
    assert.deepEqual(stripped.sort(), [...original].sort());
  }
  for (const kind of ['HELP', 'TYPE']) {
    const decl = lines(merged).filter((l) => l.startsWith(`# ${kind} `));
    assert.equal(decl.length, (text.match(new RegExp(`^# ${kind} `, 'gm')) ?? []).length, `one ${kind} per family`);
    assert.equal(new Set(decl).size, decl.length);
  }
  assert.ok(out.includes('tor_bug_reached_count{twin="bridge2"} 0'), 'a sample without labels gets {twin=}');
  assert.ok(
    out.includes('tor_relay_connections{twin="bridge3",type="OR listener",direction="initiated",state="opened",family="ipv4"} 1'),
    'a sample with labels keeps them, after twin=',
  );
  assertGrouped(merged);
  const again = parseExposition(merged);
  assert.deepEqual(again.invalid, []);
  assert.equal(again.families.length, parseExposition(text).families.length);
});

test('label values are unescaped when parsed and escaped again; our own value is escaped too', () => {
  const e = parseExposition('m{a="q\\"uote",b="back\\\\slash",c="new\\nline",d="}{,="} 1\n');
  assert.deepEqual(e.invalid, []);
  const s = e.families[0]!.samples[0]!;
  assert.deepEqual(s.labels, [
    ['a', 'q"uote'],
    ['b', 'back\\slash'],
    ['c', 'new\nline'],
    ['d', '}{,='],
  ]);
  const merged = mergeExpositions([{ value: 'we"ird\\name\n', exposition: e }]);
  assert.equal(merged, 'm{twin="we\\"ird\\\\name\\n",a="q\\"uote",b="back\\\\slash",c="new\\nline",d="}{,="} 1\n');
  assert.deepEqual(parseExposition(merged).invalid, []);
});

test('timestamps and special values are kept as written', () => {
  const e = parseExposition('# TYPE t gauge\nt 1.5e3 1700000000000\nt{x="1"} +Inf -5\nt{x="2"} NaN\n');
  assert.deepEqual(e.invalid, []);
  assert.deepEqual(sampleLines(mergeExpositions([{ value: 'i', exposition: e }])), [
    't{twin="i"} 1.5e3 1700000000000',
    't{twin="i",x="1"} +Inf -5',
    't{twin="i",x="2"} NaN',
  ]);
});

test('a twin label already on a sample becomes exported_twin', () => {
  const e = parseExposition('m{twin="theirs",k="v"} 2\n');
  assert.deepEqual(sampleLines(mergeExpositions([{ value: 'ours', exposition: e }])), [
    'm{twin="ours",exported_twin="theirs",k="v"} 2',
  ]);
});

test('histogram and summary samples stay with their family across twins', () => {
  const h = [
    '# HELP lat Latency.',
    '# TYPE lat histogram',
    'lat_bucket{le="0.1"} 1',
    'lat_bucket{le="+Inf"} 2',
    'lat_sum 0.3',
    'lat_count 2',
    '# TYPE q summary',
    'q{quantile="0.5"} 1',
    'q_sum 4',
    'q_count 3',
    'other 1',
  ].join('\n');
  const merged = mergeExpositions(['a', 'b'].map((value) => ({ value, exposition: parseExposition(h) })));
  assertGrouped(merged);
  const l = lines(merged);
  assert.deepEqual(l.slice(0, 10), [
    '# HELP lat Latency.',
    '# TYPE lat histogram',
    'lat_bucket{twin="a",le="0.1"} 1',
    'lat_bucket{twin="a",le="+Inf"} 2',
    'lat_sum{twin="a"} 0.3',
    'lat_count{twin="a"} 2',
    'lat_bucket{twin="b",le="0.1"} 1',
    'lat_bucket{twin="b",le="+Inf"} 2',
    'lat_sum{twin="b"} 0.3',
    'lat_count{twin="b"} 2',
  ]);
  assert.deepEqual(l.filter((x) => x.startsWith('q')), [
    'q{twin="a",quantile="0.5"} 1',
    'q_sum{twin="a"} 4',
    'q_count{twin="a"} 3',
    'q{twin="b",quantile="0.5"} 1',
    'q_sum{twin="b"} 4',
    'q_count{twin="b"} 3',
  ]);
});

test('invalid lines are reported and dropped; the rest is kept', () => {
  const e = parseExposition(
    [
      '# a plain comment',
      'good 1',
      'bad{a="unterminated} 1',
      '9starts_with_digit 1',
      'noval',
      'v{a="x"} 1 2 3',
      'e{a="\\q"} 1',
      'w{a="1",a="2"} 1',
      '# TYPE good nonsense',
      'also_good{a="b",} 2',
    ].join('\n'),
  );
  assert.deepEqual(
    e.invalid.map((i) => i.line),
    [3, 4, 5, 6, 7, 8, 9],
  );
  assert.deepEqual(
    e.families.flatMap((f) => f.samples.map(formatSample)),
    ['good 1', 'also_good{a="b"} 2'],
  );
});

test('a family whose TYPE differs between twins keeps the first; excluded names are left out', () => {
  const a = parseExposition('# TYPE x counter\nx 1\n# TYPE mine gauge\nmine 1\n');
  const b = parseExposition('# TYPE x gauge\nx 5\n');
  const srcs: LabelledSource[] = [
    { value: 'a', exposition: a },
    { value: 'b', exposition: b },
  ];
  assert.equal(mergeExpositions(srcs, { exclude: new Set(['mine']) }), '# TYPE x counter\nx{twin="a"} 1\n');
});

// --- the endpoint with a fake bridge and fake twins (no tor) ---

function fakeStatus(): BridgeStatus {
  const twin = (name: string, n: number) => ({
    name,
    address: `127.0.4.${n}:10100`,
    up: n === 1,
    draining: false,
    downReason: null,
    current: n,
    total: 10 * n,
    bytesToTwin: 1000 * n,
    bytesFromTwin: 2000 * n,
    authFailures: n - 1,
    connectFailures: 3 * n,
  });
  const inst = (name: string, n: number) => ({
    name,
    index: n,
    state: n === 1 ? ('running' as const) : ('backoff' as const),
    pid: 100 + n,
    restarts: n - 1,
    startedAt: Date.now() - 5000,
    bootstrappedAt: null,
    bootstrap: n === 1 ? 100 : 40,
    fingerprint: 'A'.repeat(40),
    orPort: null,
    extOrPort: `127.0.4.${n}:10100`,
    extOrPortCookie: '/x',
    lastExit: null,
    uptimeMs: 5000,
    sessions: n,
    sessionsTotal: 10 * n,
    bytesIn: 1000 * n,
    bytesOut: 2000 * n,
    balancerUp: n === 1,
    cpuShare: 0.25 * n,
  });
  return {
    nickname: 'fake',
    fingerprint: null,
    pid: process.pid,
    startedAt: Date.now() - 60_000,
    ready: true,
    cpuShare: 0.1,
    instances: [inst('fake1', 1), inst('fake2', 2)],
    balancer: {
      listen: { host: '127.0.0.1', port: 10000 },
      bindAddressNoPort: true,
      splice: true,
      sourceRange: '127.0.2.0/24',
      sessions: {
        accepted: 50,
        current: 3,
        established: 30,
        authFailures: 2,
        protocolErrors: 1,
        handshakeTimeouts: 0,
        idleTimeouts: 4,
        rejectedOverCap: 0,
        noTwin: 5,
        replays: 6,
        localErrors: 0,
      },
      twins: [twin('fake1', 1), twin('fake2', 2)],
    },
    restart: null,
    onionKeys: null,
    transport: {
      name: 'obfs4',
      state: 'running',
      cpuShare: 0.05,
      pid: 99,
      restarts: 2,
      startedAt: Date.now(),
      readyAt: Date.now(),
      smethod: null,
      lastError: null,
    },
  };
}

async function get(url: string): Promise<{ status: number; type: string; body: string }> {
  const r = await fetch(url);
  return { status: r.status, type: r.headers.get('content-type') ?? '', body: await r.text() };
}

test('the endpoint: own metrics, balancer counters per twin, a good twin relabelled, failing twins only marked', async () => {
  const text = await torText();
  // One twin answers tor's output, one answers 500, one never answers, one has no MetricsPort.
  const fakeTor = http.createServer((req, res) => {
    if (req.url === '/metrics') res.end(text);
  });
  const broken = http.createServer((_req, res) => res.writeHead(500).end('no'));
  const silent = http.createServer(() => undefined);
  const listen = async (s: http.Server): Promise<string> => {
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    return `127.0.0.1:${(s.address() as AddressInfo).port}`;
  };
  const [good, bad, mute] = [await listen(fakeTor), await listen(broken), await listen(silent)];
  const m = await startMetricsServer({
    listen: '127.0.0.1:0',
    logger: testLogger,
    getStatus: fakeStatus,
    torTimeoutMs: 500,
    instances: () => [
      { name: 'fake1', metricsAddress: good },
      { name: 'fake2', metricsAddress: bad },
      { name: 'fake3', metricsAddress: mute },
      { name: 'fake4', metricsAddress: null },
    ],
  });
  try {
    const t0 = Date.now();
    const r = await get(`http://127.0.0.1:${m.address.port}/metrics`);
    assert.ok(Date.now() - t0 < 2_000, 'a silent twin costs at most its timeout');
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain; version=0\.0\.4/);
    const b = r.body;
    const has = (line: string): void => assert.ok(sampleLines(b).includes(line), `has ${line}`);
    has('bridgectl_tor_metrics_scrape_ok{twin="fake1"} 1');
    has('bridgectl_tor_metrics_scrape_ok{twin="fake2"} 0');
    has('bridgectl_tor_metrics_scrape_ok{twin="fake3"} 0');
    has('bridgectl_tor_metrics_scrape_ok{twin="fake4"} 0');
    has('tor_relay_traffic_bytes{twin="fake1",direction="read"} 53786');
    assert.deepEqual(sampleLines(b).filter((l) => l.startsWith('tor_') && !l.includes('{twin="fake1"')), []);
    has('bridgectl_instance_up{twin="fake1"} 1');
    has('bridgectl_instance_up{twin="fake2"} 0');
    has('bridgectl_instance_state{twin="fake2",state="backoff"} 1');
    has('bridgectl_instance_restarts_total{twin="fake2"} 1');
    has('bridgectl_instance_bootstrap_percent{twin="fake2"} 40');
    has('bridgectl_balancer_backend_sessions{twin="fake2"} 2');
    has('bridgectl_balancer_backend_sessions_total{twin="fake2"} 20');
    has('bridgectl_balancer_backend_bytes_total{twin="fake2",direction="to_twin"} 2000');
    has('bridgectl_balancer_backend_bytes_total{twin="fake2",direction="from_twin"} 4000');
    has('bridgectl_balancer_backend_auth_failures_total{twin="fake2"} 1');
    has('bridgectl_balancer_backend_connect_failures_total{twin="fake2"} 6');
    has('bridgectl_balancer_sessions 3');
    has('bridgectl_balancer_accepted_total 50');
    has('bridgectl_balancer_no_backend_total 5');
    has('bridgectl_transport_up{transport="obfs4"} 1');
    has('bridgectl_transport_restarts_total{transport="obfs4"} 2');
    assert.match(b, /^# TYPE bridgectl_balancer_backend_sessions_total counter$/m);
    assert.match(b, /^# TYPE bridgectl_balancer_accepted_total counter$/m);
    assert.match(b, /^process_cpu_seconds_total \d/m, 'process metrics of the supervisor');
    assert.deepEqual(parseExposition(b).invalid, []);
    assertGrouped(b);
    // A second scrape reports the same totals: counters mirror the balancer's, they do not add up per scrape.
    const again = sampleLines((await get(`http://127.0.0.1:${m.address.port}/metrics`)).body);
    for (const line of ['bridgectl_balancer_accepted_total 50', 'bridgectl_balancer_backend_sessions_total{twin="fake2"} 20']) {
      assert.ok(again.includes(line), `second scrape has ${line}`);
    }
    assert.equal((await get(`http://127.0.0.1:${m.address.port}/nope`)).status, 404);
  } finally {
    await m.stop();
    for (const s of [fakeTor, broken, silent]) {
      s.closeAllConnections();
      s.close();
    }
  }
});

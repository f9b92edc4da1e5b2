// The benchmark: bridgectl's balancer next to HAProxy 2.6 (TCP mode; haproxy-splice: with `option
// splice-request` and `option splice-response`, its zero-copy mode) on the same traffic, in one run.
// Every process is its own: the fake ExtORPort backend, the proxy under test, the load generator; the
// proxy's CPU comes from /proc/PID/stat and its RSS from /proc/PID/status. Run by scripts/bench.sh
// inside a fresh loopback-only network namespace. See bench/README.md.
//   node dist/bench/run.js [--quick] [--proxies haproxy,bridgectl,...] [--perf] [--only bulk,rate,idle]
//   (a proxy bridgectl@BYTES is bridgectl with BRIDGECTL_SPLICE_PIPE_SIZE=BYTES, to compare pipe sizes)
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCookieFile } from '../src/extorport/index.js';
import { cpuSeconds, flags, machineBusy, rssBytes } from './common.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const GiB = 1 << 30;

const f = flags(process.argv.slice(2));
const quick = f.quick === 'true';
const cfg = {
  bulkStreams: Number(f.streams ?? 4),
  bulkBytes: Number(f['stream-bytes'] ?? (quick ? 256 : 1024) * (1 << 20)),
  rounds: Number(f.rounds ?? (quick ? 1 : 3)),
  rateSeconds: Number(f['rate-seconds'] ?? (quick ? 3 : 8)),
  rateConcurrency: Number(f.concurrency ?? 64),
  idleSessions: Number(f['idle-sessions'] ?? 5000),
};
const only = new Set((f.only ?? 'bulk,rate,idle').split(','));
const proxyNames = (f.proxies ?? 'haproxy,haproxy-splice,bridgectl,node-pipe').split(',');
const perf = f.perf === 'true';

if (process.env.BRIDGECTL_IN_NETNS !== '1') {
  process.stderr.write('run.js: run me through scripts/bench.sh (a loopback-only network namespace)\n');
  process.exit(2);
}

const dir = await mkdtemp(join(tmpdir(), 'bridgectl-bench-'));
const backendCookie = join(dir, 'backend_cookie');
const staticCookie = join(dir, 'static_cookie');
await createCookieFile(backendCookie, { overwrite: true });
await createCookieFile(staticCookie, { overwrite: true });
const BACKEND = { host: '127.0.0.1', port: 7100 };

const children = new Set<ChildProcess>();
function start(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): ChildProcess {
  const c = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, ...env } });
  children.add(c);
  c.on('exit', () => children.delete(c));
  return c;
}
async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill('SIGTERM');
  await Promise.race([exited, sleep(3000).then(() => c.kill('SIGKILL'))]);
  await exited;
}
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

async function untilListening(port: number, c: ChildProcess): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (c.exitCode !== null) throw new Error(`${c.spawnfile} exited with ${c.exitCode}`);
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port}`);
}

/** Successive JSON lines from a child's stdout. */
function lineReader(c: ChildProcess): () => Promise<Record<string, number>> {
  let buf = '';
  const ready: Record<string, number>[] = [];
  let waiting: ((v: Record<string, number>) => void) | null = null;
  c.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const v = JSON.parse(buf.slice(0, i)) as Record<string, number>;
      buf = buf.slice(i + 1);
      if (waiting) {
        const w = waiting;
        waiting = null;
        w(v);
      } else ready.push(v);
    }
  });
  return () => (ready.length ? Promise.resolve(ready.shift()!) : new Promise((r) => (waiting = r)));
}

/** One JSON line from a child's stdout (the load generator's result). */
function line(c: ChildProcess): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const i = buf.indexOf('\n');
      if (i < 0) return;
      c.stdout!.off('data', onData);
      resolve(JSON.parse(buf.slice(0, i)) as Record<string, number>);
    };
    c.stdout!.on('data', onData);
    c.once('exit', (code) => reject(new Error(`${c.spawnfile} exited (${code}) before its result`)));
  });
}

interface Proxy {
  name: string;
  pid: number;
  port: number;
  /** The cookie the client authenticates with through it. */
  cookieFile: string;
  proc: ChildProcess;
}

let nextPort = 7200;
async function startProxy(name: string, opts: { perfMap?: boolean } = {}): Promise<Proxy> {
  const port = nextPort++;
  const listen = `127.0.0.1:${port}`;
  const backend = `${BACKEND.host}:${BACKEND.port}`;
  const nodeFlags = opts.perfMap ? ['--perf-basic-prof'] : [];
  let proc: ChildProcess;
  let cookieFile = backendCookie;
  if (name === 'haproxy' || name === 'haproxy-splice') {
    const cfgFile = join(dir, `haproxy-${port}.cfg`);
    const splice = name === 'haproxy-splice' ? ['\toption splice-request', '\toption splice-response'] : [];
    // Its pipes count against the same 20,000 descriptors (by default maxconn / 4 of them, two each).
    const pipes = name === 'haproxy-splice' ? ['\tmaxpipes 500'] : [];
    await writeFile(
      cfgFile,
      ['global', '\tmaxconn 9000', ...pipes, 'defaults', '\tmode tcp', '\ttimeout connect 10s', '\ttimeout client 600s', '\ttimeout server 600s', ...splice,
        'frontend f', `\tbind ${listen}`, '\tdefault_backend b', 'backend b', `\tserver s1 ${backend}`, ''].join('\n'),
    );
    proc = start('haproxy', ['-db', '-f', cfgFile]);
  } else if (name === 'bridgectl' || name.startsWith('bridgectl@')) {
    // bridgectl@BYTES: the same build with another splice pipe size (the levers, side by side).
    const pipe = name.startsWith('bridgectl@') ? { BRIDGECTL_SPLICE_PIPE_SIZE: name.slice('bridgectl@'.length) } : {};
    cookieFile = staticCookie;
    proc = start(process.execPath, [...nodeFlags, CLI, 'balancer', '--listen', listen, '--cookie', staticCookie, '--backend', `${backend}=${backendCookie}`, '--log-level', 'warn'], pipe);
  } else if (name === 'node-pipe') {
    proc = start(process.execPath, [...nodeFlags, join(here, 'pipe-proxy.js'), '--listen', listen, '--backend', backend]);
  } else throw new Error(`unknown proxy ${name}`);
  await untilListening(port, proc);
  return { name, pid: proc.pid!, port, cookieFile, proc };
}

function load(p: Proxy, mode: string, args: Record<string, number>): ChildProcess {
  const a = [join(here, 'load.js'), mode, '--port', String(p.port), '--cookie-file', p.cookieFile];
  for (const [k, v] of Object.entries(args)) a.push(`--${k}`, String(v));
  return start(process.execPath, a);
}

async function runLoad(p: Proxy, mode: string, args: Record<string, number>): Promise<Record<string, number>> {
  const c = load(p, mode, args);
  const r = await line(c);
  await new Promise((res) => (c.exitCode !== null ? res(null) : c.once('exit', res)));
  return r;
}

/** perf record on a pid until the returned function is called; resolves with the report's top lines. */
function perfRecord(pid: number, name: string): () => Promise<string> {
  const file = join(dir, `perf-${name}.data`);
  const rec = spawn('perf', ['record', '-F', '499', '-g', '-p', String(pid), '-o', file], { stdio: 'ignore' });
  return async () => {
    const exited = new Promise((r) => rec.once('exit', r));
    rec.kill('SIGINT');
    await exited;
    const report = async (sort: string, limit: string, lines: number): Promise<string> => {
      const rep = spawn('perf', ['report', '-i', file, '--stdio', '--no-children', '--sort', sort, '-g', 'none', '--percent-limit', limit], { stdio: ['ignore', 'pipe', 'ignore'] });
      let text = '';
      rep.stdout.on('data', (d: Buffer) => (text += d.toString()));
      await new Promise((r) => rep.once('exit', r));
      return text
        .split('\n')
        .filter((l) => l.trim() && !l.startsWith('#'))
        .slice(0, lines)
        .join('\n');
    };
    // Where it runs (kernel, the proxy's own code, libraries), then the top symbols.
    return `${await report('dso', '0.5', 8)}\n\n${await report('dso,sym', '1.5', 30)}`;
  };
}

interface Row {
  bulk?: { cpu: number; bytes: number; wallMs: number };
  rate?: { sessions: number; failed: number; ms: number; cpu: number; busy: number[] };
  idle?: { held: number; failed: number; rssBefore: number; rssAfter: number; heldHalf: number; rssHalf: number };
}
const results = new Map<string, Row>();
const row = (n: string): Row => {
  let r = results.get(n);
  if (!r) results.set(n, (r = {}));
  return r;
};
const profiles: string[] = [];

const backendProc = start(process.execPath, [join(here, 'fake-extorport.js'), '--listen', `${BACKEND.host}:${BACKEND.port}`, '--cookie-file', backendCookie]);
await untilListening(BACKEND.port, backendProc);
const log = (s: string): void => void process.stderr.write(`${s}\n`);
// Other work on the machine skews every number here: measure it before starting, and say so.
const bg0 = machineBusy();
await sleep(2000);
const background = machineBusy(bg0);
if (background > 0.1) log(`bench: WARNING: the machine is ${(background * 100).toFixed(0)}% busy before the bench starts; numbers will be noisy`);
log(`bench: ${cpus().length} cores (${cpus()[0]?.model ?? '?'}), ${quick ? 'quick' : 'full'} run, proxies: ${proxyNames.join(', ')}`);

if (only.has('bulk')) {
  for (let round = 0; round < cfg.rounds; round++) {
    for (const name of proxyNames) {
      const p = await startProxy(name, { perfMap: perf && round === 0 });
      await runLoad(p, 'bulk', { streams: 2, bytes: 32 << 20 }); // warm-up
      const stopPerf = perf && round === 0 ? perfRecord(p.pid, name) : null;
      const c0 = cpuSeconds(p.pid);
      const r = await runLoad(p, 'bulk', { streams: cfg.bulkStreams, bytes: cfg.bulkBytes });
      const cpu = cpuSeconds(p.pid) - c0;
      if (stopPerf) profiles.push(`### ${name}, bulk\n\n\`\`\`\n${await stopPerf()}\n\`\`\``);
      await stop(p.proc);
      const b = (row(name).bulk ??= { cpu: 0, bytes: 0, wallMs: 0 });
      b.cpu += cpu;
      b.bytes += r.bytes!;
      b.wallMs += r.ms!;
      log(`bulk ${name} round ${round + 1}: ${(r.bytes! / GiB).toFixed(2)} GiB in ${(r.ms! / 1000).toFixed(1)} s, ${cpu.toFixed(2)} CPU s`);
    }
  }
}

if (only.has('rate')) {
  for (let round = 0; round < cfg.rounds; round++) {
    for (const name of proxyNames) {
      const p = await startProxy(name, { perfMap: perf && round === 0 });
      await runLoad(p, 'rate', { concurrency: cfg.rateConcurrency, seconds: 1 }); // warm-up
      const stopPerf = perf && round === 0 ? perfRecord(p.pid, name) : null;
      const c0 = cpuSeconds(p.pid);
      const m0 = machineBusy();
      const r = await runLoad(p, 'rate', { concurrency: cfg.rateConcurrency, seconds: cfg.rateSeconds });
      const cpu = cpuSeconds(p.pid) - c0;
      const busy = machineBusy(m0);
      if (stopPerf) profiles.push(`### ${name}, session rate\n\n\`\`\`\n${await stopPerf()}\n\`\`\``);
      await stop(p.proc);
      const x = (row(name).rate ??= { sessions: 0, failed: 0, ms: 0, cpu: 0, busy: [] });
      x.sessions += r.sessions!;
      x.failed += r.failed!;
      x.ms += r.ms!;
      x.cpu += cpu;
      x.busy.push(busy);
      log(`rate ${name} round ${round + 1}: ${Math.round((r.sessions! * 1000) / r.ms!)}/s, ${r.failed} failed, ${cpu.toFixed(2)} CPU s, machine ${(busy * 100).toFixed(0)}% busy`);
    }
  }
}

/**
 * The proxy's RSS once it stops moving: sampled every 500 ms until two samples 1 s apart differ by
 * less than 256 kB (at least `minMs`, at most `minMs` + 15 s), so that a garbage collector shrinking or growing
 * its heap after the last burst is not counted as the sessions' cost (or gain).
 */
async function settledRss(pid: number, minMs = 1000): Promise<number> {
  const t0 = Date.now();
  const samples: number[] = [];
  for (;;) {
    samples.push(rssBytes(pid));
    const n = samples.length;
    if (Date.now() - t0 >= minMs && n >= 3 && Math.abs(samples[n - 1]! - samples[n - 3]!) < 256 * 1024) return samples[n - 1]!;
    if (Date.now() - t0 >= minMs + 15_000) return samples[n - 1]!;
    await sleep(500);
  }
}

if (only.has('idle')) {
  for (const name of proxyNames) {
    const p = await startProxy(name);
    // Warm-up: some sessions come and go first, so that start-up allocations are not counted.
    await runLoad(p, 'rate', { concurrency: 32, seconds: 1 });
    // V8's memory reducer shrinks an idle heap some 8 s after the last burst: let it, first.
    const rssBefore = await settledRss(p.pid, 12_000);
    const half = Math.floor(cfg.idleSessions / 2);
    const c = load(p, 'idle', { sessions: cfg.idleSessions, concurrency: 100, 'pause-at': half });
    const lines = lineReader(c);
    const h = await lines();
    const rssHalf = await settledRss(p.pid, 3000);
    c.stdin!.write('go\n');
    const r = await lines();
    const rssAfter = await settledRss(p.pid, 3000);
    c.stdin!.end();
    await new Promise((res) => (c.exitCode !== null ? res(null) : c.once('exit', res)));
    await stop(p.proc);
    row(name).idle = { held: r.held!, failed: r.failed!, rssBefore, rssAfter, heldHalf: h.held!, rssHalf };
    log(`idle ${name}: ${r.held} held (${r.failed} failed), RSS ${(rssBefore / 1e6).toFixed(1)} → ${(rssHalf / 1e6).toFixed(1)} → ${(rssAfter / 1e6).toFixed(1)} MB`);
  }
}

await stop(backendProc);

// ---- the table ----
const fmt = (v: number | undefined, d = 2): string => (v === undefined || !Number.isFinite(v) ? '—' : v.toFixed(d));
const bulkOf = (r?: Row): number | undefined => (r?.bulk ? r.bulk.cpu / (r.bulk.bytes / GiB) : undefined);
const rateOf = (r?: Row): number | undefined => (r?.rate ? (r.rate.sessions * 1000) / r.rate.ms : undefined);
const rateCpuOf = (r?: Row): number | undefined => (r?.rate ? (r.rate.cpu * 1e6) / r.rate.sessions : undefined);
const idleOf = (r?: Row): number | undefined => (r?.idle && r.idle.held ? (r.idle.rssAfter - r.idle.rssBefore) / r.idle.held / 1000 : undefined);
const idleMarginalOf = (r?: Row): number | undefined =>
  r?.idle && r.idle.held > r.idle.heldHalf ? (r.idle.rssAfter - r.idle.rssHalf) / (r.idle.held - r.idle.heldHalf) / 1000 : undefined;
const metrics: { name: string; get: (r?: Row) => number | undefined; d: number; target: string }[] = [
  { name: 'a. CPU s per GiB relayed (bulk)', get: bulkOf, d: 3, target: '≤ 1.00' },
  { name: 'b. sessions/s (auth end to end)', get: rateOf, d: 0, target: '≥ 1.00' },
  { name: '   proxy CPU µs per session', get: rateCpuOf, d: 0, target: '' },
  { name: 'c. RSS growth per idle session, kB', get: idleOf, d: 2, target: '≤ 1.00' },
  { name: '   same, second half only (marginal), kB', get: idleMarginalOf, d: 2, target: '' },
];
const names = [...results.keys()];
// Ratios against each HAProxy in the run (default, and with splice), for every other proxy.
const bases = ['haproxy', 'haproxy-splice'].filter((n) => results.has(n));
const pairs = bases.flatMap((b) => names.filter((n) => !bases.includes(n)).map((n) => ({ n, b })));
const lines: string[] = [];
lines.push(`| metric | ${names.join(' | ')} | ${pairs.map((p) => `${p.n} ÷ ${p.b}`).join(' | ')} | target |`);
lines.push(`|---|${names.map(() => '--:').join('|')}|${pairs.map(() => '--:').join('|')}|---|`);
for (const m of metrics) {
  const vals = names.map((n) => fmt(m.get(results.get(n)), m.d));
  const ratios = pairs.map((p) => {
    const v = m.get(results.get(p.n));
    const b = m.get(results.get(p.b));
    return v === undefined || b === undefined || !m.target ? '' : `${fmt(v / b)}×`;
  });
  lines.push(`| ${m.name} | ${vals.join(' | ')} | ${ratios.join(' | ')} | ${m.target} |`);
}
const detail: string[] = [];
for (const [n, r] of results) {
  const parts: string[] = [];
  if (r.bulk) parts.push(`bulk ${(r.bulk.bytes / GiB).toFixed(1)} GiB through in ${(r.bulk.wallMs / 1000).toFixed(1)} s (${((r.bulk.bytes / GiB) / (r.bulk.wallMs / 1000)).toFixed(2)} GiB/s), ${r.bulk.cpu.toFixed(2)} CPU s`);
  if (r.rate) parts.push(`rate ${r.rate.sessions} sessions in ${(r.rate.ms / 1000).toFixed(1)} s, ${r.rate.failed} failed, machine ${r.rate.busy.map((b) => `${(b * 100).toFixed(0)}%`).join('/')} busy`);
  if (r.idle) parts.push(`idle ${r.idle.held} held (${r.idle.failed} failed), RSS ${(r.idle.rssBefore / 1e6).toFixed(1)} → ${(r.idle.rssHalf / 1e6).toFixed(1)} (${r.idle.heldHalf}) → ${(r.idle.rssAfter / 1e6).toFixed(1)} MB`);
  detail.push(`- ${n}: ${parts.join('; ')}`);
}
const header = [
  `${new Date().toISOString()} · ${cpus().length} × ${cpus()[0]?.model ?? '?'} · ${(totalmem() / GiB).toFixed(1)} GiB RAM · Node ${process.version} · ${quick ? 'quick' : 'full'} run`,
  `machine busy before the run (other work): ${(background * 100).toFixed(0)}%`,
  `bulk: ${cfg.rounds} round(s) × ${cfg.bulkStreams} streams × ${cfg.bulkBytes / (1 << 20)} MiB (half upload, half download); rate: ${cfg.rounds} × ${cfg.rateSeconds} s at concurrency ${cfg.rateConcurrency}; idle: ${cfg.idleSessions} sessions`,
];
process.stdout.write(`${header.join('\n')}\n\n${lines.join('\n')}\n\n${detail.join('\n')}\n`);
if (profiles.length) process.stdout.write(`\n## perf profiles\n\n${profiles.join('\n\n')}\n`);

// `npm run soak -- --minutes N [--json]`: the whole path under session churn plus bulk traffic for N
// minutes, sampling the resident memory of every bridge process, and printing its growth in MB/min.
//
// Path: lab tor clients (obfs4proxy as their ClientTransportPlugin) → the bridge's obfs4proxy (run
// by `bridgectl run`) → the balancer (inside the supervisor process) → the tor twins → the private
// lab network → its HTTP server. Everything runs in the private lab inside scripts/netns.sh (a
// network namespace with loopback only): no tor here can reach the public Tor network.
//
// Load, all bounded in count and time and stopping by themselves at the deadline:
//   - churn: each client fetches a small file again and again, each time with fresh SOCKS
//     credentials (IsolateSOCKSAuth: a new circuit and stream through the bridge every time);
//   - client restarts: every --restart-seconds one client is stopped and a fresh one (new data
//     directory, so a new obfs4 connection and a new balancer session) started in its place;
//   - sessions: --sessions-per-second new obfs4 sessions from a client obfs4proxy (no tor client):
//     obfs4 handshake, balancer session, TLS handshake with a twin, its VERSIONS cell, close;
//   - bulk: --bulk-streams downloads of --bulk-mib MiB each, --bulk-pause-seconds apart.
// Sampling: every --sample-seconds the VmRSS of the supervisor (the balancer runs inside it), each
// twin and the transport, from /proc. Growth is the slope of a least-squares line through the
// samples of the second half of the run (the first half is warm-up), in MB/min (1 MB = 2^20 bytes).
import { parseArgs } from 'node:util';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import tls from 'node:tls';
import { readFileSync, readdirSync } from 'node:fs';
import { loadavg, tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import pino from 'pino';
import { SocksClient } from 'socks';
import { stringify } from 'yaml';
import { startLab, startClient, freePort, type Lab, type LabClient } from '../src/lab/index.js';
import type { BridgeStatus } from '../src/supervisor/index.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const OBFS4 = '/usr/bin/obfs4proxy';
const TARGET_MB_PER_MIN = 0.5;

const USAGE = `usage: npm run soak -- [--minutes N] [--json] [--instances N] [--clients N] [--sample-seconds S]
                        [--restart-seconds S] [--bulk-mib N] [--bulk-streams N] [--bulk-pause-seconds S]
                        [--small-kib N] [--sessions-per-second N]
  --minutes N          how long the load runs (default 30)
  --json               print the result as JSON instead of a table
  --instances N        tor twins behind the balancer (default 2)
  --clients N          lab tor clients using obfs4 (default 3)
  --sample-seconds S   RSS sampling interval (default 10)
  --restart-seconds S  one client replaced by a fresh one this often (default 60)
  --bulk-mib N         size of each bulk download (default 8)
  --bulk-streams N     bulk downloads at once (default 1)
  --bulk-pause-seconds S  pause between one stream's bulk downloads (default 2)
  --small-kib N        size of each churn fetch (default 32)
  --sessions-per-second N  new obfs4 sessions (TLS + VERSIONS with a twin, then closed) a second (default 2)`;

interface Options {
  minutes: number;
  json: boolean;
  instances: number;
  clients: number;
  sampleSeconds: number;
  restartSeconds: number;
  bulkMiB: number;
  bulkStreams: number;
  smallKiB: number;
  bulkPauseSeconds: number;
  sessionsPerSecond: number;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      minutes: { type: 'string' },
      json: { type: 'boolean' },
      instances: { type: 'string' },
      clients: { type: 'string' },
      'sample-seconds': { type: 'string' },
      'restart-seconds': { type: 'string' },
      'bulk-mib': { type: 'string' },
      'bulk-streams': { type: 'string' },
      'small-kib': { type: 'string' },
      'bulk-pause-seconds': { type: 'string' },
      'sessions-per-second': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const num = (v: string | undefined, d: number, name: string, min: number): number => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isFinite(n) || n < min) throw new Error(`--${name}: expected a number >= ${min}, got ${v}`);
    return n;
  };
  return {
    minutes: num(values.minutes, 30, 'minutes', 0.5),
    json: values.json ?? false,
    instances: Math.floor(num(values.instances, 2, 'instances', 1)),
    clients: Math.floor(num(values.clients, 3, 'clients', 1)),
    sampleSeconds: num(values['sample-seconds'], 10, 'sample-seconds', 1),
    restartSeconds: num(values['restart-seconds'], 60, 'restart-seconds', 10),
    bulkMiB: num(values['bulk-mib'], 8, 'bulk-mib', 0),
    bulkStreams: Math.floor(num(values['bulk-streams'], 1, 'bulk-streams', 0)),
    smallKiB: num(values['small-kib'], 32, 'small-kib', 1),
    bulkPauseSeconds: num(values['bulk-pause-seconds'], 2, 'bulk-pause-seconds', 0),
    sessionsPerSecond: num(values['sessions-per-second'], 2, 'sessions-per-second', 0),
  };
}

const logger = pino({ level: process.env.SOAK_LOG_LEVEL ?? 'silent' });
const say = (s: string): void => void process.stderr.write(`soak: ${s}\n`);

function cli(args: string[]) {
  return execa(process.execPath, [CLI, ...args], { reject: false, all: true, timeout: 60_000 });
}

/** GET through a SOCKS5 proxy with credentials `isolation` (a new circuit per new credential). Resolves to the body length. */
async function socksGet(socksPort: number, url: string, isolation: string, timeoutMs: number): Promise<number> {
  const u = new URL(url);
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: socksPort, type: 5, userId: isolation, password: 'soak' },
    command: 'connect',
    destination: { host: u.hostname, port: Number(u.port) },
    timeout: timeoutMs,
  });
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let body = 0;
    let headerDone = false;
    let status = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`GET ${u.pathname} timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('data', (d: Buffer) => {
      if (headerDone) {
        body += d.length;
        return;
      }
      head = Buffer.concat([head, d]);
      const sep = head.indexOf('\r\n\r\n');
      if (sep < 0) return;
      headerDone = true;
      status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      body = head.length - sep - 4;
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (!/^HTTP\/1\.[01] 200 /.test(status)) return reject(new Error(`GET ${u.pathname}: ${status || 'no HTTP response'}`));
      resolve(body);
    });
    socket.write(`GET ${u.pathname} HTTP/1.0\r\nHost: ${u.host}\r\n\r\n`);
  });
}

/** obfs4proxy as a client transport (pt-spec managed mode): a SOCKS5 port that opens obfs4 sessions. */
async function startObfs4Client(stateDir: string): Promise<{ socksPort: number; stop(): Promise<void> }> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const child = execa(OBFS4, [], {
    env: { TOR_PT_MANAGED_TRANSPORT_VER: '1', TOR_PT_STATE_LOCATION: stateDir, TOR_PT_CLIENT_TRANSPORTS: 'obfs4', TOR_PT_EXIT_ON_STDIN_CLOSE: '1' },
    stdin: 'pipe',
    stdout: 'pipe',
    stderr: 'ignore',
    reject: false,
    buffer: false,
  });
  const stop = async (): Promise<void> => {
    child.stdin?.end();
    child.kill('SIGTERM');
    await child;
  };
  let out = '';
  const port = await new Promise<number>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`obfs4proxy (client) said no CMETHOD in 10 s: ${out}`)), 10_000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^CMETHOD obfs4 socks5 127\.0\.0\.1:(\d+)$/m.exec(out);
      if (m && out.includes('CMETHODS DONE')) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
  }).catch(async (e: Error) => {
    await stop();
    throw e;
  });
  return { socksPort: port, stop };
}

/**
 * One session through the whole bridge path without a tor client: obfs4 handshake (via the client
 * obfs4proxy), the balancer's ExtORPort session, a TLS handshake with a twin and its VERSIONS cell.
 */
async function obfs4Session(socksPort: number, bridgeLine: string, timeoutMs: number): Promise<void> {
  const [, addr, , ...args] = bridgeLine.split(' ');
  const [host, port] = [addr!.slice(0, addr!.lastIndexOf(':')), Number(addr!.slice(addr!.lastIndexOf(':') + 1))];
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: socksPort, type: 5, userId: args.join(';'), password: '\0' },
    command: 'connect',
    destination: { host, port },
    timeout: timeoutMs,
  });
  await new Promise<void>((resolve, reject) => {
    const c = tls.connect({ socket, rejectUnauthorized: false });
    const timer = setTimeout(() => done(new Error(`no VERSIONS from the twin in ${timeoutMs} ms`)), timeoutMs);
    let buf = Buffer.alloc(0);
    const done = (e?: Error): void => {
      clearTimeout(timer);
      c.destroy();
      socket.destroy();
      if (e) reject(e);
      else resolve();
    };
    c.on('error', (e) => done(e));
    c.on('close', () => done(new Error('closed before VERSIONS')));
    c.once('secureConnect', () => c.write(Buffer.from([0, 0, 7, 0, 4, 0, 4, 0, 5])));
    c.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 5 && buf[2] === 7 && buf.length >= 5 + buf.readUInt16BE(3)) done();
      else if (buf.length >= 5 && buf[2] !== 7) done(new Error(`the twin's first cell is ${buf[2]}, not VERSIONS`));
    });
  });
}

function rssMiB(pid: number): number | null {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch {
    return null;
  }
}

function fdCount(pid: number): number | null {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return null;
  }
}

/** Least-squares slope of y over x. */
export function slope(points: Array<[number, number]>): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

interface Sample {
  /** Minutes since the load started. */
  t: number;
  rss: Record<string, number>;
  pids: Record<string, number>;
  supervisorFds: number | null;
  load1: number;
}

interface ProcessResult {
  process: string;
  pid: number;
  pidChanges: number;
  startMiB: number;
  endMiB: number;
  maxMiB: number;
  growthMiBPerMin: number;
  target: number | null;
  pass: boolean | null;
}

async function main(): Promise<number> {
  const o = options(process.argv.slice(2));
  const durationMs = o.minutes * 60_000;
  // A hard stop whatever happens: the run, plus setup and teardown.
  const watchdog = setTimeout(() => {
    say('watchdog: the run took far too long; exiting');
    process.exit(3);
  }, durationMs + 15 * 60_000);
  watchdog.unref();

  const dir = await mkdtemp(join(tmpdir(), 'bridgectl-soak-'));
  let lab: Lab | null = null;
  let sup: ResultPromise<{ reject: false; all: true; buffer: false }> | null = null;
  const clients: Array<LabClient | null> = [];
  let supOut = '';
  let obfs4Client: { stop(): Promise<void> } | null = null;
  let cleaning: Promise<void> | null = null;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      await Promise.all(clients.map((c) => c?.stop().catch(() => undefined)));
      await obfs4Client?.stop().catch(() => undefined);
      if (sup) {
        sup.kill('SIGTERM');
        const killer = setTimeout(() => sup?.kill('SIGKILL'), 30_000);
        await sup;
        clearTimeout(killer);
      }
      await lab?.stop().catch(() => undefined);
      await rm(dir, { recursive: true, force: true }).catch(() => undefined);
    })());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      say(`${sig}: stopping everything`);
      void cleanup().finally(() => process.exit(130));
    });
  }
  try {
    say(`starting the lab network in ${dir}`);
    lab = await startLab({ dir: join(dir, 'net'), logger, fileSize: o.smallKiB * 1024 });
    const dataDir = join(dir, 'bridge');
    const configFile = join(dir, 'bridgectl.yaml');
    await writeFile(
      configFile,
      stringify({
        nickname: 'soak',
        instances: o.instances,
        dataDir,
        contactInfo: 'lab@localhost',
        extOrPort: 10200,
        torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
        restart: { initialDelayMs: 300 },
        balancer: { listen: `127.0.0.1:${await freePort()}` },
        transport: { name: 'obfs4', command: [OBFS4], listen: `127.0.0.1:${await freePort()}` },
      }),
    );
    const init = await cli(['init', '--config', configFile]);
    if (init.exitCode !== 0) throw new Error(`bridgectl init: ${init.all}`);
    sup = execa(process.execPath, [CLI, 'run', '--config', configFile], { reject: false, all: true, buffer: false });
    sup.all?.on('data', (d: Buffer) => {
      supOut = (supOut + d.toString()).slice(-20_000);
    });
    const status = async (): Promise<BridgeStatus | null> => {
      const r = await cli(['status', '--json', '--config', configFile]);
      return r.exitCode === 0 ? (JSON.parse(r.stdout) as BridgeStatus) : null;
    };
    const deadline0 = Date.now() + 180_000;
    let st: BridgeStatus | null = null;
    while (!(st?.ready && st.instances.every((i) => i.state === 'running') && st.transport?.state === 'running')) {
      if (Date.now() > deadline0) throw new Error(`the bridge was not ready in 180 s:\n${supOut}`);
      if (sup.exitCode !== null) throw new Error(`bridgectl run exited:\n${supOut}`);
      await sleep(1000);
      st = await status().catch(() => null);
    }
    const bl = await cli(['bridgeline', '--config', configFile]);
    if (bl.exitCode !== 0) throw new Error(`bridgectl bridgeline: ${bl.all}`);
    const line = bl.stdout.trim();
    say(`bridge ready (${o.instances} twins): ${line.slice(0, 60)}...`);

    let clientSeq = 0;
    const newClient = async (): Promise<LabClient> => {
      const k = clientSeq++;
      return startClient({
        name: `soak-${k}`,
        dir: join(dir, `client-${k}`),
        labTorrc: lab!.torrcLines,
        bridges: [line],
        transportPlugins: [`obfs4 exec ${OBFS4}`],
        logger,
        bootstrapTimeoutMs: 120_000,
      });
    };
    for (const c of await Promise.all(Array.from({ length: o.clients }, () => newClient()))) clients.push(c);
    say(`${o.clients} obfs4 clients bootstrapped through the bridge; load for ${o.minutes} min`);

    const t0 = Date.now();
    const end = t0 + durationMs;
    const counters = { smallOk: 0, smallFailed: 0, bulkOk: 0, bulkFailed: 0, bulkBytes: 0, restarts: 0, restartFailures: 0, sessionsOk: 0, sessionsFailed: 0 };
    const errors = new Map<string, number>();
    const noteError = (e: unknown): void => {
      const m = (e as Error).message.replace(/\d+/g, 'N').slice(0, 120);
      errors.set(m, (errors.get(m) ?? 0) + 1);
    };

    // Churn: each slot fetches over a new circuit again and again (the client in a slot changes on restarts).
    let isolation = 0;
    const churn = async (slot: number): Promise<void> => {
      while (Date.now() < end) {
        const c = clients[slot];
        if (!c) {
          await sleep(500);
          continue;
        }
        try {
          const n = await socksGet(c.socksPort, lab!.http.url, `c${isolation++}`, 60_000);
          if (n !== lab!.http.file.length) throw new Error(`short body ${n}`);
          counters.smallOk++;
        } catch (e) {
          if (clients[slot] === c) {
            counters.smallFailed++;
            noteError(e);
          }
          await sleep(1000);
        }
        await sleep(200);
      }
    };
    const bulk = async (k: number): Promise<void> => {
      const size = o.bulkMiB * 1024 * 1024;
      while (Date.now() < end) {
        const slot = (k + counters.bulkOk + counters.bulkFailed) % clients.length;
        const c = clients[slot];
        if (!c) {
          await sleep(500);
          continue;
        }
        try {
          const n = await socksGet(c.socksPort, `http://127.0.0.1:${lab!.http.port}/bytes/${size}`, `b${isolation++}`, 180_000);
          if (n !== size) throw new Error(`short bulk body ${n}`);
          counters.bulkOk++;
          counters.bulkBytes += n;
          await sleep(o.bulkPauseSeconds * 1000);
        } catch (e) {
          if (clients[slot] === c) {
            counters.bulkFailed++;
            noteError(e);
          }
          await sleep(1000);
        }
      }
    };
    // Session churn without tor clients: new obfs4 sessions at a steady rate, at most 20 at once.
    const sessions = async (): Promise<void> => {
      if (o.sessionsPerSecond <= 0) return;
      const pt = await startObfs4Client(join(dir, 'obfs4-client'));
      obfs4Client = pt;
      const inFlight = new Set<Promise<void>>();
      const every = 1000 / o.sessionsPerSecond;
      let due = Date.now();
      while (Date.now() < end) {
        if (inFlight.size < 20) {
          const p = obfs4Session(pt.socksPort, line, 30_000).then(
            () => void counters.sessionsOk++,
            (e: unknown) => {
              counters.sessionsFailed++;
              noteError(e);
            },
          );
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
        }
        due += every;
        await sleep(Math.max(0, due - Date.now()));
      }
      await Promise.all(inFlight);
    };
    const restarter = async (): Promise<void> => {
      let slot = 0;
      while (Date.now() + o.restartSeconds * 1000 < end) {
        await sleep(o.restartSeconds * 1000);
        const old = clients[slot];
        clients[slot] = null;
        await old?.stop();
        try {
          clients[slot] = await newClient();
          counters.restarts++;
        } catch (e) {
          counters.restartFailures++;
          noteError(e);
        }
        slot = (slot + 1) % clients.length;
      }
    };

    const samples: Sample[] = [];
    const sampler = async (): Promise<void> => {
      while (Date.now() < end + 1) {
        const s = await status().catch(() => null);
        const pids: Record<string, number> = { supervisor: sup!.pid! };
        for (const i of s?.instances ?? []) if (i.pid) pids[i.name] = i.pid;
        if (s?.transport?.pid) pids.transport = s.transport.pid;
        const rss: Record<string, number> = {};
        for (const [k, pid] of Object.entries(pids)) {
          const v = rssMiB(pid);
          if (v !== null) rss[k] = v;
        }
        samples.push({ t: (Date.now() - t0) / 60_000, rss, pids, supervisorFds: fdCount(sup!.pid!), load1: loadavg()[0]! });
        const left = end - Date.now();
        if (left <= 0) break;
        await sleep(Math.min(o.sampleSeconds * 1000, left));
      }
    };

    let lastReport = Date.now();
    const progress = setInterval(() => {
      if (Date.now() - lastReport < 60_000) return;
      lastReport = Date.now();
      const last = samples.at(-1);
      say(
        `${((Date.now() - t0) / 60_000).toFixed(1)} min: small ${counters.smallOk}/${counters.smallFailed} bulk ${counters.bulkOk}/${counters.bulkFailed} ` +
          `sessions ${counters.sessionsOk}/${counters.sessionsFailed} restarts ${counters.restarts}` +
          (last ? ` rss ${Object.entries(last.rss).map(([k, v]) => `${k}=${v.toFixed(1)}`).join(' ')}` : ''),
      );
    }, 5000);
    await Promise.all([
      sampler(),
      restarter(),
      sessions(),
      ...clients.map((_, i) => churn(i)),
      ...Array.from({ length: o.bulkStreams }, (_, k) => bulk(k)),
    ]);
    clearInterval(progress);
    const finalStatus = await status().catch(() => null);

    // Growth over the second half.
    const half = o.minutes / 2;
    const names = [...new Set(samples.flatMap((s) => Object.keys(s.rss)))];
    const results: ProcessResult[] = names.map((name) => {
      const all = samples.filter((s) => s.rss[name] !== undefined);
      const lastPid = all.at(-1)!.pids[name]!;
      const pidChanges = new Set(all.map((s) => s.pids[name])).size - 1;
      const second = all.filter((s) => s.t >= half && s.pids[name] === lastPid);
      const target = name === 'supervisor' ? TARGET_MB_PER_MIN : null;
      const g = slope(second.map((s) => [s.t, s.rss[name]!]));
      return {
        process: name === 'supervisor' ? 'supervisor+balancer' : name,
        pid: lastPid,
        pidChanges,
        startMiB: all[0]!.rss[name]!,
        endMiB: all.at(-1)!.rss[name]!,
        maxMiB: Math.max(...all.map((s) => s.rss[name]!)),
        growthMiBPerMin: g,
        target,
        pass: target === null ? null : Number.isFinite(g) && g < target,
      };
    });
    const fds = samples.map((s) => s.supervisorFds).filter((x): x is number => x !== null);
    const loads = samples.map((s) => s.load1);
    const report = {
      minutes: o.minutes,
      startedAt: new Date(t0).toISOString(),
      cpus: cpus().length,
      load1: { mean: loads.reduce((a, b) => a + b, 0) / Math.max(1, loads.length), max: Math.max(...loads) },
      options: o,
      samples: samples.length,
      traffic: { ...counters, bulkMiB: counters.bulkBytes / 2 ** 20, errors: Object.fromEntries(errors) },
      balancer: finalStatus?.balancer?.sessions ?? null,
      supervisorFds: fds.length ? { start: fds[0], end: fds.at(-1), max: Math.max(...fds) } : null,
      processes: results,
      pass: results.every((r) => r.pass !== false),
    };

    if (o.json) process.stdout.write(`${JSON.stringify({ ...report, series: samples }, null, 2)}\n`);
    else {
      const out: string[] = [];
      const f = (n: number, d = 1): string => (Number.isFinite(n) ? n.toFixed(d) : '-');
      out.push(`soak: ${o.minutes} min, ${o.instances} twins, ${o.clients} obfs4 clients, ${samples.length} samples every ${o.sampleSeconds} s; ` +
        `load1 mean ${f(report.load1.mean, 2)} max ${f(report.load1.max, 2)} on ${report.cpus} CPUs`);
      out.push(`traffic: ${counters.smallOk} small fetches (${counters.smallFailed} failed), ${counters.bulkOk} bulk downloads of ${o.bulkMiB} MiB ` +
        `(${counters.bulkFailed} failed, ${f(report.traffic.bulkMiB, 0)} MiB), ${counters.restarts} client restarts (${counters.restartFailures} failed), ` +
        `${counters.sessionsOk} obfs4 sessions to a twin's VERSIONS (${counters.sessionsFailed} failed)`);
      if (report.balancer) {
        const b = report.balancer;
        out.push(`balancer sessions: accepted ${b.accepted}, established ${b.established}, open at the end ${b.current}, ` +
          `auth failures ${b.authFailures}, protocol errors ${b.protocolErrors}, no twin ${b.noTwin}, replays ${b.replays}`);
      }
      if (report.supervisorFds) out.push(`supervisor fds: start ${report.supervisorFds.start}, end ${report.supervisorFds.end}, max ${report.supervisorFds.max}`);
      for (const [m, n] of errors) out.push(`  error x${n}: ${m}`);
      out.push('');
      out.push('| process | RSS start MiB | RSS end MiB | RSS max MiB | growth MiB/min (2nd half) | target | |');
      out.push('|---|---:|---:|---:|---:|---:|---|');
      for (const r of results) {
        out.push(`| ${r.process}${r.pidChanges ? ` (restarted ${r.pidChanges}x)` : ''} | ${f(r.startMiB)} | ${f(r.endMiB)} | ${f(r.maxMiB)} | ${f(r.growthMiBPerMin, 3)} | ` +
          `${r.target === null ? '-' : `< ${r.target}`} | ${r.pass === null ? '' : r.pass ? 'pass' : 'FAIL'} |`);
      }
      process.stdout.write(`${out.join('\n')}\n`);
    }
    return report.pass ? 0 : 1;
  } finally {
    await cleanup();
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    say(`failed: ${e.stack ?? e.message}`);
    process.exit(2);
  },
);

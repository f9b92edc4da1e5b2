// The load generator, a process of its own. Speaks the transport's side through the proxy under test.
//   bulk --streams S --bytes B      S streams at once, alternately upload (sink_B) and download (source_B)
//   rate --concurrency C --seconds T  sessions (connect, SAFE_COOKIE, commands, OKAY, close) back to back
//   idle --sessions N --concurrency C [--pause-at K]
//                                   open N sessions and hold them until stdin closes; with --pause-at,
//                                   report once K are held and wait for a line on stdin before going on
// Common: --port P --cookie-file FILE. Prints one JSON line with the result (idle: when all are held).
import { readCookieFile } from '../src/extorport/index.js';
import { flags, need, openSession } from './common.js';

const [mode, ...rest] = process.argv.slice(2);
const f = flags(rest);
const port = Number(need(f, 'port'));
const cookie = await readCookieFile(need(f, 'cookie-file'));
const host = '127.0.0.1';
const out = (o: unknown): void => void process.stdout.write(`${JSON.stringify(o)}\n`);
// Client source addresses spread over 127.0.1.0/24 so that TIME_WAIT never runs out of ports.
let nextAddr = 0;
const localAddress = (): string => `127.0.1.${1 + (nextAddr++ % 254)}`;
const CHUNK = Buffer.alloc(1 << 20, 0xa5);

async function bulk(streams: number, bytes: number): Promise<void> {
  const t0 = process.hrtime.bigint();
  const one = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const up = i % 2 === 0;
      openSession({ host, port, cookie, transport: `${up ? 'sink' : 'source'}_${bytes}` }, (err, s, first) => {
        if (err) return reject(err);
        s.on('error', reject);
        if (up) {
          let sent = 0;
          const pump = (): void => {
            while (sent < bytes) {
              const k = Math.min(CHUNK.length, bytes - sent);
              sent += k;
              if (!s.write(k === CHUNK.length ? CHUNK : CHUNK.subarray(0, k))) return void s.once('drain', pump);
            }
          };
          s.once('data', () => {
            s.destroy();
            resolve();
          });
          pump();
        } else {
          let got = first.length;
          const check = (): void => {
            if (got < bytes) return;
            s.destroy();
            resolve();
          };
          s.on('data', (d: Buffer) => {
            got += d.length;
            check();
          });
          check();
        }
      });
    });
  await Promise.all(Array.from({ length: streams }, (_, i) => one(i)));
  out({ bytes: streams * bytes, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
}

async function rate(concurrency: number, seconds: number): Promise<void> {
  let ok = 0;
  let failed = 0;
  const t0 = Date.now();
  const end = t0 + seconds * 1000;
  const loop = (): Promise<void> =>
    new Promise((resolve) => {
      const next = (): void => {
        if (Date.now() >= end) return resolve();
        openSession({ host, port, cookie, transport: 'okay', localAddress: localAddress() }, (err, s) => {
          if (err) failed++;
          else ok++;
          s.destroy();
          // A failure (say, a full backlog) should not spin: back off a little.
          if (err) setTimeout(next, 10);
          else next();
        });
      };
      next();
    });
  await Promise.all(Array.from({ length: concurrency }, loop));
  out({ sessions: ok, failed, ms: Date.now() - t0 });
}

async function idle(n: number, concurrency: number, pauseAt: number): Promise<void> {
  const held: import('node:net').Socket[] = [];
  let failed = 0;
  let started = 0;
  const lines: string[] = [];
  let wake: (() => void) | null = null;
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (d: string) => {
    lines.push(d);
    wake?.();
  });
  if (pauseAt > 0 && pauseAt < n) {
    await new Promise<void>((resolve) => run(pauseAt, resolve));
    out({ held: held.length, failed });
    if (!lines.length) await new Promise<void>((r) => (wake = r));
  }
  await new Promise<void>((resolve) => run(n, resolve));
  out({ held: held.length, failed });
  await new Promise((r) => process.stdin.once('end', r));
  for (const s of held) s.destroy();

  function run(upTo: number, done: () => void): void {
    let running = 0;
    const loop = (): Promise<void> =>
      new Promise((resolve) => {
        const next = (): void => {
          if (started >= upTo) return resolve();
        started++;
        openSession({ host, port, cookie, transport: 'idle', localAddress: localAddress() }, (err, s) => {
          if (err) {
            failed++;
            s.destroy();
          } else {
            s.on('error', () => {});
            held.push(s);
          }
          next();
        });
      };
      next();
    });
    running = concurrency;
    for (let i = 0; i < concurrency; i++) void loop().then(() => --running === 0 && done());
  }
}

if (mode === 'bulk') await bulk(Number(need(f, 'streams')), Number(need(f, 'bytes')));
else if (mode === 'rate') await rate(Number(need(f, 'concurrency')), Number(need(f, 'seconds')));
else if (mode === 'idle') await idle(Number(need(f, 'sessions')), Number(need(f, 'concurrency')), Number(f['pause-at'] ?? 0));
else throw new Error(`unknown mode ${mode}`);
process.exit(0);

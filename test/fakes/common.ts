// Shared by the fake transport servers: pt-spec's environment, Go-style stderr logging, stdin.
// Each fake reproduces what the real server does as listed in issue 13 ("Facts about the real
// servers"); none relays traffic (no test needs it: the real-path tests use obfs4proxy).
import net from 'node:net';
import { parsePtServerEnv, type PtServerEnv } from '../../src/pt/index.js';

export const say = (line: string): void => void process.stdout.write(`${line}\n`);

/** Go's `log` format: `2006/01/02 15:04:05 message`, on stderr. */
export function goLog(msg: string): void {
  const d = new Date();
  const p = (n: number): string => String(n).padStart(2, '0');
  process.stderr.write(`${d.getFullYear()}/${p(d.getMonth() + 1)}/${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())} ${msg}\n`);
}

export function flag(name: string): boolean {
  return process.argv.slice(2).some((a) => a === `-${name}` || a === `--${name}`);
}

export function flagValue(name: string): string | undefined {
  const a = process.argv.slice(2);
  const i = a.findIndex((x) => x === `-${name}` || x === `--${name}`);
  return i >= 0 ? a[i + 1] : undefined;
}

/** The environment as goptlib's ServerSetup reads it; ENV-ERROR and exit 1 when it is incomplete. */
export function serverSetup(name: string): PtServerEnv {
  const r = parsePtServerEnv(process.env, name);
  if ('lines' in r) {
    r.lines.forEach(say);
    process.exit(r.code);
  }
  say('VERSION 1');
  return r.ok;
}

/** TOR_PT_SERVER_TRANSPORT_OPTIONS for `name` (unescaped enough for the fakes' values). */
export function options(name: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of (process.env.TOR_PT_SERVER_TRANSPORT_OPTIONS ?? '').split(';').filter(Boolean)) {
    const m = /^([^:]+):([^=]+)=(.*)$/.exec(kv.replace(/\\(.)/g, '$1'));
    if (m && m[1] === name) out[m[2]!] = m[3]!;
  }
  return out;
}

export function listen(host: string, port: number, onConnection?: (c: net.Socket) => void): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const s = net.createServer((c) => {
      onConnection?.(c);
      c.destroy();
    });
    s.once('error', reject);
    s.listen(port, host, () => resolve(s));
  });
}

/** Runs `onExit` when tor closes stdin (TOR_PT_EXIT_ON_STDIN_CLOSE=1) or on SIGTERM/SIGINT. */
export function untilStopped(env: PtServerEnv, onExit: () => void): void {
  if (env.exitOnStdinClose) {
    process.stdin.on('end', onExit);
    process.stdin.resume();
  }
  process.on('SIGTERM', onExit);
  process.on('SIGINT', onExit);
}

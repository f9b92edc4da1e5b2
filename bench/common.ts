// Shared by the bench's processes: argument parsing, the transport side of a session, /proc readers.
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { ExtOrClientHandshake, transportCommands } from '../src/extorport/index.js';

/** `--key value` pairs (and bare `--flag`s, as 'true') from argv. */
export function flags(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) out[a.slice(2)] = 'true';
    else {
      out[a.slice(2)] = next;
      i++;
    }
  }
  return out;
}

export function need(f: Record<string, string>, key: string): string {
  const v = f[key];
  if (v === undefined) throw new Error(`--${key} is required`);
  return v;
}

/**
 * One transport session: connect, SAFE_COOKIE with `cookie`, USERADDR + TRANSPORT `transport` + DONE,
 * wait for OKAY. Calls back with the socket (its 'data' listener removed) and any bytes after OKAY.
 */
export function openSession(
  o: { host: string; port: number; cookie: Buffer; transport: string; localAddress?: string },
  done: (err: Error | null, s: net.Socket, rest: Buffer) => void,
): void {
  const s = net.connect({ host: o.host, port: o.port, localAddress: o.localAddress, noDelay: true });
  const hs = new ExtOrClientHandshake(o.cookie, { commands: transportCommands({ userAddr: '192.0.2.7:4242', transport: o.transport }) });
  let settled = false;
  const finish = (err: Error | null, rest: Buffer): void => {
    if (settled) return;
    settled = true;
    s.off('data', onData);
    done(err, s, rest);
  };
  const onData = (d: Buffer): void => {
    const st = hs.feed(d);
    if (st.send.length) s.write(st.send);
    if (st.status === 'failed') finish(new Error(st.error ?? 'handshake failed'), Buffer.alloc(0));
    else if (st.status === 'done') {
      if (hs.reply?.type !== 0x1000) finish(new Error('no OKAY'), Buffer.alloc(0));
      else finish(null, hs.rest);
    }
  };
  s.on('data', onData);
  s.on('error', (e) => finish(e, Buffer.alloc(0)));
  s.on('close', () => finish(new Error('closed during the handshake'), Buffer.alloc(0)));
}

/** Clock ticks per second of /proc/PID/stat's utime and stime (USER_HZ, 100 on Linux). */
const USER_HZ = 100;

/** CPU seconds (user + system, all threads, including exited ones) the process has used. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces), counted from field 3 (state).
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / USER_HZ;
}

/** Resident set size in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Busy and total jiffies of the whole machine (/proc/stat); with `since`, the busy fraction since then. */
export function machineBusy(): { busy: number; total: number };
export function machineBusy(since: { busy: number; total: number }): number;
export function machineBusy(since?: { busy: number; total: number }): number | { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  const idle = (f[3] ?? 0) + (f[4] ?? 0);
  const now = { busy: total - idle, total };
  if (!since) return now;
  return (now.busy - since.busy) / Math.max(1, now.total - since.total);
}

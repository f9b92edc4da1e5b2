// CPU share of processes, from /proc/PID/stat (utime + stime, in clock ticks).
import { readFileSync } from 'node:fs';

/** Clock ticks per second: 100 on every Linux architecture Node runs on. */
const CLK_TCK = 100;

/** CPU seconds used so far by `pid` (user + system), or null when it is gone. */
export function cpuSeconds(pid: number, read: (p: string) => string = (p) => readFileSync(p, 'utf8')): number | null {
  try {
    const stat = read(`/proc/${pid}/stat`);
    // The command name (field 2) may hold spaces and parentheses: split after its closing ')'.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    return Number.isFinite(utime + stime) ? (utime + stime) / CLK_TCK : null;
  } catch {
    return null;
  }
}

/**
 * The share of one core each process used recently (1.0 = one core busy all the time), over a
 * window of at least `minWindowMs` that moves on every `stepMs`; before the first window, since
 * `startedAt`. Several readers (status, metrics, systemd STATUS=) share one meter without
 * shrinking each other's window.
 */
export class CpuMeter {
  private refs = new Map<number, { cpu: number; at: number; share: number | null }>();

  constructor(
    private readonly read?: (p: string) => string,
    private readonly minWindowMs = 1_000,
    private readonly stepMs = 5_000,
  ) {}

  share(pid: number | null, startedAt: number | null, now = Date.now()): number | null {
    if (!pid) return null;
    const cpu = cpuSeconds(pid, this.read);
    if (cpu === null) {
      this.refs.delete(pid);
      return null;
    }
    let ref = this.refs.get(pid);
    if (!ref) {
      ref = { cpu: 0, at: startedAt ?? now, share: null };
      this.refs.set(pid, ref);
    }
    if (now - ref.at >= this.minWindowMs) ref.share = Math.max(0, (cpu - ref.cpu) / ((now - ref.at) / 1000));
    if (now - ref.at >= this.stepMs) {
      ref.cpu = cpu;
      ref.at = now;
    }
    return ref.share;
  }
}

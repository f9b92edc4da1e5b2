// Limits the host and the processes run into, read from /proc at each scrape: descriptors per
// process, the conntrack table, the ephemeral port range. Absent files (no conntrack module, no such
// process) give no value rather than a wrong one.
import { readFile, readdir } from 'node:fs/promises';

async function readNumber(path: string): Promise<number | null> {
  try {
    const n = Number((await readFile(path, 'utf8')).trim());
    return Number.isFinite(n) ? n : null;
  } catch {
    return null;
  }
}

/** Open descriptors of a process and its soft limit ("Max open files"). */
export async function fdUsage(pid: number): Promise<{ open: number; max: number } | null> {
  try {
    const [fds, limits] = await Promise.all([readdir(`/proc/${pid}/fd`), readFile(`/proc/${pid}/limits`, 'utf8')]);
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
    if (!m) return null;
    return { open: fds.length, max: m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]) };
  } catch {
    return null;
  }
}

/** Entries in the conntrack table (this network namespace) and its size, if conntrack is loaded. */
export async function conntrack(): Promise<{ entries: number; max: number } | null> {
  const [entries, max] = await Promise.all([
    readNumber('/proc/sys/net/netfilter/nf_conntrack_count'),
    readNumber('/proc/sys/net/netfilter/nf_conntrack_max'),
  ]);
  return entries === null || max === null ? null : { entries, max };
}

/**
 * How many ephemeral ports a connection to one destination can use (net.ipv4.ip_local_port_range).
 * The transport reaches the balancer from one address to one address, so this bounds its sessions.
 */
export async function ephemeralPorts(): Promise<number | null> {
  try {
    const [lo, hi] = (await readFile('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')).trim().split(/\s+/).map(Number);
    return lo !== undefined && hi !== undefined && hi >= lo ? hi - lo + 1 : null;
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used, from /proc/<pid>/stat (clock ticks of 1/100 s). */
export async function cpuSecondsOf(pid: number): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(f[11]) + Number(f[12]);
    return Number.isFinite(ticks) ? ticks / 100 : null;
  } catch {
    return null;
  }
}

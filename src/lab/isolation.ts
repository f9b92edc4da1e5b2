// The lab's safety interlock: tor must never reach the public Tor network or any address off this
// machine. We only run lab tor processes inside a network namespace whose only interface is
// loopback and which has no IPv4 route and no IPv6 route through anything but `lo`.
import { readFileSync } from 'node:fs';

export interface IsolationReport {
  isolated: boolean;
  reasons: string[];
}

export function checkIsolation(
  read: (p: string) => string = (p) => readFileSync(p, 'utf8'),
): IsolationReport {
  const reasons: string[] = [];
  // /proc/net/dev belongs to this process's namespace (/sys/class/net would show the mounter's).
  const ifaces = read('/proc/net/dev')
    .split('\n')
    .slice(2)
    .map((l) => l.split(':')[0]?.trim() ?? '')
    .filter(Boolean);
  const others = ifaces.filter((i) => i !== 'lo');
  if (others.length) reasons.push(`network interfaces other than loopback: ${others.join(', ')}`);
  if (!ifaces.includes('lo')) reasons.push('no loopback interface');
  const v4 = read('/proc/net/route').trim().split('\n').slice(1).filter((l) => l.trim());
  if (v4.length) reasons.push(`IPv4 routes present: ${v4.map((l) => l.split(/\s+/).slice(0, 2).join(' ')).join('; ')}`);
  let v6: string[] = [];
  try {
    v6 = read('/proc/net/ipv6_route').trim().split('\n').filter((l) => l.trim());
  } catch {
    /* IPv6 disabled: nothing to route */
  }
  const v6out = v6.filter((l) => (l.trim().split(/\s+/)[9] ?? '') !== 'lo');
  if (v6out.length) reasons.push(`IPv6 routes through other devices: ${v6out.length}`);
  return { isolated: reasons.length === 0, reasons };
}

/** Throws unless this process is in a loopback-only network namespace. */
export function assertIsolated(what = 'the lab'): void {
  const r = checkIsolation();
  if (!r.isolated) {
    throw new Error(
      `refusing to start ${what}: this network namespace can reach beyond loopback (${r.reasons.join('; ')}). ` +
        `Run it inside a fresh one: unshare --net sh -c 'ip link set lo up && exec ...' (as root), ` +
        `or use scripts/netns.sh.`,
    );
  }
}

// The relay-mode keys' rules (`mode: relay`): which ORPort each instance uses, and the
// configurations refused because they would harm the network or cannot work. Pure functions.

/** The directory authorities list at most this many relays per IPv4 address (AuthDirMaxServersPerAddr). */
export const MAX_RELAYS_PER_IPV4 = 8;

export interface RelayRuleInput {
  mode: 'bridge' | 'relay';
  instances: number;
  orPort: string | string[];
  orPort6?: string | string[];
}

export interface RuleIssue {
  path: (string | number)[];
  message: string;
}

/** Keys that only mean something for a bridge (the balancer, the transport in front of it). */
export const BRIDGE_ONLY_KEYS = ['balancer', 'transport', 'transports', 'distribution', 'publicOrPort', 'extOrPort'] as const;

function splitHostPort(s: string): { host: string; port: number } | null {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:.]+\]):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const port = Number(m[2]);
  return port >= 1 && port <= 65535 ? { host: m[1]!, port } : null;
}

/**
 * Instance `index`'s ORPort (1-based) from `ADDR:PORT` (instance i uses PORT+i-1) or from a list
 * (one per instance). Null when the value says nothing for this instance.
 */
export function orPortFor(v: string | string[] | undefined, index: number): string | null {
  if (v === undefined) return null;
  if (Array.isArray(v)) return v[index - 1] ?? null;
  const hp = splitHostPort(v);
  if (!hp) return null;
  const port = hp.port + index - 1;
  return port <= 65535 ? `${hp.host}:${port}` : null;
}

function portIssues(key: 'orPort' | 'orPort6', v: string | string[], instances: number, v6: boolean): RuleIssue[] {
  const out: RuleIssue[] = [];
  const wantV6 = v6 ? /^\[/ : /^\d/;
  const kind = v6 ? 'an IPv6 [ADDRESS]:PORT' : 'an IPv4 ADDRESS:PORT';
  const list = Array.isArray(v) ? v : [v];
  list.forEach((s, i) => {
    const path = Array.isArray(v) ? [key, i] : [key];
    const hp = splitHostPort(s);
    if (!hp || !wantV6.test(s)) out.push({ path, message: `must be ${kind} in relay mode (a relay's ORPort is public), got "${s}"` });
  });
  if (out.length) return out;
  if (Array.isArray(v)) {
    if (v.length !== instances) out.push({ path: [key], message: `lists ${v.length} ports for ${instances} instances; give one per instance (or one ADDR:PORT, then instance i uses PORT+i-1)` });
    const seen = new Set<string>();
    v.forEach((s, i) => {
      if (seen.has(s)) out.push({ path: [key, i], message: `${s} is listed twice; every relay needs its own ORPort` });
      seen.add(s);
    });
  } else {
    const last = splitHostPort(v)!.port + instances - 1;
    if (last > 65535) out.push({ path: [key], message: `${instances} instances from port ${splitHostPort(v)!.port} run past 65535` });
  }
  return out;
}

/** Everything refused about the relay keys of a parsed config (defaults applied). */
export function relayRuleIssues(c: RelayRuleInput): RuleIssue[] {
  const out: RuleIssue[] = [];
  if (c.mode !== 'relay') {
    if (Array.isArray(c.orPort)) out.push({ path: ['orPort'], message: 'a list of ORPorts is for mode: relay; twins share one ORPort line' });
    if (c.orPort6 !== undefined) out.push({ path: ['orPort6'], message: 'orPort6 is for mode: relay (add an ORPort line to "torrc" for a bridge)' });
    return out;
  }
  out.push(...portIssues('orPort', c.orPort, c.instances, false));
  if (c.orPort6 !== undefined) out.push(...portIssues('orPort6', c.orPort6, c.instances, true));
  if (out.length) return out;
  const perAddr = new Map<string, number>();
  for (let i = 1; i <= c.instances; i++) {
    const host = splitHostPort(orPortFor(c.orPort, i)!)!.host;
    perAddr.set(host, (perAddr.get(host) ?? 0) + 1);
  }
  for (const [host, n] of perAddr) {
    if (n > MAX_RELAYS_PER_IPV4) {
      out.push({
        path: ['instances'],
        message: `${n} relays on ${host}: the directory authorities list at most ${MAX_RELAYS_PER_IPV4} relays per IPv4 address (the rest would never be used); use at most ${MAX_RELAYS_PER_IPV4} instances per address`,
      });
    }
  }
  return out;
}

/** Bridge-only keys present in the raw (pre-default) config of a relay. */
export function bridgeOnlyKeyIssues(raw: Record<string, unknown>): RuleIssue[] {
  if (raw.mode !== 'relay') {
    return 'relay' in raw ? [{ path: ['relay'], message: 'the "relay" section is for mode: relay (this config is a bridge: add "mode: relay", or remove the section)' }] : [];
  }
  return BRIDGE_ONLY_KEYS.filter((k) => k in raw).map((k) => ({
    path: [k],
    message: `"${k}" is for bridges; mode: relay has no balancer, transport or Extended ORPort (each relay takes connections on its own ORPort)`,
  }));
}

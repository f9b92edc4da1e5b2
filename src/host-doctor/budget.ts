// How many file descriptors, ephemeral ports and tracked connections a bridge needs for a number of
// concurrent sessions. The model (documented in docs/doctor.md):
//
//   client ──► transport ──► balancer (bridgectl) ──► tor twin i
//
// - the transport holds 2 fds per session (its client, its connection to the balancer);
// - the balancer holds 2 fds per session (the transport's connection, its connection to a twin);
// - each tor holds 1 fd per session it carries, plus its connections to other relays (a bridge
//   extends circuits to any of the ~7,000 relays), plus its own files;
// - RLIMIT_NOFILE is per process and every child inherits bridgectl's, so the one limit must
//   cover the hungriest process; fs.file-max must cover them all together;
// - every transport→balancer connection has the same source address, destination address and
//   port, so the ephemeral port range bounds how many can be open at once;
// - connection tracking sees three connections per session (client→transport, transport→balancer,
//   balancer→tor) plus each tor's connections to relays.

/** Per-process fds beyond the per-session ones (logs, listeners, state files, the runtime). */
export const FD_HEADROOM = 1024;
/** Connections a busy bridge's tor keeps to other relays. */
export const TOR_RELAY_CONNECTIONS = 8192;
/** Everything else on the machine, for fs.file-max. */
export const SYSTEM_FD_HEADROOM = 65_536;
/** Tracked connections that are not the bridge's. */
export const CONNTRACK_HEADROOM = 16_384;
/** The unit's LimitNOFILE (deploy/bridgectl.service); fs.nr_open must allow it. */
export const UNIT_LIMIT_NOFILE = 1_048_576;
/** `--expected-sessions` default: concurrent sessions per tor instance. */
export const DEFAULT_SESSIONS_PER_INSTANCE = 10_000;

export interface Budget {
  sessionsPerInstance: number;
  instances: number;
  /** Concurrent sessions of the whole bridge. */
  sessions: number;
  balancerFds: number;
  transportFds: number;
  torFds: number;
  /** RLIMIT_NOFILE every process needs: the largest of the three. */
  perProcessFds: number;
  /** fs.file-max: all processes together plus the rest of the system. */
  systemFds: number;
  /** Ephemeral ports the transport needs towards the balancer's one address. */
  ephemeralPorts: number;
  /** nf_conntrack_max. */
  conntrack: number;
}

export function budget(sessionsPerInstance: number, instances: number): Budget {
  if (!Number.isSafeInteger(sessionsPerInstance) || sessionsPerInstance < 1) {
    throw new Error(`expected sessions must be a positive integer (got ${sessionsPerInstance})`);
  }
  if (!Number.isSafeInteger(instances) || instances < 1) throw new Error(`instances must be ≥ 1 (got ${instances})`);
  const sessions = sessionsPerInstance * instances;
  const balancerFds = 2 * sessions + FD_HEADROOM;
  const transportFds = 2 * sessions + FD_HEADROOM;
  const torFds = sessionsPerInstance + TOR_RELAY_CONNECTIONS + FD_HEADROOM;
  return {
    sessionsPerInstance,
    instances,
    sessions,
    balancerFds,
    transportFds,
    torFds,
    perProcessFds: Math.max(balancerFds, transportFds, torFds),
    systemFds: balancerFds + transportFds + instances * torFds + SYSTEM_FD_HEADROOM,
    ephemeralPorts: sessions,
    conntrack: 3 * sessions + instances * TOR_RELAY_CONNECTIONS + CONNTRACK_HEADROOM,
  };
}

/** The smallest power of two ≥ n (hash-table sizes). */
export function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

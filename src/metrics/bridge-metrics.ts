// The supervisor's own metrics, read from Bridge.status() at each scrape (collect callbacks): the
// twins, the balancer's counters and the transport. Counters mirror the balancer's and supervisor's
// running totals, so they are monotonic for as long as those live (a restart of bridgectl resets
// them, which Prometheus handles as a counter reset).
import { Counter, Gauge, type Registry } from 'prom-client';
import type { BridgeView } from './view.js';
import type { TwinStats, ListenerStats } from '../balancer/index.js';
import { conntrack, cpuSecondsOf, ephemeralPorts, fdUsage } from './host.js';
import { collected } from './collected.js';

const INSTANCE_STATES = ['starting', 'bootstrapping', 'running', 'backoff', 'stopping', 'stopped', 'failed'] as const;
const TRANSPORT_STATES = ['starting', 'running', 'backoff', 'failed', 'stopping', 'stopped'] as const;

/** Listener counters of the balancer: field, metric name suffix, help. */
const LISTENER_COUNTERS: Array<[keyof ListenerStats, string, string]> = [
  ['accepted', 'accepted_total', 'Connections the balancer accepted from the transport'],
  ['established', 'established_total', "Sessions that reached a twin's OKAY/DENY"],
  ['authFailures', 'auth_failures_total', 'Transports that failed the static Extended ORPort cookie'],
  ['protocolErrors', 'protocol_errors_total', 'Transports that sent something malformed'],
  ['handshakeTimeouts', 'handshake_timeouts_total', 'Sessions closed because the handshake took too long'],
  ['idleTimeouts', 'idle_timeouts_total', 'Sessions closed because no byte went either way for idleTimeoutMs'],
  ['rejectedOverCap', 'rejected_over_cap_total', 'Connections dropped at once because maxSessions were open'],
  ['noTwin', 'no_backend_total', 'Sessions dropped because no twin was up (or every up twin failed them)'],
  ['replays', 'replays_total', 'Times a session was replayed on another twin after one failed'],
  ['localErrors', 'local_errors_total', 'Twin connections that failed for a local reason (no source port, no fds)'],
];

/** Per-twin counters of the balancer (metric names keep the older word, backend: a metrics contract). */
const TWIN_COUNTERS: Array<[keyof TwinStats, string, string]> = [
  ['total', 'sessions_total', "Sessions the twin took (reached its OKAY/DENY)"],
  ['authFailures', 'auth_failures_total', 'Handshakes the twin failed (it refused our cookie or proved another one)'],
  ['connectFailures', 'connect_failures_total', "Connections to the twin refused, reset, timed out or closed before its OKAY"],
];

type Num = number | null | undefined;
const finite = (v: Num): v is number => typeof v === 'number' && Number.isFinite(v);

/**
 * Registers the bridge's metrics on `registry`; every value is read from `getStatus()` when the
 * registry is collected. Prefix: `bridgectl_`. Per-twin series carry `twin="<name>"`
 * (a label of their own: Prometheus's `instance` stays the scraped host).
 */
export function registerBridgeMetrics(registry: Registry, getStatus: () => BridgeView, label = 'twin'): void {
  // One status per collection: every collect callback of a scrape runs within the same tick of
  // registry.metrics(); re-reading it for each metric would be wasteful, not wrong.
  let cached: { at: number; st: BridgeView } | null = null;
  const status = (): BridgeView => {
    const now = Date.now();
    if (!cached || now - cached.at > 50) cached = { at: now, st: getStatus() };
    return cached.st;
  };

  const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge<string>, st: BridgeView) => void): void => {
    new Gauge(collected<Gauge<string>>(registry, name, help, labelNames, (g) => fill(g, status())));
  };
  const counter = (name: string, help: string, labelNames: string[], fill: (c: Counter<string>, st: BridgeView) => void): void => {
    new Counter(collected<Counter<string>>(registry, name, help, labelNames, (c) => fill(c, status())));
  };

  gauge('bridgectl_ready', 'Whether the bridge is ready (balancer listening, transport up, a twin bootstrapped)', [], (g, st) =>
    g.set(st.ready ? 1 : 0),
  );
  gauge('bridgectl_start_time_seconds', 'When this bridgectl supervisor started (Unix time)', [], (g, st) => g.set(st.startedAt / 1000));
  gauge('bridgectl_uptime_seconds', 'How long this bridgectl supervisor has been running', [], (g, st) =>
    g.set((Date.now() - st.startedAt) / 1000),
  );
  gauge('bridgectl_instances', 'Router twins the supervisor runs', [], (g, st) => g.set(st.instances.length));

  // --- the twins ---
  gauge('bridgectl_instance_up', "1 when the twin's tor runs and has bootstrapped", [label], (g, st) => {
    for (const i of st.instances) g.set({ [label]: i.name }, i.state === 'running' ? 1 : 0);
  });
  gauge('bridgectl_instance_state', 'The twin\'s state (1 for the current one)', [label, 'state'], (g, st) => {
    for (const i of st.instances) for (const s of INSTANCE_STATES) g.set({ [label]: i.name, state: s }, i.state === s ? 1 : 0);
  });
  gauge('bridgectl_instance_info', "The twin's identity (always 1)", [label, 'fingerprint'], (g, st) => {
    for (const i of st.instances) g.set({ [label]: i.name, fingerprint: i.fingerprint ?? '' }, 1);
  });
  counter('bridgectl_instance_restarts_total', "Times the supervisor restarted the twin's tor", [label], (c, st) => {
    for (const i of st.instances) c.inc({ [label]: i.name }, i.restarts);
  });
  gauge('bridgectl_instance_bootstrap_percent', "The twin's tor bootstrap progress", [label], (g, st) => {
    for (const i of st.instances) g.set({ [label]: i.name }, i.bootstrap);
  });
  gauge('bridgectl_instance_uptime_seconds', "How long the twin's tor process has been running", [label], (g, st) => {
    for (const i of st.instances) if (finite(i.uptimeMs)) g.set({ [label]: i.name }, i.uptimeMs / 1000);
  });
  gauge('bridgectl_instance_pid', "The twin's tor process id", [label], (g, st) => {
    for (const i of st.instances) if (finite(i.pid)) g.set({ [label]: i.name }, i.pid);
  });

  // --- the balancer, per twin ---
  const twins = (st: BridgeView): TwinStats[] => st.balancer?.twins ?? [];
  gauge('bridgectl_balancer_backend_up', '1 when the balancer sends new sessions to the twin', [label], (g, st) => {
    for (const b of twins(st)) g.set({ [label]: b.name }, b.up ? 1 : 0);
  });
  gauge('bridgectl_balancer_backend_draining', '1 while the twin is being removed (no new sessions)', [label], (g, st) => {
    for (const b of twins(st)) g.set({ [label]: b.name }, b.draining ? 1 : 0);
  });
  gauge('bridgectl_balancer_backend_sessions', 'Sessions relayed to the twin right now', [label], (g, st) => {
    for (const b of twins(st)) g.set({ [label]: b.name }, b.current);
  });
  for (const [field, suffix, help] of TWIN_COUNTERS) {
    counter(`bridgectl_balancer_backend_${suffix}`, help, [label], (c, st) => {
      for (const b of twins(st)) c.inc({ [label]: b.name }, b[field] as number);
    });
  }
  counter(
    'bridgectl_balancer_backend_bytes_total',
    'Bytes relayed after the handshake: direction="to_twin" (from the transport) or "from_twin"',
    [label, 'direction'],
    (c, st) => {
      for (const b of twins(st)) {
        c.inc({ [label]: b.name, direction: 'to_twin' }, b.bytesToTwin);
        c.inc({ [label]: b.name, direction: 'from_twin' }, b.bytesFromTwin);
      }
    },
  );

  // --- the balancer's listener ---
  gauge('bridgectl_balancer_up', '1 when the balancer listens', [], (g, st) => g.set(st.balancer?.listen ? 1 : 0));
  gauge('bridgectl_balancer_sessions', 'Sessions open now (in handshake or relaying)', [], (g, st) => {
    if (st.balancer) g.set(st.balancer.sessions.current);
  });
  gauge('bridgectl_balancer_bind_address_no_port', '1 when connections to the twins use IP_BIND_ADDRESS_NO_PORT', [], (g, st) => {
    if (st.balancer) g.set(st.balancer.bindAddressNoPort ? 1 : 0);
  });
  gauge('bridgectl_balancer_splice', '1 when established sessions are relayed in the kernel (splice)', [], (g, st) => {
    if (st.balancer?.splice !== undefined) g.set(st.balancer.splice ? 1 : 0);
  });
  for (const [field, suffix, help] of LISTENER_COUNTERS) {
    counter(`bridgectl_balancer_${suffix}`, help, [], (c, st) => {
      if (st.balancer) c.inc(st.balancer.sessions[field]);
    });
  }

  // --- rolling restart and onion keys ---
  gauge('bridgectl_rolling_restart_in_progress', '1 while a rolling restart (bridgectl restart) is under way or stopped unfinished', [], (g, st) =>
    g.set(st.restart && !st.restart.finishedAt ? 1 : 0),
  );
  gauge('bridgectl_instance_restarting', '1 while the twin is drained or restarted by a rolling restart', [label], (g, st) => {
    for (const i of st.instances) g.set({ [label]: i.name }, st.restart?.current === i.name ? 1 : 0);
  });
  gauge('bridgectl_onion_key_age_seconds', 'How long ago the current onion keys became current', [], (g, st) => {
    if (st.onionKeys) g.set((Date.now() - Date.parse(st.onionKeys.rotatedAt)) / 1000);
  });
  gauge('bridgectl_onion_key_rotation_period_seconds', 'How often the onion keys rotate (keys.rotationDays)', [], (g, st) => {
    if (st.onionKeys) g.set(st.onionKeys.rotationDays * 86400);
  });

  // --- limits: descriptors per process, conntrack, ephemeral ports ---
  const asyncGauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge<string>, st: BridgeView) => Promise<void>): void => {
    new Gauge(collected<Gauge<string>>(registry, name, help, labelNames, (g) => fill(g, status())));
  };
  const processes = (st: BridgeView): Array<[string, number]> => {
    const procs: Array<[string, number]> = [['bridgectl', process.pid]];
    for (const i of st.instances) if (finite(i.pid)) procs.push([i.name, i.pid]);
    for (const t of st.transports ?? (st.transport ? [st.transport] : [])) if (finite(t.pid)) procs.push([t.name, t.pid]);
    return procs;
  };
  asyncGauge('bridgectl_process_cpu_seconds', 'CPU seconds used by bridgectl, each twin\'s tor and the transport (process=); use rate()', ['process'], async (g, st) => {
    for (const [n, pid] of processes(st)) {
      const v = await cpuSecondsOf(pid);
      if (v !== null) g.set({ process: n }, v);
    }
  });
  const fdsOf = async (st: BridgeView): Promise<Array<[string, { open: number; max: number }]>> => {
    const procs = processes(st);
    const got = await Promise.all(procs.map(async ([n, pid]) => [n, await fdUsage(pid)] as const));
    return got.flatMap(([n, u]) => (u ? [[n, u] as [string, { open: number; max: number }]] : []));
  };
  asyncGauge('bridgectl_process_open_fds', 'Open descriptors of bridgectl, each twin and the transport (process=)', ['process'], async (g, st) => {
    for (const [n, u] of await fdsOf(st)) g.set({ process: n }, u.open);
  });
  asyncGauge('bridgectl_process_max_fds', 'Their descriptor limit (soft RLIMIT_NOFILE)', ['process'], async (g, st) => {
    for (const [n, u] of await fdsOf(st)) g.set({ process: n }, u.max);
  });
  asyncGauge('bridgectl_conntrack_entries', 'Entries in the conntrack table (absent without conntrack)', [], async (g) => {
    const c = await conntrack();
    if (c) g.set(c.entries);
  });
  asyncGauge('bridgectl_conntrack_max', 'Size of the conntrack table (net.netfilter.nf_conntrack_max)', [], async (g) => {
    const c = await conntrack();
    if (c) g.set(c.max);
  });
  asyncGauge('bridgectl_ephemeral_ports', 'Ephemeral ports per destination (net.ipv4.ip_local_port_range): bounds the transport-to-balancer sessions', [], async (g) => {
    const n = await ephemeralPorts();
    if (n !== null) g.set(n);
  });

  // --- the transports (one series per transport) ---
  const each = (st: BridgeView): NonNullable<BridgeView['transports']> => st.transports ?? (st.transport ? [st.transport] : []);
  gauge('bridgectl_transport_up', '1 when the pluggable transport reported SMETHODS DONE, listens and runs', ['transport'], (g, st) => {
    for (const t of each(st)) g.set({ transport: t.name }, t.state === 'running' ? 1 : 0);
  });
  gauge('bridgectl_transport_state', "The transport's state (1 for the current one)", ['transport', 'state'], (g, st) => {
    for (const t of each(st)) for (const s of TRANSPORT_STATES) g.set({ transport: t.name, state: s }, t.state === s ? 1 : 0);
  });
  counter('bridgectl_transport_restarts_total', 'Times the supervisor restarted the transport', ['transport'], (c, st) => {
    for (const t of each(st)) c.inc({ transport: t.name }, t.restarts);
  });
}

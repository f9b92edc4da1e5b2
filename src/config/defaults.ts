// Every default of the balancer in one place: the config schema takes them, and so do the
// balancer (for options a caller leaves out) and the standalone commands' usage text.
export const BALANCER_DEFAULTS = {
  /** Where the transport connects, as to an Extended ORPort. */
  listen: '127.0.0.1:10000',
  /** Source addresses of connections to the twins. */
  sourceRange: '127.0.2.0/24',
  handshakeTimeoutMs: 30_000,
  twinTimeoutMs: 10_000,
  idleTimeoutMs: 600_000,
  maxSessions: 250_000,
  healthCheckMs: 5_000,
  /** How a new session picks its twin: the one holding the fewest sessions, or the next in turn. */
  choice: 'least-connections' as 'least-connections' | 'round-robin',
  /** How long removing a twin waits for its open sessions before it ends them. */
  drainMs: 30_000,
} as const;

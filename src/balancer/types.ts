// The balancer's contract: what the supervisor, the CLI and the metrics see of it. Types only.

export interface TwinSpec {
  /** A name for logs, stats and markUp/markDown (the twin's name). */
  name: string;
  /** The twin's ExtORPort, HOST:PORT. */
  address: string;
  /** The cookie file the twin writes (tor rewrites it on every start). */
  cookieFile: string;
}

export interface TwinStats {
  name: string;
  address: string;
  up: boolean;
  /** Being removed: no new sessions, open ones go on until removeTwin's drain ends. */
  draining: boolean;
  /** Why it is down, when it is. */
  downReason: string | null;
  /** Sessions relayed right now. */
  current: number;
  /** Sessions that reached the twin's OKAY/DENY. */
  total: number;
  /** Bytes relayed from the transport to the twin (after the handshake). */
  bytesToTwin: number;
  /** Bytes relayed from the twin to the transport (after the handshake). */
  bytesFromTwin: number;
  /** Handshakes the twin failed: it refused our cookie or proved it has another one. */
  authFailures: number;
  /** Connections that were refused, reset, timed out or closed before the twin's OKAY. */
  connectFailures: number;
}

export interface ListenerStats {
  /** Connections accepted by the listener. */
  accepted: number;
  /** Sessions open now (in handshake or relaying). */
  current: number;
  /** Sessions that reached a twin's OKAY/DENY. */
  established: number;
  /** Transports that failed the static cookie (answered 00). */
  authFailures: number;
  /** Transports that sent something malformed (bad auth type, command tor would refuse, too much). */
  protocolErrors: number;
  handshakeTimeouts: number;
  idleTimeouts: number;
  /** Connections dropped at once because maxSessions were open. */
  rejectedOverCap: number;
  /** Sessions dropped because no twin was up (or every up twin failed them). */
  noTwin: number;
  /** Times a session was replayed on another twin after one failed. */
  replays: number;
  /** Twin connections that failed for a local reason (no free source port, no fds); twins not blamed. */
  localErrors: number;
}

/** Timeouts and the session cap; setLimits changes them for sessions that start from then on. */
export interface BalancerLimits {
  /** The transport's part of the handshake plus finding a twin, at most. */
  handshakeTimeoutMs: number;
  /** One twin's part (connect, auth, OKAY), at most; then the twin is marked down. */
  twinTimeoutMs: number;
  /** A relayed session with no byte either way for this long is closed (0: never). */
  idleTimeoutMs: number;
  /** Sessions open at once, at most; more are dropped on accept. */
  maxSessions: number;
}

/** Options of createBalancer; what is left out takes the config schema's default (src/config/defaults.ts). */
export interface BalancerOptions extends Partial<BalancerLimits> {
  /** Where transports connect, HOST:PORT (port 0 picks one). */
  listen?: string;
  /** The 32 secret bytes of the static cookie the transport authenticates with. */
  staticCookie: Buffer;
  /** Source addresses for connections to the twins, an IPv4 CIDR. */
  sourceRange?: string;
  logger: import('pino').Logger;
  /** Called when the balancer itself marks a twin down (it refused, failed auth, or died before OKAY). */
  onTwinDown?: (name: string, reason: string) => void;
  /** How a new session picks its twin: fewest open sessions (default), or in turn. */
  choice?: 'least-connections' | 'round-robin';
  /** Set IP_BIND_ADDRESS_NO_PORT on connections to the twins. Default true. */
  bindAddressNoPort?: boolean;
}

export interface BalancerStats {
  listen: { host: string; port: number } | null;
  /** Whether twin connections get IP_BIND_ADDRESS_NO_PORT. */
  bindAddressNoPort: boolean;
  /** Established sessions are relayed in the kernel (splice): always, kept for the metric. */
  splice: boolean;
  sourceRange: string;
  sessions: ListenerStats;
  twins: TwinStats[];
}

/**
 * The auth-terminating Extended ORPort balancer in front of the twins (the native engine).
 *
 * Lifecycle, as the supervisor drives it:
 *   const b = createBalancer({ listen, staticCookie, logger });
 *   await b.start();                                   // listening
 *   b.addTwin({ name: 'twin1', address: '127.0.4.1:5001', cookieFile: '.../extended_orport_auth_cookie' });
 *   await b.markUp('twin1');  // after tor bootstrapped: re-reads the cookie file; throws if it is unreadable
 *   b.markDown('twin1', 'restarting');                 // no new sessions; open ones go on
 *   await b.drain('twin1', 30_000);                    // until its open sessions ended (or 30 s passed)
 *   await b.removeTwin('twin1', { drainMs: 30_000 });  // no new sessions, drain (bounded), then end the rest
 *   b.stats();                                          // counters, see BalancerStats
 *   await b.stop();                                     // stop listening and end every session
 *
 * Twins start down: a twin receives sessions only after markUp(). The balancer marks a twin down
 * by itself when it refuses a connection, fails authentication or closes before its OKAY (and
 * calls onTwinDown); the session then goes to the next twin, so the transport sees no failure while
 * any twin is up. It never marks a twin up by itself: that is markUp's job.
 */
export interface Balancer {
  start(): Promise<{ host: string; port: number }>;
  stop(): Promise<void>;
  addTwin(t: TwinSpec): void;
  removeTwin(name: string, opts?: { drainMs?: number }): Promise<void>;
  markUp(name: string): Promise<void>;
  markDown(name: string, reason: string): void;
  /**
   * Resolves once the twin has no open session, or when `timeoutMs` passed, with the number of
   * sessions still open (0: drained; also 0 for a twin it does not know). It does not stop new
   * sessions: markDown (or removeTwin) does.
   */
  drain(name: string, timeoutMs: number): Promise<number>;
  stats(): BalancerStats;
  /** Changes timeouts and the session cap for sessions that start from now on (a config reload). */
  setLimits(l: Partial<BalancerLimits>): void;
}

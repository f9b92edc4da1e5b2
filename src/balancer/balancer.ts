// The listener: accepts transports' Extended ORPort connections and runs a Session for each.
import net from 'node:net';
import type { Logger } from 'pino';
import { readCookieFile } from '../extor-cookie/index.js';
import { parseEndpoint, parseSourceRange, type SourceRange } from './address.js';
import { BackendPool, type BackendSpec, type BackendStats } from './pool.js';
import { Session, emptyListenerStats, type ListenerStats } from './session.js';
import { connectFrom, loadAddon, warnIfNoAddon } from './source-bind.js';
import { engineUnavailableReason, nativeEngine } from './native.js';
import { createNativeBalancer } from './native-balancer.js';

export const DEFAULT_LISTEN = '127.0.0.1:10000';
export const DEFAULT_SOURCE_RANGE = '127.0.2.0/24';

export interface BalancerOptions {
  /** Where transports connect, HOST:PORT (port 0 picks one). Default 127.0.0.1:10000. */
  listen?: string;
  /** The 32 secret bytes of the static cookie the transport authenticates with. */
  staticCookie: Buffer;
  /** Source addresses for connections to the twins, an IPv4 CIDR. Default 127.0.2.0/24. */
  sourceRange?: string;
  logger: Logger;
  /** The transport's part of the handshake plus finding a twin, at most. Default 30 s. */
  handshakeTimeoutMs?: number;
  /** One twin's part (connect, auth, OKAY), at most; then the twin is marked down. Default 10 s. */
  backendTimeoutMs?: number;
  /** A relayed session with no byte either way for this long is closed (0: never). Default 10 min. */
  idleTimeoutMs?: number;
  /** Sessions open at once, at most; more are dropped on accept. Default 16,384. */
  maxSessions?: number;
  /** How a new session picks its twin (native engine): fewest open sessions (default), or in turn. */
  choice?: 'least-connections' | 'round-robin';
  /** Called when the balancer itself marks a twin down (it refused, failed auth, or died before OKAY). */
  onBackendDown?: (name: string, reason: string) => void;
  /** Use IP_BIND_ADDRESS_NO_PORT through the native addon when it is built. Default true. */
  bindAddressNoPort?: boolean;
  /**
   * Where sessions run. 'native' (the default when the addon is built): the native engine's worker
   * thread accepts, runs both handshakes and relays with splice(2); no session touches the JS heap.
   * 'js': net.Sockets and a JS relay (the fallback without the addon; BRIDGECTL_ENGINE=js forces it).
   */
  engine?: 'native' | 'js';
}

export interface BalancerStats {
  listen: { host: string; port: number } | null;
  /** Whether backend connections get IP_BIND_ADDRESS_NO_PORT (the native addon is loaded). */
  bindAddressNoPort: boolean;
  /** Where sessions run: the native engine, or net.Sockets in JS (see BalancerOptions.engine). */
  engine: 'native' | 'js';
  /** Whether established sessions are relayed in the kernel (splice): the native engine does. */
  splice: boolean;
  sourceRange: string;
  sessions: ListenerStats;
  backends: BackendStats[];
}

/**
 * The auth-terminating Extended ORPort balancer in front of the twins.
 *
 * Lifecycle, as the supervisor drives it:
 *   const b = createBalancer({ listen, staticCookie, logger });
 *   await b.start();                                   // listening
 *   b.addBackend({ name: 'twin1', address: '127.0.4.1:5001', cookieFile: '.../extended_orport_auth_cookie' });
 *   await b.markUp('twin1');  // after tor bootstrapped: re-reads the cookie file; throws if it is unreadable
 *   b.markDown('twin1', 'restarting');                 // no new sessions; open ones go on
 *   await b.removeBackend('twin1', { drainMs: 30_000 }); // no new sessions, wait for open ones (bounded), then end them
 *   b.stats();                                          // counters, see BalancerStats
 *   await b.stop();                                     // stop listening and end every session
 *
 * Backends start down: a backend receives sessions only after markUp(). The balancer marks a backend
 * down by itself when it refuses a connection, fails authentication or closes before its OKAY (and
 * calls onBackendDown); the session then goes to the next twin, so the transport sees no failure while
 * any twin is up. It never marks a backend up by itself: that is markUp's job.
 */
export interface Balancer {
  start(): Promise<{ host: string; port: number }>;
  stop(): Promise<void>;
  addBackend(b: BackendSpec): void;
  removeBackend(name: string, opts?: { drainMs?: number }): Promise<void>;
  markUp(name: string): Promise<void>;
  markDown(name: string, reason: string): void;
  stats(): BalancerStats;
  /** Changes timeouts and the session cap for sessions that start from now on (a config reload). */
  setLimits(l: Partial<Pick<BalancerOptions, 'handshakeTimeoutMs' | 'backendTimeoutMs' | 'idleTimeoutMs' | 'maxSessions'>>): void;
}

export function createBalancer(opts: BalancerOptions): Balancer {
  const want = opts.engine ?? (process.env.BRIDGECTL_ENGINE === 'js' ? 'js' : 'native');
  if (want === 'native') {
    const e = nativeEngine();
    if (e) return createNativeBalancer(opts, e, { listen: DEFAULT_LISTEN, sourceRange: DEFAULT_SOURCE_RANGE });
    opts.logger.warn({ reason: engineUnavailableReason() }, 'native engine unavailable: sessions run in JS (slower, more memory per session)');
  }
  return createJsBalancer(opts);
}

/** The balancer with net.Sockets and a JS relay: the fallback when the native addon is not built. */
function createJsBalancer(opts: BalancerOptions): Balancer {
  const logger = opts.logger;
  const listen = parseEndpoint(opts.listen ?? DEFAULT_LISTEN, 'balancer listen address', true);
  const range: SourceRange = parseSourceRange(opts.sourceRange ?? DEFAULT_SOURCE_RANGE);
  if (opts.staticCookie.length !== 32) throw new Error(`the static cookie is 32 bytes, got ${opts.staticCookie.length}`);
  const noPort = opts.bindAddressNoPort ?? true;
  if (noPort) warnIfNoAddon(logger);
  const useNoPort = noPort && loadAddon() !== null;
  const pool = new BackendPool();
  const stats = emptyListenerStats();
  const sessions = new Set<Session>();
  let maxSessions = opts.maxSessions ?? 16_384;
  let server: net.Server | null = null;
  let bound: { host: string; port: number } | null = null;

  const backendFailed = (name: string, reason: string, authFailed: boolean): void => {
    const b = pool.get(name);
    if (!b) return;
    if (authFailed) b.stats.authFailures++;
    else b.stats.connectFailures++;
    if (pool.setDown(b, reason)) {
      logger.warn({ backend: name, reason }, 'twin marked down; its sessions go to the others');
      opts.onBackendDown?.(name, reason);
    }
  };

  const ctx = {
    staticCookie: opts.staticCookie,
    pool,
    stats,
    logger,
    handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 30_000,
    backendTimeoutMs: opts.backendTimeoutMs ?? 10_000,
    idleTimeoutMs: opts.idleTimeoutMs ?? 600_000,
    connect: (b: { host: string; port: number }) =>
      connectFrom({ host: b.host, port: b.port, localAddress: net.isIPv4(b.host) ? range.pick() : undefined, noPort }),
    backendFailed: (b: { spec: BackendSpec }, reason: string, authFailed: boolean) => backendFailed(b.spec.name, reason, authFailed),
    onClose: (s: Session) => {
      if (sessions.delete(s)) stats.current--;
    },
  };

  const onConnection = (sock: net.Socket): void => {
    stats.accepted++;
    if (sessions.size >= maxSessions) {
      stats.rejectedOverCap++;
      sock.on('error', () => {});
      sock.destroy();
      return;
    }
    const s = new Session(sock, ctx);
    sessions.add(s);
    stats.current++;
    s.start();
  };

  return {
    async start() {
      if (server) throw new Error('balancer already started');
      const srv = net.createServer({ noDelay: true }, onConnection);
      server = srv;
      srv.on('error', (e) => logger.error({ err: e }, 'balancer listener error'));
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen({ host: listen.host, port: listen.port, backlog: 4096 }, () => {
          srv.off('error', reject);
          resolve();
        });
      });
      const a = srv.address() as net.AddressInfo;
      bound = { host: a.address, port: a.port };
      logger.info({ listen: bound, sourceRange: range.cidr, bindAddressNoPort: useNoPort, engine: 'js' }, 'balancer listening');
      return bound;
    },

    async stop() {
      const srv = server;
      server = null;
      for (const s of [...sessions]) s.destroy('balancer stopping');
      if (srv) await new Promise<void>((resolve) => srv.close(() => resolve()));
      bound = null;
    },

    addBackend(spec) {
      pool.add(spec);
      logger.info({ backend: spec.name, address: spec.address }, 'twin added (down until marked up)');
    },

    async removeBackend(name, o = {}) {
      const b = pool.get(name);
      if (!b) return;
      b.stats.draining = true;
      const deadline = Date.now() + (o.drainMs ?? 30_000);
      while (b.sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      for (const s of [...b.sessions]) s.destroy('twin removed');
      pool.remove(name);
      logger.info({ backend: name }, 'twin removed');
    },

    async markUp(name) {
      const b = pool.get(name);
      if (!b) throw new Error(`no backend ${name}`);
      const cookie = await readCookieFile(b.spec.cookieFile);
      pool.setUp(b, cookie);
      logger.info({ backend: name }, 'twin marked up');
    },

    markDown(name, reason) {
      const b = pool.get(name);
      if (!b) return;
      if (pool.setDown(b, reason)) logger.info({ backend: name, reason }, 'twin marked down');
    },

    setLimits(l) {
      if (l.handshakeTimeoutMs !== undefined) ctx.handshakeTimeoutMs = l.handshakeTimeoutMs;
      if (l.backendTimeoutMs !== undefined) ctx.backendTimeoutMs = l.backendTimeoutMs;
      if (l.idleTimeoutMs !== undefined) ctx.idleTimeoutMs = l.idleTimeoutMs;
      if (l.maxSessions !== undefined) maxSessions = l.maxSessions;
    },
    stats() {
      return {
        listen: bound,
        bindAddressNoPort: useNoPort,
        engine: 'js',
        splice: false,
        sourceRange: range.cidr,
        sessions: { ...stats },
        backends: pool.all().map((b) => ({ ...b.stats })),
      };
    },
  };
}

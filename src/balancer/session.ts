// One transport connection through the balancer: authenticate the transport with the static
// cookie, hold its commands, replay them to a twin (authenticating with the twin's cookie) until one
// answers OKAY/DENY, pass that answer back unchanged, then relay both ways.
import type net from 'node:net';
import type { Logger } from 'pino';
import { ExtOrClientHandshake, ExtOrServerHandshake } from '../extor-cookie/index.js';
import type { Backend, BackendPool } from './pool.js';

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
  noBackend: number;
  /** Times a session was replayed on another twin after one failed. */
  replays: number;
  /** Backend connections that failed for a local reason (no free source port, no fds); twins not blamed. */
  localErrors: number;
}

export function emptyListenerStats(): ListenerStats {
  return {
    accepted: 0,
    current: 0,
    established: 0,
    authFailures: 0,
    protocolErrors: 0,
    handshakeTimeouts: 0,
    idleTimeouts: 0,
    rejectedOverCap: 0,
    noBackend: 0,
    replays: 0,
    localErrors: 0,
  };
}

export interface SessionContext {
  staticCookie: Buffer;
  pool: BackendPool;
  stats: ListenerStats;
  logger: Logger;
  handshakeTimeoutMs: number;
  backendTimeoutMs: number;
  idleTimeoutMs: number;
  /** Opens a connection to a backend (from a source address). Errors come as 'error' events. */
  connect(b: Backend): net.Socket;
  /** A backend failed a session before its OKAY. */
  backendFailed(b: Backend, reason: string, authFailed: boolean): void;
  onClose(s: Session): void;
}

/** Errors that are ours, not the twin's: don't mark the twin down for them. */
const LOCAL_ERRORS = new Set(['EADDRNOTAVAIL', 'EADDRINUSE', 'EMFILE', 'ENFILE', 'ENOBUFS', 'ENOMEM']);
/** How long a closing socket may take to flush what it still has to send. */
const LINGER_MS = 2000;

export class Session {
  private backend: Backend | null = null;
  private upstream: net.Socket | null = null;
  private readonly tried = new Set<string>();
  private held: Buffer = Buffer.alloc(0);
  /** Bytes the transport sent after DONE in the same packets (tor would close on them; we hold them until its OKAY). */
  private early: Buffer = Buffer.alloc(0);
  private timer: NodeJS.Timeout | null = null;
  private phase: 'front' | 'backend' | 'relay' | 'closed' = 'front';
  constructor(
    private readonly transport: net.Socket,
    private readonly ctx: SessionContext,
  ) {}

  start(): void {
    const t = this.transport;
    const ctx = this.ctx;
    t.setNoDelay(true);
    t.on('error', (e) => this.destroy(`transport: ${e.message}`));
    t.on('close', () => this.shutdown());
    t.on('end', () => this.shutdown());
    this.timer = setTimeout(() => {
      ctx.stats.handshakeTimeouts++;
      this.destroy(`handshake timed out after ${ctx.handshakeTimeoutMs} ms`);
    }, ctx.handshakeTimeoutMs);
    const front = new ExtOrServerHandshake(ctx.staticCookie);
    const onData = (d: Buffer): void => {
      if (this.phase !== 'front') return;
      const step = front.feed(d);
      if (step.status === 'failed') {
        if (step.authFailed) ctx.stats.authFailures++;
        else ctx.stats.protocolErrors++;
        ctx.logger.debug({ remote: t.remoteAddress, reason: step.error }, 'transport handshake failed');
        this.reject(step.send);
        return;
      }
      if (step.send.length) t.write(step.send);
      if (step.status === 'done') {
        this.held = front.rawCommands();
        this.early = front.rest;
        this.phase = 'backend';
        // Anything the transport sends early stays in the kernel until the twin's OKAY.
        t.pause();
        this.tryNext();
      }
    };
    t.on('data', onData);
    t.write(front.greeting());
  }

  /** Answer per protocol, then drop: end after `bytes`, destroy when flushed (or after a linger). */
  private reject(bytes: Buffer): void {
    this.phase = 'closed';
    this.clearTimer();
    const t = this.transport;
    t.end(bytes);
    setTimeout(() => t.destroy(), LINGER_MS).unref();
    this.ctx.onClose(this);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private tryNext(): void {
    const ctx = this.ctx;
    if (this.phase !== 'backend') return;
    const b = ctx.pool.next(this.tried);
    if (!b || !b.cookie) {
      ctx.stats.noBackend++;
      this.destroy(this.tried.size ? `every twin tried failed (${[...this.tried].join(', ')})` : 'no twin is up');
      return;
    }
    if (this.tried.size) ctx.stats.replays++;
    this.tried.add(b.spec.name);
    this.backend = b;
    const up = ctx.connect(b);
    this.upstream = up;
    const hs = new ExtOrClientHandshake(b.cookie, { commands: this.held });
    let done = false;
    const attemptTimer = setTimeout(() => fail(`no OKAY within ${ctx.backendTimeoutMs} ms`, false, false), ctx.backendTimeoutMs);
    const fail = (reason: string, authFailed: boolean, local: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(attemptTimer);
      up.removeAllListeners('data');
      up.on('error', () => {});
      up.destroy();
      this.upstream = null;
      this.backend = null;
      if (this.phase !== 'backend') return;
      if (local) {
        ctx.stats.localErrors++;
        ctx.logger.debug({ backend: b.spec.name, reason }, 'local error connecting to twin');
      } else {
        ctx.backendFailed(b, reason, authFailed);
      }
      this.tryNext();
    };
    up.on('error', (e: NodeJS.ErrnoException) => fail(`${e.code ?? 'error'}: ${e.message}`, false, LOCAL_ERRORS.has(e.code ?? '')));
    up.on('close', () => fail('twin closed the connection before its OKAY', false, false));
    up.on('data', (d: Buffer) => {
      const step = hs.feed(d);
      if (step.status === 'failed') return fail(step.error ?? 'handshake failed', step.authFailed ?? false, false);
      if (step.send.length) up.write(step.send);
      if (step.status === 'done') {
        done = true;
        clearTimeout(attemptTimer);
        up.removeAllListeners('data');
        up.removeAllListeners('close');
        up.removeAllListeners('error');
        this.relay(b, up, hs.rawReply, hs.rest);
      }
    });
  }

  private relay(b: Backend, up: net.Socket, reply: Buffer, rest: Buffer): void {
    const ctx = this.ctx;
    const t = this.transport;
    if (this.phase !== 'backend') {
      up.destroy();
      return;
    }
    this.phase = 'relay';
    this.clearTimer();
    ctx.stats.established++;
    b.stats.current++;
    b.stats.total++;
    b.sessions.add(this);
    const st = b.stats;

    t.removeAllListeners('data');
    up.pause();
    up.on('error', (e) => this.destroy(`twin: ${e.message}`));
    up.on('close', () => this.shutdown());
    up.on('end', () => this.shutdown());

    // Tor's answer, unchanged, then whatever it already sent on.
    t.write(rest.length ? Buffer.concat([reply, rest]) : reply);
    st.bytesFromBackend += rest.length;
    if (this.early.length) {
      up.write(this.early);
      st.bytesToBackend += this.early.length;
      this.early = Buffer.alloc(0);
    }
    t.on('data', (d: Buffer) => {
      st.bytesToBackend += d.length;
      if (!up.write(d)) t.pause();
    });
    up.on('drain', () => t.resume());
    up.on('data', (d: Buffer) => {
      st.bytesFromBackend += d.length;
      if (!t.write(d)) up.pause();
    });
    t.on('drain', () => up.resume());
    if (ctx.idleTimeoutMs > 0) {
      // Any byte either way passes through the transport socket, so its timer is the session's.
      t.setTimeout(ctx.idleTimeoutMs, () => {
        ctx.stats.idleTimeouts++;
        this.destroy('idle');
      });
    }
    t.resume();
    up.resume();
  }

  /** One side ended or closed: close the other at once (after flushing what it still has to send). */
  private shutdown(): void {
    if (this.phase === 'closed') return;
    if (this.phase !== 'relay') {
      this.destroy('transport closed during the handshake');
      return;
    }
    this.finish();
    for (const s of [this.transport, this.upstream]) {
      if (!s || s.destroyed) continue;
      if (s.writableLength === 0) s.destroy();
      else {
        s.end();
        setTimeout(() => s.destroy(), LINGER_MS).unref();
      }
    }
  }

  /** Ends the session now, both sockets. */
  destroy(reason: string): void {
    if (this.phase === 'closed') return;
    this.ctx.logger.debug({ backend: this.backend?.spec.name, reason }, 'session closed');
    this.finish();
    this.transport.destroy();
    this.upstream?.destroy();
  }

  private finish(): void {
    const wasRelay = this.phase === 'relay';
    this.phase = 'closed';
    this.clearTimer();
    if (wasRelay && this.backend) {
      this.backend.stats.current--;
      this.backend.sessions.delete(this);
    }
    this.ctx.onClose(this);
  }
}

// The backends (twins' Extended ORPorts): health, round-robin choice and counters. Pure but for
// reading cookie files in markUp.
import { parseEndpoint, type Endpoint } from './address.js';

export interface BackendSpec {
  /** A name for logs, stats and markUp/markDown (the twin's name). */
  name: string;
  /** The twin's ExtORPort, HOST:PORT. */
  address: string;
  /** The cookie file the twin writes (tor rewrites it on every start). */
  cookieFile: string;
}

export interface BackendStats {
  name: string;
  address: string;
  up: boolean;
  draining: boolean;
  /** Why it is down, when it is. */
  downReason: string | null;
  /** Sessions relayed right now. */
  current: number;
  /** Sessions that reached the twin's OKAY/DENY. */
  total: number;
  /** Bytes relayed from the transport to the twin (after the handshake). */
  bytesToBackend: number;
  /** Bytes relayed from the twin to the transport (after the handshake). */
  bytesFromBackend: number;
  /** Handshakes the twin failed: it refused our cookie or proved it has another one. */
  authFailures: number;
  /** Connections that were refused, reset, timed out or closed before the twin's OKAY. */
  connectFailures: number;
}

export interface Backend extends Endpoint {
  spec: BackendSpec;
  cookie: Buffer | null;
  stats: BackendStats;
  /** Things to call to end the sessions on this backend (for removeBackend). */
  sessions: Set<{ destroy(reason: string): void }>;
}

/** A backend's stats before anything happened: down until marked up, counters zero. */
export function emptyBackendStats(spec: BackendSpec): BackendStats {
  return {
    name: spec.name,
    address: spec.address,
    up: false,
    draining: false,
    downReason: 'not marked up yet',
    current: 0,
    total: 0,
    bytesToBackend: 0,
    bytesFromBackend: 0,
    authFailures: 0,
    connectFailures: 0,
  };
}

export class BackendPool {
  private readonly list: Backend[] = [];
  private rr = 0;

  add(spec: BackendSpec): Backend {
    if (!spec.name) throw new Error('a backend needs a name');
    if (this.get(spec.name)) throw new Error(`backend ${spec.name} already exists`);
    const ep = parseEndpoint(spec.address, `backend ${spec.name} address`);
    const b: Backend = {
      ...ep,
      spec,
      cookie: null,
      sessions: new Set(),
      stats: emptyBackendStats(spec),
    };
    this.list.push(b);
    return b;
  }

  get(name: string): Backend | undefined {
    return this.list.find((b) => b.spec.name === name);
  }

  remove(name: string): void {
    const i = this.list.findIndex((b) => b.spec.name === name);
    if (i >= 0) this.list.splice(i, 1);
  }

  all(): readonly Backend[] {
    return this.list;
  }

  /** Marks a backend up with its current cookie. */
  setUp(b: Backend, cookie: Buffer): void {
    b.cookie = cookie;
    b.stats.up = true;
    b.stats.downReason = null;
  }

  /** Marks a backend down; returns false if it already was. */
  setDown(b: Backend, reason: string): boolean {
    const was = b.stats.up;
    b.stats.up = false;
    b.stats.downReason = reason;
    return was;
  }

  /** The next up, non-draining backend round-robin, skipping those in `exclude`; null if none. */
  next(exclude?: ReadonlySet<string>): Backend | null {
    const n = this.list.length;
    for (let k = 0; k < n; k++) {
      const i = (this.rr + k) % n;
      const b = this.list[i]!;
      if (!b.stats.up || b.stats.draining || !b.cookie || exclude?.has(b.spec.name)) continue;
      this.rr = (i + 1) % n;
      return b;
    }
    return null;
  }
}

// The balancer on the native engine (native/, engine.h first): sessions never enter JS. This side keeps the
// names, reads cookie files, resolves host names, turns engine events into logs and onBackendDown,
// and assembles stats from the engine's counters. Same contract as the JS balancer (balancer.ts).
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { readCookieFile } from '../extor-cookie/index.js';
import { formatEndpoint, parseEndpoint, parseSourceRange } from './address.js';
import type { Balancer, BalancerOptions, BalancerStats } from './balancer.js';
import { errnoError } from './source-bind.js';
import { BACKEND_COUNTERS, LISTENER_COUNTERS, completion, onBalancerEvents, type EngineAddon } from './native.js';
import { emptyBackendStats, type BackendSpec, type BackendStats } from './pool.js';
import type { ListenerStats } from './session.js';

const MAX_BACKENDS = 256;

/** Where each counter sits in engineStats, found by name in the engine's own layout. */
function statsLayout(e: EngineAddon) {
  const { listener, twin } = e.engineLayout();
  const at = (list: string[], name: string): number => {
    const i = list.indexOf(name);
    if (i < 0) throw new Error(`the native engine has no counter "${name}" (rebuild it: npm install)`);
    return i;
  };
  return {
    listener: LISTENER_COUNTERS.map((k) => at(listener, k)),
    /** Offset of twin slot idx's block. */
    twin: (idx: number) => listener.length + idx * twin.length,
    used: at(twin, 'used'),
    up: at(twin, 'up'),
    draining: at(twin, 'draining'),
    counters: BACKEND_COUNTERS.map((k) => at(twin, k)),
  };
}

interface Entry {
  idx: number;
  spec: BackendSpec;
  /** Settles once the engine has the backend's address (host names are resolved first). */
  ready: Promise<void>;
}

function ipv4ToInt(s: string): number {
  return s.split('.').reduce((n, p) => n * 256 + Number(p), 0);
}

async function numeric(host: string): Promise<string> {
  return isIP(host) ? host : (await lookup(host)).address;
}

export function createNativeBalancer(opts: BalancerOptions, e: EngineAddon, defaults: { listen: string; sourceRange: string }): Balancer {
  const logger = opts.logger;
  const listen = parseEndpoint(opts.listen ?? defaults.listen, 'balancer listen address', true);
  const range = parseSourceRange(opts.sourceRange ?? defaults.sourceRange);
  if (opts.staticCookie.length !== 32) throw new Error(`the static cookie is 32 bytes, got ${opts.staticCookie.length}`);
  const noPort = opts.bindAddressNoPort ?? true;
  const L = statsLayout(e);
  const h = e.engineCreate(opts.staticCookie, {
    srcFirst: ipv4ToInt(range.at(0)),
    srcSize: range.size,
    noPort: noPort ? 1 : 0,
    handshakeMs: opts.handshakeTimeoutMs ?? 30_000,
    backendMs: opts.backendTimeoutMs ?? 10_000,
    idleMs: opts.idleTimeoutMs ?? 600_000,
    maxSessions: opts.maxSessions ?? 16_384,
    debug: logger.isLevelEnabled('debug') ? 1 : 0,
    leastConnections: (opts.choice ?? 'least-connections') === 'least-connections' ? 1 : 0,
  });
  const backends = new Map<string, Entry>();
  const byIdx = new Map<number, Entry>();
  let bound: { host: string; port: number } | null = null;
  let stopped = false;
  /** The engine frees the balancer at stop: what stats() says from then on. */
  let last: BalancerStats | null = null;

  /** Ends the engine's balancer (once): its sessions, its listener, its state, its event handler. */
  const release = async (): Promise<void> => {
    if (stopped) return;
    last = stats();
    stopped = true;
    const c = completion();
    e.engineStop(h, c.token);
    await c.promise;
    onBalancerEvents(h, null);
  };

  onBalancerEvents(h, {
    down(idx, reason) {
      const b = byIdx.get(idx);
      if (!b) return;
      logger.warn({ backend: b.spec.name, reason }, 'twin marked down; its sessions go to the others');
      opts.onBackendDown?.(b.spec.name, reason);
    },
    debug(message) {
      logger.debug(message);
    },
  });

  const entry = (name: string): Entry => {
    const b = backends.get(name);
    if (!b) throw new Error(`no backend ${name}`);
    return b;
  };

  const freeIdx = (): number => {
    for (let i = 0; i < MAX_BACKENDS; i++) if (!byIdx.has(i)) return i;
    throw new Error(`at most ${MAX_BACKENDS} backends per balancer`);
  };

  return {
    async start() {
      if (bound || stopped) throw new Error('balancer already started');
      const host = await numeric(listen.host);
      const port = e.engineListen(h, host, listen.port, 4096);
      if (port < 0) {
        await release();
        throw errnoError(port, 'listen', formatEndpoint(listen));
      }
      e.engineRef(true);
      bound = { host, port };
      logger.info({ listen: bound, sourceRange: range.cidr, bindAddressNoPort: noPort, engine: 'native' }, 'balancer listening');
      return bound;
    },

    async stop() {
      if (stopped) return;
      await release();
      if (bound) e.engineRef(false);
      bound = null;
      if (last) last = { ...last, listen: null };
    },

    addBackend(spec) {
      if (stopped) throw new Error('the balancer is stopped');
      if (!spec.name) throw new Error('a backend needs a name');
      if (backends.has(spec.name)) throw new Error(`backend ${spec.name} already exists`);
      const ep = parseEndpoint(spec.address, `backend ${spec.name} address`);
      const idx = freeIdx();
      const set = (host: string): void => {
        const r = e.engineBackendSet(h, idx, host, ep.port);
        if (r < 0) throw errnoError(r, 'backend', spec.address);
      };
      let ready: Promise<void>;
      if (isIP(ep.host)) {
        set(ep.host);
        ready = Promise.resolve();
      } else {
        ready = numeric(ep.host).then(set);
        ready.catch((err: Error) => logger.warn({ backend: spec.name, err: err.message }, 'cannot resolve the twin address'));
      }
      const b: Entry = { idx, spec, ready };
      backends.set(spec.name, b);
      byIdx.set(idx, b);
      logger.info({ backend: spec.name, address: spec.address }, 'twin added (down until marked up)');
    },

    async removeBackend(name, o = {}) {
      const b = backends.get(name);
      if (!b || stopped) return;
      e.engineBackendDrain(h, b.idx, true);
      const current = (): number => e.engineStats(h)[L.twin(b.idx) + L.counters[BACKEND_COUNTERS.indexOf('current')]!] ?? 0;
      const deadline = Date.now() + (o.drainMs ?? 30_000);
      while (!stopped && current() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      await b.ready.catch(() => undefined);
      if (stopped) return;
      const c = completion();
      e.engineBackendRemove(h, b.idx, c.token);
      await c.promise;
      backends.delete(name);
      byIdx.delete(b.idx);
      logger.info({ backend: name }, 'twin removed');
    },

    async markUp(name) {
      const b = entry(name);
      await b.ready;
      const cookie = await readCookieFile(b.spec.cookieFile);
      if (backends.get(name) !== b || stopped) throw new Error(`no backend ${name}`);
      e.engineBackendUp(h, b.idx, cookie);
      logger.info({ backend: name }, 'twin marked up');
    },

    markDown(name, reason) {
      const b = backends.get(name);
      if (!b || stopped) return;
      if (e.engineBackendDown(h, b.idx, reason)) logger.info({ backend: name, reason }, 'twin marked down');
    },

    setLimits(l) {
      if (stopped) return;
      e.engineLimits(h, l.handshakeTimeoutMs ?? -1, l.backendTimeoutMs ?? -1, l.idleTimeoutMs ?? -1, l.maxSessions ?? -1);
    },

    stats,
  };

  function stats(): BalancerStats {
    if (last) return last;
    const a = e.engineStats(h);
    const sessions = {} as ListenerStats;
    LISTENER_COUNTERS.forEach((k, i) => (sessions[k] = a[L.listener[i]!] ?? 0));
    const list: BackendStats[] = [];
    for (const b of backends.values()) {
      const off = L.twin(b.idx);
      const used = (a[off + L.used] ?? 0) !== 0;
      const up = used && (a[off + L.up] ?? 0) !== 0;
      const s: BackendStats = {
        ...emptyBackendStats(b.spec),
        up,
        draining: used && (a[off + L.draining] ?? 0) !== 0,
        downReason: up ? null : used ? e.engineBackendReason(h, b.idx) : 'resolving its address',
      };
      BACKEND_COUNTERS.forEach((k, i) => (s[k] = used ? (a[off + L.counters[i]!] ?? 0) : 0));
      list.push(s);
    }
    return { listen: bound, bindAddressNoPort: noPort, engine: 'native', splice: true, sourceRange: range.cidr, sessions, backends: list };
  }
}

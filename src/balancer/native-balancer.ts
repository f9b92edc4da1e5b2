// The balancer on the native engine (native/, engine.h first): sessions never enter JS. This side keeps the
// names, reads cookie files, resolves host names, turns engine events into logs and onTwinDown,
// and assembles stats from the engine's counters. The contract is in types.ts.
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { BALANCER_DEFAULTS } from '../config/index.js';
import { readCookieFile } from '../extorport/index.js';
import { formatEndpoint, parseEndpoint, parseSourceRange } from './address.js';
import type { Balancer, BalancerOptions, BalancerStats, ListenerStats, TwinSpec, TwinStats } from './types.js';
import { errnoError } from './addon.js';
import { createDrainer } from './drain.js';
import { TWIN_COUNTERS, LISTENER_COUNTERS, completion, onBalancerEvents, type EngineAddon } from './native.js';

const MAX_TWINS = 256;

/** Where each counter sits in engineStats, found by name in the engine's own layout. */
function statsLayout(e: EngineAddon) {
  const { listener, twin } = e.engineLayout();
  const at = (list: string[], name: string): number => {
    const i = list.indexOf(name);
    if (i < 0) throw new Error(`the native engine has no counter "${name}" (rebuild it: npm rebuild)`);
    return i;
  };
  return {
    listener: LISTENER_COUNTERS.map((k) => at(listener, k)),
    /** Offset of twin slot idx's block. */
    twin: (idx: number) => listener.length + idx * twin.length,
    used: at(twin, 'used'),
    up: at(twin, 'up'),
    draining: at(twin, 'draining'),
    counters: TWIN_COUNTERS.map((k) => at(twin, k)),
  };
}

interface Entry {
  idx: number;
  spec: TwinSpec;
  /** Settles once the engine has the twin's address (host names are resolved first). */
  ready: Promise<void>;
}

function ipv4ToInt(s: string): number {
  return s.split('.').reduce((n, p) => n * 256 + Number(p), 0);
}

async function numeric(host: string): Promise<string> {
  return isIP(host) ? host : (await lookup(host)).address;
}

/** A twin's stats before anything happened: down until marked up, counters zero. */
function emptyTwinStats(spec: TwinSpec): TwinStats {
  const s = { name: spec.name, address: spec.address, up: false, draining: false, downReason: 'not marked up yet' } as TwinStats;
  for (const k of TWIN_COUNTERS) s[k] = 0;
  return s;
}

export function createNativeBalancer(opts: BalancerOptions, e: EngineAddon): Balancer {
  const D = BALANCER_DEFAULTS;
  const logger = opts.logger;
  const listen = parseEndpoint(opts.listen ?? D.listen, 'balancer listen address', true);
  const range = parseSourceRange(opts.sourceRange ?? D.sourceRange);
  if (opts.staticCookie.length !== 32) throw new Error(`the static cookie is 32 bytes, got ${opts.staticCookie.length}`);
  const noPort = opts.bindAddressNoPort ?? true;
  const L = statsLayout(e);
  const h = e.engineCreate(opts.staticCookie, {
    srcFirst: ipv4ToInt(range.at(0)),
    srcSize: range.size,
    noPort: noPort ? 1 : 0,
    handshakeMs: opts.handshakeTimeoutMs ?? D.handshakeTimeoutMs,
    twinMs: opts.twinTimeoutMs ?? D.twinTimeoutMs,
    idleMs: opts.idleTimeoutMs ?? D.idleTimeoutMs,
    maxSessions: opts.maxSessions ?? D.maxSessions,
    debug: logger.isLevelEnabled('debug') ? 1 : 0,
    leastConnections: (opts.choice ?? D.choice) === 'least-connections' ? 1 : 0,
  });
  const twins = new Map<string, Entry>();
  const drainer = createDrainer();
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
      logger.warn({ twin: b.spec.name, reason }, 'twin marked down; its sessions go to the others');
      opts.onTwinDown?.(b.spec.name, reason);
    },
    debug(message) {
      logger.debug(message);
    },
  });

  const entry = (name: string): Entry => {
    const b = twins.get(name);
    if (!b) throw new Error(`no twin ${name}`);
    return b;
  };

  const freeIdx = (): number => {
    for (let i = 0; i < MAX_TWINS; i++) if (!byIdx.has(i)) return i;
    throw new Error(`at most ${MAX_TWINS} twins per balancer`);
  };

  /** Sessions open on the twin in slot idx now. */
  const openOn = (idx: number): number => (stopped ? 0 : (e.engineStats(h)[L.twin(idx) + L.counters[TWIN_COUNTERS.indexOf('current')]!] ?? 0));

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
      logger.info({ listen: bound, sourceRange: range.cidr, bindAddressNoPort: noPort }, 'balancer listening');
      return bound;
    },

    async stop() {
      if (stopped) return;
      await release();
      if (bound) e.engineRef(false);
      bound = null;
      if (last) last = { ...last, listen: null };
    },

    addTwin(spec) {
      if (stopped) throw new Error('the balancer is stopped');
      if (!spec.name) throw new Error('a twin needs a name');
      if (twins.has(spec.name)) throw new Error(`twin ${spec.name} already exists`);
      const ep = parseEndpoint(spec.address, `twin ${spec.name} address`);
      const idx = freeIdx();
      const set = (host: string): void => {
        const r = e.engineTwinSet(h, idx, host, ep.port);
        if (r < 0) throw errnoError(r, 'twin', spec.address);
      };
      let ready: Promise<void>;
      if (isIP(ep.host)) {
        set(ep.host);
        ready = Promise.resolve();
      } else {
        ready = numeric(ep.host).then(set);
        ready.catch((err: Error) => logger.warn({ twin: spec.name, err: err.message }, 'cannot resolve the twin address'));
      }
      const b: Entry = { idx, spec, ready };
      twins.set(spec.name, b);
      byIdx.set(idx, b);
      logger.info({ twin: spec.name, address: spec.address }, 'twin added (down until marked up)');
    },

    async removeTwin(name, o = {}) {
      const b = twins.get(name);
      if (!b || stopped) return;
      e.engineTwinDrain(h, b.idx, true);
      await drainer.until(() => openOn(b.idx), o.drainMs ?? D.drainMs);
      await b.ready.catch(() => undefined);
      if (stopped) return;
      const c = completion();
      e.engineTwinRemove(h, b.idx, c.token);
      await c.promise;
      twins.delete(name);
      byIdx.delete(b.idx);
      logger.info({ twin: name }, 'twin removed');
    },

    drain(name, timeoutMs) {
      const b = twins.get(name);
      return b ? drainer.until(() => (twins.get(name) === b ? openOn(b.idx) : 0), timeoutMs) : Promise.resolve(0);
    },

    async markUp(name) {
      const b = entry(name);
      await b.ready;
      const cookie = await readCookieFile(b.spec.cookieFile);
      if (twins.get(name) !== b || stopped) throw new Error(`no twin ${name}`);
      e.engineTwinUp(h, b.idx, cookie);
      logger.info({ twin: name }, 'twin marked up');
    },

    markDown(name, reason) {
      const b = twins.get(name);
      if (!b || stopped) return;
      if (e.engineTwinDown(h, b.idx, reason)) logger.info({ twin: name, reason }, 'twin marked down');
    },

    setLimits(l) {
      if (stopped) return;
      e.engineLimits(h, l.handshakeTimeoutMs ?? -1, l.twinTimeoutMs ?? -1, l.idleTimeoutMs ?? -1, l.maxSessions ?? -1);
    },

    stats,
  };

  function stats(): BalancerStats {
    if (last) return last;
    const a = e.engineStats(h);
    const sessions = {} as ListenerStats;
    LISTENER_COUNTERS.forEach((k, i) => (sessions[k] = a[L.listener[i]!] ?? 0));
    const list: TwinStats[] = [];
    for (const b of twins.values()) {
      const off = L.twin(b.idx);
      const used = (a[off + L.used] ?? 0) !== 0;
      const up = used && (a[off + L.up] ?? 0) !== 0;
      const s: TwinStats = {
        ...emptyTwinStats(b.spec),
        up,
        draining: used && (a[off + L.draining] ?? 0) !== 0,
        downReason: up ? null : used ? e.engineTwinReason(h, b.idx) : 'resolving its address',
      };
      TWIN_COUNTERS.forEach((k, i) => (s[k] = used ? (a[off + L.counters[i]!] ?? 0) : 0));
      list.push(s);
    }
    return { listen: bound, bindAddressNoPort: noPort, splice: true, sourceRange: range.cidr, sessions, twins: list };
  }
}

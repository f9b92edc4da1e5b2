// The engine's splice(2) relay, for two sockets connected elsewhere: the balancer's own sessions
// never leave the native engine, so this is how the relay is driven on its own (its tests use it). The relay keeps dup()s of the descriptors; the net.Sockets are
// destroyed; one worker thread then moves the bytes with splice through a pipe, never through the
// JS heap. Close is reported back once per session with the byte counts.
// Without the addon (or with BRIDGECTL_NO_SPLICE=1) spliceRelay() is null.
import type net from 'node:net';
import { engineUnavailableReason, hasRelayHandler, nativeEngine, onRelayClose, type EngineAddon } from './native.js';

export type RelayCloseHandler = (reason: string, aToB: number, bToA: number) => void;

export interface SpliceRelay {
  /**
   * Relays between two connected sockets from now on, in the kernel. `firstAtoB`/`firstBtoA` are
   * written before anything read from the sockets. Bytes Node had already read but not delivered are
   * taken from the sockets and sent first too. On success the sockets are destroyed (the relay holds
   * its own descriptors) and the id is returned; on failure (no descriptor, say) null, and the
   * sockets are left as they were.
   */
  handOff(
    a: net.Socket,
    b: net.Socket,
    opts: { idleMs: number; firstAtoB?: Buffer; firstBtoA?: Buffer },
    onClose: RelayCloseHandler,
  ): number | null;
  /** Closes a relayed session now; its onClose still comes (reason "closed"). */
  close(id: number): void;
  /** Bytes written each way so far, or null once closed. Counts include the `first` bytes. */
  bytes(id: number): [number, number] | null;
  stats(): { sessions: number; pipes: number; pooledPipes: number };
}

let relay: SpliceRelay | null | undefined;
let unavailable = '';

function fdOf(s: net.Socket): number {
  const fd = (s as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

/** Takes what Node has read from `s` but not delivered (the socket is paused). */
function takeBuffered(s: net.Socket): Buffer[] {
  const out: Buffer[] = [];
  if (s.readableLength === 0) return out;
  for (let c: unknown = s.read(); c !== null; c = s.read()) out.push(c as Buffer);
  return out;
}

function create(addon: EngineAddon): SpliceRelay {
  return {
    handOff(a, b, opts, h) {
      const fa = fdOf(a);
      const fb = fdOf(b);
      if (fa < 0 || fb < 0 || a.destroyed || b.destroyed) return null;
      const bufA = takeBuffered(a);
      const bufB = takeBuffered(b);
      const first = (x: Buffer | undefined, more: Buffer[]): Buffer | undefined =>
        more.length ? Buffer.concat(x ? [x, ...more] : more) : x;
      const id = addon.relayAdd(fa, fb, opts.idleMs, first(opts.firstAtoB, bufA), first(opts.firstBtoA, bufB));
      if (id < 0) {
        for (const c of bufA.reverse()) a.unshift(c);
        for (const c of bufB.reverse()) b.unshift(c);
        return null;
      }
      onRelayClose(id, h);
      for (const s of [a, b]) {
        s.removeAllListeners();
        s.on('error', () => {});
        s.destroy();
      }
      return id;
    },
    close(id) {
      if (hasRelayHandler(id)) addon.relayClose(id);
    },
    bytes(id) {
      return addon.relayBytes(id) ?? null;
    },
    stats() {
      return addon.relayStats();
    },
  };
}

/** The splice relay, or null when it can't be used here (see spliceUnavailableReason()). */
export function spliceRelay(): SpliceRelay | null {
  if (relay !== undefined) return relay;
  if (process.env.BRIDGECTL_NO_SPLICE === '1') {
    unavailable = 'disabled by BRIDGECTL_NO_SPLICE=1';
    return (relay = null);
  }
  const addon = nativeEngine();
  if (!addon) unavailable = engineUnavailableReason();
  return (relay = addon ? create(addon) : null);
}

export function spliceUnavailableReason(): string {
  return unavailable;
}

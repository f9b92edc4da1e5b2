// The native engine (src/balancer/native/): one worker thread that accepts, runs both SAFE_COOKIE
// handshakes and relays with splice(2). This file is the one place that initialises it and routes
// its events (a twin marked down, a command done, debug lines) to native-balancer.ts.
import { readFileSync } from 'node:fs';
import { addonLoadError, loadAddon, packageRoot } from './addon.js';

export interface EngineAddon {
  engineInit(onEvent: (kind: number, a: number, b: unknown, c: unknown, d: unknown) => void, pipeSize: number): number;
  engineCreate(staticCookie: Buffer, opts: Record<string, number>): number;
  engineListen(h: number, host: string, port: number, backlog: number): number;
  engineStop(h: number, token: number): void;
  engineLimits(h: number, handshakeMs: number, twinMs: number, idleMs: number, maxSessions: number): void;
  engineTwinSet(h: number, idx: number, host: string, port: number): number;
  engineTwinUp(h: number, idx: number, cookie: Buffer): void;
  engineTwinDown(h: number, idx: number, reason: string): boolean;
  engineTwinDrain(h: number, idx: number, on: boolean): void;
  engineTwinRemove(h: number, idx: number, token: number): void;
  engineTwinReason(h: number, idx: number): string;
  engineStats(h: number): Float64Array;
  /** engineStats's layout: the listener counters' names, then per twin slot its flags' and counters' names. */
  engineLayout(): { listener: string[]; twin: string[]; events: EventKinds };
  engineRef(on: boolean): void;
}

/** The listener counters bridgectl reports; native-balancer.ts finds each by name in engineLayout(). */
export const LISTENER_COUNTERS = [
  'accepted',
  'current',
  'established',
  'authFailures',
  'protocolErrors',
  'handshakeTimeouts',
  'idleTimeouts',
  'rejectedOverCap',
  'noTwin',
  'replays',
  'localErrors',
] as const;
export const TWIN_COUNTERS = ['current', 'total', 'bytesToTwin', 'bytesFromTwin', 'authFailures', 'connectFailures'] as const;

export interface BalancerEvents {
  down(idx: number, reason: string, authFailed: boolean): void;
  debug(message: string): void;
}

/**
 * Capacity of each relay pipe (F_SETPIPE_SZ): bytes one splice moves at most. Bigger batches cost
 * less CPU per byte (fewer splices, ACKs and wake-ups per GiB; bench/RESULTS.md measures 64 KiB,
 * 256 KiB and 1 MiB side by side), so 1 MiB, but no more than fs.pipe-max-size: above it an
 * unprivileged F_SETPIPE_SZ fails and the pipe would keep the kernel's 64 KiB.
 */
const PIPE_SIZE = 1 << 20;
function defaultPipeSize(maxFile = '/proc/sys/fs/pipe-max-size'): number {
  try {
    const max = Number(readFileSync(maxFile, 'utf8').trim());
    return Number.isInteger(max) && max >= 4096 ? Math.min(PIPE_SIZE, max) : PIPE_SIZE;
  } catch {
    return PIPE_SIZE;
  }
}

/** The kinds of the engine's events, by name (the engine's own numbers, from engineLayout()). */
interface EventKinds {
  down: number;
  done: number;
  debug: number;
}
let events: EventKinds = { down: -1, done: -1, debug: -1 };

let engine: EngineAddon | null | undefined;
let unavailable = '';
const balancerHandlers = new Map<number, BalancerEvents>();
const done = new Map<number, () => void>();
let nextToken = 1;

function onEvent(kind: number, a: number, b: unknown, c: unknown, d: unknown): void {
  if (kind === events.down) {
    balancerHandlers.get(a)?.down(b as number, c as string, d as boolean);
  } else if (kind === events.done) {
    const r = done.get(a);
    if (!r) return;
    done.delete(a);
    engine?.engineRef(false);
    r();
  } else if (kind === events.debug) {
    balancerHandlers.get(a)?.debug(b as string);
  }
}

/** The engine, initialised, or null when the addon is not built here (why: engineMissingMessage()). */
export function nativeEngine(): EngineAddon | null {
  if (engine !== undefined) return engine;
  const addon = loadAddon() as Partial<EngineAddon> | null;
  if (!addon || typeof addon.engineInit !== 'function') {
    unavailable = addon ? 'the addon predates the engine' : addonLoadError();
    return (engine = null);
  }
  try {
    events = (addon as EngineAddon).engineLayout().events;
    const fallback = defaultPipeSize();
    const pipeSize = Number(process.env.BRIDGECTL_SPLICE_PIPE_SIZE ?? fallback);
    addon.engineInit(onEvent, Number.isInteger(pipeSize) && pipeSize > 0 ? pipeSize : fallback);
    engine = addon as EngineAddon;
  } catch (e) {
    unavailable = (e as Error).message;
    engine = null;
  }
  return engine;
}

/**
 * Null when the engine is there; else the one line that says why not and how to build it (true for
 * a checkout and for an installed package alike: both build the addon from binding.gyp).
 */
export function engineMissingMessage(): string | null {
  if (nativeEngine()) return null;
  return `the native engine is not built (${unavailable}): run npm rebuild in ${packageRoot() ?? "bridgectl's directory"}`;
}

/** The engine; throws the one-line engineMissingMessage() when it is not built. */
export function requireNativeEngine(): EngineAddon {
  const e = nativeEngine();
  if (!e) throw new Error(engineMissingMessage()!);
  return e;
}

export function onBalancerEvents(handle: number, h: BalancerEvents | null): void {
  if (h) balancerHandlers.set(handle, h);
  else balancerHandlers.delete(handle);
}

/** A token for a command whose completion the engine reports, and the promise of that report. */
export function completion(): { token: number; promise: Promise<void> } {
  const token = nextToken++;
  // The report comes through the engine's threadsafe function, which does not keep Node alive by
  // itself: hold a reference until it arrives, or a balancer that failed to listen (nothing else
  // alive) would let the process exit with 0 while its stop was still awaited.
  engine?.engineRef(true);
  const promise = new Promise<void>((resolve) => done.set(token, resolve));
  return { token, promise };
}

// Taking one twin out of service and back: the one drain used by onion-key rotation, the rolling
// restart and remove-instance, and the restart of a drained twin that waits until it serves again.
// About instances in general: with no balancer in front (a relay), there is nothing to drain.
import type { Logger } from 'pino';
import type { Balancer } from '../balancer/index.js';
import type { Supervisor } from './supervisor.js';

export interface CycleHost {
  twins: Supervisor;
  balancer: () => Balancer | null;
  logger: Logger;
  /** Twins the health check must leave down while they are drained or restarted on purpose. */
  held: Set<string>;
}

export interface CycleOptions {
  /** How long the twin's sessions may drain before it restarts anyway (default 30 s). */
  drainMs?: number;
  /** How long the restarted twin may take to bootstrap and rejoin the balancer (default 120 s). */
  bootstrapMs?: number;
  /** Runs while its tor is stopped (rotation swaps keys here). */
  hook?: () => Promise<void>;
  /** Why, for the logs and the balancer's down reason. */
  reason?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Drains one twin: the balancer sends it no new session, and its open sessions get at most `drainMs`
 * to end. Resolves with the sessions still open at the deadline (0: drained). The caller keeps the
 * twin in `held` so that the health check does not put it back meanwhile.
 */
export async function drainTwin(b: Balancer | null, name: string, drainMs: number, reason: string): Promise<number> {
  if (!b) return 0;
  b.markDown(name, reason);
  return b.drain(name, drainMs);
}

/**
 * Drains one twin, restarts its tor (running `hook` while it is stopped) and resolves once it is
 * bootstrapped and back in the balancer, so that the caller may take the next one.
 */
export async function cycleTwin(h: CycleHost, name: string, o: CycleOptions = {}): Promise<void> {
  const log = h.logger.child({ instance: name });
  const drainMs = o.drainMs ?? 30_000;
  const bootstrapMs = o.bootstrapMs ?? 120_000;
  const reason = o.reason ?? 'restarting';
  h.held.add(name);
  try {
    const left = await drainTwin(h.balancer(), name, drainMs, reason);
    if (left > 0) log.warn({ sessions: left, drainMs }, 'sessions still open after the drain period; restarting anyway');
    const up = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        h.twins.off('bootstrapped', on);
        reject(new Error(`${name} did not bootstrap within ${bootstrapMs} ms after its restart`));
      }, bootstrapMs);
      const on = (s: { name: string }): void => {
        if (s.name !== name) return;
        clearTimeout(timer);
        h.twins.off('bootstrapped', on);
        resolve();
      };
      h.twins.on('bootstrapped', on);
    });
    up.catch(() => undefined);
    await h.twins.restartInstance(name, o.hook);
    h.held.delete(name);
    await up;
    // The bridge's 'bootstrapped' handler marks it up; wait for that before the caller goes on.
    const b = h.balancer();
    const upDeadline = Date.now() + 10_000;
    while (b && !b.stats().twins.find((x) => x.name === name)?.up && Date.now() < upDeadline) await sleep(50);
    log.info({ reason }, 'twin restarted and serving again');
  } finally {
    h.held.delete(name);
  }
}

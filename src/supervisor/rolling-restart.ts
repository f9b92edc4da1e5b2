// The rolling restart (`bridgectl restart`): every instance's tor in turn, one at a time, each
// drained through the balancer first and the next only after the previous one is bootstrapped and
// serving again (cycleTwin). Its progress is a state file in the data directory, so a run that was
// interrupted (a twin that did not come back, a supervisor stop) is resumed by the next
// `bridgectl restart` instead of restarting the twins already done.
import { readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstanceStatus } from './supervisor.js';
import { cycleTwin, type CycleHost } from './twin-cycle.js';

export const RESTART_STATE_FILE = 'rolling-restart.json';
export const restartStatePath = (dataDir: string): string => join(dataDir, RESTART_STATE_FILE);

export interface RestartState {
  /** When the run began (ISO 8601). A tor started since then counts as restarted. */
  startedAt: string;
  /** The twins in the order they are restarted. */
  order: string[];
  done: string[];
  /** The twin being drained or restarted now. */
  current: string | null;
  finishedAt: string | null;
  /** Why the run stopped before its end (it resumes at the next `bridgectl restart`). */
  error: string | null;
}

export interface RestartOptions {
  drainMs?: number;
  bootstrapMs?: number;
}

export interface RestartResult {
  restarted: string[];
  /** Twins already restarted by an earlier, interrupted run (or started since it began). */
  alreadyDone: string[];
  resumed: boolean;
  startedAt: string;
  finishedAt: string;
}

export async function readRestartState(dataDir: string): Promise<RestartState | null> {
  let text: string;
  try {
    text = await readFile(restartStatePath(dataDir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const s = JSON.parse(text) as Partial<RestartState>;
  if (typeof s.startedAt !== 'string' || !Array.isArray(s.order) || !Array.isArray(s.done)) {
    throw new Error(`${restartStatePath(dataDir)}: not a rolling-restart state bridgectl understands`);
  }
  return { current: null, finishedAt: null, error: null, ...s } as RestartState;
}

async function writeRestartState(dataDir: string, s: RestartState): Promise<void> {
  const p = restartStatePath(dataDir);
  await writeFile(`${p}.tmp`, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  await rename(`${p}.tmp`, p);
}

/**
 * Which twins a run restarts, in which order (pure). An unfinished earlier run is resumed: the twins
 * it did, and any whose tor started after it began, are not restarted again; twins added since are
 * appended. Otherwise a fresh run takes every twin by number.
 */
export function planRestart(prev: RestartState | null, twins: InstanceStatus[], now: Date): { state: RestartState; todo: string[]; resumed: boolean } {
  const byIndex = [...twins].sort((a, b) => a.index - b.index).map((t) => t.name);
  if (!prev || prev.finishedAt) {
    return { state: { startedAt: now.toISOString(), order: byIndex, done: [], current: null, finishedAt: null, error: null }, todo: byIndex, resumed: false };
  }
  const since = Date.parse(prev.startedAt);
  const names = new Set(byIndex);
  const order = [...prev.order.filter((n) => names.has(n)), ...byIndex.filter((n) => !prev.order.includes(n))];
  const fresh = new Set(twins.filter((t) => t.startedAt !== null && t.startedAt >= since).map((t) => t.name));
  const done = order.filter((n) => prev.done.includes(n) || fresh.has(n));
  return { state: { ...prev, order, done, current: null, error: null }, todo: order.filter((n) => !done.includes(n)), resumed: true };
}

export class RollingRestart {
  /** The run under way, or the last one (as the state file says), for `bridgectl status`. */
  progress: RestartState | null = null;

  constructor(
    private readonly h: CycleHost,
    private readonly dataDir: () => string,
  ) {}

  /** Reads the last run's state (at start-up), so that status can show an unfinished one. */
  async load(): Promise<void> {
    this.progress = await readRestartState(this.dataDir()).catch(() => null);
  }

  private async save(s: RestartState): Promise<void> {
    this.progress = s;
    await writeRestartState(this.dataDir(), s);
  }

  /** Runs (or resumes) a rolling restart; call it serialized with other membership changes. */
  async run(o: RestartOptions = {}): Promise<RestartResult> {
    const twins = this.h.twins.status();
    const plan = planRestart(await readRestartState(this.dataDir()), twins, new Date());
    const notRunning = twins.filter((s) => plan.todo.includes(s.name) && s.state !== 'running');
    if (notRunning.length) {
      throw new Error(`not every twin is running (${notRunning.map((s) => `${s.name} ${s.state}`).join(', ')}); try again once they are`);
    }
    const alreadyDone = [...plan.state.done];
    let st = plan.state;
    await this.save(st);
    const log = this.h.logger.child({ component: 'restart' });
    if (twins.length < 2) log.warn('only one twin: its sessions cannot move elsewhere while it restarts');
    log.info({ todo: plan.todo, alreadyDone, resumed: plan.resumed }, plan.resumed ? 'resuming the rolling restart' : 'rolling restart: one twin at a time');
    for (const name of plan.todo) {
      st = { ...st, current: name };
      await this.save(st);
      try {
        await cycleTwin(this.h, name, { ...o, reason: 'rolling restart' });
      } catch (e) {
        await this.save({ ...st, current: null, error: (e as Error).message });
        throw new Error(`rolling restart stopped at ${name}: ${(e as Error).message}; run "bridgectl restart" again to resume`);
      }
      st = { ...st, current: null, done: [...st.done, name] };
      await this.save(st);
    }
    st = { ...st, finishedAt: new Date().toISOString() };
    await this.save(st);
    log.info({ restarted: plan.todo }, 'rolling restart done');
    return { restarted: plan.todo, alreadyDone, resumed: plan.resumed, startedAt: st.startedAt, finishedAt: st.finishedAt! };
  }
}

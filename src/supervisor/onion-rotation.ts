// Coordinated onion-key rotation of the running bridge: one new TAP + ntor pair (made by tor)
// becomes every twin's current pair, the previous one stays as .old files for the grace period,
// and the twins restart one at a time, each drained through the balancer first (cycleTwin).
// The keys on disk are keysync's; this file is the schedule and the order of the steps.
import type { Logger } from 'pino';
import { instanceLayout, identityDir, type ResolvedConfig } from '../config/index.js';
import {
  loadOrInitRotationState,
  readRotationState,
  writeRotationState,
  rotationSchedule,
  generateOnionKeys,
  beginRotation,
  finishTwin,
  endGrace,
  type RotationState,
} from '../keysync/index.js';
import { listFingerprint } from '../tor/index.js';
import { cycleTwin, type CycleHost } from './twin-cycle.js';

export interface RotationResult {
  rotatedAt: string;
  /** sha256 prefixes of the new and previous ntor key files. */
  current: string;
  previous: string | null;
  twins: string[];
  graceEnds: string | null;
  nextRotation: string;
}

export interface RotationOptions {
  /** How long each twin's sessions may drain before it restarts anyway. */
  drainMs?: number;
  /** How long a restarted twin may take to bootstrap. */
  bootstrapMs?: number;
}

export interface RotationHost extends CycleHost {
  cfg: () => ResolvedConfig;
  logger: Logger;
}

export class OnionRotation {
  constructor(private readonly h: RotationHost) {}

  private get cfg(): ResolvedConfig {
    return this.h.cfg();
  }

  private twinDirs(): Array<{ name: string; dataDir: string; keysDir: string }> {
    return this.h.twins
      .status()
      .sort((a, b) => a.index - b.index)
      .map((s) => instanceLayout(this.cfg, s.index));
  }

  private result(st: RotationState, twins: string[]): RotationResult {
    const sch = rotationSchedule(st, new Date(), this.cfg.keys);
    return {
      rotatedAt: st.rotatedAt,
      current: st.current,
      previous: st.previous,
      twins,
      graceEnds: sch.graceEnds?.toISOString() ?? null,
      nextRotation: sch.nextRotation.toISOString(),
    };
  }

  /** A rotation interrupted by a supervisor exit: its twins are all stopped now, so finish each on disk. */
  async resume(): Promise<void> {
    const id = identityDir(this.cfg);
    const st = await readRotationState(id);
    if (st?.phase !== 'rolling') return;
    const twins = Array.from({ length: this.cfg.instances }, (_, i) => instanceLayout(this.cfg, i + 1));
    for (const t of twins) await finishTwin(id, t.dataDir, st);
    await writeRotationState(id, { ...st, phase: 'grace', done: twins.map((t) => t.name) });
    this.h.logger.warn({ rotatedAt: st.rotatedAt }, 'finished an onion-key rotation that was interrupted');
  }

  /** Rotates now (call it serialized with other membership changes). */
  async rotate(o: RotationOptions = {}): Promise<RotationResult> {
    if (!this.h.balancer()) throw new Error('the bridge is not running');
    const id = identityDir(this.cfg);
    const before = await loadOrInitRotationState(id);
    if (before.phase === 'rolling') throw new Error('a rotation is already under way');
    const twins = this.twinDirs();
    const notRunning = this.h.twins.status().filter((s) => s.state !== 'running');
    if (notRunning.length) throw new Error(`not every twin is running (${notRunning.map((s) => `${s.name} ${s.state}`).join(', ')}); try again later`);
    if (before.phase === 'grace') {
      // A rotation before the last one's grace period ended: those .old keys expire now.
      await endGrace(id, twins.map((t) => t.keysDir), before, new Date());
    }
    const fresh = await generateOnionKeys(this.cfg.dataDir, async (dir) => {
      await listFingerprint(dir, `${this.cfg.nickname}0`, this.cfg.torPath);
    });
    let st = await beginRotation(id, twins.map((t) => t.keysDir), fresh, new Date());
    this.h.logger.info({ current: st.current, previous: st.previous, twins: twins.map((t) => t.name) }, 'onion-key rotation: new keys installed; restarting twins one at a time');
    for (const t of twins) {
      const rolling = st;
      await cycleTwin(this.h, t.name, { ...o, reason: 'rotating keys', hook: () => finishTwin(id, t.dataDir, rolling) });
      st = { ...st, done: [...st.done, t.name] };
      await writeRotationState(id, st);
    }
    st = { ...st, phase: 'grace' };
    await writeRotationState(id, st);
    this.h.logger.info({ current: st.current }, 'onion-key rotation done; previous keys kept as .old files for the grace period');
    return this.result(st, twins.map((t) => t.name));
  }

  /** Ends the grace period now: the previous keys' .old files go, the pins come back. */
  async endGrace(): Promise<RotationResult> {
    const id = identityDir(this.cfg);
    const st = await loadOrInitRotationState(id);
    if (st.phase === 'rolling') throw new Error('a rotation is under way');
    const twins = this.twinDirs();
    const next = st.phase === 'grace' ? await endGrace(id, twins.map((t) => t.keysDir), st, new Date()) : st;
    if (st.phase === 'grace') this.h.logger.info('onion-key grace period over: previous keys removed, pins back');
    return this.result(next, twins.map((t) => t.name));
  }

  /** When the current onion keys became current, and the rotation period (for status and metrics). */
  async keysInfo(): Promise<{ rotatedAt: string; rotationDays: number } | null> {
    const st = await loadOrInitRotationState(identityDir(this.cfg)).catch(() => null);
    return st ? { rotatedAt: st.rotatedAt, rotationDays: this.cfg.keys.rotationDays } : null;
  }

  /** What the schedule says is due now (checked every minute by the bridge). */
  async due(): Promise<{ repin: boolean; rotate: boolean; nextRotation: Date }> {
    const st = await loadOrInitRotationState(identityDir(this.cfg));
    const sch = rotationSchedule(st, new Date(), this.cfg.keys);
    return { repin: sch.repinDue, rotate: sch.rotateDue, nextRotation: sch.nextRotation };
  }
}

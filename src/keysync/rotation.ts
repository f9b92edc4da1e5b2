// Coordinated onion-key rotation: one new TAP + ntor pair for every twin, the previous pair kept as
// `.old` *files* for a grace period (tor serves clients that still hold the old descriptor with
// them), tor's own rotation held off through `LastRotatedOnionKey` in its state file, and the pin
// directories put back when the grace period ends.
//
// Phases, recorded in <identityDir>/onion-rotation.json so they survive a supervisor restart:
//   pinned  — every twin has the pin directories; the normal state.
//   rolling — new keys are installed as the current keys everywhere; twins not yet restarted still
//             have their pins (their running tor holds the previous key in memory, and the pins keep
//             it from rotating on its own); each restarted twin has the previous keys as .old files.
//   grace   — every twin runs the new keys with the previous ones as .old files.
import { readFile, writeFile, rename, stat, rm, mkdtemp, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { PIN_DIRS, installKeySet, installPins, removePins, digest, type KeySet } from './keys.js';

export const ONION_FILES = ['secret_onion_key', 'secret_onion_key_ntor'] as const;
export const ROTATION_STATE_FILE = 'onion-rotation.json';
const DAY = 86400_000;
/** tor's own default onion-key lifetime (consensus parameter onion-key-rotation-days). */
export const TOR_ROTATION_DAYS = 28;

export type RotationPhase = 'pinned' | 'rolling' | 'grace';

export interface RotationState {
  version: 1;
  phase: RotationPhase;
  /** When the current onion keys became current (ISO 8601). */
  rotatedAt: string;
  /** sha256 prefixes of the current and (during rolling/grace) previous ntor key files. */
  current: string;
  previous: string | null;
  /** Twins already restarted with the new keys (phase rolling). */
  done: string[];
}

export interface Schedule {
  rotateDue: boolean;
  repinDue: boolean;
  nextRotation: Date;
  graceEnds: Date | null;
}

/**
 * What is due at `now`. The grace period is capped below the rotation period (and tor's own
 * 28 days), so the .old files are gone before anything could rotate again.
 */
export function rotationSchedule(s: Pick<RotationState, 'phase' | 'rotatedAt'>, now: Date, o: { rotationDays: number; graceDays: number }): Schedule {
  const at = Date.parse(s.rotatedAt);
  if (!Number.isFinite(at)) throw new Error(`bad rotatedAt ${s.rotatedAt}`);
  const nextRotation = new Date(at + o.rotationDays * DAY);
  const graceDays = Math.min(o.graceDays, o.rotationDays, TOR_ROTATION_DAYS - 1);
  const graceEnds = s.phase === 'pinned' ? null : new Date(at + graceDays * DAY);
  return {
    rotateDue: s.phase !== 'rolling' && now.getTime() >= nextRotation.getTime(),
    repinDue: s.phase === 'grace' && graceEnds !== null && now.getTime() >= graceEnds.getTime(),
    nextRotation,
    graceEnds,
  };
}

/** tor's time format in its state file: `YYYY-MM-DD HH:MM:SS`, UTC. */
export function torTime(d: Date): string {
  return d.toISOString().replace('T', ' ').slice(0, 19);
}

/** The state file text with `LastRotatedOnionKey` set to `d` (replaced, or added when absent). */
export function setLastRotated(stateText: string, d: Date): string {
  const line = `LastRotatedOnionKey ${torTime(d)}`;
  if (/^LastRotatedOnionKey\s/m.test(stateText)) return stateText.replace(/^LastRotatedOnionKey\s.*$/m, line);
  const body = stateText.length && !stateText.endsWith('\n') ? `${stateText}\n` : stateText;
  return `${body}${line}\n`;
}

/** `LastRotatedOnionKey` of a state file's text, or null. */
export function lastRotated(stateText: string): Date | null {
  const m = /^LastRotatedOnionKey\s+(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)\s*$/m.exec(stateText);
  return m ? new Date(`${m[1]}T${m[2]}Z`) : null;
}

/** Sets `LastRotatedOnionKey` in tor's state file in `dataDir` (tor must not be running). */
export async function writeLastRotated(dataDir: string, d: Date): Promise<void> {
  const p = join(dataDir, 'state');
  let text = '';
  try {
    text = await readFile(p, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  const tmp = `${p}.bridgectl-tmp`;
  await writeFile(tmp, setLastRotated(text, d), { mode: 0o600 });
  await rename(tmp, p);
}

export const rotationStatePath = (identityDir: string): string => join(identityDir, ROTATION_STATE_FILE);

export async function readRotationState(identityDir: string): Promise<RotationState | null> {
  let text: string;
  try {
    text = await readFile(rotationStatePath(identityDir), 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw e;
  }
  const s = JSON.parse(text) as RotationState;
  if (s.version !== 1 || !['pinned', 'rolling', 'grace'].includes(s.phase) || typeof s.rotatedAt !== 'string') {
    throw new Error(`${rotationStatePath(identityDir)}: not a rotation state bridgectl understands`);
  }
  return { ...s, done: Array.isArray(s.done) ? s.done : [] };
}

export async function writeRotationState(identityDir: string, s: RotationState): Promise<void> {
  const p = rotationStatePath(identityDir);
  const tmp = `${p}.tmp`;
  await writeFile(tmp, JSON.stringify(s, null, 2) + '\n', { mode: 0o600 });
  await rename(tmp, p);
}

/**
 * The rotation state, made on first use from the age of the bridge's ntor key (its mtime is when
 * tor generated it or when it was installed).
 */
export async function loadOrInitRotationState(identityDir: string): Promise<RotationState> {
  const s = await readRotationState(identityDir);
  if (s) return s;
  const keys = join(identityDir, 'keys');
  const ntor = await readFile(join(keys, 'secret_onion_key_ntor'));
  const st = await stat(join(keys, 'secret_onion_key_ntor'));
  const fresh: RotationState = { version: 1, phase: 'pinned', rotatedAt: st.mtime.toISOString(), current: digest(ntor), previous: null, done: [] };
  await writeRotationState(identityDir, fresh);
  return fresh;
}

/** A fresh TAP and ntor onion key pair, made by `generate` (tor --list-fingerprint) in a scratch directory. */
export async function generateOnionKeys(scratchParent: string, generate: (dataDir: string) => Promise<void>): Promise<KeySet> {
  const dir = await mkdtemp(join(scratchParent, 'onion-keygen-'));
  try {
    await chmod(dir, 0o700);
    await generate(dir);
    const out: KeySet = new Map();
    for (const f of ONION_FILES) out.set(f, await readFile(join(dir, 'keys', f)));
    return out;
  } finally {
    // The scratch identity tor made next to the onion keys is thrown away unused.
    await rm(dir, { recursive: true, force: true });
  }
}

async function isFile(p: string): Promise<boolean> {
  return (await stat(p).catch(() => undefined))?.isFile() ?? false;
}

async function readOnion(keysDir: string, suffix = ''): Promise<KeySet> {
  const out: KeySet = new Map();
  for (const f of ONION_FILES) out.set(f, await readFile(join(keysDir, f + suffix)));
  return out;
}

async function writeKeyFile(p: string, data: Buffer): Promise<void> {
  const tmp = `${p}.bridgectl-tmp`;
  await writeFile(tmp, data, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, p);
}

/**
 * Step 1 of a rotation (phase → rolling): the bridge's copy keeps the current keys as .old files and
 * takes the new ones; every twin gets the new keys as its current keys, pins left in place (its
 * running tor keeps the previous key in memory until it is restarted). Returns the new state.
 */
export async function beginRotation(identityDir: string, twinKeysDirs: string[], fresh: KeySet, now: Date): Promise<RotationState> {
  const idKeys = join(identityDir, 'keys');
  const prev = await readOnion(idKeys);
  for (const f of ONION_FILES) {
    if (fresh.get(f)?.equals(prev.get(f)!)) throw new Error(`the new ${f} equals the current one`);
  }
  for (const f of ONION_FILES) await writeKeyFile(join(idKeys, `${f}.old`), prev.get(f)!);
  const state: RotationState = {
    version: 1,
    phase: 'rolling',
    rotatedAt: now.toISOString(),
    current: digest(fresh.get('secret_onion_key_ntor')),
    previous: digest(prev.get('secret_onion_key_ntor')),
    done: [],
  };
  // Written before any current key changes, so a crash from here on resumes the rotation.
  await writeRotationState(identityDir, state);
  await installKeySet(idKeys, fresh, true);
  for (const d of twinKeysDirs) {
    await installPins(d, now);
    await installKeySet(d, fresh, true);
  }
  return state;
}

/**
 * Step 2, for one twin whose tor is stopped: the previous keys (from the bridge's .old copy) as its
 * .old files instead of the pin directories, and `LastRotatedOnionKey` so tor does not rotate.
 */
export async function finishTwin(identityDir: string, twinDataDir: string, state: RotationState): Promise<void> {
  const idKeys = join(identityDir, 'keys');
  const keysDir = join(twinDataDir, 'keys');
  const prev = await readOnion(idKeys, '.old');
  const cur = await readOnion(idKeys);
  await installKeySet(keysDir, cur, true);
  await removePins(keysDir);
  for (const f of ONION_FILES) await writeKeyFile(join(keysDir, `${f}.old`), prev.get(f)!);
  await writeLastRotated(twinDataDir, new Date(state.rotatedAt));
}

/**
 * End of the grace period (phase → pinned): the expired .old key files are deleted (as tor itself
 * does when its grace period ends: keeping them would defeat the rotation) and the pins put back.
 */
export async function endGrace(identityDir: string, twinKeysDirs: string[], state: RotationState, now: Date): Promise<RotationState> {
  for (const d of [...twinKeysDirs, join(identityDir, 'keys')]) {
    for (const p of PIN_DIRS) if (await isFile(join(d, p))) await rm(join(d, p));
  }
  for (const d of twinKeysDirs) await installPins(d, now);
  const next: RotationState = { ...state, phase: 'pinned', previous: null, done: [] };
  await writeRotationState(identityDir, next);
  return next;
}

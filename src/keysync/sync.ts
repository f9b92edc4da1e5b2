// Making and checking "one identity, many data directories".
import { mkdir, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, createPrivateKey, createPublicKey } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { readRotationState, rotationStatePath, type RotationPhase } from './rotation.js';
import {
  PIN_DIRS,
  readKeySet,
  hasIdentity,
  keyDifferences,
  installKeySet,
  installPins,
  pinStatus,
  digest,
  MUST_MATCH,
  type KeySet,
} from './keys.js';

export interface KeyTarget {
  name: string;
  dataDir: string;
}

const keysOf = (dataDir: string): string => join(dataDir, 'keys');

/** RSA identity fingerprint (40 hex) from a `secret_id_key` PEM. */
export function rsaFingerprint(secretIdKey: Buffer): string {
  const pub = createPublicKey(createPrivateKey(secretIdKey));
  const der = pub.export({ type: 'pkcs1', format: 'der' });
  return createHash('sha1').update(der).digest('hex').toUpperCase();
}

/** ed25519 identity (base64, no padding) from an `ed25519_master_id_public_key` file. */
export function ed25519Identity(publicKeyFile: Buffer): string {
  if (publicKeyFile.length !== 64) throw new Error('ed25519_master_id_public_key must be 64 bytes');
  return publicKeyFile.subarray(32).toString('base64').replace(/=+$/, '');
}

export interface InitResult {
  fingerprint: string;
  generated: boolean;
  actions: string[];
}

export interface InitOptions {
  /** The bridge's own copy of the identity, outside any instance (`<dataDir>/identity`). */
  identityDir: string;
  instances: KeyTarget[];
  /** Makes a fresh identity in the given tor data directory (tor --list-fingerprint). */
  generate: (dataDir: string) => Promise<void>;
}

/**
 * Ensures one identity exists and every instance has it, with onion-key rotation pinned.
 * Idempotent. Never overwrites a key; refuses when existing copies disagree.
 */
export async function initIdentity(o: InitOptions): Promise<InitResult> {
  const actions: string[] = [];
  await mkdir(o.identityDir, { recursive: true, mode: 0o700 });
  await chmod(o.identityDir, 0o700);
  let master = await readKeySet(keysOf(o.identityDir));
  const existing: Array<{ who: string; keys: KeySet }> = [];
  if (hasIdentity(master)) existing.push({ who: `the bridge identity (${o.identityDir})`, keys: master });
  for (const i of o.instances) {
    const k = await readKeySet(keysOf(i.dataDir));
    if (hasIdentity(k)) existing.push({ who: `instance ${i.name}`, keys: k });
  }
  const [first, ...rest] = existing;
  if (first) {
    const conflicts = rest
      .map((e) => ({ who: e.who, diff: keyDifferences(first.keys, e.keys) }))
      .filter((c) => c.diff.length);
    if (conflicts.length) {
      throw new Error(
        `refusing to continue: existing keys disagree. ${conflicts
          .map((c) => `${c.who} has a different ${c.diff.join(', ')} than ${first.who}`)
          .join('; ')}. Nothing was changed; decide which identity is the bridge's and move the others away.`,
      );
    }
  }
  let generated = false;
  if (!hasIdentity(master)) {
    if (first) {
      await installKeySet(keysOf(o.identityDir), first.keys);
      actions.push(`adopted the identity of ${first.who}`);
    } else {
      await o.generate(o.identityDir);
      generated = true;
      actions.push('generated a new identity with tor');
    }
    master = await readKeySet(keysOf(o.identityDir));
    if (!hasIdentity(master)) throw new Error(`no identity keys in ${keysOf(o.identityDir)} after generating them`);
  }
  // During a coordinated rotation the previous onion keys are .old *files* on purpose (clients
  // holding the old descriptor need them): pinning would move them aside and end the grace early.
  const rotating = ['rolling', 'grace'].includes((await readRotationState(o.identityDir))?.phase ?? 'pinned');
  for (const i of o.instances) {
    await mkdir(i.dataDir, { recursive: true, mode: 0o700 });
    await chmod(i.dataDir, 0o700);
    const have = await readKeySet(keysOf(i.dataDir));
    const missing: KeySet = new Map([...master].filter(([f]) => !have.has(f)));
    const written = await installKeySet(keysOf(i.dataDir), missing);
    if (written.length) actions.push(`instance ${i.name}: installed ${written.join(', ')}`);
    if (rotating && (await hasOldKeyFiles(keysOf(i.dataDir)))) continue;
    for (const a of await installPins(keysOf(i.dataDir))) actions.push(`instance ${i.name}: ${a}`);
  }
  const sid = master.get('secret_id_key');
  if (!sid) throw new Error('identity has no secret_id_key');
  return { fingerprint: rsaFingerprint(sid), generated, actions };
}

export interface VerifyResult {
  ok: boolean;
  fingerprint?: string;
  ed25519?: string;
  /** Onion-key rotation phase (pinned when no rotation was ever made). */
  rotation?: RotationPhase;
  problems: string[];
}

/**
 * Every instance has the bridge's RSA and ed25519 identity and ntor key, and the pins are in place
 * (during an onion-key rotation: or the previous keys as identical .old files). A rotation changes
 * files one at a time, so a check that saw one in progress is repeated a few times before it fails.
 */
export async function verifyIdentity(identityDir: string, instances: KeyTarget[]): Promise<VerifyResult> {
  const stateText = (): Promise<string> => readFile(rotationStatePath(identityDir), 'utf8').catch(() => '');
  for (let attempt = 1; ; attempt++) {
    const before = await stateText();
    const r = await verifyOnce(identityDir, instances);
    const moving = r.rotation === 'rolling' || (await stateText()) !== before;
    if (r.ok || !moving || attempt >= 10) return r;
    await new Promise((res) => setTimeout(res, 200));
  }
}

async function verifyOnce(identityDir: string, instances: KeyTarget[]): Promise<VerifyResult> {
  const problems: string[] = [];
  const master = await readKeySet(keysOf(identityDir));
  if (!hasIdentity(master)) {
    return { ok: false, problems: [`no bridge identity in ${keysOf(identityDir)}; run bridgectl init`] };
  }
  // During a coordinated rotation the previous onion keys are .old files; they must be the same everywhere.
  const rotation = await readRotationState(identityDir);
  const previous: OldKeys = { ref: await readOldKeys(keysOf(identityDir)), who: 'the bridge\'s' };
  const bridgePrevious = previous.ref?.[PIN_DIRS.indexOf('secret_onion_key_ntor.old')];
  for (const i of instances) {
    const k = await readKeySet(keysOf(i.dataDir));
    const pinned = (await pinStatus(keysOf(i.dataDir))).pinned;
    for (const label of keyDifferences(master, k)) {
      const file = MUST_MATCH[label as keyof typeof MUST_MATCH];
      // Rolling restart: a twin not switched yet still has the previous ntor key, and its pins.
      const notYet = rotation?.phase === 'rolling' && file === 'secret_onion_key_ntor' && pinned && bridgePrevious && k.get(file)?.equals(bridgePrevious);
      if (notYet) continue;
      problems.push(
        `instance ${i.name}: ${label} differs from the bridge's (${file}: ${digest(k.get(file))} vs ${digest(master.get(file))})`,
      );
    }
    if (rotation && rotation.phase !== 'pinned') {
      for (const p of await graceProblems(i.name, keysOf(i.dataDir), previous)) problems.push(p);
    } else {
      const pins = await pinStatus(keysOf(i.dataDir));
      for (const p of pins.problems) problems.push(`instance ${i.name}: ${p}`);
    }
  }
  const pub = master.get('ed25519_master_id_public_key');
  return {
    ok: problems.length === 0,
    fingerprint: rsaFingerprint(master.get('secret_id_key')!),
    ed25519: pub ? ed25519Identity(pub) : undefined,
    rotation: rotation?.phase ?? 'pinned',
    problems,
  };
}

interface OldKeys {
  /** The previous onion keys everyone must have as .old files (the bridge's copy, else the first twin's). */
  ref: Buffer[] | null;
  who: string;
}

/** The two .old files' contents, or null when they are not both files. */
async function readOldKeys(keysDir: string): Promise<Buffer[] | null> {
  const out: Buffer[] = [];
  for (const d of PIN_DIRS) {
    const s = await stat(join(keysDir, d)).catch(() => undefined);
    if (!s?.isFile()) return null;
    out.push(await readFile(join(keysDir, d)));
  }
  return out;
}

/**
 * A twin during a rotation's rolling restart or grace period: pinned (not restarted yet, or added
 * since), or the previous keys as .old files identical to everyone else's, or (once tor expired
 * them itself) neither.
 */
async function graceProblems(name: string, keysDir: string, previous: OldKeys): Promise<string[]> {
  const kinds = await Promise.all(
    PIN_DIRS.map(async (d) => {
      const s = await stat(join(keysDir, d)).catch(() => undefined);
      return s ? (s.isDirectory() ? 'pin' : 'file') : 'none';
    }),
  );
  const [a, b] = kinds;
  if (a !== b) return [`instance ${name}: ${PIN_DIRS[0]} is ${a === 'none' ? 'missing' : `a ${a}`} but ${PIN_DIRS[1]} is ${b === 'none' ? 'missing' : `a ${b}`}`];
  if (a !== 'file') return [];
  const mine = await readOldKeys(keysDir);
  if (!previous.ref) {
    previous.ref = mine;
    previous.who = `instance ${name}'s`;
    return [];
  }
  return PIN_DIRS.filter((_, j) => !mine?.[j]?.equals(previous.ref![j]!)).map(
    (d) => `instance ${name}: previous onion key ${d} differs from ${previous.who} (${digest(mine?.[PIN_DIRS.indexOf(d)])} vs ${digest(previous.ref![PIN_DIRS.indexOf(d)])})`,
  );
}

/** Whether a keys dir holds a previous onion key as a file (not a pin directory). */
async function hasOldKeyFiles(keysDir: string): Promise<boolean> {
  for (const f of ['secret_onion_key_ntor.old', 'secret_onion_key.old']) {
    const st = await stat(join(keysDir, f)).catch(() => null);
    if (st?.isFile()) return true;
  }
  return false;
}

// One identity, many data directories: what the key files are, reading them, comparing them,
// copying them with the right modes, and pinning onion-key rotation.
import { mkdir, readFile, writeFile, stat, chmod, rename, readdir, copyFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';

/** Files that make up a bridge's identity and onion keys (shared by every twin). */
export const IDENTITY_FILES = [
  'secret_id_key',
  'ed25519_master_id_public_key',
  'ed25519_master_id_secret_key',
  'ed25519_signing_secret_key',
  'ed25519_signing_cert',
  'secret_onion_key',
  'secret_onion_key_ntor',
] as const;

/** Files that must be byte-identical across twins for them to be one bridge. */
export const MUST_MATCH = {
  'RSA identity': 'secret_id_key',
  'ed25519 identity': 'ed25519_master_id_public_key',
  'ntor onion key': 'secret_onion_key_ntor',
} as const;

export const PIN_DIRS = ['secret_onion_key.old', 'secret_onion_key_ntor.old'] as const;

export const PIN_README = `This directory is here on purpose; bridgectl made it.

Tor rotates its onion keys by renaming secret_onion_key{,_ntor} to *.old. All the router twins of
this bridge must share the same onion keys, so each rotating on its own would split them apart.
A directory in the *.old place makes that rename fail, so tor keeps the current, shared keys.

Do not delete it unless you rotate the onion keys of every twin together (bridgectl keys rotate-onion).
`;

export type KeySet = Map<string, Buffer>;

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** Reads the identity files present in `keysDir`; empty map when there are none. */
export async function readKeySet(keysDir: string): Promise<KeySet> {
  const out: KeySet = new Map();
  for (const f of IDENTITY_FILES) {
    try {
      out.set(f, await readFile(join(keysDir, f)));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new Error(`cannot read ${join(keysDir, f)}: ${(e as Error).message}`);
      }
    }
  }
  return out;
}

export function hasIdentity(k: KeySet): boolean {
  return k.has('secret_id_key') && k.has('secret_onion_key_ntor');
}

export function digest(b: Buffer | undefined): string {
  return b ? createHash('sha256').update(b).digest('hex').slice(0, 16) : 'missing';
}

/** Names (from MUST_MATCH) of the keys in which `b` differs from `a`. */
export function keyDifferences(a: KeySet, b: KeySet): string[] {
  const out: string[] = [];
  for (const [label, file] of Object.entries(MUST_MATCH)) {
    const x = a.get(file);
    const y = b.get(file);
    if (!x || !y || !x.equals(y)) out.push(label);
  }
  return out;
}

/**
 * Writes the key set into `keysDir` (0700) with files 0600. Refuses to replace a file whose
 * content differs unless `force`; identical files are left alone.
 */
export async function installKeySet(keysDir: string, keys: KeySet, force = false): Promise<string[]> {
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  await chmod(keysDir, 0o700);
  const written: string[] = [];
  for (const [f, data] of keys) {
    const p = join(keysDir, f);
    let current: Buffer | undefined;
    try {
      current = await readFile(p);
    } catch {
      /* absent */
    }
    if (current?.equals(data)) {
      await chmod(p, 0o600);
      continue;
    }
    if (current && !force) throw new Error(`${p} exists with different content; refusing to overwrite it`);
    const tmp = `${p}.bridgectl-tmp`;
    await writeFile(tmp, data, { mode: 0o600 });
    await chmod(tmp, 0o600);
    await rename(tmp, p);
    written.push(f);
  }
  return written;
}

export interface PinStatus {
  pinned: boolean;
  problems: string[];
}

export async function pinStatus(keysDir: string): Promise<PinStatus> {
  const problems: string[] = [];
  for (const d of PIN_DIRS) {
    try {
      const s = await stat(join(keysDir, d));
      if (!s.isDirectory()) problems.push(`${d} is a file, not a pin directory (tor rotated this key on its own)`);
    } catch {
      problems.push(`${d} pin directory is missing`);
    }
  }
  return { pinned: problems.length === 0, problems };
}

/**
 * Pins onion-key rotation: makes both `*.old` paths directories. An existing `*.old` *file* (an old
 * key from an earlier rotation) is moved aside, never deleted. Returns what it did.
 */
export async function installPins(keysDir: string, now: Date = new Date()): Promise<string[]> {
  const did: string[] = [];
  for (const d of PIN_DIRS) {
    const p = join(keysDir, d);
    let s;
    try {
      s = await stat(p);
    } catch {
      s = undefined;
    }
    if (s && !s.isDirectory()) {
      const aside = `${p}.moved-${now.toISOString().replace(/[:.]/g, '')}`;
      await rename(p, aside);
      did.push(`moved old key ${d} to ${aside}`);
      s = undefined;
    }
    if (!s) {
      await mkdir(p, { mode: 0o700 });
      did.push(`pinned ${d}`);
    }
    if (!(await exists(join(p, 'README')))) await writeFile(join(p, 'README'), PIN_README, { mode: 0o600 });
  }
  return did;
}

/** Removes the pin directories (used by coordinated rotation and by tests of the pin). */
export async function removePins(keysDir: string): Promise<void> {
  for (const d of PIN_DIRS) {
    const p = join(keysDir, d);
    const s = await stat(p).catch(() => undefined);
    if (s?.isDirectory()) await rm(p, { recursive: true });
  }
}

/** Copies a key set from one keys dir to another (modes fixed), for backups. */
export async function copyKeys(fromDir: string, toDir: string): Promise<void> {
  await mkdir(toDir, { recursive: true, mode: 0o700 });
  for (const f of await readdir(fromDir)) {
    if ((IDENTITY_FILES as readonly string[]).includes(f)) {
      await copyFile(join(fromDir, f), join(toDir, f));
      await chmod(join(toDir, f), 0o600);
    }
  }
}

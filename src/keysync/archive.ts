// Moving or backing up a bridge's identity: one archive file with the identity and onion keys, their
// modes and a manifest (RSA fingerprint, ed25519 identity), and installing it into a data directory
// without ever overwriting or deleting a key that is there.
//
// The archive is JSON (format "bridgectl-keys", version 1), written with mode 0600:
//   {
//     "format": "bridgectl-keys", "version": 1,
//     "comment": "...",                       // a reminder that it holds secret keys
//     "created": "2025-01-01T00:00:00.000Z",
//     "nickname": "mybridge",                 // the bridge's base nickname (informational)
//     "fingerprint": "<40 hex>",              // RSA identity fingerprint
//     "ed25519": "<base64, no padding>",      // ed25519 master identity
//     "keysDirMode": "0700",
//     "files": [ { "name": "secret_id_key", "mode": "0600", "size": 887, "sha256": "<hex>", "data": "<base64>" }, ... ],
//     "extOrPortCookie": { "mode": "0600", "size": 64, "sha256": "<hex>", "data": "<base64>" }   // only with --include-cookie
//   }
// `files` holds the files of IDENTITY_FILES that the bridge has (secret_id_key,
// ed25519_master_id_public_key and secret_onion_key_ntor at least). Reading checks everything (names,
// modes, base64, sizes, digests, and that the keys give the manifest's fingerprint and ed25519
// identity) before anything is written, so a truncated or corrupt archive changes nothing.
import { mkdir, chmod, rename, readFile, stat, open, link, unlink } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { parseCookieFile } from '../extorport/index.js';
import { IDENTITY_FILES, MUST_MATCH, installKeySet, installPins, readKeySet, type KeySet } from './keys.js';
import { rsaFingerprint, ed25519Identity, type KeyTarget } from './sync.js';
import { ROTATION_STATE_FILE } from './rotation.js';

export const KEY_ARCHIVE_FORMAT = 'bridgectl-keys';
export const KEY_ARCHIVE_VERSION = 1;

/** Files an archive must have: without them there is no identity to move. */
export const REQUIRED_ARCHIVE_FILES = ['secret_id_key', 'ed25519_master_id_public_key', 'secret_onion_key_ntor'] as const;

export interface ArchivedFile {
  name: string;
  /** Octal, e.g. "0600". */
  mode: string;
  size: number;
  sha256: string;
  data: string;
}

export interface KeyArchive {
  format: typeof KEY_ARCHIVE_FORMAT;
  version: typeof KEY_ARCHIVE_VERSION;
  comment: string;
  created: string;
  nickname: string | null;
  fingerprint: string;
  ed25519: string;
  keysDirMode: string;
  files: ArchivedFile[];
  extOrPortCookie?: Omit<ArchivedFile, 'name'>;
}

/** An archive that passed every check, decoded. */
export interface LoadedKeyArchive {
  source: string;
  fingerprint: string;
  ed25519: string;
  nickname: string | null;
  created: string;
  keys: KeySet;
  /** Mode of each file, as archived. */
  modes: Map<string, number>;
  keysDirMode: number;
  cookie: { data: Buffer; mode: number } | null;
}

export class KeyArchiveError extends Error {}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const octal = (m: number): string => `0${(m & 0o777).toString(8).padStart(3, '0')}`;
/** Modes are restored owner-only and owner-readable: whatever an archive says, no key becomes group or world accessible. */
const ownerOnly = (m: number): number => (m & 0o700) | 0o400;

function describe(k: KeySet): string {
  const parts: string[] = [];
  const sid = k.get('secret_id_key');
  const pub = k.get('ed25519_master_id_public_key');
  try {
    if (sid) parts.push(rsaFingerprint(sid));
  } catch {
    parts.push('an unreadable secret_id_key');
  }
  try {
    if (pub) parts.push(`ed25519 ${ed25519Identity(pub)}`);
  } catch {
    parts.push('an unreadable ed25519 key');
  }
  return parts.length ? parts.join(' / ') : 'an incomplete key set';
}

export interface ExportOptions {
  /** The bridge's own copy of the identity (`<dataDir>/identity`). */
  identityDir: string;
  nickname?: string;
  /** Also carry the static Extended ORPort cookie from this file. */
  cookieFile?: string;
  now?: Date;
}

/** Builds the archive of the identity in `identityDir/keys` (and the cookie, when asked). */
export async function exportKeys(o: ExportOptions): Promise<KeyArchive> {
  const keysDir = join(o.identityDir, 'keys');
  const keys = await readKeySet(keysDir);
  const missing = REQUIRED_ARCHIVE_FILES.filter((f) => !keys.has(f));
  if (missing.length) {
    throw new KeyArchiveError(`no complete identity in ${keysDir} (missing ${missing.join(', ')}); run bridgectl init first`);
  }
  const files: ArchivedFile[] = [];
  for (const name of IDENTITY_FILES) {
    const data = keys.get(name);
    if (!data) continue;
    const st = await stat(join(keysDir, name));
    files.push({ name, mode: octal(st.mode), size: data.length, sha256: sha256(data), data: data.toString('base64') });
  }
  const archive: KeyArchive = {
    format: KEY_ARCHIVE_FORMAT,
    version: KEY_ARCHIVE_VERSION,
    comment: 'bridgectl key archive: the secret identity and onion keys of a Tor bridge. Keep it private; restore with bridgectl keys import.',
    created: (o.now ?? new Date()).toISOString(),
    nickname: o.nickname ?? null,
    fingerprint: rsaFingerprint(keys.get('secret_id_key')!),
    ed25519: ed25519Identity(keys.get('ed25519_master_id_public_key')!),
    keysDirMode: octal((await stat(keysDir)).mode),
    files,
  };
  if (o.cookieFile) {
    const data = await readFile(o.cookieFile);
    parseCookieFile(data, o.cookieFile);
    const st = await stat(o.cookieFile);
    archive.extOrPortCookie = { mode: octal(st.mode), size: data.length, sha256: sha256(data), data: data.toString('base64') };
  }
  return archive;
}

/** Writes the archive with mode 0600; refuses to replace an existing file unless `overwrite`. */
export async function writeKeyArchive(file: string, archive: KeyArchive, overwrite = false): Promise<void> {
  const text = `${JSON.stringify(archive, null, 2)}\n`;
  const tmp = `${file}.bridgectl-tmp-${process.pid}`;
  const fh = await open(tmp, 'wx', 0o600);
  try {
    await fh.chmod(0o600);
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
  if (overwrite) {
    await rename(tmp, file);
    return;
  }
  try {
    await link(tmp, file); // fails if the file exists
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyArchiveError(`${file} exists; refusing to overwrite it (use --force)`);
    throw e;
  } finally {
    await unlink(tmp);
  }
}

function decodeFile(what: string, f: unknown, source: string): { data: Buffer; mode: number } {
  const bad = (why: string): KeyArchiveError => new KeyArchiveError(`${source}: ${what}: ${why}; the archive is corrupt. Nothing was changed.`);
  if (typeof f !== 'object' || f === null) throw bad('not an object');
  const r = f as Record<string, unknown>;
  if (typeof r.mode !== 'string' || !/^0[0-7]{3}$/.test(r.mode)) throw bad(`bad mode ${JSON.stringify(r.mode)}`);
  if (typeof r.data !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(r.data) || r.data.length % 4 !== 0) throw bad('data is not base64');
  const data = Buffer.from(r.data, 'base64');
  if (r.size !== data.length) throw bad(`${data.length} bytes where the manifest says ${String(r.size)}`);
  if (r.sha256 !== sha256(data)) throw bad('its SHA-256 digest does not match the manifest');
  return { data, mode: parseInt(r.mode, 8) };
}

/** Parses and checks an archive's text; throws KeyArchiveError saying what is wrong. */
export function parseKeyArchive(text: string | Buffer, source = 'key archive'): LoadedKeyArchive {
  let a: Record<string, unknown>;
  try {
    const v: unknown = JSON.parse(text.toString());
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    a = v as Record<string, unknown>;
  } catch (e) {
    throw new KeyArchiveError(
      `${source} is not a complete bridgectl key archive (${(e as Error).message}); it may be truncated or corrupt. Nothing was changed.`,
    );
  }
  if (a.format !== KEY_ARCHIVE_FORMAT) {
    throw new KeyArchiveError(`${source} is not a bridgectl key archive (format ${JSON.stringify(a.format)}). Nothing was changed.`);
  }
  if (a.version !== KEY_ARCHIVE_VERSION) {
    throw new KeyArchiveError(
      `${source} is a version ${JSON.stringify(a.version)} key archive; this bridgectl reads version ${KEY_ARCHIVE_VERSION}. Nothing was changed.`,
    );
  }
  const corrupt = (why: string): KeyArchiveError => new KeyArchiveError(`${source}: ${why}; the archive is corrupt. Nothing was changed.`);
  if (!Array.isArray(a.files)) throw corrupt('no file list');
  const keys: KeySet = new Map();
  const modes = new Map<string, number>();
  for (const f of a.files as unknown[]) {
    const name = (f as { name?: unknown } | null)?.name;
    if (typeof name !== 'string' || !(IDENTITY_FILES as readonly string[]).includes(name)) {
      throw corrupt(`unexpected file ${JSON.stringify(name)} (an archive holds only ${IDENTITY_FILES.join(', ')})`);
    }
    if (keys.has(name)) throw corrupt(`${name} is listed twice`);
    const d = decodeFile(name, f, source);
    keys.set(name, d.data);
    modes.set(name, d.mode);
  }
  const missing = REQUIRED_ARCHIVE_FILES.filter((f) => !keys.has(f));
  if (missing.length) throw corrupt(`it lacks ${missing.join(', ')}`);
  let fingerprint: string;
  let ed25519: string;
  try {
    fingerprint = rsaFingerprint(keys.get('secret_id_key')!);
    ed25519 = ed25519Identity(keys.get('ed25519_master_id_public_key')!);
  } catch (e) {
    throw corrupt(`its keys cannot be read (${(e as Error).message})`);
  }
  if (a.fingerprint !== fingerprint) {
    throw corrupt(`its secret_id_key has fingerprint ${fingerprint}, the manifest says ${JSON.stringify(a.fingerprint)}`);
  }
  if (a.ed25519 !== ed25519) throw corrupt(`its ed25519 key is ${ed25519}, the manifest says ${JSON.stringify(a.ed25519)}`);
  if (typeof a.keysDirMode !== 'string' || !/^0[0-7]{3}$/.test(a.keysDirMode)) throw corrupt('bad keysDirMode');
  let cookie: LoadedKeyArchive['cookie'] = null;
  if (a.extOrPortCookie !== undefined) {
    cookie = decodeFile('extOrPortCookie', a.extOrPortCookie, source);
    try {
      parseCookieFile(cookie.data, 'extOrPortCookie');
    } catch (e) {
      throw corrupt((e as Error).message);
    }
  }
  return {
    source,
    fingerprint,
    ed25519,
    nickname: typeof a.nickname === 'string' ? a.nickname : null,
    created: typeof a.created === 'string' ? a.created : '',
    keys,
    modes,
    keysDirMode: parseInt(a.keysDirMode, 8),
    cookie,
  };
}

export async function readKeyArchive(file: string): Promise<LoadedKeyArchive> {
  let text: Buffer;
  try {
    text = await readFile(file);
  } catch (e) {
    throw new KeyArchiveError(`cannot read ${file}: ${(e as Error).message}`);
  }
  return parseKeyArchive(text, file);
}

export interface ImportOptions {
  archive: LoadedKeyArchive;
  /** The bridge's own copy of the identity (`<dataDir>/identity`). */
  identityDir: string;
  /** The twins' tor data directories; each gets the keys and the onion-key pins. */
  instances: KeyTarget[];
  /** Where the static Extended ORPort cookie goes (used only when the archive carries one). */
  cookieFile?: string;
  /** Replace keys that differ from the archive's, moving them aside (never deleting them). */
  force?: boolean;
  now?: Date;
}

export interface ImportResult {
  fingerprint: string;
  ed25519: string;
  /** installed: keys were written; unchanged: everything was there; replaced: keys were moved aside first. */
  outcome: 'installed' | 'unchanged' | 'replaced';
  actions: string[];
  /** Where replaced keys (and cookie) went. */
  movedAside: string[];
  /** Files of the same identity left as they were although they differ from the archive's (without force). */
  kept: string[];
}

interface Place {
  who: string;
  keysDir: string;
  instance: boolean;
  have: KeySet;
  /** Files present here and in the archive whose content differs. */
  differs: string[];
  /** Differs in the RSA or ed25519 identity. */
  otherIdentity: boolean;
  /** Same identity, different ntor onion key. */
  otherOnionKey: boolean;
}

/**
 * Installs an archive's identity into `identityDir/keys` and every instance's `keys` (with the
 * onion-key pins), so that every twin of this data directory is the archived bridge.
 *
 * Everything is checked before anything is written. Keys of another identity (or of this identity
 * with another ntor onion key) anywhere make it refuse, naming both fingerprints, unless `force`;
 * with `force` each such keys directory is renamed to `keys.moved-<time>` (kept, never deleted) and
 * the archive's keys installed in its place. Keys of the same identity stay as they are: other files
 * that differ (tor renews its ed25519 signing certificate) are kept and listed in `kept`, or with
 * `force` replaced the same way. Missing files are added; keys directories made here (fresh, or
 * after moving the old one aside) get the onion-key pins. The same identity already everywhere is a
 * no-op.
 */
export async function importKeys(o: ImportOptions): Promise<ImportResult> {
  const a = o.archive;
  const force = o.force ?? false;
  const stamp = (o.now ?? new Date()).toISOString().replace(/[:.]/g, '');
  const places: Place[] = [];
  const add = async (who: string, keysDir: string, instance: boolean): Promise<void> => {
    const have = await readKeySet(keysDir);
    const differs = [...have].filter(([f, d]) => a.keys.has(f) && !a.keys.get(f)!.equals(d)).map(([f]) => f);
    const otherIdentity = differs.some((f) => f === MUST_MATCH['RSA identity'] || f === MUST_MATCH['ed25519 identity']);
    // Keys of an identity the archive cannot be compared with (no RSA or ed25519 file) are another identity too.
    const unknown = have.size > 0 && !have.has(MUST_MATCH['RSA identity']) && !have.has(MUST_MATCH['ed25519 identity']);
    places.push({
      who,
      keysDir,
      instance,
      have,
      differs,
      otherIdentity: otherIdentity || (unknown && differs.length > 0),
      otherOnionKey: !otherIdentity && differs.includes(MUST_MATCH['ntor onion key']),
    });
  };
  await add(`the bridge identity (${o.identityDir})`, join(o.identityDir, 'keys'), false);
  for (const i of o.instances) await add(`instance ${i.name}`, join(i.dataDir, 'keys'), true);

  let cookieDiffers = false;
  if (a.cookie && o.cookieFile) {
    const current = await readFile(o.cookieFile).catch(() => null);
    cookieDiffers = current !== null && !current.equals(a.cookie.data);
  }

  if (!force) {
    const refusals = places
      .filter((p) => p.otherIdentity || p.otherOnionKey)
      .map((p) =>
        p.otherIdentity
          ? `${p.who} has identity ${describe(p.have)}`
          : `${p.who} has identity ${describe(p.have)} too, but a different ntor onion key`,
      );
    if (cookieDiffers) refusals.push(`the static Extended ORPort cookie ${o.cookieFile} differs from the archive's`);
    if (refusals.length) {
      throw new KeyArchiveError(
        `refusing to replace keys: the archive ${a.source} holds identity ${a.fingerprint} / ed25519 ${a.ed25519}, but ${refusals.join('; ')}. ` +
          'Nothing was changed. Use --force to move the existing keys aside (they are kept, not deleted) and install the archive\'s.',
      );
    }
  }

  const actions: string[] = [];
  const movedAside: string[] = [];
  const kept: string[] = [];
  // Move aside what is replaced.
  for (const p of places) {
    if (!p.differs.length) continue;
    if (!force) {
      for (const f of p.differs) kept.push(`${p.who}: ${f}`);
      continue;
    }
    const aside = `${p.keysDir}.moved-${stamp}`;
    await rename(p.keysDir, aside);
    movedAside.push(aside);
    actions.push(`${p.who}: moved the keys of ${describe(p.have)} to ${aside}`);
    p.have = new Map();
  }
  // The onion-key rotation state belongs to the keys just moved aside: the new keys start afresh
  // (their rotation is dated from their files, as on a first start).
  if (force && places.some((p) => p.differs.includes(MUST_MATCH['ntor onion key']))) {
    const state = join(o.identityDir, ROTATION_STATE_FILE);
    const aside = `${state}.moved-${stamp}`;
    const moved = await rename(state, aside).then(
      () => true,
      (e: NodeJS.ErrnoException) => {
        if (e.code === 'ENOENT') return false;
        throw e;
      },
    );
    if (moved) {
      movedAside.push(aside);
      actions.push(`moved the onion-key rotation state of the old keys to ${aside}`);
    }
  }
  // Install what is missing, with the archived modes (owner-only).
  for (const p of places) {
    const fresh = p.have.size === 0;
    const missing: KeySet = new Map([...a.keys].filter(([f]) => !p.have.has(f)));
    if (p.instance) {
      await mkdir(dirname(p.keysDir), { recursive: true, mode: 0o700 });
      await chmod(dirname(p.keysDir), 0o700);
    }
    const written = await installKeySet(p.keysDir, missing);
    await chmod(p.keysDir, 0o700); // tor wants its keys directory private, whatever the archive says
    for (const f of written) await chmod(join(p.keysDir, f), ownerOnly(a.modes.get(f) ?? 0o600));
    if (written.length) actions.push(`${p.who}: installed ${written.join(', ')}`);
    // Pins go into keys directories made here; others keep what they have (during an onion-key
    // rotation's grace period that is the previous keys as .old files, not pins).
    if (p.instance && fresh) for (const d of await installPins(p.keysDir)) actions.push(`${p.who}: ${d}`);
  }
  if (a.cookie && o.cookieFile) {
    const current = await readFile(o.cookieFile).catch(() => null);
    if (!current?.equals(a.cookie.data)) {
      if (current) {
        const aside = `${o.cookieFile}.moved-${stamp}`;
        await rename(o.cookieFile, aside);
        movedAside.push(aside);
        actions.push(`moved the static Extended ORPort cookie to ${aside}`);
      }
      await mkdir(dirname(o.cookieFile), { recursive: true, mode: 0o700 });
      const fh = await open(o.cookieFile, 'wx', 0o600);
      try {
        await fh.chmod(0o600);
        await fh.writeFile(a.cookie.data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      actions.push(`installed the static Extended ORPort cookie ${o.cookieFile}`);
    }
  }
  return {
    fingerprint: a.fingerprint,
    ed25519: a.ed25519,
    outcome: movedAside.length ? 'replaced' : actions.length ? 'installed' : 'unchanged',
    actions,
    movedAside,
    kept,
  };
}

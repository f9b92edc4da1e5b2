// Every relay's identity and the family key in one archive file (format "bridgectl-relay-keys",
// version 1, JSON, mode 0600), and installing it without ever overwriting a key that is there.
//   { format, version, comment, created, nickname, familyId,
//     family: { name, data, sha256 },                        // the secret family key
//     relays: [ { name, fingerprint, files: [ { name, mode, sha256, data } ] } ] }
// Reading checks every digest and that each secret_id_key gives its fingerprint before anything
// is written, so a corrupt archive changes nothing.
import { readFile, readdir, stat, writeFile, mkdir, chmod, rename, open } from 'node:fs/promises';
import { createHash, createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import { instanceLayout, type ResolvedConfig } from '../config/index.js';
import { exists } from './identity.js';
import { familyDir, readFamilyKey } from './family.js';
import { familyName, relayLayouts } from './members.js';

export const RELAY_ARCHIVE_FORMAT = 'bridgectl-relay-keys';

interface FileEntry {
  name: string;
  mode: string;
  sha256: string;
  data: string;
}

export interface RelayArchive {
  format: typeof RELAY_ARCHIVE_FORMAT;
  version: 1;
  comment: string;
  created: string;
  nickname: string;
  familyId: string;
  family: { name: string; sha256: string; data: string };
  relays: Array<{ name: string; fingerprint: string; files: FileEntry[] }>;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const fpOf = (pem: Buffer): string =>
  createHash('sha1').update(createPublicKey(pem.toString('utf8')).export({ type: 'pkcs1', format: 'der' })).digest('hex').toUpperCase();

export async function exportRelayKeys(c: ResolvedConfig): Promise<RelayArchive> {
  const key = await readFamilyKey(c.dataDir, familyName(c));
  if (!key) throw new Error('there is no family key; run "bridgectl init" first');
  const fam = await readFile(key.secretPath);
  const relays: RelayArchive['relays'] = [];
  for (const l of relayLayouts(c)) {
    const files: FileEntry[] = [];
    for (const name of (await readdir(l.keysDir)).sort()) {
      const p = join(l.keysDir, name);
      const st = await stat(p);
      if (!st.isFile() || name.endsWith('.bridgectl-tmp')) continue;
      const data = await readFile(p);
      files.push({ name, mode: `0${(st.mode & 0o777).toString(8)}`, sha256: sha256(data), data: data.toString('base64') });
    }
    const sid = files.find((f) => f.name === 'secret_id_key');
    if (!sid) throw new Error(`${l.name} has no identity key; run "bridgectl init" first`);
    relays.push({ name: l.name, fingerprint: fpOf(Buffer.from(sid.data, 'base64')), files });
  }
  return {
    format: RELAY_ARCHIVE_FORMAT,
    version: 1,
    comment: 'bridgectl relay key archive: the secret keys of every relay of a family and the family key. Keep it private; restore with bridgectl keys import.',
    created: new Date().toISOString(),
    nickname: c.nickname,
    familyId: key.id,
    family: { name: key.name, sha256: sha256(fam), data: fam.toString('base64') },
    relays,
  };
}

export async function writeRelayArchive(file: string, a: RelayArchive, overwrite = false): Promise<void> {
  const fh = await open(file, overwrite ? 'w' : 'wx', 0o600).catch((e: NodeJS.ErrnoException) => {
    throw new Error(e.code === 'EEXIST' ? `${file} exists; --force replaces it` : e.message);
  });
  try {
    await fh.writeFile(JSON.stringify(a, null, 2) + '\n');
  } finally {
    await fh.close();
  }
  await chmod(file, 0o600);
}

/** Parses and checks an archive; throws naming what is wrong. */
export function parseRelayArchive(text: string, source: string): RelayArchive {
  let a: RelayArchive;
  try {
    a = JSON.parse(text) as RelayArchive;
  } catch {
    throw new Error(`${source} is not a key archive (not JSON)`);
  }
  if (a?.format !== RELAY_ARCHIVE_FORMAT || a.version !== 1) throw new Error(`${source} is not a relay key archive (format ${String(a?.format)})`);
  if (sha256(Buffer.from(a.family.data, 'base64')) !== a.family.sha256) throw new Error(`${source}: the family key does not match its digest`);
  for (const r of a.relays) {
    for (const f of r.files) {
      if (!/^[A-Za-z0-9_.]+$/.test(f.name)) throw new Error(`${source}: ${r.name} has a file named "${f.name}"`);
      if (sha256(Buffer.from(f.data, 'base64')) !== f.sha256) throw new Error(`${source}: ${r.name}/${f.name} does not match its digest`);
    }
    const sid = r.files.find((f) => f.name === 'secret_id_key');
    if (!sid || fpOf(Buffer.from(sid.data, 'base64')) !== r.fingerprint) throw new Error(`${source}: ${r.name}'s identity key does not give fingerprint ${r.fingerprint}`);
  }
  return a;
}

/**
 * Installs the archive's relays into the instances of the same number and the family key into
 * dataDir. Refuses (changing nothing) when any instance holds another identity or the family key
 * differs. Files of the same identity already there are kept. Returns what it did.
 */
export async function importRelayKeys(c: ResolvedConfig, a: RelayArchive): Promise<string[]> {
  if (a.relays.length !== c.instances) throw new Error(`the archive has ${a.relays.length} relays and the config ${c.instances} instances; make them agree`);
  const plan = a.relays.map((r, i) => ({ r, l: instanceLayout(c, i + 1) }));
  const problems: string[] = [];
  for (const { r, l } of plan) {
    const sid = join(l.keysDir, 'secret_id_key');
    if ((await exists(sid)) && fpOf(await readFile(sid)) !== r.fingerprint) {
      problems.push(`${l.name} already has another identity (${fpOf(await readFile(sid))}, the archive's ${r.name} is ${r.fingerprint}); move ${l.keysDir} aside first`);
    }
  }
  const have = await readFamilyKey(c.dataDir, familyName(c));
  const fam = Buffer.from(a.family.data, 'base64');
  if (have && !(await readFile(have.secretPath)).equals(fam)) problems.push(`${have.secretPath} is another family key (FamilyId ${have.id}, the archive's ${a.familyId}); move it aside first`);
  if (problems.length) throw new Error(`keys import refused, nothing changed:\n  ${problems.join('\n  ')}`);
  const actions: string[] = [];
  if (!have) {
    await mkdir(familyDir(c.dataDir), { recursive: true, mode: 0o700 });
    const base = join(familyDir(c.dataDir), familyName(c));
    await writeFile(`${base}.public_family_id.bridgectl-tmp`, `${a.familyId}\n`, { mode: 0o600 });
    await rename(`${base}.public_family_id.bridgectl-tmp`, `${base}.public_family_id`);
    await writeFile(`${base}.secret_family_key.bridgectl-tmp`, fam, { mode: 0o600 });
    await rename(`${base}.secret_family_key.bridgectl-tmp`, `${base}.secret_family_key`);
    actions.push(`installed the family key (FamilyId ${a.familyId})`);
  }
  for (const { r, l } of plan) {
    await mkdir(l.keysDir, { recursive: true, mode: 0o700 });
    let n = 0;
    for (const f of r.files) {
      const p = join(l.keysDir, f.name);
      if (await exists(p)) continue;
      await writeFile(`${p}.bridgectl-tmp`, Buffer.from(f.data, 'base64'), { mode: (parseInt(f.mode, 8) & 0o700) | 0o400 });
      await rename(`${p}.bridgectl-tmp`, p);
      n++;
    }
    if (n) actions.push(`${l.name}: installed ${n} key files of ${r.fingerprint}`);
  }
  return actions;
}

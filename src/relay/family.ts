// The family key (tor >= 0.4.9): made once by `tor --keygen-family`, kept under dataDir/family, and
// copied into every instance's family key directory. tor's keygen overwrites, so it only ever runs
// in a fresh scratch directory and its files are moved in when none exist yet.
import { readFile, mkdir, mkdtemp, rename, rm, copyFile, readdir, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { torArgs } from '../tor/index.js';
import type { InstanceLayout } from '../config/index.js';
import { familyKeyDirOf } from './torrc.js';
import { exists } from './identity.js';

export interface FamilyKey {
  name: string;
  id: string;
  secretPath: string;
}

export function familyDir(dataDir: string): string {
  return join(dataDir, 'family');
}

function paths(dataDir: string, name: string): { secret: string; pub: string } {
  return { secret: join(familyDir(dataDir), `${name}.secret_family_key`), pub: join(familyDir(dataDir), `${name}.public_family_id`) };
}

export async function readFamilyKey(dataDir: string, name: string): Promise<FamilyKey | null> {
  const p = paths(dataDir, name);
  if (!(await exists(p.secret))) return null;
  const id = (await readFile(p.pub, 'utf8')).trim();
  if (!/^[A-Za-z0-9+/]{43}=?$/.test(id)) throw new Error(`${p.pub} does not hold a family id`);
  return { name, id, secretPath: p.secret };
}

/** The family key, made by tor if there is none. */
export async function ensureFamilyKey(dataDir: string, name: string, torPath: string): Promise<FamilyKey & { created: boolean }> {
  const have = await readFamilyKey(dataDir, name);
  if (have) return { ...have, created: false };
  await mkdir(familyDir(dataDir), { recursive: true, mode: 0o700 });
  const scratch = await mkdtemp(join(familyDir(dataDir), '.keygen-'));
  try {
    const base = join(scratch, name);
    const r = await execa(torPath, [...torArgs('/dev/null', ['--ignore-missing-torrc']), '--keygen-family', base, '--Log', 'err stderr'], { reject: false });
    if (r.exitCode !== 0) throw new Error(`tor --keygen-family failed (exit ${r.exitCode}; tor 0.4.9 or later is needed): ${(r.stderr || r.stdout).trim()}`);
    const p = paths(dataDir, name);
    await rename(`${base}.public_family_id`, p.pub);
    await rename(`${base}.secret_family_key`, p.secret);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  const made = await readFamilyKey(dataDir, name);
  if (!made) throw new Error('tor --keygen-family wrote no key');
  return { ...made, created: true };
}

/** Copies the family's secret key into the instance; a different key already there is refused. */
export async function installFamilyKey(key: FamilyKey, l: Pick<InstanceLayout, 'dataDir' | 'name'>): Promise<boolean> {
  const dir = familyKeyDirOf(l);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  const dest = join(dir, `${key.name}.secret_family_key`);
  const ours = await readFile(key.secretPath);
  if (await exists(dest)) {
    if ((await readFile(dest)).equals(ours)) return false;
    throw new Error(`${dest} is a different family key than ${key.secretPath}; refusing to overwrite it (move it aside to use the family's key)`);
  }
  const tmp = `${dest}.bridgectl-tmp`;
  await copyFile(key.secretPath, tmp);
  await chmod(tmp, 0o600);
  await rename(tmp, dest);
  return true;
}

/** What is wrong with the instances' family keys: missing, different, or a stranger's key beside ours. */
export async function familyKeyProblems(key: FamilyKey | null, instances: Array<Pick<InstanceLayout, 'dataDir' | 'name'>>): Promise<string[]> {
  if (!key) return ['there is no family key; run "bridgectl init"'];
  const ours = await readFile(key.secretPath);
  const out: string[] = [];
  for (const l of instances) {
    const dir = familyKeyDirOf(l);
    const dest = join(dir, `${key.name}.secret_family_key`);
    if (!(await exists(dest))) {
      out.push(`${l.name} has no family key (${dest} is missing); run "bridgectl init" to copy it`);
      continue;
    }
    if (!(await readFile(dest)).equals(ours)) out.push(`${l.name}'s family key ${dest} differs from the family's ${key.secretPath}`);
    const others = (await readdir(dir)).filter((f) => f.endsWith('.secret_family_key') && f !== `${key.name}.secret_family_key`);
    if (others.length) out.push(`${l.name} has other family keys in ${dir}: ${others.join(', ')}`);
  }
  return out;
}

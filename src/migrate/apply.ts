// Writing the plan (effects): checks the target first, writes only what is missing, and undoes
// everything it made when any step fails. The source is only ever read.
import { mkdir, writeFile, stat, rm, chmod, lchown, lstat, readdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import {
  readKeySet,
  hasIdentity,
  keyDifferences,
  installKeySet,
  verifyIdentity,
  rsaFingerprint,
  readRotationState,
  writeRotationState,
} from '../keysync/index.js';
import { parseConfigText, resolveConfig, identityDir, instanceLayout, type ResolvedConfig } from '../config/index.js';
import { MigrateError, readOptional } from './source.js';
import type { Plan } from './plan.js';

/** Paths this run created, so that a failure removes exactly them (never anything that was there). */
class Journal {
  readonly created: string[] = [];
  async mkdirp(dir: string, mode = 0o700): Promise<void> {
    const missing: string[] = [];
    for (let d = dir; !(await stat(d).catch(() => null)); d = dirname(d)) missing.unshift(d);
    for (const d of missing) {
      await mkdir(d, { mode });
      await chmod(d, mode);
      this.created.push(d);
    }
  }
  /** Writes a file that must not exist yet. */
  async writeNew(p: string, data: Buffer | string, mode = 0o600): Promise<void> {
    await this.mkdirp(dirname(p));
    await writeFile(p, data, { mode, flag: 'wx' });
    await chmod(p, mode);
    this.created.push(p);
  }
  note(p: string): void {
    this.created.push(p);
  }
  async rollback(): Promise<void> {
    for (const p of [...this.created].reverse()) await rm(p, { recursive: true, force: true });
  }
}

const readIf = (p: string): Promise<Buffer | null> => readOptional(p, 'the target file');

export interface TargetState {
  config: ResolvedConfig;
  /** The config file exists and says what the plan would write. */
  configSame: boolean;
  /** Things already in place (a second run). */
  present: string[];
}

/**
 * Refuses (MigrateError, one line) when the target holds anything else: another config, keys of
 * another bridge, another static cookie or transport state. Reads only.
 */
export async function checkTarget(plan: Plan, configFile: string): Promise<TargetState> {
  const config = resolveConfig(parseConfigText(plan.configText, configFile), configFile);
  const present: string[] = [];
  const current = await readIf(configFile);
  const configSame = current !== null && current.toString('utf8') === plan.configText;
  if (current !== null && !configSame) throw new MigrateError(`${configFile} exists with other content; refusing to replace it (move it away first). Nothing was changed`);
  const keysDirs = [{ who: `the bridge identity (${identityDir(config)})`, dir: join(identityDir(config), 'keys') }];
  plan.instances.forEach((_, k) => {
    const l = instanceLayout(config, k + 1);
    keysDirs.push({ who: `twin ${l.name}`, dir: l.keysDir });
  });
  const mine = plan.instances[0]!.keys;
  for (const { who, dir } of keysDirs) {
    const have = await readKeySet(dir).catch((e: Error) => {
      throw new MigrateError(e.message);
    });
    if (!have.size) continue;
    const diff = hasIdentity(have) ? keyDifferences(mine, have) : ['key set'];
    if (diff.length) {
      let fp = 'incomplete keys';
      try {
        fp = rsaFingerprint(have.get('secret_id_key')!);
      } catch {
        /* keep the description */
      }
      throw new MigrateError(`the target already holds other keys: ${who} in ${dir} has ${fp} (differs in ${diff.join(', ')}), not ${plan.fingerprint}. Nothing was changed`);
    }
    present.push(`${who}: keys of ${plan.fingerprint}`);
  }
  if (plan.cookie) {
    const c = await readIf(config.balancer.cookieFile);
    if (c && !c.equals(plan.cookie)) throw new MigrateError(`the target's static cookie ${config.balancer.cookieFile} differs from the source's; nothing was changed`);
    if (c) present.push('the static cookie');
  }
  if (plan.ptState && config.transport) {
    for (const f of plan.ptState.files) {
      const c = await readIf(join(config.transport.stateDir, f.rel));
      // Once migrated, a transport may rewrite its own state (a renewed certificate): that is kept.
      if (c && !c.equals(f.data) && !configSame) {
        throw new MigrateError(`the target's transport state ${join(config.transport.stateDir, f.rel)} differs from the source's; nothing was changed`);
      }
    }
  }
  return { config, configSame, present };
}

export interface ApplyResult {
  /** What was written ([] on a second run). */
  written: string[];
}

/**
 * Writes keys, tor state, rotation state, cookie and transport state, does what `init` does (the
 * bridge's own copy of the identity is adopted from the twins, pins made), checks the result with
 * `keys verify`, and writes the config last. Any failure removes what this run created.
 */
export async function applyPlan(plan: Plan, configFile: string, init: (c: ResolvedConfig) => Promise<unknown>): Promise<ApplyResult> {
  const t = await checkTarget(plan, configFile);
  const c = t.config;
  const j = new Journal();
  // A data directory that exists already (the package made it for the bridgectl user) gives what is
  // written into it its owner, so the service's tor can read its keys.
  const owner = await stat(c.dataDir).catch(() => null);
  try {
    await j.mkdirp(c.dataDir);
    await j.mkdirp(join(c.dataDir, 'instances'));
    await j.mkdirp(join(identityDir(c), 'keys'));
    for (const [k, p] of plan.instances.entries()) {
      const l = instanceLayout(c, k + 1);
      const fresh = !(await stat(l.keysDir).catch(() => null));
      await j.mkdirp(l.keysDir);
      const have = await readKeySet(l.keysDir);
      const written = await installKeySet(l.keysDir, new Map([...p.keys].filter(([f]) => !have.has(f))));
      if (!fresh) for (const f of written) j.note(join(l.keysDir, f));
      for (const [f, data] of p.old) if (!(await readIf(join(l.keysDir, f)))) await j.writeNew(join(l.keysDir, f), data);
      if (p.state && !(await readIf(join(l.dataDir, 'state')))) await j.writeNew(join(l.dataDir, 'state'), p.state);
    }
    const idKeys = join(identityDir(c), 'keys');
    for (const [f, data] of plan.instances[0]!.old) if (!(await readIf(join(idKeys, f)))) await j.writeNew(join(idKeys, f), data);
    if (!(await readRotationState(identityDir(c)))) {
      await writeRotationState(identityDir(c), plan.rotation);
      j.note(join(identityDir(c), 'onion-rotation.json'));
    }
    if (plan.cookie && !(await readIf(c.balancer.cookieFile))) await j.writeNew(c.balancer.cookieFile, plan.cookie);
    if (plan.ptState && c.transport) {
      await j.mkdirp(c.transport.stateDir);
      for (const d of plan.ptState.dirs) await j.mkdirp(join(c.transport.stateDir, d.rel), d.mode & 0o777);
      for (const f of plan.ptState.files) {
        const p = join(c.transport.stateDir, f.rel);
        if (!(await readIf(p))) await j.writeNew(p, f.data, f.mode & 0o777);
      }
    }
    await init(c);
    const v = await verifyIdentity(identityDir(c), plan.instances.map((_, k) => instanceLayout(c, k + 1)));
    if (!v.ok) throw new MigrateError(`keys verify failed after copying: ${v.problems.join('; ')}`);
    if (v.fingerprint !== plan.fingerprint) throw new MigrateError(`the target's fingerprint is ${v.fingerprint}, not ${plan.fingerprint}`);
    if (owner && (owner.uid !== process.getuid?.() || owner.gid !== process.getgid?.())) {
      for (const p of j.created.filter((x) => x.startsWith(`${c.dataDir}/`))) await chownTree(p, owner.uid, owner.gid);
      for (const d of ['identity', 'instances']) await chownTree(join(c.dataDir, d), owner.uid, owner.gid);
    }
    if (!t.configSame) await j.writeNew(configFile, plan.configText, 0o640);
  } catch (e) {
    await j.rollback();
    const msg = (e as Error).message;
    throw new MigrateError(`${msg.replace(/[. ]*Nothing was changed\.?$/, '')}${/rolled back/.test(msg) ? '' : '; what this run wrote was removed, the source was not touched'}`);
  }
  return { written: j.created };
}

async function chownTree(p: string, uid: number, gid: number): Promise<void> {
  const s = await lstat(p).catch(() => null);
  if (!s) return;
  await lchown(p, uid, gid);
  if (s.isDirectory()) for (const n of await readdir(p)) await chownTree(join(p, n), uid, gid);
}

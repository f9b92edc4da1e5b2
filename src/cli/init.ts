import { join } from 'node:path';
import { mkdir, chmod, lchown, readdir } from 'node:fs/promises';
import { loadConfig, instanceLayout, identityDir, type ResolvedConfig } from '../config/index.js';
import { initIdentity, type InitResult } from '../keysync/index.js';
import { listFingerprint } from '../tor/index.js';
import { stat } from 'node:fs/promises';
import { createCookieFile, readCookieFile } from '../extorport/index.js';
import { parse } from './args.js';
import { initRelays } from '../relay/index.js';

export { identityDir };

export function instanceTargets(c: ResolvedConfig): Array<{ name: string; dataDir: string }> {
  return Array.from({ length: c.instances }, (_, i) => instanceLayout(c, i + 1));
}

/** Everything `bridgectl init` does, reusable by the lab and by tests. */
export async function initBridge(c: ResolvedConfig): Promise<InitResult & { cookieCreated: boolean }> {
  await mkdir(c.dataDir, { recursive: true, mode: 0o700 });
  await chmod(c.dataDir, 0o700);
  await mkdir(join(c.dataDir, 'instances'), { recursive: true, mode: 0o700 });
  const r = await initIdentity({
    identityDir: identityDir(c),
    instances: instanceTargets(c),
    generate: async (dir) => {
      await listFingerprint(dir, `${c.nickname}0`, c.torPath);
    },
  });
  const cookieCreated = await ensureCookieFile(c.balancer.cookieFile);
  if (cookieCreated) r.actions.push(`created the static Extended ORPort cookie ${c.balancer.cookieFile}`);
  return { ...r, cookieCreated };
}

/** Gives every file under `dir` to uid:gid (lchown: links are not followed). */
async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await lchown(dir, uid, gid);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await chownTree(p, uid, gid);
    else await lchown(p, uid, gid);
  }
}

/** The owner of dataDir when root runs init and dataDir belongs to someone else (the service user). */
async function serviceOwner(c: ResolvedConfig): Promise<{ uid: number; gid: number } | null> {
  if (process.getuid?.() !== 0) return null;
  const st = await stat(c.dataDir).catch(() => null);
  return st && st.uid !== 0 ? { uid: st.uid, gid: st.gid } : null;
}

/**
 * Run as root on a dataDir that belongs to the service user (the package's /var/lib/bridgectl):
 * gives what root made there to that user, or the service could not use it. Says so in `actions`.
 */
export async function giveToServiceUser(config: ResolvedConfig, actions: string[]): Promise<void> {
  const owner = await serviceOwner(config);
  if (!owner) return;
  await chownTree(config.dataDir, owner.uid, owner.gid);
  actions.push(`gave everything under ${config.dataDir} to its owner (uid ${owner.uid}), the service's user`);
}

export async function initCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  const { config, file } = loadConfig(values.config);
  if (config.mode === 'relay') {
    const r = await initRelays(config);
    console.log(`relay family ${config.nickname} (${file}): FamilyId ${r.familyId}`);
    for (const m of r.members) console.log(`  ${m.name} ${m.fingerprint}`);
    await giveToServiceUser(config, r.actions);
    for (const a of r.actions) console.log(`  ${a}`);
    if (!r.actions.length) console.log('  everything was already in place');
    return 0;
  }
  const r = await initBridge(config);
  await giveToServiceUser(config, r.actions);
  console.log(`bridge ${config.nickname} (${file}): fingerprint ${r.fingerprint}`);
  for (const a of r.actions) console.log(`  ${a}`);
  if (!r.actions.length) console.log('  everything was already in place');
  return 0;
}

/** Creates the static cookie if absent; an existing one is validated and kept. */
async function ensureCookieFile(path: string): Promise<boolean> {
  try {
    await stat(path);
  } catch {
    await createCookieFile(path);
    return true;
  }
  await readCookieFile(path);
  return false;
}

import { join } from 'node:path';
import { mkdir, chmod } from 'node:fs/promises';
import { loadConfig, instanceLayout, identityDir, type ResolvedConfig } from '../config/index.js';
import { initIdentity, type InitResult } from '../keysync/index.js';
import { listFingerprint } from '../tor/index.js';
import { stat } from 'node:fs/promises';
import { createCookieFile, readCookieFile } from '../extor-cookie/index.js';
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

export async function initCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  const { config, file } = loadConfig(values.config);
  if (config.mode === 'relay') {
    const r = await initRelays(config);
    console.log(`relay family ${config.nickname} (${file}): FamilyId ${r.familyId}`);
    for (const m of r.members) console.log(`  ${m.name} ${m.fingerprint}`);
    for (const a of r.actions) console.log(`  ${a}`);
    if (!r.actions.length) console.log('  everything was already in place');
    return 0;
  }
  const r = await initBridge(config);
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

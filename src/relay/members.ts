// The family's members on disk: each instance's own identity and the shared family key, made or
// checked; and the refusals that keep relay mode from harming the network.
import { mkdir, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { instanceLayout, type InstanceLayout, type ResolvedConfig } from '../config/index.js';
import { ensureRelayIdentity, rsaFingerprint, exists } from './identity.js';
import { ensureFamilyKey, installFamilyKey, readFamilyKey, familyKeyProblems, type FamilyKey } from './family.js';

export function relayLayouts(c: ResolvedConfig, indexes?: number[]): InstanceLayout[] {
  return (indexes ?? Array.from({ length: c.instances }, (_, i) => i + 1)).map((i) => instanceLayout(c, i));
}

/** The family key's file name (and the family's name): the base nickname. */
export function familyName(c: Pick<ResolvedConfig, 'nickname'>): string {
  return c.nickname;
}

export interface RelayInitResult {
  familyId: string;
  members: Array<{ name: string; fingerprint: string }>;
  actions: string[];
}

/** Makes what is missing for these instances (identity by tor, the family key, its copies); keeps what exists. */
export async function initRelays(c: ResolvedConfig, layouts: InstanceLayout[] = relayLayouts(c)): Promise<RelayInitResult> {
  await mkdir(join(c.dataDir, 'instances'), { recursive: true, mode: 0o700 });
  await chmod(c.dataDir, 0o700);
  const actions: string[] = [];
  const key = await ensureFamilyKey(c.dataDir, familyName(c), c.torPath);
  if (key.created) actions.push(`made the family key ${key.secretPath} (FamilyId ${key.id}) with tor --keygen-family`);
  const members: RelayInitResult['members'] = [];
  for (const l of layouts) {
    const id = await ensureRelayIdentity(c, l);
    if (id.created) actions.push(`${l.name}: tor made its identity ${id.fingerprint}`);
    if (await installFamilyKey(key, l)) actions.push(`${l.name}: installed the family key`);
    members.push({ name: l.name, fingerprint: id.fingerprint });
  }
  const problems = await relayProblems(c, layouts);
  if (problems.length) throw new Error(`the relays' keys are not right:\n  ${problems.join('\n  ')}`);
  return { familyId: key.id, members, actions };
}

/** Why these relays must not start: a missing or shared identity, a missing or foreign family key. */
export async function relayProblems(c: ResolvedConfig, layouts: InstanceLayout[] = relayLayouts(c)): Promise<string[]> {
  const out: string[] = [];
  const byFp = new Map<string, string[]>();
  for (const l of layouts) {
    if (!(await exists(join(l.keysDir, 'secret_id_key')))) {
      out.push(`${l.name} has no identity key (${join(l.keysDir, 'secret_id_key')}); run "bridgectl init"`);
      continue;
    }
    const fp = await rsaFingerprint(l.keysDir);
    byFp.set(fp, [...(byFp.get(fp) ?? []), l.name]);
  }
  for (const [fp, names] of byFp) {
    if (names.length > 1) {
      out.push(`${names.join(' and ')} share one identity (${fp}): in relay mode every instance needs its own (a shared identity is what bridge twins do; relays with one identity are a misconfiguration the network detects). Move the copied keys aside and run "bridgectl init"`);
    }
  }
  out.push(...(await familyKeyProblems(await readFamilyKey(c.dataDir, familyName(c)), layouts)));
  return out;
}

/** The current family: its id and every member's fingerprint. */
export async function familyOf(c: ResolvedConfig, layouts: InstanceLayout[]): Promise<{ key: FamilyKey; members: Array<{ name: string; fingerprint: string }> }> {
  const key = await readFamilyKey(c.dataDir, familyName(c));
  if (!key) throw new Error('there is no family key; run "bridgectl init"');
  const members: Array<{ name: string; fingerprint: string }> = [];
  for (const l of layouts) members.push({ name: l.name, fingerprint: await rsaFingerprint(l.keysDir) });
  return { key, members };
}

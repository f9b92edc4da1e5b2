// Offline master keys (OfflineMasterKey 1): renewing every relay's signing key and certificate
// from master keys held outside dataDir, and telling how soon each certificate expires.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { ResolvedConfig } from '../config/index.js';
import { keygenSigning, installSigning, masterDirOf, readSigningExpiry, exists } from './identity.js';
import { relayLayouts } from './members.js';

export interface SignResult {
  name: string;
  expires: string;
}

/** `keys sign`: tor --keygen with each master key makes a new signing key and certificate; they go into the instance. */
export async function signAll(c: ResolvedConfig): Promise<SignResult[]> {
  if (!c.relay.masterKeyDir) throw new Error('relay.masterKeyDir is not set: with the master keys in the data directories tor renews its signing keys itself');
  const layouts = relayLayouts(c);
  // Every master key first: renew none unless all can be renewed.
  for (const l of layouts) {
    const master = masterDirOf(c, l)!;
    const secret = join(master, 'keys', 'ed25519_master_id_secret_key');
    if (!(await exists(secret))) throw new Error(`${l.name}: no master key at ${secret} (mount the master keys' medium, or fix relay.masterKeyDir)`);
    const pub = join(l.keysDir, 'ed25519_master_id_public_key');
    if ((await exists(pub)) && !(await readFile(pub)).equals(await readFile(join(master, 'keys', 'ed25519_master_id_public_key')))) {
      throw new Error(`${l.name}: the master key in ${master} is not this relay's (its ed25519 identity differs); refusing to sign`);
    }
  }
  const out: SignResult[] = [];
  for (const l of layouts) {
    const master = masterDirOf(c, l)!;
    await keygenSigning(master, c.relay.signingKeyLifetimeDays, c.torPath);
    await installSigning(master, l.keysDir);
    out.push({ name: l.name, expires: (await readSigningExpiry(l.keysDir))!.toISOString() });
  }
  return out;
}

export interface SigningState {
  name: string;
  expires: Date | null;
  daysLeft: number | null;
}

export async function signingStates(c: ResolvedConfig, now = new Date()): Promise<SigningState[]> {
  const out: SigningState[] = [];
  for (const l of relayLayouts(c)) {
    const expires = await readSigningExpiry(l.keysDir);
    out.push({ name: l.name, expires, daysLeft: expires ? (expires.getTime() - now.getTime()) / 86_400_000 : null });
  }
  return out;
}

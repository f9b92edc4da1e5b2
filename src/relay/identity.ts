// Each relay's own identity, made by tor: the RSA fingerprint read from its key, the ed25519 keys
// (online, or from master keys held outside dataDir with OfflineMasterKey 1).
import { readFile, mkdir, copyFile, rename, access, stat } from 'node:fs/promises';
import { createHash, createPublicKey } from 'node:crypto';
import { join } from 'node:path';
import { execa } from 'execa';
import { listFingerprint, torArgs } from '../tor/index.js';
import type { InstanceLayout, ResolvedConfig } from '../config/index.js';

/** tor's RSA identity fingerprint: SHA-1 of the PKCS#1 DER public key, upper-case hex. */
export async function rsaFingerprint(keysDir: string): Promise<string> {
  const pem = await readFile(join(keysDir, 'secret_id_key'), 'utf8');
  const der = createPublicKey(pem).export({ type: 'pkcs1', format: 'der' });
  return createHash('sha1').update(der).digest('hex').toUpperCase();
}

export async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

/** The instance's directory of master keys (a tor DataDirectory for `tor --keygen`), when offline. */
export function masterDirOf(c: ResolvedConfig, l: Pick<InstanceLayout, 'name'>): string | null {
  return c.relay.masterKeyDir ? join(c.relay.masterKeyDir, l.name) : null;
}

const SIGNING_FILES = ['ed25519_signing_secret_key', 'ed25519_signing_cert'];

/** Has tor make (or renew) the signing key and certificate from the master key in `masterDir`. */
export async function keygenSigning(masterDir: string, lifetimeDays: number, torPath: string): Promise<void> {
  await mkdir(masterDir, { recursive: true, mode: 0o700 });
  const r = await execa(
    torPath,
    [...torArgs('/dev/null', ['--ignore-missing-torrc']), '--keygen', '--no-passphrase', '--DataDirectory', masterDir, '--SigningKeyLifetime', `${lifetimeDays} days`, '--Log', 'err stderr'],
    { reject: false, input: '' },
  );
  if (r.exitCode !== 0 || !(await exists(join(masterDir, 'keys', 'ed25519_signing_cert')))) {
    throw new Error(`tor --keygen in ${masterDir} failed (exit ${r.exitCode}): ${(r.stderr || r.stdout).trim()}`);
  }
}

/** Copies the public master key and the signing key and certificate into the instance (atomically each). */
export async function installSigning(masterDir: string, keysDir: string): Promise<void> {
  await mkdir(keysDir, { recursive: true, mode: 0o700 });
  const pub = join(keysDir, 'ed25519_master_id_public_key');
  const theirs = await readFile(join(masterDir, 'keys', 'ed25519_master_id_public_key'));
  if (await exists(pub)) {
    if (!(await readFile(pub)).equals(theirs)) {
      throw new Error(`${pub} is not the public key of the master key in ${masterDir}; refusing to mix two identities`);
    }
  } else {
    await copyFile(join(masterDir, 'keys', 'ed25519_master_id_public_key'), pub);
  }
  for (const f of SIGNING_FILES) {
    const tmp = join(keysDir, `${f}.bridgectl-tmp`);
    await copyFile(join(masterDir, 'keys', f), tmp);
    await rename(tmp, join(keysDir, f));
  }
}

/**
 * Makes the instance's identity if it has none (tor makes every key). With master keys held
 * elsewhere, the master key is made there and only its public half and a signing key come in.
 * An existing identity is kept. Returns the RSA fingerprint.
 */
export async function ensureRelayIdentity(c: ResolvedConfig, l: InstanceLayout): Promise<{ fingerprint: string; created: boolean }> {
  await mkdir(l.dataDir, { recursive: true, mode: 0o700 });
  const created = !(await exists(join(l.keysDir, 'secret_id_key')));
  const master = masterDirOf(c, l);
  if (master) {
    if (await exists(join(l.keysDir, 'ed25519_master_id_secret_key'))) {
      throw new Error(`${l.name}: relay.masterKeyDir is set but ${join(l.keysDir, 'ed25519_master_id_secret_key')} is still in the data directory; move it to ${join(master, 'keys')} first`);
    }
    if (!(await exists(join(l.keysDir, 'ed25519_signing_cert')))) {
      if (!(await exists(join(master, 'keys', 'ed25519_signing_cert')))) await keygenSigning(master, c.relay.signingKeyLifetimeDays, c.torPath);
      await installSigning(master, l.keysDir);
    }
    await listFingerprint(l.dataDir, l.name, c.torPath, ['--OfflineMasterKey', '1']);
  } else {
    await listFingerprint(l.dataDir, l.name, c.torPath);
  }
  return { fingerprint: await rsaFingerprint(l.keysDir), created };
}

/** Seconds since the epoch when an `ed25519_signing_cert` file expires (tor-cert: hours since the epoch). */
export function signingCertExpiry(file: Buffer): Date {
  const header = file.subarray(0, 32).toString('latin1');
  if (!header.startsWith('== ed25519v1-cert: type4 ==')) throw new Error('not a tor ed25519 signing certificate (bad header)');
  if (file.length < 32 + 6 || file[32] !== 1) throw new Error('not a version-1 tor certificate');
  return new Date(file.readUInt32BE(34) * 3600_000);
}

export async function readSigningExpiry(keysDir: string): Promise<Date | null> {
  const p = join(keysDir, 'ed25519_signing_cert');
  if (!(await exists(p))) return null;
  await stat(p);
  return signingCertExpiry(await readFile(p));
}

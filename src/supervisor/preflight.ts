// Start-up checks that turn the usual faults into one clear line before anything starts.
import { access, constants, mkdir, writeFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { instanceLayout, type ResolvedConfig } from '../config/index.js';
import { requireNativeEngine } from '../balancer/index.js';
import { verifyConfig } from '../tor/index.js';
import { renderInstanceTorrc } from './render.js';
import { whichExecutable } from './transport.js';

/** Throws an Error whose message is the one line an operator needs. */
export async function preflight(c: ResolvedConfig): Promise<void> {
  requireNativeEngine();
  const tor = await whichExecutable(c.torPath);
  if (!tor) throw new Error(`tor binary not found or not executable: ${c.torPath} (install the "tor" package, or set torPath)`);
  for (const d of [c.dataDir, join(c.dataDir, 'instances'), c.runtimeDir]) {
    try {
      await mkdir(d, { recursive: true, mode: 0o700 });
      const probe = join(d, `.bridgectl-write-test-${process.pid}`);
      await writeFile(probe, '');
      await unlink(probe);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const why = err.code === 'EROFS' ? 'read-only file system' : err.code === 'EACCES' ? 'permission denied' : err.message;
      throw new Error(`cannot write to ${d}: ${why} (bridgectl needs dataDir and runtimeDir writable)`);
    }
  }
  for (const t of c.transports) {
    if (!(await whichExecutable(t.command[0]!))) throw new Error(`transport command not found or not executable: ${t.command[0]}`);
  }
  if (c.mode === 'relay') return; // no cookie; Relays checks identities and the family key itself
  try {
    await access(c.balancer.cookieFile, constants.R_OK);
  } catch {
    throw new Error(`cannot read the static cookie ${c.balancer.cookieFile}; run bridgectl init`);
  }
  // Let tor itself judge the torrc (the extra lines from the config above all) before we start it.
  const l = instanceLayout(c, 1);
  const probe = join(c.runtimeDir, 'verify-torrc');
  await writeFile(probe, renderInstanceTorrc(c, l), { mode: 0o600 });
  try {
    const complaint = await verifyConfig(probe, tor);
    if (complaint) throw new Error(`tor rejects the torrc (config key "torrc" or the template): ${complaint.split('\n').slice(-3).join(' | ')}`);
  } finally {
    await unlink(probe).catch(() => undefined);
  }
}

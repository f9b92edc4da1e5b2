import { execa } from 'execa';
import { checkIsolation } from '../lab/index.js';

/**
 * Re-runs this very command inside a fresh network namespace with only loopback (as root), unless
 * we are in one already. Resolves to the exit code of the re-run, or null when already isolated.
 */
export async function reexecInNetns(): Promise<number | null> {
  if (checkIsolation().isolated) return null;
  if (process.env.BRIDGECTL_IN_NETNS === '1') {
    throw new Error(`still not isolated inside the new network namespace: ${checkIsolation().reasons.join('; ')}`);
  }
  if (process.getuid?.() !== 0) {
    throw new Error('the lab needs its own network namespace, which needs root: run it with sudo');
  }
  const r = await execa(
    'unshare',
    ['--net', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, ...process.argv.slice(1)],
    { stdio: 'inherit', reject: false, env: { BRIDGECTL_IN_NETNS: '1' } },
  );
  return r.exitCode ?? 1;
}

// Running bridgectl doctor/sysctl/render in tests: through the built CLI once src/cli/main.ts
// registers them, else through test/fixtures/ops-cli-main.ts (same commands, same exit codes).
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { CLI } from './helpers.js';

const FALLBACK = fileURLToPath(new URL('./fixtures/ops-cli-main.js', import.meta.url));

let entry: Promise<string> | undefined;

/** The built main.js if it knows `doctor`, else the fixture. */
export function opsEntry(): Promise<string> {
  entry ??= execa(process.execPath, [CLI, 'doctor', '--help'], { reject: false }).then((r) =>
    r.exitCode === 0 && r.stdout.includes('bridgectl doctor') ? CLI : FALLBACK,
  );
  return entry;
}

export async function ops(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  return execa(process.execPath, [await opsEntry(), ...args], { reject: false, cwd: opts.cwd, env: opts.env });
}

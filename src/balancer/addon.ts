// Loading the native addon (native/*.c, built by node-gyp from the package's binding.gyp: `npm ci`
// or `npm rebuild` in the package's directory). The engine is the one data path: without the addon
// bridgectl does not start (engineMissingMessage says why and how to build it).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorMap } from 'node:util';

const ADDON_FILE = join('build', 'Release', 'bind_no_port.node');

let addon: Record<string, unknown> | null | undefined;
let addonError = '';

/**
 * bridgectl's own directory (its package.json): a checkout (with binding.gyp), an npm install, or
 * the Debian package's /usr/lib/bridgectl (which ships the built addon, not binding.gyp).
 */
export function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string };
      if (pkg.name === 'bridgectl') return dir;
    } catch {
      /* not here */
    }
    dir = dirname(dir);
  }
  return null;
}

/** The addon's exports, or null if it is not built here or does not load (the reason: addonLoadError()). */
export function loadAddon(): Record<string, unknown> | null {
  if (addon !== undefined) return addon;
  const root = packageRoot();
  // BRIDGECTL_ADDON: another build of the addon (scripts/sanitize.sh's, with ASan and UBSan).
  const file = process.env.BRIDGECTL_ADDON || (root ? join(root, ADDON_FILE) : null);
  try {
    if (!file || !existsSync(file)) throw new Error(`${file ?? ADDON_FILE} not found`);
    addon = createRequire(import.meta.url)(file) as Record<string, unknown>;
  } catch (e) {
    // One line: a dlopen error can carry the whole path list.
    addonError = (e as Error).message.split('\n')[0]!;
    addon = null;
  }
  return addon;
}

export function addonLoadError(): string {
  return addonError;
}

/** An Error like Node's own for a negative errno from the addon: "listen EADDRINUSE: address already in use 127.0.0.1:10000". */
export function errnoError(neg: number, syscall: string, address: string): NodeJS.ErrnoException {
  const [code, text] = getSystemErrorMap().get(neg) ?? ['UNKNOWN', 'unknown error'];
  const e: NodeJS.ErrnoException = new Error(`${syscall} ${code}: ${text} ${address}`);
  e.code = code;
  e.errno = neg;
  e.syscall = syscall;
  return e;
}

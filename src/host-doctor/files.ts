// `bridgectl sysctl`: the recommended sysctl.d and modules-load.d files against what is installed,
// as unified diffs, and writing them (atomically, mode 0644) under a root directory.
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createTwoFilesPatch } from 'diff';
import type { Reader } from './read.js';
import { MODULES_FILE, SYSCTL_FILE, renderModulesLoadConf, renderSysctlConf } from './recommended.js';

export interface PlannedFile {
  /** Absolute path on the target system (without the root). */
  path: string;
  /** Current text; null when the file does not exist. */
  current: string | null;
  recommended: string;
  changed: boolean;
  /** Unified diff current → recommended; "" when unchanged. */
  diff: string;
}

/** A unified diff of one file (/dev/null as the old side when it does not exist). */
export function fileDiff(path: string, current: string | null, recommended: string): string {
  if (current === recommended) return '';
  return createTwoFilesPatch(current === null ? '/dev/null' : path, path, current ?? '', recommended, 'installed', 'recommended by bridgectl');
}

export function planFile(path: string, current: string | null, recommended: string): PlannedFile {
  return { path, current, recommended, changed: current !== recommended, diff: fileDiff(path, current, recommended) };
}

/** The two files against what the reader sees (an fsReader(root) for --root). */
export async function planSysctlFiles(r: Reader): Promise<PlannedFile[]> {
  return [
    planFile(SYSCTL_FILE, await r.readText(SYSCTL_FILE), renderSysctlConf()),
    planFile(MODULES_FILE, await r.readText(MODULES_FILE), renderModulesLoadConf()),
  ];
}

/** Writes a file atomically with mode 0644 (temporary file in the same directory, then rename). */
export async function writeFileAtomic(path: string, text: string, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = join(dirname(path), `.${Date.now()}.${process.pid}.bridgectl.tmp`);
  const fh = await open(tmp, 'wx', mode);
  try {
    await fh.writeFile(text);
    await fh.chmod(mode);
    await fh.sync();
  } catch (e) {
    await fh.close();
    await rm(tmp, { force: true });
    throw e;
  }
  await fh.close();
  await rename(tmp, path);
}

/** Writes the changed files under `root`; returns the paths written (on the target system). */
export async function writePlanned(plan: PlannedFile[], root = '/'): Promise<string[]> {
  const written: string[] = [];
  for (const p of plan) {
    if (!p.changed) continue;
    await writeFileAtomic(root === '/' ? p.path : join(root, p.path), p.recommended);
    written.push(p.path);
  }
  return written;
}

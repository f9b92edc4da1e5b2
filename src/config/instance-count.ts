// The instance count changed at run time (add-instance, remove-instance) when the config file
// cannot be written (the packaged service: /etc is read-only to it, ProtectSystem=strict). It lives
// in <dataDir>/instance-count.json and overrides the config's `instances` for as long as the
// config still says what it said when the count was saved; once an operator edits `instances`,
// the config wins again and the file is ignored (and removed at the next save).
import { readFileSync } from 'node:fs';
import { rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface InstanceCount {
  /** The running count. */
  instances: number;
  /** The config file's `instances` when the count was saved. */
  configInstances: number;
  savedAt: string;
}

export const instanceCountFile = (dataDir: string): string => join(dataDir, 'instance-count.json');

/** The saved count, or null if none (or unreadable: a user without access to dataDir). */
export function readInstanceCount(dataDir: string): InstanceCount | null {
  try {
    const v = JSON.parse(readFileSync(instanceCountFile(dataDir), 'utf8')) as Partial<InstanceCount>;
    const ok = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 254;
    if (!ok(v.instances) || !ok(v.configInstances)) return null;
    return { instances: v.instances, configInstances: v.configInstances, savedAt: String(v.savedAt ?? '') };
  } catch {
    return null;
  }
}

/** The count that applies: the saved one while the config's `instances` is unchanged. */
export function effectiveInstances(configInstances: number, saved: InstanceCount | null): number {
  return saved && saved.configInstances === configInstances ? saved.instances : configInstances;
}

export async function saveInstanceCount(dataDir: string, instances: number, configInstances: number): Promise<string> {
  const file = instanceCountFile(dataDir);
  const c: InstanceCount = { instances, configInstances, savedAt: new Date().toISOString() };
  await writeFile(`${file}.tmp`, JSON.stringify(c, null, 2) + '\n', { mode: 0o600 });
  await rename(`${file}.tmp`, file);
  return file;
}

export async function clearInstanceCount(dataDir: string): Promise<void> {
  await rm(instanceCountFile(dataDir), { force: true });
}

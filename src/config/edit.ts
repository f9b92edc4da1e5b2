// Editing the config file in place (keeping comments and layout), for add/remove-instance.
import { readFile, writeFile, rename, stat, chmod } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { parseConfigText } from './load.js';

/** Sets `instances: n` in the config file atomically; returns the new text. */
export async function setInstancesInFile(file: string, n: number): Promise<string> {
  const text = await readFile(file, 'utf8');
  const doc = parseDocument(text);
  doc.set('instances', n);
  const out = doc.toString();
  parseConfigText(out, file); // never write a config we would refuse to load
  const tmp = `${file}.bridgectl-tmp`;
  await writeFile(tmp, out);
  const mode = (await stat(file)).mode & 0o777;
  await chmod(tmp, mode);
  await rename(tmp, file);
  return out;
}

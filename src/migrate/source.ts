// Reading an existing bridge (effects): the recipe's tor@ instances, transport unit, HAProxy config
// and static cookie, or a single tor's torrc and DataDirectory. Nothing here writes anything.
import { readFile, readdir, stat, lstat } from 'node:fs/promises';
import { join, isAbsolute, relative } from 'node:path';
import { IDENTITY_FILES, PIN_DIRS, type KeySet } from '../keysync/index.js';
import { parseTorrc, lastValue, allValues, type TorrcLine } from './torrc.js';
import { parseUnit, parseEnvironment, parseEnvironmentFile, parseExecStart, type UnitEntry, type ExecStart } from './systemd.js';
import { parseHaproxy, type HaproxySection } from './haproxy.js';

export class MigrateError extends Error {}

export interface SourceInstance {
  /** tor@ instance name (the directory under /etc/tor/instances), or `tor` for a single tor. */
  name: string;
  torrcPath: string;
  torrc: TorrcLine[];
  dataDir: string;
  keysDir: string;
  keys: KeySet;
  /** Previous onion keys kept as `.old` *files* (tor's grace period). */
  old: KeySet;
  /** `.old` paths that are pin directories. */
  pinned: string[];
  /** tor's `state` file, or null. */
  state: string | null;
  ntorMtime: Date | null;
}

export interface SourceUnit {
  path: string;
  /** The unit and its drop-ins, in the order systemd reads them. */
  files: string[];
  entries: UnitEntry[];
  env: Array<[string, string]>;
  exec: ExecStart | null;
}

export interface SourceTree {
  /** Directory copied whole (the transport's TOR_PT_STATE_LOCATION). */
  path: string;
  files: Array<{ rel: string; mode: number; data: Buffer }>;
  dirs: Array<{ rel: string; mode: number }>;
  /** Entries not copied (symlinks, sockets). */
  skipped: string[];
}

export interface Source {
  kind: 'recipe' | 'tor';
  root: string;
  instances: SourceInstance[];
  unit: SourceUnit | null;
  haproxy: { path: string; sections: HaproxySection[] } | null;
  cookie: { path: string; data: Buffer } | null;
  ptState: SourceTree | null;
}

export interface SourcePaths {
  root?: string;
  from?: 'recipe' | 'tor';
  instancesDir?: string;
  instancesDataDir?: string;
  haproxy?: string;
  transportUnit?: string;
  torrc?: string;
  torDataDir?: string;
}

/** A path as written on the source host, read under `root` (as `sysctl --root` does). */
export function underRoot(root: string, p: string): string {
  if (!isAbsolute(p)) throw new MigrateError(`${p}: expected an absolute path`);
  return root === '/' ? p : join(root, p);
}

async function read(p: string, what: string): Promise<Buffer> {
  try {
    return await readFile(p);
  } catch (e) {
    throw new MigrateError(`cannot read ${what} ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** The file's bytes, or null when it does not exist; any other failure is a MigrateError naming `what`. */
export async function readOptional(p: string, what: string): Promise<Buffer | null> {
  try {
    return await readFile(p);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new MigrateError(`cannot read ${what} ${p}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

async function isDir(p: string): Promise<boolean> {
  return (await stat(p).catch(() => null))?.isDirectory() ?? false;
}

async function readInstance(root: string, name: string, torrcPath: string, defaultDataDir: string, forceDataDir?: string): Promise<SourceInstance> {
  const torrc = parseTorrc((await read(torrcPath, 'torrc')).toString('utf8'));
  const dd = lastValue(torrc, 'DataDirectory');
  const dataDir = forceDataDir ?? (dd ? underRoot(root, dd) : defaultDataDir);
  const kd = lastValue(torrc, 'KeyDirectory');
  const keysDir = kd ? underRoot(root, kd) : join(dataDir, 'keys');
  if (!(await isDir(keysDir))) throw new MigrateError(`instance ${name}: no keys directory ${keysDir}`);
  const keys: KeySet = new Map();
  for (const f of IDENTITY_FILES) {
    const b = await readOptional(join(keysDir, f), `instance ${name}'s key`);
    if (b) keys.set(f, b);
  }
  const old: KeySet = new Map();
  const pinned: string[] = [];
  for (const d of PIN_DIRS) {
    const s = await stat(join(keysDir, d)).catch(() => null);
    if (s?.isDirectory()) pinned.push(d);
    else if (s) old.set(d, await read(join(keysDir, d), `instance ${name}'s previous onion key`));
  }
  const state = await readOptional(join(dataDir, 'state'), `instance ${name}'s state file`);
  const ntor = await stat(join(keysDir, 'secret_onion_key_ntor')).catch(() => null);
  return { name, torrcPath, torrc, dataDir, keysDir, keys, old, pinned, state: state?.toString('utf8') ?? null, ntorMtime: ntor?.mtime ?? null };
}

/** Reads a directory tree whole (files with their modes). */
export async function readTree(path: string): Promise<SourceTree> {
  const t: SourceTree = { path, files: [], dirs: [], skipped: [] };
  const walk = async (dir: string): Promise<void> => {
    let names: string[];
    try {
      names = (await readdir(dir)).sort();
    } catch (e) {
      throw new MigrateError(`cannot read the transport's state directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    for (const n of names) {
      const p = join(dir, n);
      const s = await lstat(p);
      const rel = relative(path, p);
      if (s.isDirectory()) {
        t.dirs.push({ rel, mode: s.mode & 0o7777 });
        await walk(p);
      } else if (s.isFile()) t.files.push({ rel, mode: s.mode & 0o7777, data: await read(p, 'transport state file') });
      else t.skipped.push(rel);
    }
  };
  await walk(path);
  return t;
}

async function readUnit(path: string, root: string): Promise<SourceUnit> {
  const files = [path];
  const dropDir = `${path}.d`;
  if (await isDir(dropDir)) for (const f of (await readdir(dropDir)).filter((f) => f.endsWith('.conf')).sort()) files.push(join(dropDir, f));
  const entries: UnitEntry[] = [];
  for (const f of files) entries.push(...parseUnit((await read(f, 'systemd unit')).toString('utf8'), f));
  const env: Array<[string, string]> = [];
  let exec: ExecStart | null = null;
  for (const e of entries.filter((x) => x.section === 'Service')) {
    if (e.key === 'Environment') env.push(...parseEnvironment(e.value));
    else if (e.key === 'EnvironmentFile') {
      const optional = e.value.startsWith('-');
      const p = underRoot(root, e.value.replace(/^-/, ''));
      const b = optional ? await readOptional(p, 'EnvironmentFile') : await read(p, 'EnvironmentFile');
      if (b) env.push(...parseEnvironmentFile(b.toString('utf8')));
    } else if (e.key === 'ExecStart') exec = e.value ? parseExecStart(e.value) : null; // an empty ExecStart= resets
  }
  return { path, files, entries, env, exec };
}

/** The unit under ROOT/etc/systemd/system whose environment names a server transport. */
async function findTransportUnit(root: string): Promise<string> {
  const dir = underRoot(root, '/etc/systemd/system');
  const names = (await readdir(dir).catch(() => [] as string[])).filter((n) => n.endsWith('.service')).sort();
  const found: string[] = [];
  for (const n of names) {
    const p = join(dir, n);
    if (!(await stat(p).catch(() => null))?.isFile()) continue;
    const u = await readUnit(p, root).catch(() => null);
    if (u?.env.some(([k]) => k === 'TOR_PT_SERVER_TRANSPORTS')) found.push(p);
  }
  if (found.length === 1) return found[0]!;
  if (!found.length) throw new MigrateError(`no systemd unit under ${dir} sets TOR_PT_SERVER_TRANSPORTS (the transport's unit); give it with --transport-unit FILE`);
  throw new MigrateError(`several units set TOR_PT_SERVER_TRANSPORTS (${found.join(', ')}); choose one with --transport-unit FILE`);
}

export const envValue = (env: Array<[string, string]>, k: string): string | undefined => env.filter(([x]) => x === k).pop()?.[1];

/** Reads the whole source. Throws MigrateError with one line on anything it cannot read. */
export async function readSource(o: SourcePaths): Promise<Source> {
  const root = o.root ?? '/';
  const instancesDir = o.instancesDir ?? underRoot(root, '/etc/tor/instances');
  const kind = o.from ?? ((await isDir(instancesDir)) && (await readdir(instancesDir)).length ? 'recipe' : 'tor');
  if (kind === 'tor') {
    const torrcPath = o.torrc ?? underRoot(root, '/etc/tor/torrc');
    const inst = await readInstance(root, 'tor', torrcPath, underRoot(root, '/var/lib/tor'), o.torDataDir);
    const ptDir = join(inst.dataDir, 'pt_state');
    const ptState = allValues(inst.torrc, 'ServerTransportPlugin').length && (await isDir(ptDir)) ? await readTree(ptDir) : null;
    return { kind, root, instances: [inst], unit: null, haproxy: null, cookie: null, ptState };
  }
  const dataRoot = o.instancesDataDir ?? underRoot(root, '/var/lib/tor-instances');
  const names = (await readdir(instancesDir).catch((e: NodeJS.ErrnoException) => {
    throw new MigrateError(`cannot read ${instancesDir}: ${e.code ?? e.message}`);
  })).sort();
  const instances: SourceInstance[] = [];
  for (const n of names) {
    const torrcPath = join(instancesDir, n, 'torrc');
    if (!(await stat(torrcPath).catch(() => null))) continue;
    instances.push(await readInstance(root, n, torrcPath, join(dataRoot, n)));
  }
  if (!instances.length) throw new MigrateError(`no tor instances (NAME/torrc) in ${instancesDir}`);
  const unit = await readUnit(o.transportUnit ?? (await findTransportUnit(root)), root);
  const haproxyPath = o.haproxy ?? underRoot(root, '/etc/haproxy/haproxy.cfg');
  const hb = o.haproxy ? await read(haproxyPath, 'HAProxy config') : await readOptional(haproxyPath, 'HAProxy config');
  const haproxy = hb ? { path: haproxyPath, sections: parseHaproxy(hb.toString('utf8')) } : null;
  const cookiePath = envValue(unit.env, 'TOR_PT_AUTH_COOKIE_FILE');
  const cookie = cookiePath ? { path: cookiePath, data: await read(underRoot(root, cookiePath), 'static cookie') } : null;
  const state = envValue(unit.env, 'TOR_PT_STATE_LOCATION');
  const ptState = state && (await isDir(underRoot(root, state))) ? await readTree(underRoot(root, state)) : null;
  return { kind, root, instances, unit, haproxy, cookie, ptState };
}

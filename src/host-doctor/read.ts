// The edges: reading /proc/sys, /proc/PID/limits, /proc/modules, modules-load.d, sysctl.d and
// file modes. Everything goes through a Reader so that tests can point it at a directory tree.
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyPath } from './checks.js';
import {
  parseIntValue,
  parseModulesLoad,
  parseNofile,
  parsePortList,
  parsePortRange,
  parseProcModules,
  parseSysctlConf,
  type NofileLimit,
} from './parse.js';

export interface Reader {
  /** File text; null when it does not exist. */
  readText(path: string): Promise<string | null>;
  /** Entry names; null when the directory does not exist. */
  listDir(path: string): Promise<string[] | null>;
  stat(path: string): Promise<KeyPath['stat']>;
}

const missing = (e: unknown): boolean => ['ENOENT', 'ENOTDIR'].includes((e as NodeJS.ErrnoException).code ?? '');

/** Reads the real file system, with every absolute path taken under `root` (default `/`). */
export function fsReader(root = '/'): Reader {
  const at = (p: string): string => (root === '/' ? p : join(root, p));
  return {
    async readText(p) {
      try {
        return await readFile(at(p), 'utf8');
      } catch (e) {
        if (missing(e)) return null;
        throw e;
      }
    },
    async listDir(p) {
      try {
        return (await readdir(at(p))).sort();
      } catch (e) {
        if (missing(e)) return null;
        throw e;
      }
    },
    async stat(p) {
      try {
        const s = await stat(at(p));
        return { mode: s.mode, uid: s.uid, isDirectory: s.isDirectory() };
      } catch (e) {
        if (missing(e)) return null;
        throw e;
      }
    },
  };
}

/** /proc/sys path of a dotted sysctl name. */
export function sysctlPath(key: string): string {
  return `/proc/sys/${key.replace(/\./g, '/')}`;
}

export const MODULES_LOAD_DIRS = [
  '/etc/modules-load.d',
  '/run/modules-load.d',
  '/usr/local/lib/modules-load.d',
  '/usr/lib/modules-load.d',
  '/lib/modules-load.d',
];
export const SYSCTL_DIRS = ['/etc/sysctl.d', '/run/sysctl.d', '/usr/local/lib/sysctl.d', '/usr/lib/sysctl.d', '/lib/sysctl.d'];

export interface SystemFacts {
  nofile: NofileLimit | null;
  nrOpen: number | null;
  fileMax: number | null;
  pipeUserPagesSoft: number | null;
  portRange: [number, number] | null;
  reservedPorts: Array<[number, number]>;
  conntrackMax: number | null;
  conntrackBuckets: number | null;
  loadedModules: string[] | null;
  modulesLoad: Array<{ file: string; modules: string[] }>;
  sysctlFiles: Array<{ file: string; settings: Map<string, string> }>;
}

async function confFiles(r: Reader, dirs: string[]): Promise<Array<{ file: string; text: string }>> {
  const out: Array<{ file: string; text: string }> = [];
  for (const d of dirs) {
    for (const name of (await r.listDir(d)) ?? []) {
      if (!name.endsWith('.conf')) continue;
      const text = await r.readText(join(d, name));
      if (text !== null) out.push({ file: join(d, name), text });
    }
  }
  return out;
}

/** Everything the system checks look at. `limitsFile` is /proc/self/limits or /proc/PID/limits. */
export async function readSystemFacts(r: Reader, limitsFile = '/proc/self/limits'): Promise<SystemFacts> {
  const int = async (key: string): Promise<number | null> => {
    const t = await r.readText(sysctlPath(key));
    return t === null ? null : parseIntValue(t, key);
  };
  const limits = await r.readText(limitsFile);
  const range = await r.readText(sysctlPath('net.ipv4.ip_local_port_range'));
  const reserved = await r.readText(sysctlPath('net.ipv4.ip_local_reserved_ports'));
  const mods = await r.readText('/proc/modules');
  const sysctlFiles = (await confFiles(r, SYSCTL_DIRS)).map((f) => ({ file: f.file, settings: parseSysctlConf(f.text) }));
  const legacy = await r.readText('/etc/sysctl.conf');
  if (legacy !== null) sysctlFiles.push({ file: '/etc/sysctl.conf', settings: parseSysctlConf(legacy) });
  return {
    nofile: limits === null ? null : parseNofile(limits),
    nrOpen: await int('fs.nr_open'),
    fileMax: await int('fs.file-max'),
    pipeUserPagesSoft: await int('fs.pipe-user-pages-soft'),
    portRange: range === null ? null : parsePortRange(range),
    reservedPorts: reserved === null ? [] : parsePortList(reserved),
    conntrackMax: await int('net.netfilter.nf_conntrack_max'),
    conntrackBuckets: await int('net.netfilter.nf_conntrack_buckets'),
    loadedModules: mods === null ? null : parseProcModules(mods),
    modulesLoad: (await confFiles(r, MODULES_LOAD_DIRS)).map((f) => ({ file: f.file, modules: parseModulesLoad(f.text) })),
    sysctlFiles,
  };
}

/** Stats every path (null for the missing ones). */
export async function statPaths(r: Reader, paths: Array<Omit<KeyPath, 'stat'>>): Promise<KeyPath[]> {
  return Promise.all(paths.map(async (p) => ({ ...p, stat: await r.stat(p.path) })));
}

/** uid → user name from /etc/passwd (name → uid with `byName`). */
export async function lookupUser(r: Reader, who: string | number): Promise<{ name: string; uid: number } | null> {
  const text = (await r.readText('/etc/passwd')) ?? '';
  for (const line of text.split('\n')) {
    const [name, , uid] = line.split(':');
    if (!name || uid === undefined) continue;
    if ((typeof who === 'number' && Number(uid) === who) || name === who) return { name, uid: Number(uid) };
  }
  return typeof who === 'string' && /^\d+$/.test(who) ? { name: who, uid: Number(who) } : null;
}

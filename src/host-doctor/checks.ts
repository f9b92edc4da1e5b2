// The checks, as pure functions of values read elsewhere (see read.ts for where they come from).
// Each returns one Finding with the exact fix to print.
import { type Budget, UNIT_LIMIT_NOFILE, nextPowerOfTwo } from './budget.js';
import { finding, type Finding } from './findings.js';
import { compareVersions, parseTorVersion, type NofileLimit } from './parse.js';
import {
  MODULES_FILE,
  RECOMMENDED_CONNTRACK_MAX,
  RECOMMENDED_PIPE_USER_PAGES,
  RECOMMENDED_PORT_RANGE,
  SYSCTL_FILE,
} from './recommended.js';

const n = (x: number): string => x.toLocaleString('en-US');
const lim = (x: number | null): string => (x === null ? 'unlimited' : n(x));

/** Both lines an operator needs: set it now, and keep it after a reboot. */
function sysctlFix(key: string, value: string | number): string {
  return `sysctl -w ${key}="${value}"\nand keep it: set "${key} = ${value}" in ${SYSCTL_FILE} (bridgectl sysctl --write)`;
}

// ---- open files -------------------------------------------------------------------------------

const NOFILE_FIX = (want: number): string =>
  [
    `under systemd: LimitNOFILE=${Math.max(want, UNIT_LIMIT_NOFILE)} in the unit (deploy/bridgectl.service has it)`,
    `by hand: ulimit -Hn ${want} && ulimit -Sn ${want} (as root, in the shell that runs bridgectl)`,
    `for a login user: "bridgectl - nofile ${want}" in /etc/security/limits.d/bridgectl.conf`,
  ].join('\n');

export function checkNofileHard(l: NofileLimit | null, b: Budget): Finding {
  const title = 'open files, hard limit (RLIMIT_NOFILE)';
  const expected = `≥ ${n(b.perProcessFds)}, the most any one process needs for ${n(b.sessions)} sessions (balancer ${n(b.balancerFds)}, transport ${n(b.transportFds)}, each tor ${n(b.torFds)})`;
  if (!l) return finding('nofile.hard', title, 'skip', 'no "Max open files" line in the limits file', expected);
  const ok = l.hard === null || l.hard >= b.perProcessFds;
  return finding('nofile.hard', title, ok ? 'pass' : 'fail', `hard limit ${lim(l.hard)}`, expected, NOFILE_FIX(b.perProcessFds));
}

/**
 * The soft limit is only a warning: bridgectl (Node.js), tor and Go transports raise their own soft
 * limit to the hard limit when they start, and children inherit the raised one.
 */
export function checkNofileSoft(l: NofileLimit | null, b: Budget): Finding {
  const title = 'open files, soft limit (RLIMIT_NOFILE)';
  const expected = `≥ ${n(b.perProcessFds)} (Node.js, tor and Go transports raise it to the hard limit themselves)`;
  if (!l) return finding('nofile.soft', title, 'skip', 'no "Max open files" line in the limits file', expected);
  const ok = l.soft === null || l.soft >= b.perProcessFds;
  const hardOk = l.hard === null || l.hard >= b.perProcessFds;
  const fix = hardOk
    ? `ulimit -Sn ${b.perProcessFds} in the shell that runs bridgectl (or LimitNOFILE= in the unit, which sets both)`
    : 'raise the hard limit first (nofile.hard); the soft limit can then follow it';
  return finding('nofile.soft', title, ok ? 'pass' : 'warn', `soft limit ${lim(l.soft)}`, expected, fix);
}

export function checkNrOpen(nrOpen: number | null, b: Budget): Finding {
  const want = Math.max(b.perProcessFds, UNIT_LIMIT_NOFILE);
  const title = 'largest allowed open-file limit (fs.nr_open)';
  const expected = `≥ ${n(want)} (the unit's LimitNOFILE=${UNIT_LIMIT_NOFILE}, or the per-process need if larger)`;
  if (nrOpen === null) return finding('fs.nr_open', title, 'skip', '/proc/sys/fs/nr_open is absent', expected);
  return finding('fs.nr_open', title, nrOpen >= want ? 'pass' : 'fail', `fs.nr_open = ${n(nrOpen)}`, expected, sysctlFix('fs.nr_open', want));
}

export function checkFileMax(fileMax: number | null, b: Budget): Finding {
  const title = 'system-wide open files (fs.file-max)';
  const expected = `≥ ${n(b.systemFds)} (balancer ${n(b.balancerFds)} + transport ${n(b.transportFds)} + ${b.instances} × tor ${n(b.torFds)} + ${n(65536)} for the rest)`;
  if (fileMax === null) return finding('fs.file-max', title, 'skip', '/proc/sys/fs/file-max is absent', expected);
  const want = nextPowerOfTwo(b.systemFds);
  return finding('fs.file-max', title, fileMax >= b.systemFds ? 'pass' : 'fail', `fs.file-max = ${n(fileMax)}`, expected, sysctlFix('fs.file-max', want));
}

// ---- ephemeral ports --------------------------------------------------------------------------

export function checkPortRange(range: [number, number] | null, b: Budget): Finding {
  const title = 'ephemeral port range (net.ipv4.ip_local_port_range)';
  const expected = `≥ ${n(b.ephemeralPorts)} ports (one per session from the transport to the balancer's one address)`;
  if (!range) return finding('net.ip_local_port_range', title, 'skip', 'not readable', expected);
  const [lo, hi] = range;
  const width = Math.max(0, hi - lo + 1);
  const rec = `${RECOMMENDED_PORT_RANGE[0]} ${RECOMMENDED_PORT_RANGE[1]}`;
  const recWidth = RECOMMENDED_PORT_RANGE[1] - RECOMMENDED_PORT_RANGE[0] + 1;
  let fix = sysctlFix('net.ipv4.ip_local_port_range', rec);
  if (b.ephemeralPorts > recWidth) {
    fix += `\n${n(b.ephemeralPorts)} sessions need more than one source address: give the transport a source range towards the balancer (snowflake-server: orport-srcaddr=127.0.1.0/24 in TOR_PT_SERVER_TRANSPORT_OPTIONS)`;
  }
  return finding(
    'net.ip_local_port_range',
    title,
    width >= b.ephemeralPorts ? 'pass' : 'fail',
    `${lo}–${hi}: ${n(width)} ports`,
    expected,
    fix,
  );
}

export interface ListenPort {
  port: number;
  what: string;
}

/**
 * A listening port inside the ephemeral range can be taken by an outgoing connection first, and
 * then bridgectl cannot bind it after a restart (EADDRINUSE).
 */
export function checkListenPortsOutsideRange(
  range: [number, number] | null,
  reserved: Array<[number, number]>,
  listen: ListenPort[],
): Finding {
  const title = 'listening ports outside the ephemeral range';
  const expected = 'no listening port inside net.ipv4.ip_local_port_range unless listed in net.ipv4.ip_local_reserved_ports';
  if (!range) return finding('net.ip_local_port_range.listen', title, 'skip', 'port range not readable', expected);
  const isReserved = (p: number): boolean => reserved.some(([a, z]) => p >= a && p <= z);
  const bad = listen.filter((l) => l.port >= range[0] && l.port <= range[1] && !isReserved(l.port));
  if (!bad.length) {
    return finding('net.ip_local_port_range.listen', title, 'pass', `${listen.map((l) => `${l.what} ${l.port}`).join(', ') || 'no ports'} outside ${range[0]}–${range[1]} or reserved`, expected);
  }
  const ports = [...new Set(bad.map((l) => l.port))].sort((a, c) => a - c);
  const all = [...new Set([...reserved.map(([a, z]) => (a === z ? `${a}` : `${a}-${z}`)), ...ports.map(String)])].join(',');
  return finding(
    'net.ip_local_port_range.listen',
    title,
    'warn',
    `${bad.map((l) => `${l.what} ${l.port}`).join(', ')} inside ${range[0]}–${range[1]}`,
    expected,
    `${sysctlFix('net.ipv4.ip_local_reserved_ports', all)}\nor move the range above them: ${sysctlFix('net.ipv4.ip_local_port_range', `${RECOMMENDED_PORT_RANGE[0]} ${RECOMMENDED_PORT_RANGE[1]}`).split('\n')[0]}`,
  );
}

// ---- pipes --------------------------------------------------------------------------------

/**
 * The balancer's relay pipes count against its user's fs.pipe-user-pages-soft. Past it new pipes
 * get 2 pages and cannot grow: every session still works, at more CPU per byte. Enough for every
 * session's two directions to have bytes in flight at once, at the default 16 pages.
 */
export function checkPipeUserPages(soft: number | null, b: Budget): Finding {
  const title = 'pipe pages per user (fs.pipe-user-pages-soft)';
  const need = b.sessions * 2 * 16;
  const expected = `0 (no limit) or ≥ ${n(need)} (2 directions × 16 pages for ${n(b.sessions)} sessions)`;
  if (soft === null) return finding('fs.pipe-user-pages-soft', title, 'skip', '/proc/sys/fs/pipe-user-pages-soft is absent', expected);
  const want = Math.max(RECOMMENDED_PIPE_USER_PAGES, nextPowerOfTwo(need));
  const ok = soft === 0 || soft >= need;
  return finding('fs.pipe-user-pages-soft', title, ok ? 'pass' : 'warn', `fs.pipe-user-pages-soft = ${n(soft)}`, expected, sysctlFix('fs.pipe-user-pages-soft', want));
}

// ---- connection tracking ----------------------------------------------------------------------

export function checkConntrackMax(max: number | null, b: Budget): Finding {
  const title = 'connection tracking table (net.netfilter.nf_conntrack_max)';
  const expected = `≥ ${n(b.conntrack)} (3 tracked connections per session for ${n(b.sessions)} sessions, + each tor's ${n(8192)} relay connections)`;
  if (max === null) return finding('conntrack.max', title, 'skip', 'connection tracking is not loaded (no net.netfilter.nf_conntrack_max)', expected);
  const want = Math.max(RECOMMENDED_CONNTRACK_MAX, nextPowerOfTwo(b.conntrack));
  return finding(
    'conntrack.max',
    title,
    max >= b.conntrack ? 'pass' : 'fail',
    `nf_conntrack_max = ${n(max)}`,
    expected,
    `${sysctlFix('net.netfilter.nf_conntrack_max', want)}\nwhen full the kernel drops new connections ("nf_conntrack: table full, dropping packet" in dmesg)`,
  );
}

export function checkConntrackBuckets(buckets: number | null, max: number | null): Finding {
  const title = 'connection tracking hash size (net.netfilter.nf_conntrack_buckets)';
  if (buckets === null || max === null) {
    return finding('conntrack.buckets', title, 'skip', 'connection tracking is not loaded', 'nf_conntrack_buckets ≥ nf_conntrack_max / 4');
  }
  const expected = `≥ ${n(Math.ceil(max / 4))} (nf_conntrack_max / 4; equal to nf_conntrack_max is best)`;
  const want = nextPowerOfTwo(max);
  return finding(
    'conntrack.buckets',
    title,
    buckets * 4 >= max ? 'pass' : 'warn',
    `nf_conntrack_buckets = ${n(buckets)} for nf_conntrack_max = ${n(max)}: ${(max / buckets).toFixed(1)} entries per bucket when full`,
    expected,
    `${sysctlFix('net.netfilter.nf_conntrack_buckets', want)}\n(writable only from the host's initial network namespace; on old kernels: echo ${want} > /sys/module/nf_conntrack/parameters/hashsize)`,
  );
}

export interface ConntrackBootFacts {
  /** net.netfilter.nf_conntrack_max exists (conntrack is loaded now, as a module or built in). */
  conntrackPresent: boolean;
  /** Loaded module names from /proc/modules; null when the kernel has no loadable modules. */
  loadedModules: string[] | null;
  /** modules-load.d files and the modules each lists. */
  modulesLoad: Array<{ file: string; modules: string[] }>;
  /** sysctl.d files that set net.netfilter.nf_conntrack_* keys. */
  sysctlFilesSettingConntrack: string[];
}

/**
 * sysctl.d files are applied early at boot; if nf_conntrack is a module that something (a firewall)
 * loads later, net.netfilter.nf_conntrack_* do not exist yet and the settings are silently lost.
 */
export function checkConntrackAtBoot(f: ConntrackBootFacts): Finding {
  const id = 'conntrack.boot';
  const title = 'nf_conntrack loaded at boot (so its sysctls survive a reboot)';
  const expected = 'nf_conntrack built in, or listed in a modules-load.d file';
  const listedIn = f.modulesLoad.filter((m) => m.modules.includes('nf_conntrack')).map((m) => m.file);
  if (listedIn.length) return finding(id, title, 'pass', `listed in ${listedIn.join(', ')}`, expected);
  if (f.loadedModules === null && f.conntrackPresent) {
    return finding(id, title, 'pass', 'the kernel has no loadable modules; connection tracking is built in', expected);
  }
  if (f.conntrackPresent && f.loadedModules && !f.loadedModules.includes('nf_conntrack')) {
    return finding(id, title, 'pass', 'connection tracking is built into the kernel', expected);
  }
  if (!f.conntrackPresent && f.loadedModules === null) {
    return finding(id, title, 'skip', 'no connection tracking in this kernel', expected);
  }
  const fix = `printf '%s\\n' nf_conntrack > ${MODULES_FILE}\nor: bridgectl sysctl --write`;
  if (f.sysctlFilesSettingConntrack.length) {
    return finding(
      id,
      title,
      'fail',
      `${f.sysctlFilesSettingConntrack.join(', ')} set${f.sysctlFilesSettingConntrack.length === 1 ? 's' : ''} net.netfilter.nf_conntrack_*, but no modules-load.d file loads nf_conntrack: the settings are lost at boot`,
      expected,
      fix,
    );
  }
  return finding(
    id,
    title,
    'warn',
    f.conntrackPresent ? 'nf_conntrack is a module and no modules-load.d file lists it' : 'nf_conntrack is not loaded and no modules-load.d file lists it',
    expected,
    fix,
  );
}

// ---- key files --------------------------------------------------------------------------------

export interface KeyPath {
  path: string;
  kind: 'dir' | 'file';
  /** null when it does not exist. */
  stat: { mode: number; uid: number; isDirectory: boolean } | null;
}

/** Directories 0700 and files 0600 (or stricter: 0400 is fine), owned by the running user. */
export function checkKeyModes(paths: KeyPath[], uid: number, userName: string): Finding {
  const title = 'key files: modes and owner';
  const expected = `key directories 0700, key files 0600 (or 0400), all owned by ${userName} (uid ${uid})`;
  const problems: string[] = [];
  const fixes: string[] = [];
  let seen = 0;
  for (const p of paths) {
    if (!p.stat) continue;
    seen++;
    const mode = p.stat.mode & 0o7777;
    const octal = `0${mode.toString(8).padStart(3, '0')}`;
    if (p.kind === 'dir' && !p.stat.isDirectory) {
      problems.push(`${p.path} is not a directory`);
      continue;
    }
    if (p.kind === 'file' && p.stat.isDirectory) {
      problems.push(`${p.path} is a directory, expected a file`);
      continue;
    }
    if (mode & 0o077) {
      problems.push(`${p.path} has mode ${octal} (group/other can ${mode & 0o044 ? 'read' : 'use'} it)`);
      fixes.push(`chmod go= ${p.path}`);
    }
    if (p.kind === 'dir' && (mode & 0o700) !== 0o700) {
      problems.push(`${p.path} has mode ${octal}; its owner needs rwx`);
      fixes.push(`chmod u=rwx ${p.path}`);
    }
    if (p.kind === 'file' && !(mode & 0o400)) {
      problems.push(`${p.path} has mode ${octal}; its owner cannot read it`);
      fixes.push(`chmod u+r ${p.path}`);
    }
    if (p.stat.uid !== uid) {
      problems.push(`${p.path} is owned by uid ${p.stat.uid}, not ${userName} (uid ${uid})`);
      fixes.push(`chown ${userName}: ${p.path}`);
    }
  }
  if (!seen) return finding('keys.modes', title, 'skip', 'no key files yet (see keys.fingerprint)', expected);
  if (!problems.length) return finding('keys.modes', title, 'pass', `${seen} paths checked`, expected);
  return finding('keys.modes', title, 'fail', problems.join('\n'), expected, fixes.join('\n'));
}

// ---- identity ---------------------------------------------------------------------------------

export interface IdentityFacts {
  ok: boolean;
  fingerprint?: string;
  problems: string[];
  /** verifyIdentity threw (e.g. EACCES). */
  error?: string;
}

export function checkFingerprint(v: IdentityFacts, instances: number, configFile: string): Finding {
  const title = 'one identity shared by every instance';
  const expected = `all ${instances} instances have the bridge's RSA and ed25519 identity and ntor key, with onion-key pins`;
  if (v.error) {
    return finding('keys.fingerprint', title, 'fail', `cannot read the keys: ${v.error}`, expected, `run doctor as the bridge's user: sudo -u bridgectl bridgectl doctor --config ${configFile}`);
  }
  if (v.ok) return finding('keys.fingerprint', title, 'pass', `fingerprint ${v.fingerprint ?? '?'} on all ${instances} instances`, expected);
  const noIdentity = v.problems.some((p) => p.startsWith('no bridge identity'));
  const fix = noIdentity
    ? `bridgectl init --config ${configFile}`
    : `bridgectl keys verify --config ${configFile} names the instance; move that instance's keys/ aside, then: bridgectl init --config ${configFile}`;
  return finding('keys.fingerprint', title, 'fail', v.problems.join('\n'), expected, fix);
}

// ---- tor --------------------------------------------------------------------------------------

/**
 * Tor before 0.4.7.13 binds the source of its outgoing connections without
 * IP_BIND_ADDRESS_NO_PORT, so each of them reserves an ephemeral port for every destination.
 */
export const MIN_TOR_VERSION = '0.4.7.13';

export function checkTorVersion(version: string | null, error: string | null, torPath: string): Finding {
  const title = 'tor version';
  const expected = `≥ ${MIN_TOR_VERSION} (earlier versions lack IP_BIND_ADDRESS_NO_PORT and run out of ephemeral ports sooner)`;
  const install = 'install a current tor: https://support.torproject.org/apt/ (deb.torproject.org packages), then restart bridgectl';
  if (version === null) {
    return finding('tor.version', title, 'fail', `cannot run ${torPath} --version: ${error ?? 'unknown error'}`, expected, `${install}\nor set torPath in the config to the tor binary`);
  }
  const v = parseTorVersion(version);
  const min = parseTorVersion(MIN_TOR_VERSION)!;
  if (!v) return finding('tor.version', title, 'warn', `unrecognised version "${version}"`, expected, install);
  return finding('tor.version', title, compareVersions(v, min) >= 0 ? 'pass' : 'warn', `tor ${version}`, expected, install);
}

/** The native engine (the balancer's one data path) is built and loads; `problem` is why not (null: fine). */
export function checkNativeEngine(problem: string | null): Finding {
  const expected = 'the native addon built and loadable (it is the balancer: bridgectl does not start without it)';
  if (problem === null) return finding('balancer.engine', 'native engine', 'pass', 'built and loaded', expected);
  const fix = /: (run .*)$/.exec(problem)?.[1] ?? 'run npm rebuild in bridgectl\'s directory';
  return finding('balancer.engine', 'native engine', 'fail', problem, expected, fix);
}

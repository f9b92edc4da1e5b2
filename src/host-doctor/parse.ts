// Parsers for the kernel's text files (/proc/self/limits, /proc/sys values, /proc/modules,
// modules-load.d and sysctl.d files). Pure: text in, values out.

export interface NofileLimit {
  /** null means "unlimited". */
  soft: number | null;
  hard: number | null;
}

/** The "Max open files" line of /proc/PID/limits. */
export function parseNofile(limitsText: string): NofileLimit | null {
  for (const line of limitsText.split('\n')) {
    const m = /^Max open files\s+(\S+)\s+(\S+)/.exec(line);
    if (m) return { soft: limitValue(m[1]!), hard: limitValue(m[2]!) };
  }
  return null;
}

function limitValue(s: string): number | null {
  if (s === 'unlimited') return null;
  const n = Number(s);
  if (!Number.isSafeInteger(n)) throw new Error(`cannot read a limit from "${s}"`);
  return n;
}

/** A single integer sysctl value ("262144\n"). */
export function parseIntValue(text: string, name: string): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw new Error(`${name}: expected a number, got "${t}"`);
  const n = Number(t);
  // fs.file-max can be 9223372036854775807 (LONG_MAX); beyond 2^53 "huge" is all that matters.
  return Number.isSafeInteger(n) ? n : Number.MAX_SAFE_INTEGER;
}

/** net.ipv4.ip_local_port_range: "32768\t60999". */
export function parsePortRange(text: string): [number, number] {
  const m = /^\s*(\d+)\s+(\d+)\s*$/.exec(text);
  if (!m) throw new Error(`net.ipv4.ip_local_port_range: cannot read "${text.trim()}"`);
  return [Number(m[1]), Number(m[2])];
}

/** net.ipv4.ip_local_reserved_ports: "" or "8080,10000-10010". */
export function parsePortList(text: string): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const part of text.trim().split(',')) {
    if (!part) continue;
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) throw new Error(`net.ipv4.ip_local_reserved_ports: cannot read "${part}"`);
    out.push([Number(m[1]), Number(m[2] ?? m[1])]);
  }
  return out;
}

/** Names of the loaded modules, from /proc/modules. */
export function parseProcModules(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.length > 0);
}

/** Module names listed in a modules-load.d file (comments start with # or ;). */
export function parseModulesLoad(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#') && !l.startsWith(';'))
    .map((l) => l.split(/\s+/)[0]!);
}

/** `key = value` lines of a sysctl.d file; keys normalised to dots ("net/ipv4/x" → "net.ipv4.x"). */
export function parseSysctlConf(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim().replace(/^-/, '').replace(/\//g, '.');
    out.set(key, line.slice(eq + 1).trim());
  }
  return out;
}

/** "0.4.8.10", "0.4.9.1-alpha", "0.4.8.12-dev" → [0, 4, 8, 10]. */
export function parseTorVersion(v: string): number[] | null {
  const m = /^(\d+)\.(\d+)\.(\d+)(?:\.(\d+))?/.exec(v.trim());
  if (!m) return null;
  return [Number(m[1]), Number(m[2]), Number(m[3]), Number(m[4] ?? 0)];
}

export function compareVersions(a: number[], b: number[]): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d < 0 ? -1 : 1;
  }
  return 0;
}

// systemd unit files, as far as a migration needs them: [Service] ExecStart=, Environment=,
// EnvironmentFile= (and the rest, to list what is not carried over). Pure.

export interface UnitEntry {
  section: string;
  key: string;
  value: string;
  line: number;
  file: string;
}

/** Parses one unit file or drop-in (comments `#`/`;`, continuation lines ending in `\`). */
export function parseUnit(text: string, file: string): UnitEntry[] {
  const out: UnitEntry[] = [];
  let section = '';
  const raw = text.split(/\r?\n/);
  for (let i = 0; i < raw.length; i++) {
    const start = i + 1;
    let l = raw[i]!.trim();
    if (!l || l.startsWith('#') || l.startsWith(';')) continue;
    while (l.endsWith('\\') && i + 1 < raw.length) l = `${l.slice(0, -1)} ${raw[++i]!.trim()}`;
    const sec = /^\[(.+)\]$/.exec(l);
    if (sec) {
      section = sec[1]!;
      continue;
    }
    const eq = l.indexOf('=');
    if (eq <= 0) continue;
    out.push({ section, key: l.slice(0, eq).trim(), value: l.slice(eq + 1).trim(), line: start, file });
  }
  return out;
}

/**
 * Splits a command line or Environment= value the way systemd does: whitespace separates words,
 * double and single quotes group, backslash escapes. Throws on an unterminated quote.
 */
export function splitWords(s: string): string[] {
  const words: string[] = [];
  let cur = '';
  let inWord = false;
  let q: string | null = null;
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (q) {
      if (c === '\\' && q === '"' && i + 1 < s.length) cur += unescape(s[++i]!);
      else if (c === q) q = null;
      else cur += c;
    } else if (c === '"' || c === "'") {
      q = c;
      inWord = true;
    } else if (c === '\\' && i + 1 < s.length) {
      cur += unescape(s[++i]!);
      inWord = true;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = '';
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (q) throw new Error(`unterminated ${q} quote in: ${s}`);
  if (inWord) words.push(cur);
  return words;
}

function unescape(c: string): string {
  return ({ n: '\n', t: '\t' } as Record<string, string>)[c] ?? c;
}

/** `Environment=A=1 "B=two words"` → [[A,1],[B,two words]]. */
export function parseEnvironment(value: string): Array<[string, string]> {
  return splitWords(value)
    .map((w) => {
      const eq = w.indexOf('=');
      return eq > 0 ? ([w.slice(0, eq), w.slice(eq + 1)] as [string, string]) : null;
    })
    .filter((x): x is [string, string] => x !== null);
}

/** An EnvironmentFile: `KEY=VALUE` lines, `#`/`;` comments, optional quotes, `export ` allowed. */
export function parseEnvironmentFile(text: string): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (const raw of text.split(/\r?\n/)) {
    const l = raw.trim().replace(/^export\s+/, '');
    if (!l || l.startsWith('#') || l.startsWith(';')) continue;
    const eq = l.indexOf('=');
    if (eq <= 0) continue;
    let v = l.slice(eq + 1).trim();
    const m = /^(["'])(.*)\1$/.exec(v);
    if (m) v = m[1] === '"' ? m[2]!.replace(/\\(.)/g, '$1') : m[2]!;
    out.push([l.slice(0, eq).trim(), v]);
  }
  return out;
}

export interface ExecStart {
  argv: string[];
  /** Prefixes systemd allows before the path (`-`, `+`, `!`, `!!`, `@`, `:`). */
  prefixes: string;
}

export function parseExecStart(value: string): ExecStart {
  const m = /^([-+!@:]*)(.*)$/.exec(value.trim())!;
  return { prefixes: m[1]!, argv: splitWords(m[2]!) };
}

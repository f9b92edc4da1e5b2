// torrc text as tor reads it: one option per line, `#` comments, a trailing backslash continues the
// line, keys case-insensitive. Pure.

export interface TorrcLine {
  /** The option's canonical spelling is not known here: `key` is as written, `lower` for comparing. */
  key: string;
  lower: string;
  value: string;
  /** 1-based line number where the option starts. */
  line: number;
}

export function parseTorrc(text: string): TorrcLine[] {
  const out: TorrcLine[] = [];
  const raw = text.split(/\r?\n/);
  for (let i = 0; i < raw.length; i++) {
    const start = i + 1;
    let l = raw[i]!;
    while (/\\\s*$/.test(l) && i + 1 < raw.length) l = l.replace(/\\\s*$/, ' ') + raw[++i]!;
    const body = stripComment(l).trim();
    if (!body) continue;
    const m = /^(\S+)\s*(.*)$/.exec(body)!;
    const key = m[1]!;
    out.push({ key, lower: key.toLowerCase(), value: unquote(m[2]!.trim()), line: start });
  }
  return out;
}

/** `#` starts a comment unless inside double quotes. */
function stripComment(l: string): string {
  let q = false;
  for (let i = 0; i < l.length; i++) {
    if (l[i] === '"' && l[i - 1] !== '\\') q = !q;
    else if (l[i] === '#' && !q) return l.slice(0, i);
  }
  return l;
}

function unquote(v: string): string {
  const m = /^"((?:[^"\\]|\\.)*)"$/.exec(v);
  return m ? m[1]!.replace(/\\(.)/g, '$1') : v;
}

/** The last value of option `key` (tor's rule for single-valued options), or undefined. */
export function lastValue(lines: TorrcLine[], key: string): string | undefined {
  const k = key.toLowerCase();
  return lines.filter((l) => l.lower === k).pop()?.value;
}

export function allValues(lines: TorrcLine[], key: string): string[] {
  const k = key.toLowerCase();
  return lines.filter((l) => l.lower === k).map((l) => l.value);
}

/** A torrc line as text again (values with a `#` or leading/trailing space quoted). */
export function formatLine(l: Pick<TorrcLine, 'key' | 'value'>): string {
  const v = /[#"]|^\s|\s$/.test(l.value) ? `"${l.value.replace(/(["\\])/g, '\\$1')}"` : l.value;
  return `${l.key} ${v}`.trimEnd();
}

// pt-spec, tor's side: what a managed server transport prints on stdout (VERSION, SMETHOD, ...). Pure.

export type PtMessage =
  | { kind: 'VERSION'; version: string }
  | { kind: 'VERSION-ERROR'; message: string }
  | { kind: 'ENV-ERROR'; message: string }
  | { kind: 'SMETHOD'; transport: string; address: string; args: Record<string, string>; options: string[] }
  | { kind: 'SMETHOD-ERROR'; transport: string; message: string }
  | { kind: 'SMETHODS DONE' }
  | { kind: 'LOG'; severity: string; message: string }
  | { kind: 'STATUS'; fields: Record<string, string> }
  | { kind: 'OTHER'; line: string };

/** Splits `K=V K2="quoted \"v\""` into fields. */
export function parseKeyValues(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /([^\s=]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))/g;
  for (const m of s.matchAll(re)) {
    out[m[1]!] = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : (m[3] ?? '');
  }
  return out;
}

/** Parses SMETHOD `ARGS:k=v,k2=v2` (commas and equals signs inside values are backslash-escaped). */
export function parseSmethodArgs(s: string): Record<string, string> {
  const out: Record<string, string> = {};
  let key = '';
  let cur = '';
  let inValue = false;
  const flush = (): void => {
    if (key || cur) out[inValue ? key : cur] = inValue ? cur : '';
    key = '';
    cur = '';
    inValue = false;
  };
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (c === '\\' && i + 1 < s.length) {
      cur += s[++i];
    } else if (c === '=' && !inValue) {
      key = cur;
      cur = '';
      inValue = true;
    } else if (c === ',') {
      flush();
    } else {
      cur += c;
    }
  }
  flush();
  return out;
}

export function parsePtLine(line: string): PtMessage {
  const sp = line.indexOf(' ');
  const kw = sp < 0 ? line : line.slice(0, sp);
  const rest = sp < 0 ? '' : line.slice(sp + 1);
  switch (kw) {
    case 'VERSION':
      return { kind: 'VERSION', version: rest.trim() };
    case 'VERSION-ERROR':
      return { kind: 'VERSION-ERROR', message: rest };
    case 'ENV-ERROR':
      return { kind: 'ENV-ERROR', message: rest };
    case 'SMETHOD': {
      const [transport = '', address = '', ...options] = rest.split(' ');
      const argsOpt = options.find((o) => o.startsWith('ARGS:'));
      return {
        kind: 'SMETHOD',
        transport,
        address,
        args: argsOpt ? parseSmethodArgs(argsOpt.slice(5)) : {},
        options: options.filter((o) => !o.startsWith('ARGS:')),
      };
    }
    case 'SMETHOD-ERROR': {
      const i = rest.indexOf(' ');
      return { kind: 'SMETHOD-ERROR', transport: i < 0 ? rest : rest.slice(0, i), message: i < 0 ? '' : rest.slice(i + 1) };
    }
    case 'SMETHODS':
      if (rest.trim() === 'DONE') return { kind: 'SMETHODS DONE' };
      return { kind: 'OTHER', line };
    case 'LOG': {
      const f = parseKeyValues(rest);
      return { kind: 'LOG', severity: f.SEVERITY ?? 'notice', message: f.MESSAGE ?? rest };
    }
    case 'STATUS':
      return { kind: 'STATUS', fields: parseKeyValues(rest) };
    default:
      return { kind: 'OTHER', line };
  }
}


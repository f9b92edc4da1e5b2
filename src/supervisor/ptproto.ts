// The managed-transport protocol of pt-spec, server side: the environment we give the transport,
// and parsing what it prints on stdout.

export interface PtEnvInput {
  transport: string;
  listen: string;
  extendedServerPort: string;
  authCookieFile: string;
  stateDir: string;
  options: Record<string, string>;
}

/** Backslash-escapes the characters pt-spec's option syntax gives meaning to. */
export function escapePtValue(v: string): string {
  return v.replace(/[\\:;=,]/g, (c) => `\\${c}`);
}

/** TOR_PT_SERVER_TRANSPORT_OPTIONS: `name:k=v;name:k2=v2`, escaped. */
export function serverTransportOptions(transport: string, options: Record<string, string>): string {
  return Object.entries(options)
    .map(([k, v]) => `${transport}:${escapePtValue(k)}=${escapePtValue(v)}`)
    .join(';');
}

export function ptServerEnv(i: PtEnvInput): Record<string, string> {
  const env: Record<string, string> = {
    TOR_PT_MANAGED_TRANSPORT_VER: '1',
    TOR_PT_SERVER_TRANSPORTS: i.transport,
    TOR_PT_SERVER_BINDADDR: `${i.transport}-${i.listen}`,
    TOR_PT_EXTENDED_SERVER_PORT: i.extendedServerPort,
    TOR_PT_AUTH_COOKIE_FILE: i.authCookieFile,
    TOR_PT_STATE_LOCATION: i.stateDir,
    TOR_PT_EXIT_ON_STDIN_CLOSE: '1',
  };
  const opts = serverTransportOptions(i.transport, i.options);
  if (opts) env.TOR_PT_SERVER_TRANSPORT_OPTIONS = opts;
  return env;
}

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

/** The line a client puts in its torrc (after `Bridge `). */
export function bridgeLine(transport: string, address: string, fingerprint: string, args: Record<string, string>): string {
  const a = Object.entries(args).map(([k, v]) => `${k}=${v}`);
  return [transport, address, fingerprint, ...a].join(' ');
}

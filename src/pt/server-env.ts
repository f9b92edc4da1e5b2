// pt-spec, the transport's side: what a managed server transport reads from tor's environment (TOR_PT_*). Pure.
import { parseEndpoint, type Endpoint } from './endpoint.js';

export interface PtServerEnv {
  /** Our transport's bind address (TOR_PT_SERVER_BINDADDR), or 127.0.0.1:0. */
  bindAddr: Endpoint;
  /** tor's Extended ORPort (TOR_PT_EXTENDED_SERVER_PORT). */
  extOrPort: Endpoint;
  /** tor's ExtORPort cookie file (TOR_PT_AUTH_COOKIE_FILE). */
  authCookieFile: string;
  exitOnStdinClose: boolean;
}

/** One transport tor asks a server transport program for, and where it is to listen. */
export interface PtServerMethod {
  name: string;
  bindAddr: Endpoint;
}

export type PtServerSetup = Omit<PtServerEnv, 'bindAddr'> & { methods: PtServerMethod[] };

/**
 * Reads the environment for a server transport program that serves every transport tor names in
 * TOR_PT_SERVER_TRANSPORTS (as goptlib's ServerSetup(nil) does), each on its TOR_PT_SERVER_BINDADDR
 * entry or 127.0.0.1:0. `*` (any transport) is served as `fallbackName`. Returns the lines to print
 * and exit with instead when tor asks something we can't do: VERSION-ERROR, ENV-ERROR.
 */
export function parsePtServerSetup(env: NodeJS.ProcessEnv, fallbackName: string): { ok: PtServerSetup } | { lines: string[]; code: number } {
  const versions = (env.TOR_PT_MANAGED_TRANSPORT_VER ?? '').split(',');
  if (!versions.includes('1')) return { lines: ['VERSION-ERROR no-version'], code: 1 };
  const asked = (env.TOR_PT_SERVER_TRANSPORTS ?? '').split(',').filter(Boolean);
  if (asked.length === 0) return { lines: ['VERSION 1', 'ENV-ERROR no TOR_PT_SERVER_TRANSPORTS (is this a server transport?)'], code: 1 };
  const envError = (msg: string) => ({ lines: ['VERSION 1', `ENV-ERROR ${msg}`], code: 1 });
  const names = [...new Set(asked.map((n) => (n === '*' ? fallbackName : n)))];
  const binds = new Map<string, Endpoint>();
  for (const item of (env.TOR_PT_SERVER_BINDADDR ?? '').split(',').filter(Boolean)) {
    const dash = item.indexOf('-');
    if (dash <= 0) return envError(`TOR_PT_SERVER_BINDADDR entry ${JSON.stringify(item)} is not NAME-ADDRESS:PORT`);
    try {
      binds.set(item.slice(0, dash), parseEndpoint(item.slice(dash + 1), 'TOR_PT_SERVER_BINDADDR', true));
    } catch (e) {
      return envError((e as Error).message);
    }
  }
  const ext = env.TOR_PT_EXTENDED_SERVER_PORT ?? '';
  if (!ext) return envError('TOR_PT_EXTENDED_SERVER_PORT is not set: tor needs "ExtORPort auto" for this transport');
  let extOrPort: Endpoint;
  try {
    extOrPort = parseEndpoint(ext, 'TOR_PT_EXTENDED_SERVER_PORT');
  } catch (e) {
    return envError((e as Error).message);
  }
  const authCookieFile = env.TOR_PT_AUTH_COOKIE_FILE ?? '';
  if (!authCookieFile) return envError('TOR_PT_AUTH_COOKIE_FILE is not set');
  return {
    ok: {
      methods: names.map((name) => ({ name, bindAddr: binds.get(name) ?? { host: '127.0.0.1', port: 0 } })),
      extOrPort,
      authCookieFile,
      exitOnStdinClose: env.TOR_PT_EXIT_ON_STDIN_CLOSE === '1',
    },
  };
}

/**
 * Reads the environment for server transport `name` alone. Returns the lines to print and exit with
 * instead when tor asks something we can't do: VERSION-ERROR, ENV-ERROR, or (transport not wanted)
 * an empty method list.
 */
export function parsePtServerEnv(env: NodeJS.ProcessEnv, name: string): { ok: PtServerEnv } | { lines: string[]; code: number } {
  const r = parsePtServerSetup(env, name);
  if ('lines' in r) return r;
  const m = r.ok.methods.find((x) => x.name === name);
  if (!m) return { lines: ['VERSION 1', 'SMETHODS DONE'], code: 0 };
  const { methods: _methods, ...rest } = r.ok;
  return { ok: { ...rest, bindAddr: m.bindAddr } };
}

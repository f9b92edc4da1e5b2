// HOST:PORT as pt-spec's variables carry them (TOR_PT_SERVER_BINDADDR, TOR_PT_EXTENDED_SERVER_PORT,
// SMETHOD addresses). Pure; pt/ depends on no other module
// (the balancer re-exports these).
import { isIP } from 'node:net';

export interface Endpoint {
  host: string;
  port: number;
}

/** Parses `1.2.3.4:5`, `[::1]:5` or `localhost:5`. Port 0 is allowed only with `allowZero`. */
export function parseEndpoint(s: string, what = 'address', allowZero = false): Endpoint {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535 || (port === 0 && !allowZero)) throw new Error(`${what} ${JSON.stringify(s)} is not HOST:PORT`);
  const host = m[1] ?? m[2] ?? '';
  if (m[1] !== undefined && isIP(host) !== 6) throw new Error(`${what} ${JSON.stringify(s)}: ${host} is not an IPv6 address`);
  return { host, port };
}

export function formatEndpoint(e: Endpoint): string {
  return isIP(e.host) === 6 ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

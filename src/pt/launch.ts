// pt-spec, tor's side (the supervisor plays tor): the environment a managed server transport is started with. Pure.

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


// The client's view: the line after `Bridge` in a client's torrc. Pure.

/** The line a client puts in its torrc (after `Bridge `). */
export function bridgeLine(transport: string, address: string, fingerprint: string, args: Record<string, string>): string {
  const a = Object.entries(args).map(([k, v]) => `${k}=${v}`);
  return [transport, address, fingerprint, ...a].join(' ');
}

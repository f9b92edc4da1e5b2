// Pieces the descriptors share. Pure.
import type { BridgeLineInput, TransportEntry } from './kind.js';

/** Whether the argv has the Go flag `name` (`-name`, `--name`, `-name=v`, `--name=v`). */
export function hasFlag(command: string[], name: string): boolean {
  return command.slice(1).some((a) => new RegExp(`^--?${name}(=|$)`).test(a));
}

/** The value of the Go flag `name`, given as `-name v` or `-name=v`. */
export function flagValue(command: string[], name: string): string | undefined {
  const args = command.slice(1);
  for (let i = 0; i < args.length; i++) {
    const m = new RegExp(`^--?${name}(?:=(.*))?$`).exec(args[i]!);
    if (m) return m[1] ?? args[i + 1];
  }
  return undefined;
}

/** Exit 0, or ended by the SIGTERM/SIGKILL of the stop itself. */
export function cleanStop(code: number | null, signal: string | null): boolean {
  return code === 0 || signal === 'SIGTERM' || signal === 'SIGKILL' || signal === 'SIGINT';
}

/** The address clients dial: `publicAddress`, else what the SMETHOD said; a wildcard is an error. */
export function dialAddress(e: TransportEntry, smethodAddress: string, key = 'publicAddress'): string {
  const a = e.publicAddress ?? smethodAddress;
  if (/^(0\.0\.0\.0|\[::\]):/.test(a)) {
    throw new Error(`transport ${e.name} listens on ${a}; set ${key} to the address clients use`);
  }
  return a;
}

export function line(transport: string, address: string, i: BridgeLineInput, args: Array<[string, string | undefined]>): string {
  const a = args.filter(([, v]) => v !== undefined && v !== '').map(([k, v]) => `${k}=${v}`);
  const extra = Object.entries(i.entry.client?.args ?? {}).map(([k, v]) => `${k}=${v}`);
  return [transport, address, i.fingerprint, ...a, ...extra].join(' ');
}

export function need(e: TransportEntry, v: string | undefined, key: string, what: string): string {
  if (!v) throw new Error(`transport ${e.name}: the bridge line needs ${what}; set ${key} in its section of the config`);
  return v;
}

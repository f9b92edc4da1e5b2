// Public face of the transport descriptors: per kind of server (obfs4/lyrebird, snowflake, meek,
// webtunnel, anything else), how to check its config, build its bridge line (and snowflake's
// broker entry), read its stderr, which exits at a stop are normal and what state to keep. Pure.
import type { Problem, StderrReading, TransportEntry, TransportKind } from './kind.js';
import { obfs4 } from './obfs4.js';
import { snowflake } from './snowflake.js';
import { meek } from './meek.js';
import { webtunnel } from './webtunnel.js';
import { generic } from './generic.js';

export type { TransportKind, TransportEntry, ClientParams, Smethod, StderrReading, StderrLevel, BridgeLineInput, Problem } from './kind.js';
export { scrubAddresses } from './stderr.js';
export { listeningInodes, socketInodes } from './listen-probe.js';
export { SNOWFLAKE_PLACEHOLDER } from './snowflake.js';
export { MEEK_PLACEHOLDER } from './meek.js';

const byName: Record<string, TransportKind> = { obfs4, snowflake, meek, webtunnel };

/** The descriptor for a transport, by its pt-spec name (`obfs4` covers obfs4proxy and lyrebird). */
export function transportKind(name: string): TransportKind {
  return byName[name] ?? generic;
}

/** How to log a stderr line of transport `name` (level, scrubbed message). For the logging layer. */
export function classifyStderrLine(name: string, line: string): StderrReading {
  return transportKind(name).readStderr(line);
}

/** Problems with one entry (keys relative to it). */
export function checkTransport(e: TransportEntry): Problem[] {
  return transportKind(e.name).check(e);
}

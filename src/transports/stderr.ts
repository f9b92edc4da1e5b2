// Reading the stderr of Go transports (obfs4proxy, lyrebird, snowflake-server, meek-server,
// webtunnel all log with Go's `log` package, one line each, everything on stderr). Pure.
import { isIP } from 'node:net';
import type { StderrLevel, StderrReading } from './kind.js';

/** Go's `log` prefix: `2006/01/02 15:04:05` (optionally `.000000`). */
const GO_TIME = /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d(?:\.\d+)? /;

const IPV4 = /\b(?:\d{1,3}\.){3}\d{1,3}(?::\d{1,5})?\b/g;
const IPV6_BRACKETED = /\[([0-9a-fA-F:.]+)\](?::\d{1,5})?/g;
const IPV6_BARE = /(?<![\w:])[0-9a-fA-F]{0,4}(?::[0-9a-fA-F]{0,4}){2,7}(?![\w:])/g;

function loopbackOrWildcard(host: string): boolean {
  return /^(127\.|0\.0\.0\.0$)/.test(host) || host === '::' || host === '::1';
}

/** Replaces client addresses (not loopback or wildcard ones) by `[scrubbed]`, as the transports do themselves. */
export function scrubAddresses(s: string): string {
  const scrub = (m: string, host: string): string => (isIP(host) && !loopbackOrWildcard(host) ? '[scrubbed]' : m);
  return s
    .replace(IPV6_BRACKETED, (m, h: string) => scrub(m, h))
    .replace(IPV6_BARE, (m) => scrub(m, m))
    .replace(IPV4, (m) => scrub(m, m.replace(/:\d+$/, '')));
}

/** Strips Go's timestamp; a line without one is kept as it is. */
export function stripGoTime(line: string): string {
  return line.replace(GO_TIME, '');
}

/** obfs4proxy's and lyrebird's own levels: `[ERROR]:`, `[WARN]:`, `[NOTICE]:`, `[INFO]:`, `[DEBUG]:`. */
const BRACKET_LEVEL: Record<string, StderrLevel> = { ERROR: 'error', WARN: 'warn', WARNING: 'warn', NOTICE: 'info', INFO: 'info', DEBUG: 'debug' };

// Lines that are about one client's connection: normal traffic for a bridge, not the operator's concern.
const PER_CONNECTION = /\b(EOF|connection reset by peer|broken pipe|i\/o timeout|use of closed network connection|copying|handleConn|closed connection|context canceled|websocket: close)\b/i;
// Lines that stop the transport from working as configured.
const FATAL = /\b(panic|fatal|address already in use|permission denied|can't open|cannot open|bind:|no such file or directory|required)\b/i;
const TROUBLE = /\b(error|failed|failure|cannot|can't|unable|invalid|refused)\b/i;

/** The generic reading of a Go transport's stderr line. */
export function readGoStderr(line: string): StderrReading {
  const raw = stripGoTime(line);
  const message = scrubAddresses(raw);
  const b = /^\[(ERROR|WARN|WARNING|NOTICE|INFO|DEBUG)\]:?\s*/.exec(raw);
  if (b) return { level: BRACKET_LEVEL[b[1]!]!, message };
  if (FATAL.test(raw)) return { level: 'error', message };
  if (PER_CONNECTION.test(raw)) return { level: 'debug', message };
  if (TROUBLE.test(raw)) return { level: 'warn', message };
  return { level: 'info', message };
}

import { parseArgs, type ParseArgsConfig } from 'node:util';
import pino, { type Logger } from 'pino';

export class UsageError extends Error {}

/** node:util parseArgs with errors turned into usage errors. */
export function parse<T extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: T,
  allowPositionals = false,
): ReturnType<typeof parseArgs<{ args: string[]; options: T; allowPositionals: boolean; strict: true }>> {
  try {
    return parseArgs({ args: argv, options, allowPositionals, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Structured logs (JSON lines on stdout: journald keeps them as they are). */
export function makeLogger(level = 'info'): Logger {
  return pino({ level, base: { pid: process.pid } });
}

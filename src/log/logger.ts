// The process's logger: pino, written in the format its stdout's reader wants (see format.ts).
import { fstatSync, writeSync } from 'node:fs';
import { isatty } from 'node:tty';
import pino, { type Logger } from 'pino';
import { chooseFormat, formatError, formatLine, type LogFormat } from './format.js';

function fdIdentity(fd: number): string | null {
  try {
    const st = fstatSync(fd);
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

/** The format for stdout (fd 1) or stderr (fd 2) of this process. */
export function formatFor(fd: 1 | 2): LogFormat {
  return chooseFormat(process.env, fdIdentity(fd), isatty(fd));
}

/** Structured logs on stdout: journal priorities under systemd, text on a terminal, else JSON lines. */
export function makeLogger(level = 'info'): Logger {
  const format = formatFor(1);
  const dest = pino.destination({ fd: 1, sync: true });
  if (format === 'json') return pino({ level, base: { pid: process.pid } }, dest);
  return pino({ level, base: { pid: process.pid } }, { write: (s: string) => void dest.write(formatLine(s, format)) });
}

/** Writes an error message to stderr (every line at priority err in the journal). */
export function printError(text: string): void {
  try {
    writeSync(2, formatError(text, formatFor(2)));
  } catch {
    /* stderr is gone: nothing to tell */
  }
}

// Shared test helpers: running the built CLI, finding processes, waiting for conditions.
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import pino from 'pino';

export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export const testLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

export function tmp(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `bridgectl-${prefix}-`));
}

/** Runs `bridgectl ARGS` to completion. */
export function cli(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}) {
  return execa(process.execPath, [CLI, ...args], { reject: false, env: opts.env, cwd: opts.cwd, all: true });
}

/** Starts `bridgectl ARGS` in the background. */
export function cliBackground(args: string[]): ResultPromise<{ reject: false; all: true; buffer: true }> {
  return execa(process.execPath, [CLI, ...args], { reject: false, all: true, buffer: true });
}

/** Pids of processes whose command line contains `needle` (from /proc). */
export function pidsWith(needle: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (cmd.some((a) => a.includes(needle)) && !cmd[0]?.endsWith('node')) out.push(Number(d));
    } catch {
      /* gone */
    }
  }
  return out.sort((a, b) => a - b);
}

/** Name of the executable of `pid` ('' when gone). */
export function procName(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs: number, everyMs = 100): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await sleep(everyMs);
  }
}

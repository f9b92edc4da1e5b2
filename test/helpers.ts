// Shared test helpers: running the built CLI, finding processes, waiting for conditions.
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa, type ResultPromise } from 'execa';
import pino from 'pino';
import net from 'node:net';
import assert from 'node:assert/strict';
import { parseConfigText, ConfigError, type ConfigProblem } from '../src/config/index.js';
import { dialExtOr, readCookieFile, CMD, ExtOrServerHandshake, createCookieFile } from '../src/extorport/index.js';

export const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

export const testLogger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

/** The problems a config text is refused with (fails the test if it parses). */
export function configProblems(text: string): ConfigProblem[] {
  try {
    parseConfigText(text, '/etc/bridgectl.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail('expected a ConfigError');
}

export function tmp(prefix: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `bridgectl-${prefix}-`));
}

/** Runs `bridgectl ARGS` to completion. */
export function cli(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}) {
  return execa(process.execPath, [CLI, ...args], { reject: false, env: opts.env, cwd: opts.cwd, all: true });
}

/** Starts `bridgectl ARGS` in the background. */
export function cliBackground(args: string[]): ResultPromise<{ reject: false; all: true; buffer: true; forceKillAfterDelay: number }> {
  // A SIGTERM stop drains open sessions for up to stopDrainSeconds (10 s) first: execa's own
  // SIGKILL after 5 s would cut that short and hide the exit code.
  return execa(process.execPath, [CLI, ...args], { reject: false, all: true, buffer: true, forceKillAfterDelay: 30_000 });
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

/**
 * Sessions as a transport makes them (static cookie, USERADDR, TRANSPORT, DONE → tor's OKAY),
 * `concurrency` at a time, until stop(). Counts successes and keeps every failure.
 */
export function extOrLoad(port: number, cookieFile: string, concurrency = 4) {
  let ok = 0;
  const failures: string[] = [];
  let running = true;
  const workers = (async () => {
    const cookie = await readCookieFile(cookieFile);
    await Promise.all(
      Array.from({ length: concurrency }, async (_, w) => {
        for (let n = 0; running && n < 100_000; n++) {
          try {
            const r = await dialExtOr({
              host: '127.0.0.1',
              port,
              cookie,
              userAddr: `198.51.100.${w + 1}:${1000 + (n % 60000)}`,
              transport: 'obfs4',
              timeoutMs: 15_000,
            });
            r.socket.destroy();
            if (r.reply.type === CMD.OKAY) ok++;
            else failures.push(`reply ${r.reply.type.toString(16)}`);
          } catch (e) {
            failures.push((e as Error).message);
          }
        }
      }),
    );
  })();
  return {
    get ok() {
      return ok;
    },
    failures,
    stop: async () => {
      running = false;
      await workers;
    },
  };
}

export interface EchoTwin {
  /** HOST:PORT as the balancer takes a twin's address (the host as given, a name or an address). */
  address: string;
  cookieFile: string;
  server: net.Server;
  /** Connections accepted, and sessions that got as far as our OKAY. */
  accepted(): number;
  sessions(): number;
}

/**
 * A fake twin: the Extended ORPort server side with a cookie file of its own (written at
 * `cookieFile`), then OKAY (with any bytes that came after DONE echoed right behind it) and an echo
 * of everything. The caller closes `server`.
 */
export async function echoTwin(cookieFile: string, host: string): Promise<EchoTwin> {
  const cookie = await createCookieFile(cookieFile, { overwrite: true });
  const OKAY = Buffer.from([0x10, 0, 0, 0]);
  let accepted = 0;
  let sessions = 0;
  const server = net.createServer((sock) => {
    accepted++;
    sock.on('error', () => {});
    const hs = new ExtOrServerHandshake(cookie);
    sock.write(hs.greeting());
    const onData = (d: Buffer): void => {
      const st = hs.feed(d);
      if (st.send.length) sock.write(st.send);
      if (st.status === 'failed') return void sock.destroy();
      if (st.status !== 'done') return;
      sock.off('data', onData);
      sessions++;
      sock.write(hs.rest.length ? Buffer.concat([OKAY, hs.rest]) : OKAY);
      sock.pipe(sock);
    };
    sock.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  const a = server.address() as net.AddressInfo;
  return { address: `${net.isIP(host) ? a.address : host}:${a.port}`, cookieFile, server, accepted: () => accepted, sessions: () => sessions };
}

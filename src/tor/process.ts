// Starting tor (and other children) so that they die with us.
//
// Every child is started through util-linux `setpriv --pdeathsig KILL`, so the kernel kills it
// when the supervisor dies, even by SIGKILL. (KILL, not TERM: tor 0.4.9 sometimes hangs for good
// in its clean shutdown after "Catching signal TERM, exiting cleanly", seen here; an orphan must
// not be able to outlive us.) setpriv execs the program, so the pid we see is the program's own.
import { execa, type ResultPromise } from 'execa';
import { createInterface } from 'node:readline';

export interface ChildExit {
  code: number | null;
  signal: string | null;
  /** The last lines the child printed (stdout and stderr), to say why it exited. */
  lastLines: string[];
}

export interface Child {
  pid: number;
  exited: Promise<ChildExit>;
  kill(signal?: NodeJS.Signals): void;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves when it has exited. */
  stop(graceMs?: number): Promise<ChildExit>;
}

export interface SpawnOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Replace the environment instead of extending it. */
  extendEnv?: boolean;
  onLine?: (line: string, stream: 'stdout' | 'stderr') => void;
  /** Keep stdin open as a pipe (pluggable transports exit when stdin closes). */
  keepStdin?: boolean;
  keepLines?: number;
}

/**
 * Variables that belong to the supervisor alone: systemd's notification socket and watchdog (a
 * child that inherits NOTIFY_SOCKET, as tor built with systemd support does, would announce
 * READY=1 on the supervisor's behalf) and the lab's marker.
 */
const PRIVATE_ENV = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID', 'LISTEN_FDS', 'LISTEN_PID', 'LISTEN_FDNAMES'];

export function childEnv(extra: Record<string, string> = {}, base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined && !PRIVATE_ENV.includes(k)) env[k] = v;
  return { ...env, ...extra };
}

export function spawnChild(file: string, args: string[], opts: SpawnOptions = {}): Child {
  const keep = opts.keepLines ?? 20;
  const lastLines: string[] = [];
  const sub: ResultPromise = execa('setpriv', ['--pdeathsig', 'KILL', '--', file, ...args], {
    cwd: opts.cwd,
    env: opts.extendEnv === false ? (opts.env ?? {}) : childEnv(opts.env),
    extendEnv: false,
    stdin: opts.keepStdin ? 'pipe' : 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: false,
    reject: false,
    cleanup: true,
  });
  const pid = sub.pid;
  if (pid === undefined) {
    // execa reports the spawn error through the promise; surface it the same way.
    const exitedEarly: Promise<ChildExit> = sub.then((r) => ({ code: r.exitCode ?? 127, signal: null, lastLines: [String(r.message ?? 'spawn failed')] }));
    return {
      pid: -1,
      exited: exitedEarly,
      kill: () => {},
      stop: () => exitedEarly,
    };
  }
  for (const stream of ['stdout', 'stderr'] as const) {
    const s = sub[stream];
    if (!s) continue;
    const rl = createInterface({ input: s, crlfDelay: Infinity });
    rl.on('line', (line) => {
      lastLines.push(line);
      if (lastLines.length > keep) lastLines.shift();
      opts.onLine?.(line, stream);
    });
  }
  const exited = sub.then((r) => ({
    code: r.exitCode ?? null,
    signal: r.signal ?? null,
    lastLines: lastLines.length || !r.failed ? lastLines : [r.shortMessage ?? 'spawn failed'],
  }));
  const kill = (signal: NodeJS.Signals = 'SIGTERM'): void => {
    try {
      process.kill(pid, signal);
    } catch {
      /* already gone */
    }
  };
  return {
    pid,
    exited,
    kill,
    stop: async (graceMs = 5_000) => {
      kill('SIGTERM');
      const t = setTimeout(() => kill('SIGKILL'), graceMs);
      const e = await exited;
      clearTimeout(t);
      return e;
    },
  };
}

/** Arguments that make tor read exactly our torrc and nothing from /etc. */
export function torArgs(torrcPath: string, extra: string[] = []): string[] {
  return ['-f', torrcPath, '--defaults-torrc', '/dev/null', ...extra];
}

// Supervising the pluggable-transport server (obfs4proxy, snowflake-server, lyrebird, webtunnel...)
// as a managed transport per pt-spec, with the balancer as its Extended ORPort.
import { EventEmitter } from 'node:events';
import { access, mkdir, writeFile, readFile, chmod, constants } from 'node:fs/promises';
import { delimiter, isAbsolute, join } from 'node:path';
import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/index.js';
import { spawnChild, type Child } from '../tor/index.js';
import { childLineLevel } from '../log/index.js';
import { backoffDelay, backoffSleep, nextFailures, type BackoffPolicy } from './backoff.js';
import { parsePtLine, ptServerEnv } from './ptproto.js';

export type TransportState = 'starting' | 'running' | 'backoff' | 'failed' | 'stopping' | 'stopped';

export interface Smethod {
  transport: string;
  address: string;
  args: Record<string, string>;
}

export interface TransportStatus {
  name: string;
  state: TransportState;
  pid: number | null;
  restarts: number;
  startedAt: number | null;
  readyAt: number | null;
  smethod: Smethod | null;
  lastError: string | null;
}

/** Exits before SMETHODS DONE in a row that mean the transport can never start. */
export const MAX_EARLY_EXITS = 5;

export function smethodFile(c: Pick<ResolvedConfig, 'dataDir'>): string {
  return join(c.dataDir, 'transport-smethod.json');
}

export async function readSmethod(c: Pick<ResolvedConfig, 'dataDir'>): Promise<Smethod | null> {
  try {
    return JSON.parse(await readFile(smethodFile(c), 'utf8')) as Smethod;
  } catch {
    return null;
  }
}

/** Finds `cmd` on PATH (or checks it when it has a slash); null when not executable. */
export async function whichExecutable(cmd: string, path = process.env.PATH ?? ''): Promise<string | null> {
  const candidates = cmd.includes('/') ? [cmd] : path.split(delimiter).filter(Boolean).map((d) => join(d, cmd));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      return isAbsolute(c) ? c : c;
    } catch {
      /* next */
    }
  }
  return null;
}

export interface TransportEvents {
  ready: [TransportStatus];
  fatal: [string];
  down: [string];
}

export class TransportRunner extends EventEmitter<TransportEvents> {
  private child: Child | null = null;
  private stopping = false;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  readonly st: TransportStatus;

  constructor(
    private readonly cfg: ResolvedConfig,
    private readonly logger: Logger,
    private readonly policy: BackoffPolicy = cfg.restart,
  ) {
    super();
    if (!cfg.transport) throw new Error('no transport configured');
    this.st = {
      name: cfg.transport.name,
      state: 'stopped',
      pid: null,
      restarts: 0,
      startedAt: null,
      readyAt: null,
      smethod: null,
      lastError: null,
    };
  }

  status(): TransportStatus {
    return { ...this.st };
  }

  start(): void {
    this.stopping = false;
    this.loop = this.run();
  }

  private fatal(msg: string): void {
    this.st.state = 'failed';
    this.st.lastError = msg;
    this.logger.error({ transport: this.st.name }, msg);
    this.emit('fatal', msg);
  }

  private async run(): Promise<void> {
    const t = this.cfg.transport!;
    const log = this.logger.child({ transport: t.name });
    const [cmd, ...args] = t.command;
    const exe = await whichExecutable(cmd!);
    if (!exe) return this.fatal(`transport command not found or not executable: ${cmd}`);
    await mkdir(t.stateDir, { recursive: true, mode: 0o700 });
    await chmod(t.stateDir, 0o700);
    const env = {
      ...ptServerEnv({
        transport: t.name,
        listen: t.listen,
        extendedServerPort: this.cfg.balancer.listen,
        authCookieFile: this.cfg.balancer.cookieFile,
        stateDir: t.stateDir,
        options: t.options,
      }),
      ...t.env,
    };
    let failures = 0;
    let earlyExits = 0;
    while (!this.stopping) {
      let configError: string | null = null;
      let smethod: Smethod | null = null;
      let ready = false;
      const started = Date.now();
      this.st.state = 'starting';
      this.st.startedAt = started;
      this.st.readyAt = null;
      const child = spawnChild(exe, args, {
        env,
        keepStdin: true,
        keepLines: 30,
        onLine: (line, stream) => {
          if (stream === 'stderr') return log[childLineLevel(line)]({ stream: 'stderr' }, line);
          const m = parsePtLine(line);
          switch (m.kind) {
            case 'VERSION':
              log.debug({ version: m.version }, 'transport speaks pt-spec version');
              break;
            case 'VERSION-ERROR':
            case 'ENV-ERROR':
              configError = `${m.kind}: ${m.message}`;
              log.error({ pt: m.kind }, m.message);
              break;
            case 'SMETHOD-ERROR':
              configError = `SMETHOD-ERROR ${m.transport}: ${m.message}`;
              log.error({ pt: m.kind, method: m.transport }, m.message);
              break;
            case 'SMETHOD':
              if (m.transport === t.name) smethod = { transport: m.transport, address: m.address, args: m.args };
              log.info({ pt: m.kind, method: m.transport, address: m.address, args: m.args }, 'transport method ready');
              break;
            case 'SMETHODS DONE':
              if (!smethod) {
                configError ??= `transport finished setup without a SMETHOD for "${t.name}"`;
              } else {
                ready = true;
                this.st.smethod = smethod;
                this.st.readyAt = Date.now();
                this.st.state = 'running';
                void writeFile(smethodFile(this.cfg), JSON.stringify(smethod, null, 2) + '\n', { mode: 0o600 }).catch((e) =>
                  log.warn({ err: (e as Error).message }, 'cannot record SMETHOD'),
                );
                this.emit('ready', this.status());
              }
              break;
            case 'LOG': {
              const lvl = m.severity === 'error' ? 'error' : m.severity === 'warning' ? 'warn' : m.severity === 'debug' ? 'debug' : 'info';
              log[lvl]({ pt: 'LOG', severity: m.severity }, m.message);
              break;
            }
            case 'STATUS':
              log.debug({ pt: 'STATUS', ...m.fields }, 'transport status');
              break;
            default:
              log.info({ stdout: line }, line);
          }
          if (configError && this.child) this.child.kill('SIGTERM');
        },
      });
      this.child = child;
      this.st.pid = child.pid > 0 ? child.pid : null;
      log.info({ transportPid: child.pid, command: t.command }, 'transport started');
      const exit = await child.exited;
      this.child = null;
      this.st.pid = null;
      const reason = exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
      if (this.stopping) break;
      this.emit('down', reason);
      if (configError) return this.fatal(`transport ${t.name} cannot start: ${configError}`);
      earlyExits = ready ? 0 : earlyExits + 1;
      if (earlyExits >= MAX_EARLY_EXITS) {
        return this.fatal(
          `transport ${t.name} exited ${earlyExits} times before finishing setup; last output: ${exit.lastLines.slice(-5).join(' | ') || '(none)'}`,
        );
      }
      failures = nextFailures(failures, Date.now() - started, this.policy);
      const delay = backoffDelay(failures, this.policy);
      this.st.restarts++;
      this.st.state = 'backoff';
      this.st.lastError = reason;
      log.warn({ reason, lastLines: exit.lastLines, restartInMs: delay }, `transport ${reason}; restarting in ${delay} ms`);
      await backoffSleep(delay, (w) => (this.wake = w));
    }
    this.st.state = 'stopped';
  }

  async stop(graceMs = 5_000): Promise<void> {
    this.stopping = true;
    if (this.st.state !== 'failed') this.st.state = 'stopping';
    this.wake?.();
    await this.child?.stop(graceMs);
    await this.loop;
    if (this.st.state !== 'failed') this.st.state = 'stopped';
  }
}

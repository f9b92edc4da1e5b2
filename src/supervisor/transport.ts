// Supervising one pluggable-transport server (obfs4proxy, lyrebird, snowflake-server, meek-server,
// webtunnel, ...) as a managed transport per pt-spec, with the balancer as its Extended ORPort. What
// differs per kind of server (stderr, normal exits, checks) comes from its descriptor (src/transports).
import { EventEmitter } from 'node:events';
import { access, mkdir, writeFile, readFile, chmod, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { Logger } from 'pino';
import type { ResolvedConfig, ResolvedTransport } from '../config/index.js';
import { spawnChild, type Child } from '../tor/index.js';
import { parsePtLine, ptServerEnv } from '../pt/index.js';
import { transportKind, type Smethod } from '../transports/index.js';
import { backoffDelay, backoffSleep, nextFailures, type BackoffPolicy } from './backoff.js';
import { probeListening } from './listen-probe.js';

export type TransportState = 'starting' | 'running' | 'backoff' | 'failed' | 'stopping' | 'stopped';
export type { Smethod };

export interface TransportStatus {
  name: string;
  /** The descriptor used: obfs4, snowflake, meek, webtunnel or generic. */
  kind?: string;
  state: TransportState;
  pid: number | null;
  restarts: number;
  startedAt: number | null;
  readyAt: number | null;
  smethod: Smethod | null;
  lastError: string | null;
  stateDir?: string;
}

/** Exits before SMETHODS DONE in a row that mean the transport can never start. */
export const MAX_EARLY_EXITS = 5;
/** How long after SMETHODS DONE the transport's own process may take to be seen listening. */
const PROBE_MS = 3_000;

type Where = Pick<ResolvedConfig, 'dataDir'>;

/** Where the last SMETHOD of transport `name` is kept (for `bridgectl bridgeline`). */
export function smethodFile(c: Where, name: string): string {
  return join(c.dataDir, `transport-smethod-${name}.json`);
}

export async function readSmethod(c: Where, name: string): Promise<Smethod | null> {
  // Before several transports, the one transport's SMETHOD was kept in transport-smethod.json.
  for (const f of [smethodFile(c, name), join(c.dataDir, 'transport-smethod.json')]) {
    try {
      const sm = JSON.parse(await readFile(f, 'utf8')) as Smethod;
      if (sm.transport === name) return sm;
    } catch {
      /* next */
    }
  }
  return null;
}

/** Finds `cmd` on PATH (or checks it when it has a slash); null when not executable. */
export async function whichExecutable(cmd: string, path = process.env.PATH ?? ''): Promise<string | null> {
  const candidates = cmd.includes('/') ? [cmd] : path.split(delimiter).filter(Boolean).map((d) => join(d, cmd));
  for (const c of candidates) {
    try {
      await access(c, constants.X_OK);
      return c;
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

export interface TransportContext {
  dataDir: string;
  /** The balancer: the transport's Extended ORPort. */
  extendedServerPort: string;
  authCookieFile: string;
}

export class TransportRunner extends EventEmitter<TransportEvents> {
  private child: Child | null = null;
  private stopping = false;
  private restarting = false;
  private wake: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  readonly st: TransportStatus;

  constructor(
    readonly entry: ResolvedTransport,
    private readonly ctx: TransportContext,
    private readonly logger: Logger,
    private readonly policy: BackoffPolicy,
  ) {
    super();
    this.st = {
      name: entry.name,
      kind: transportKind(entry.name).kind,
      state: 'stopped',
      pid: null,
      restarts: 0,
      startedAt: null,
      readyAt: null,
      smethod: null,
      lastError: null,
      stateDir: entry.stateDir,
    };
  }

  status(): TransportStatus {
    return { ...this.st };
  }

  start(): void {
    this.stopping = false;
    this.loop = this.run();
  }

  /** Stops the process and starts it again at once (no backoff); the twins and other transports are untouched. */
  async restart(graceMs = 5_000): Promise<void> {
    if (!this.child) throw new Error(`transport ${this.st.name} is not running (${this.st.state})`);
    this.restarting = true;
    await this.child.stop(graceMs);
  }

  private fatal(msg: string): void {
    this.st.state = 'failed';
    this.st.lastError = msg;
    this.logger.error({ transport: this.st.name }, msg);
    this.emit('fatal', msg);
  }

  private async run(): Promise<void> {
    const t = this.entry;
    const kind = transportKind(t.name);
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
        extendedServerPort: this.ctx.extendedServerPort,
        authCookieFile: this.ctx.authCookieFile,
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
      const failSetup = (why: string): void => {
        configError ??= why;
        this.child?.kill('SIGTERM');
      };
      const onDone = async (sm: Smethod, pid: number): Promise<void> => {
        // A SMETHOD is a claim; the transport's own listening socket is the fact.
        const port = Number(/:(\d+)$/.exec(t.listen)?.[1]) || Number(/:(\d+)$/.exec(sm.address)?.[1]);
        if (!(await probeListening(pid, port, PROBE_MS))) {
          return failSetup(`it reported SMETHODS DONE, but no socket of its own listens on port ${port} of ${t.listen}${configError ? '' : ' (is the port taken by another program?)'}`);
        }
        if (configError || this.child?.pid !== pid) return;
        ready = true;
        this.st.smethod = sm;
        this.st.readyAt = Date.now();
        this.st.state = 'running';
        await writeFile(smethodFile(this.ctx, t.name), JSON.stringify(sm, null, 2) + '\n', { mode: 0o600 }).catch((e) =>
          log.warn({ err: (e as Error).message }, 'cannot record SMETHOD'),
        );
        this.emit('ready', this.status());
      };
      const child = spawnChild(exe, args, {
        env,
        keepStdin: true,
        keepLines: 30,
        onLine: (line, stream) => {
          if (stream === 'stderr') {
            const r = kind.readStderr(line);
            log[r.level]({ stderr: true }, r.message);
            if (r.setupFailed && !ready) failSetup(r.setupFailed);
            return;
          }
          const m = parsePtLine(line);
          switch (m.kind) {
            case 'VERSION':
              log.debug({ version: m.version }, 'transport speaks pt-spec version');
              break;
            case 'VERSION-ERROR':
            case 'ENV-ERROR':
              log.error({ pt: m.kind }, m.message);
              failSetup(`${m.kind}: ${m.message}`);
              break;
            case 'SMETHOD-ERROR':
              log.error({ pt: m.kind, method: m.transport }, m.message);
              failSetup(`SMETHOD-ERROR ${m.transport}: ${m.message}`);
              break;
            case 'SMETHOD':
              if (m.transport === t.name) smethod = { transport: m.transport, address: m.address, args: m.args };
              log.info({ pt: m.kind, method: m.transport, address: m.address, args: m.args }, 'transport method announced');
              break;
            case 'SMETHODS DONE':
              if (!smethod) failSetup(`transport finished setup without a SMETHOD for "${t.name}"`);
              else if (!configError) void onDone(smethod, child.pid);
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
        },
      });
      this.child = child;
      this.st.pid = child.pid > 0 ? child.pid : null;
      log.info({ transportPid: child.pid, command: t.command }, 'transport started');
      const exit = await child.exited;
      this.child = null;
      this.st.pid = null;
      const reason = exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
      if (this.stopping || this.restarting) {
        const normal = kind.normalStopExit(t, exit.code, exit.signal);
        if (normal) log.debug({ reason }, `transport stopped (${reason})`);
        else log.warn({ reason, lastLines: exit.lastLines.slice(-5) }, `transport ${reason} when asked to stop`);
      }
      if (this.stopping) break;
      if (this.restarting) {
        this.restarting = false;
        this.st.restarts++;
        this.emit('down', 'restarted on request');
        continue;
      }
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

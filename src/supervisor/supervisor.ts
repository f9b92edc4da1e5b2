// The supervisor: spawns each tor instance, watches it, restarts it with capped exponential
// backoff, and reports when it is bootstrapped (so the balancer can send it sessions).
import { EventEmitter } from 'node:events';
import { writeFile, chmod } from 'node:fs/promises';
import type { Logger } from 'pino';
import { instanceLayout, type InstanceLayout, type ResolvedConfig } from '../config/index.js';
import {
  spawnChild,
  torArgs,
  connectControl,
  waitBootstrapped,
  parseQuotedList,
  type Child,
  type ChildExit,
  type TorControl,
} from '../tor/index.js';
import { renderInstanceTorrc } from './render.js';
import { backoffDelay, backoffSleep, nextFailures, parseTorLogLine, type BackoffPolicy } from './backoff.js';

export type InstanceState = 'starting' | 'bootstrapping' | 'running' | 'backoff' | 'stopping' | 'stopped' | 'failed';

export interface InstanceStatus {
  name: string;
  index: number;
  state: InstanceState;
  pid: number | null;
  restarts: number;
  startedAt: number | null;
  bootstrappedAt: number | null;
  bootstrap: number;
  fingerprint: string | null;
  orPort: string | null;
  extOrPort: string;
  extOrPortCookie: string;
  lastExit: (Omit<ChildExit, 'lastLines'> & { at: number; reason: string }) | null;
}

interface Instance {
  layout: InstanceLayout;
  status: InstanceStatus;
  child: Child | null;
  control: TorControl | null;
  failures: number;
  /** Exits in a row before bootstrapping, while it never bootstrapped at all. */
  earlyExits: number;
  everBootstrapped: boolean;
  wake: (() => void) | null;
  loop: Promise<void> | null;
  removing: boolean;
  /** A deliberate restart (restartInstance): no backoff; `hook` runs while tor is stopped. */
  restart: { hook: () => Promise<void>; done: (err?: Error) => void } | null;
}

const TOR_LEVEL: Record<string, 'debug' | 'info' | 'warn' | 'error'> = {
  debug: 'debug',
  info: 'debug',
  notice: 'info',
  warn: 'warn',
  err: 'error',
};

export interface SupervisorEvents {
  bootstrapped: [InstanceStatus];
  down: [InstanceStatus, string];
  /** An instance that never got going: it exited this many times in a row before bootstrapping. */
  fatal: [string];
}

/** Exits in a row, each before bootstrapping, after which a never-started instance is a start-up fault. */
export const MAX_EARLY_TOR_EXITS = 3;

/** tor's own complaint from its last lines: the [err] and [warn] lines, else the last line. */
export function torComplaint(lines: string[]): string {
  const bad = lines.map(parseTorLogLine).filter((l) => l.level === 'err' || l.level === 'warn');
  const useful = bad.filter((l) => !/TestingTorNetwork|SafeLogging|as root|DirAuthority|ContactInfo/.test(l.msg));
  const pick = (useful.length ? useful : bad).map((l) => l.msg);
  return (pick.length ? pick.slice(-3) : lines.slice(-1)).join(' | ');
}

export class Supervisor extends EventEmitter<SupervisorEvents> {
  private readonly instances = new Map<string, Instance>();
  private stopping = false;
  private readonly policy: BackoffPolicy;

  constructor(
    private cfg: ResolvedConfig,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
    /** Each instance's torrc (default: a twin's; relay mode passes its own). */
    private readonly render: (c: ResolvedConfig, l: InstanceLayout) => string = (c, l) => renderInstanceTorrc(c, l),
  ) {
    super();
    this.policy = { ...cfg.restart };
  }

  /** Starts every configured instance; resolves once all are spawned (not yet bootstrapped). */
  async start(): Promise<void> {
    for (let i = 1; i <= this.cfg.instances; i++) await this.addInstance(i);
  }

  async addInstance(index: number): Promise<InstanceStatus> {
    const layout = instanceLayout(this.cfg, index);
    if (this.instances.has(layout.name)) throw new Error(`instance ${layout.name} already exists`);
    const inst: Instance = {
      layout,
      status: {
        name: layout.name,
        index,
        state: 'starting',
        pid: null,
        restarts: 0,
        startedAt: null,
        bootstrappedAt: null,
        bootstrap: 0,
        fingerprint: null,
        orPort: null,
        extOrPort: layout.extOrPortAddress,
        extOrPortCookie: layout.extOrPortCookie,
        lastExit: null,
      },
      child: null,
      control: null,
      failures: 0,
      earlyExits: 0,
      everBootstrapped: false,
      wake: null,
      loop: null,
      removing: false,
      restart: null,
    };
    this.instances.set(layout.name, inst);
    inst.loop = this.runLoop(inst);
    return inst.status;
  }

  status(): InstanceStatus[] {
    return [...this.instances.values()].map((i) => ({ ...i.status }));
  }

  get(name: string): InstanceStatus | undefined {
    const i = this.instances.get(name);
    return i ? { ...i.status } : undefined;
  }

  /** Takes a new config for future (re)starts; `reloadTorrcs` applies it to running instances. */
  updateConfig(cfg: ResolvedConfig): void {
    this.cfg = cfg;
    Object.assign(this.policy, cfg.restart);
  }

  /**
   * Rewrites every instance's torrc from the current config and has each running tor re-read it
   * (SIGNAL RELOAD, tor's SIGHUP). Returns the instances that were told to reload.
   */
  async reloadTorrcs(): Promise<string[]> {
    const done: string[] = [];
    for (const inst of this.instances.values()) {
      await this.writeTorrc(inst);
      if (inst.control) {
        await inst.control.signal('RELOAD');
        done.push(inst.layout.name);
      } else if (inst.child) {
        inst.child.kill('SIGHUP');
        done.push(inst.layout.name);
      }
    }
    return done;
  }

  private async writeTorrc(inst: Instance): Promise<void> {
    await writeFile(inst.layout.torrcPath, this.render(this.cfg, inst.layout), { mode: 0o600 });
    await chmod(inst.layout.torrcPath, 0o600);
  }

  private async runLoop(inst: Instance): Promise<void> {
    const log = this.logger.child({ instance: inst.layout.name });
    while (!this.stopping && !inst.removing) {
      inst.status.state = 'starting';
      try {
        await this.writeTorrc(inst);
      } catch (e) {
        inst.status.state = 'failed';
        log.error({ err: (e as Error).message }, 'cannot write torrc; instance not started');
        return;
      }
      const started = this.now();
      const child = spawnChild(
        this.cfg.torPath,
        torArgs(inst.layout.torrcPath, ['__OwningControllerProcess', String(process.pid)]),
        {
          keepLines: 30,
          onLine: (line) => {
            const { level, msg } = parseTorLogLine(line);
            log[TOR_LEVEL[level] ?? 'info']({ tor: level }, msg);
          },
        },
      );
      inst.child = child;
      Object.assign(inst.status, {
        pid: child.pid > 0 ? child.pid : null,
        startedAt: started,
        bootstrappedAt: null,
        bootstrap: 0,
        state: 'bootstrapping',
      });
      log.info({ torPid: child.pid }, 'tor started');
      let exited = false;
      void this.watchBootstrap(inst, child, () => exited, log);
      const exit = await child.exited;
      exited = true;
      inst.control?.close();
      inst.control = null;
      inst.child = null;
      const wasUp = inst.status.bootstrappedAt !== null;
      const ran = this.now() - started;
      const reason = exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
      inst.status.pid = null;
      inst.status.lastExit = { code: exit.code, signal: exit.signal, at: this.now(), reason };
      this.emit('down', { ...inst.status }, reason);
      if (this.stopping || inst.removing) {
        log.info({ reason }, 'tor stopped');
        inst.restart?.done(new Error(`instance ${inst.layout.name} stopped instead of restarting`));
        inst.restart = null;
        break;
      }
      if (inst.restart) {
        const r = inst.restart;
        inst.restart = null;
        inst.status.restarts++;
        let err: Error | undefined;
        try {
          await r.hook();
        } catch (e) {
          err = e as Error;
          log.error({ err: err.message }, 'restart hook failed; starting tor anyway');
        }
        log.info({ reason }, 'tor stopped for a deliberate restart; starting it again');
        r.done(err);
        continue;
      }
      if (!inst.everBootstrapped && ++inst.earlyExits >= MAX_EARLY_TOR_EXITS) {
        inst.status.state = 'failed';
        const msg = `tor instance ${inst.layout.name} cannot start (${reason} ${inst.earlyExits} times before bootstrapping): ${torComplaint(exit.lastLines)}`;
        log.error({ lastLines: exit.lastLines }, msg);
        this.emit('fatal', msg);
        return;
      }
      inst.failures = nextFailures(inst.failures, ran, this.policy);
      const delay = backoffDelay(inst.failures, this.policy);
      inst.status.restarts++;
      inst.status.state = 'backoff';
      log.warn(
        { reason, code: exit.code, signal: exit.signal, ranMs: ran, wasBootstrapped: wasUp, lastLines: exit.lastLines, restartInMs: delay },
        `tor ${reason}; restarting in ${delay} ms`,
      );
      await backoffSleep(delay, (w) => (inst.wake = w));
    }
    inst.status.state = 'stopped';
  }

  private async watchBootstrap(inst: Instance, child: Child, isExited: () => boolean, log: Logger): Promise<void> {
    try {
      const ctl = await connectControl(
        inst.layout.controlSocket,
        inst.layout.controlCookie,
        60_000,
        () => !isExited() && inst.child === child,
      );
      if (isExited() || inst.child !== child) {
        ctl.close();
        return;
      }
      inst.control = ctl;
      ctl.on('close', () => {
        if (inst.control === ctl) inst.control = null;
      });
      await waitBootstrapped(ctl, 24 * 3600_000, () => !isExited() && inst.child === child);
      inst.status.bootstrap = 100;
      inst.status.fingerprint = (await ctl.getInfo('fingerprint')).trim();
      inst.status.orPort = parseQuotedList(await ctl.getInfo('net/listeners/or'))[0] ?? null;
      inst.status.bootstrappedAt = this.now();
      inst.status.state = 'running';
      inst.everBootstrapped = true;
      inst.earlyExits = 0;
      log.info({ fingerprint: inst.status.fingerprint, orPort: inst.status.orPort }, 'tor bootstrapped');
      this.emit('bootstrapped', { ...inst.status });
    } catch (e) {
      if (!isExited() && inst.child === child) log.warn({ err: (e as Error).message }, 'lost track of tor bootstrap');
    }
  }

  /**
   * Restarts a running instance on purpose: SIGTERM (SIGKILL after `graceMs`), then `hook` while
   * its tor is stopped, then tor again at once (no backoff). Resolves once `hook` ran (rejects with
   * its error; tor is started anyway); wait for 'bootstrapped' to know it is back.
   */
  restartInstance(name: string, hook: () => Promise<void> = async () => {}, graceMs = 10_000): Promise<void> {
    const inst = this.instances.get(name);
    if (!inst) return Promise.reject(new Error(`no instance ${name}`));
    const child = inst.child;
    if (!child || inst.removing || this.stopping) return Promise.reject(new Error(`instance ${name} is not running`));
    if (inst.restart) return Promise.reject(new Error(`instance ${name} is already restarting`));
    return new Promise<void>((resolve, reject) => {
      inst.restart = { hook, done: (err) => (err ? reject(err) : resolve()) };
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      void child.exited.then(() => clearTimeout(t));
    });
  }

  /** Stops one instance (SIGTERM, then SIGKILL after `graceMs`) and forgets it. */
  async removeInstance(name: string, graceMs = 10_000): Promise<void> {
    const inst = this.instances.get(name);
    if (!inst) throw new Error(`no instance ${name}`);
    inst.removing = true;
    inst.status.state = 'stopping';
    await this.terminate(inst, graceMs);
    this.instances.delete(name);
  }

  private async terminate(inst: Instance, graceMs: number): Promise<void> {
    inst.wake?.();
    await inst.child?.stop(graceMs);
    await inst.loop;
  }

  /** Stops every instance: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true;
    for (const i of this.instances.values()) i.status.state = 'stopping';
    await Promise.all([...this.instances.values()].map((i) => this.terminate(i, graceMs)));
  }
}

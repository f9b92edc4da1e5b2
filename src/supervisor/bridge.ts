// The whole bridge: the twins, the balancer in front of their Extended ORPorts, the transport in
// front of the balancer, and a control socket for `bridgectl status` and friends.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { instanceLayout, identityDir, type ResolvedConfig } from '../config/index.js';
import {
  initIdentity,
  loadOrInitRotationState,
  readRotationState,
  writeRotationState,
  rotationSchedule,
  generateOnionKeys,
  beginRotation,
  finishTwin,
  endGrace,
  type RotationState,
} from '../keysync/index.js';
import { listFingerprint } from '../tor/index.js';
import { readCookieFile } from '../extor-cookie/index.js';
import { createBalancer, type Balancer, type BalancerStats } from '../balancer/index.js';
import { startMetricsServer, type MetricsServer } from '../metrics/index.js';
import { Supervisor, type InstanceStatus } from './supervisor.js';
import type { TransportStatus } from './transport.js';
import { TransportSet } from './transports.js';
import { ControlServer, type ControlHandlers } from './control.js';
import { systemdNotifier, type Notifier } from './notify.js';
import { CpuMeter } from './cpu.js';

export interface InstanceView extends InstanceStatus {
  uptimeMs: number | null;
  sessions: number;
  sessionsTotal: number;
  bytesIn: number;
  bytesOut: number;
  balancerUp: boolean;
  /** Share of one CPU core used since the previous status (1.0 = a core busy all the time). */
  cpuShare: number | null;
}

export interface BridgeStatus {
  nickname: string;
  pid: number;
  startedAt: number;
  ready: boolean;
  /** The supervisor's own CPU share (the balancer runs in it), as for instances. */
  cpuShare: number | null;
  instances: InstanceView[];
  balancer: BalancerStats | null;
  /** The first transport (as before several), or null. */
  transport: (TransportStatus & { cpuShare: number | null }) | null;
  transports?: Array<TransportStatus & { cpuShare: number | null }>;
}

export interface RotationResult {
  rotatedAt: string;
  /** sha256 prefixes of the new and previous ntor key files. */
  current: string;
  previous: string | null;
  twins: string[];
  graceEnds: string | null;
  nextRotation: string;
}

export interface RotationOptions {
  /** How long each twin's sessions may drain before it restarts anyway. */
  drainMs?: number;
  /** How long a restarted twin may take to bootstrap. */
  bootstrapMs?: number;
}

export interface BridgeEvents {
  ready: [];
  fatal: [string];
  status: [string];
}

export class Bridge extends EventEmitter<BridgeEvents> {
  readonly twins: Supervisor;
  balancer: Balancer | null = null;
  readonly transports: TransportSet;
  private control: ControlServer | null = null;
  private metrics: MetricsServer | null = null;
  private health: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  private readySent = false;
  private readonly cpu = new CpuMeter();
  private starting: Promise<void> | null = null;

  private notifier: Notifier;
  private statusTimer: NodeJS.Timeout | null = null;
  private changing: Promise<unknown> = Promise.resolve();
  /** The twin being drained for a key rotation: the health check leaves it down. */
  private rotatingTwin: string | null = null;
  private rotationTimer: NodeJS.Timeout | null = null;

  constructor(
    public cfg: ResolvedConfig,
    private readonly logger: Logger,
    private readonly extraHandlers: Partial<ControlHandlers> = {},
    notifier?: Notifier,
  ) {
    super();
    this.twins = new Supervisor(cfg, logger);
    this.transports = new TransportSet(cfg, logger);
    this.transports.on('ready', () => this.checkReady());
    this.transports.on('fatal', (msg) => this.emit('fatal', msg));
    this.notifier = notifier ?? systemdNotifier(logger);
  }

  /** Runs membership and config changes one at a time. */
  private serialize<T>(f: () => Promise<T>): Promise<T> {
    const p = this.changing.then(f, f);
    this.changing = p.catch(() => undefined);
    return p;
  }

  /** Starts everything; stop() may be called at any time, even while this is under way. */
  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const c = this.cfg;
    const staticCookie = await readCookieFile(c.balancer.cookieFile);
    const balancer = createBalancer({
      listen: c.balancer.listen,
      staticCookie,
      sourceRange: c.balancer.sourceRange,
      logger: this.logger.child({ component: 'balancer' }),
      handshakeTimeoutMs: c.balancer.handshakeTimeoutMs,
      backendTimeoutMs: c.balancer.backendTimeoutMs,
      idleTimeoutMs: c.balancer.idleTimeoutMs,
      maxSessions: c.balancer.maxSessions,
    });
    let addr: { host: string; port: number };
    try {
      addr = await balancer.start();
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      throw new Error(
        `the balancer cannot listen on ${c.balancer.listen}: ${err.code === 'EADDRINUSE' ? 'address already in use' : err.message}`,
      );
    }
    this.balancer = balancer;
    this.logger.info({ listen: `${addr.host}:${addr.port}` }, 'balancer listening');

    this.twins.on('bootstrapped', (s) => {
      balancer.markUp(s.name).then(
        () => this.checkReady(),
        (e: Error) => this.logger.warn({ instance: s.name, err: e.message }, 'cannot add twin to the balancer yet'),
      );
    });
    this.twins.on('fatal', (msg) => this.emit('fatal', msg));
    this.twins.on('down', (s, reason) => {
      try {
        balancer.markDown(s.name, `tor ${reason}`);
      } catch {
        /* a removed instance is no longer a backend */
      }
    });
    await this.resumeRotation();
    await this.twins.start();
    for (const s of this.twins.status()) {
      balancer.addBackend({ name: s.name, address: s.extOrPort, cookieFile: s.extOrPortCookie });
    }
    // Health check: a twin the balancer marked down (it refused, or failed auth) is tried again
    // while its tor is running and bootstrapped.
    this.health = setInterval(() => void this.healthCheck(), c.balancer.healthCheckMs);
    this.health.unref();

    this.transports.start();
    this.control = new ControlServer(c.runtimeDir, this.logger, {
      status: async () => this.status(),
      'restart-transport': async (args) => this.transports.restart(String(args.name ?? '')),
      ...this.extraHandlers,
    });
    await this.control.start();
    if (c.metrics.listen) {
      this.metrics = await startMetricsServer({
        listen: c.metrics.listen,
        logger: this.logger.child({ component: 'metrics' }),
        getStatus: () => this.status(),
        instances: () =>
          this.twins.status().map((s) => ({ name: s.name, metricsAddress: instanceLayout(this.cfg, s.index).metricsPortAddress })),
      });
    }
    this.rotationTimer = setInterval(() => void this.rotationTick(), 60_000);
    this.rotationTimer.unref();
    this.statusTimer = setInterval(() => this.notifier.status(this.statusLine()), 5_000);
    this.statusTimer.unref();
    this.notifier.status(this.statusLine());
  }

  /** One line for systemd's STATUS=. */
  statusLine(): string {
    const st = this.status();
    const up = st.instances.filter((i) => i.balancerUp).length;
    const sessions = st.balancer?.sessions.current ?? 0;
    const t = (st.transports ?? []).map((x) => `, ${x.name} ${x.state}`).join('');
    return `${up}/${st.instances.length} twins up, ${sessions} sessions${t}`;
  }

  /** Adds a twin: shared keys and pins, its own nickname and addresses; it joins the balancer once bootstrapped. */
  addInstance(): Promise<InstanceStatus> {
    return this.serialize(async () => {
      const used = new Set(this.twins.status().map((s) => s.index));
      let i = 1;
      while (used.has(i)) i++;
      if (i > 254) throw new Error('no room for another instance (at most 254)');
      const layout = instanceLayout(this.cfg, i);
      await initIdentity({
        identityDir: identityDir(this.cfg),
        instances: [{ name: layout.name, dataDir: layout.dataDir }],
        generate: async () => {
          throw new Error('the bridge has no identity yet; run bridgectl init');
        },
      });
      const st = await this.twins.addInstance(i);
      this.balancer?.addBackend({ name: st.name, address: st.extOrPort, cookieFile: st.extOrPortCookie });
      this.cfg = { ...this.cfg, instances: this.twins.status().length };
      this.logger.info({ instance: st.name }, 'instance added');
      return st;
    });
  }

  /**
   * Removes a twin (default: the highest-numbered): it stops receiving sessions, its sessions drain
   * for at most `drainMs`, then its tor stops. Its data directory and keys stay on disk.
   */
  removeInstance(name?: string, drainMs = 30_000): Promise<string> {
    return this.serialize(async () => {
      const all = this.twins.status().sort((a, b) => b.index - a.index);
      if (all.length <= 1) throw new Error('refusing to remove the last instance');
      const target = name ?? all[0]!.name;
      if (!all.some((s) => s.name === target)) throw new Error(`no instance named ${target}`);
      this.logger.info({ instance: target, drainMs }, 'removing instance: draining');
      await this.balancer?.removeBackend(target, { drainMs });
      await this.twins.removeInstance(target);
      this.cfg = { ...this.cfg, instances: this.twins.status().length };
      this.logger.info({ instance: target }, 'instance removed');
      return target;
    });
  }

  /**
   * Applies a new config to the running bridge without dropping sessions: instance count, torrc
   * lines (tor re-reads its torrc), restart policy, balancer limits; a changed transport section
   * restarts the transport. Keys that name places (dataDir, nickname, ports) need a restart and are
   * kept as they are, with a warning. Returns what changed.
   */
  reload(next: ResolvedConfig): Promise<string[]> {
    return this.serialize(async () => {
      const prev = this.cfg;
      const changes: string[] = [];
      const fixed = ['dataDir', 'nickname', 'extOrPort', 'orPort', 'torPath', 'runtimeDir'] as const;
      for (const k of fixed) {
        if (JSON.stringify(prev[k]) !== JSON.stringify(next[k])) {
          this.logger.warn({ key: k }, `changing ${k} needs a restart of bridgectl; keeping the running value`);
        }
      }
      for (const k of ['listen', 'cookieFile', 'sourceRange'] as const) {
        if (prev.balancer[k] !== next.balancer[k]) {
          this.logger.warn({ key: `balancer.${k}` }, `changing balancer.${k} needs a restart of bridgectl; keeping the running value`);
        }
      }
      const merged: ResolvedConfig = {
        ...next,
        ...Object.fromEntries(fixed.map((k) => [k, prev[k]])),
        balancer: { ...next.balancer, listen: prev.balancer.listen, cookieFile: prev.balancer.cookieFile, sourceRange: prev.balancer.sourceRange },
        instances: prev.instances,
      };
      this.cfg = merged;
      this.twins.updateConfig(merged);
      if (prev.torrc !== next.torrc || prev.contactInfo !== next.contactInfo || JSON.stringify(prev.metrics) !== JSON.stringify(next.metrics)) {
        const told = await this.twins.reloadTorrcs();
        changes.push(`torrc re-read by ${told.join(', ') || 'no running instance'}`);
      }
      const limits = ['handshakeTimeoutMs', 'backendTimeoutMs', 'idleTimeoutMs', 'maxSessions'] as const;
      if (limits.some((k) => prev.balancer[k] !== next.balancer[k])) {
        this.balancer?.setLimits(Object.fromEntries(limits.map((k) => [k, next.balancer[k]])));
        changes.push('balancer limits');
      }
      if (JSON.stringify(prev.restart) !== JSON.stringify(next.restart)) changes.push('restart policy');
      changes.push(...(await this.transports.reload(merged)));
      return changes;
    }).then(async (changes) => {
      // Instance count last, through the same paths as add/remove-instance.
      while (this.twins.status().length < next.instances) changes.push(`added ${(await this.addInstance()).name}`);
      while (this.twins.status().length > next.instances) changes.push(`removed ${await this.removeInstance()}`);
      this.logger.info({ changes }, changes.length ? 'config reloaded' : 'config reloaded: nothing changed');
      return changes;
    });
  }

  private twinDirs(): Array<{ name: string; dataDir: string; keysDir: string }> {
    return this.twins
      .status()
      .sort((a, b) => a.index - b.index)
      .map((s) => instanceLayout(this.cfg, s.index));
  }

  private rotationResult(st: RotationState, twins: string[]): RotationResult {
    const sch = rotationSchedule(st, new Date(), this.cfg.keys);
    return {
      rotatedAt: st.rotatedAt,
      current: st.current,
      previous: st.previous,
      twins,
      graceEnds: sch.graceEnds?.toISOString() ?? null,
      nextRotation: sch.nextRotation.toISOString(),
    };
  }

  /** A rotation interrupted by a supervisor exit: its twins are all stopped now, so finish each on disk. */
  private async resumeRotation(): Promise<void> {
    const id = identityDir(this.cfg);
    const st = await readRotationState(id);
    if (st?.phase !== 'rolling') return;
    const twins = Array.from({ length: this.cfg.instances }, (_, i) => instanceLayout(this.cfg, i + 1));
    for (const t of twins) await finishTwin(id, t.dataDir, st);
    await writeRotationState(id, { ...st, phase: 'grace', done: twins.map((t) => t.name) });
    this.logger.warn({ rotatedAt: st.rotatedAt }, 'finished an onion-key rotation that was interrupted');
  }

  /**
   * Coordinated onion-key rotation: one new TAP + ntor pair (made by tor) becomes every twin's current
   * pair, the previous one stays as .old files for the grace period, and the twins restart one at a
   * time, each drained through the balancer first.
   */
  rotateOnionKeys(o: RotationOptions = {}): Promise<RotationResult> {
    return this.serialize(async () => {
      const b = this.balancer;
      if (!b) throw new Error('the bridge is not running');
      const id = identityDir(this.cfg);
      const before = await loadOrInitRotationState(id);
      if (before.phase === 'rolling') throw new Error('a rotation is already under way');
      const twins = this.twinDirs();
      const notRunning = this.twins.status().filter((s) => s.state !== 'running');
      if (notRunning.length) throw new Error(`not every twin is running (${notRunning.map((s) => `${s.name} ${s.state}`).join(', ')}); try again later`);
      if (before.phase === 'grace') {
        // A rotation before the last one's grace period ended: those .old keys expire now.
        await endGrace(id, twins.map((t) => t.keysDir), before, new Date());
      }
      const fresh = await generateOnionKeys(this.cfg.dataDir, async (dir) => {
        await listFingerprint(dir, `${this.cfg.nickname}0`, this.cfg.torPath);
      });
      let st = await beginRotation(id, twins.map((t) => t.keysDir), fresh, new Date());
      this.logger.info({ current: st.current, previous: st.previous, twins: twins.map((t) => t.name) }, 'onion-key rotation: new keys installed; restarting twins one at a time');
      for (const t of twins) {
        await this.restartForRotation(t, st, o);
        st = { ...st, done: [...st.done, t.name] };
        await writeRotationState(id, st);
      }
      st = { ...st, phase: 'grace' };
      await writeRotationState(id, st);
      this.logger.info({ current: st.current }, 'onion-key rotation done; previous keys kept as .old files for the grace period');
      return this.rotationResult(st, twins.map((t) => t.name));
    });
  }

  private async restartForRotation(t: { name: string; dataDir: string }, st: RotationState, o: RotationOptions): Promise<void> {
    const b = this.balancer!;
    const log = this.logger.child({ instance: t.name });
    const drainMs = o.drainMs ?? 30_000;
    this.rotatingTwin = t.name;
    try {
      b.markDown(t.name, 'rotating keys');
      const deadline = Date.now() + drainMs;
      const current = (): number => b.stats().backends.find((x) => x.name === t.name)?.current ?? 0;
      while (current() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (current() > 0) log.warn({ sessions: current(), drainMs }, 'sessions still open after the drain period; restarting anyway');
      const up = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          this.twins.off('bootstrapped', on);
          reject(new Error(`${t.name} did not bootstrap within ${o.bootstrapMs ?? 120_000} ms after its restart`));
        }, o.bootstrapMs ?? 120_000);
        const on = (s: { name: string }): void => {
          if (s.name !== t.name) return;
          clearTimeout(timer);
          this.twins.off('bootstrapped', on);
          resolve();
        };
        this.twins.on('bootstrapped', on);
      });
      up.catch(() => undefined);
      await this.twins.restartInstance(t.name, () => finishTwin(identityDir(this.cfg), t.dataDir, st));
      this.rotatingTwin = null;
      await up;
      // The 'bootstrapped' handler marks it up; wait for that before draining the next twin.
      const upDeadline = Date.now() + 10_000;
      while (!b.stats().backends.find((x) => x.name === t.name)?.up && Date.now() < upDeadline) await new Promise((r) => setTimeout(r, 50));
      log.info('twin restarted with the new onion keys');
    } finally {
      this.rotatingTwin = null;
    }
  }

  /** Ends the grace period now: the previous keys' .old files go, the pins come back. */
  endOnionGrace(): Promise<RotationResult> {
    return this.serialize(async () => {
      const id = identityDir(this.cfg);
      const st = await loadOrInitRotationState(id);
      if (st.phase === 'rolling') throw new Error('a rotation is under way');
      const twins = this.twinDirs();
      const next = st.phase === 'grace' ? await endGrace(id, twins.map((t) => t.keysDir), st, new Date()) : st;
      if (st.phase === 'grace') this.logger.info('onion-key grace period over: previous keys removed, pins back');
      return this.rotationResult(next, twins.map((t) => t.name));
    });
  }

  /** The rotation schedule, checked every minute. */
  private async rotationTick(): Promise<void> {
    try {
      const st = await loadOrInitRotationState(identityDir(this.cfg));
      const sch = rotationSchedule(st, new Date(), this.cfg.keys);
      if (sch.repinDue) await this.endOnionGrace();
      if (sch.rotateDue) await this.rotateOnionKeys();
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'scheduled onion-key rotation failed; trying again later');
    }
  }

  private async healthCheck(): Promise<void> {
    const b = this.balancer;
    if (!b) return;
    const down = new Set(b.stats().backends.filter((x) => !x.up && !x.draining).map((x) => x.name));
    for (const s of this.twins.status()) {
      if (s.state === 'running' && down.has(s.name) && s.name !== this.rotatingTwin) {
        await b.markUp(s.name).catch((e: Error) => this.logger.debug({ instance: s.name, err: e.message }, 'twin still not usable'));
      }
    }
  }

  /** Ready once the balancer listens, the transport (if any) reported SMETHODS DONE and a twin is up. */
  private checkReady(): void {
    const anyUp = this.balancer?.stats().backends.some((b) => b.up) ?? false;
    const transportOk = this.transports.allRunning();
    if (!this.readySent && anyUp && transportOk) {
      this.readySent = true;
      this.logger.info('bridge ready');
      this.notifier.ready();
      this.notifier.status(this.statusLine());
      this.emit('ready');
    }
  }

  status(): BridgeStatus {
    const stats = this.balancer?.stats() ?? null;
    const byName = new Map(stats?.backends.map((b) => [b.name, b]));
    const now = Date.now();
    const transports = this.transports.status().map((t) => ({ ...t, cpuShare: this.cpu.share(t.pid, t.startedAt, now) }));
    return {
      nickname: this.cfg.nickname,
      pid: process.pid,
      startedAt: this.startedAt,
      ready: this.readySent,
      cpuShare: this.cpu.share(process.pid, this.startedAt, now),
      instances: this.twins.status().map((s) => {
        const b = byName.get(s.name);
        return {
          ...s,
          uptimeMs: s.startedAt && s.pid ? now - s.startedAt : null,
          sessions: b?.current ?? 0,
          sessionsTotal: b?.total ?? 0,
          bytesIn: b?.bytesToBackend ?? 0,
          bytesOut: b?.bytesFromBackend ?? 0,
          balancerUp: b?.up ?? false,
          cpuShare: this.cpu.share(s.pid, s.startedAt, now),
        };
      }),
      balancer: stats,
      transport: transports[0] ?? null,
      transports,
    };
  }

  async stop(): Promise<void> {
    // A fatal error can arrive while start() is still under way: let it finish first, so that
    // nothing it creates (the control socket, say) outlives the stop.
    await this.starting?.catch(() => undefined);
    this.notifier.stopping();
    if (this.statusTimer) clearInterval(this.statusTimer);
    this.notifier.close();
    if (this.health) clearInterval(this.health);
    if (this.rotationTimer) clearInterval(this.rotationTimer);
    await this.control?.stop();
    await this.metrics?.stop();
    await this.transports.stop();
    await this.balancer?.stop();
    await this.twins.stop();
  }
}

// The whole bridge: the twins, the balancer in front of their Extended ORPorts, the transport in
// front of the balancer, and a control socket for `bridgectl status` and friends.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { instanceLayout, identityDir, bandwidthProblem, type ResolvedConfig } from '../config/index.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { initIdentity, rsaFingerprint } from '../keysync/index.js';
import { readCookieFile } from '../extorport/index.js';
import { createBalancer, type Balancer, type BalancerStats } from '../balancer/index.js';
import { startMetricsServer, type MetricsServer } from '../metrics/index.js';
import { Supervisor, type InstanceStatus } from './supervisor.js';
import type { TransportStatus } from './transport.js';
import { TransportSet } from './transports.js';
import { ControlServer, type ControlHandlers } from './control.js';
import { systemdNotifier, type Notifier } from './notify.js';
import { CpuMeter } from './cpu.js';
import { OnionRotation, type RotationResult, type RotationOptions } from './onion-rotation.js';
import { drainTwin, type CycleHost } from './twin-cycle.js';
import { RollingRestart, type RestartOptions, type RestartResult, type RestartState } from './rolling-restart.js';

export type { RotationResult, RotationOptions } from './onion-rotation.js';

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
  /** The bridge's fingerprint, from its identity key (known before any twin bootstraps). */
  fingerprint: string | null;
  pid: number;
  startedAt: number;
  ready: boolean;
  /** The supervisor's own CPU share (the balancer runs in it), as for instances. */
  cpuShare: number | null;
  instances: InstanceView[];
  balancer: BalancerStats | null;
  /** The first transport (as before several), or null. */
  transport: (TransportStatus & { cpuShare: number | null }) | null;
  /** The rolling restart under way, or the last one. */
  restart: RestartState | null;
  /** When the current onion keys became current (as of the last check, every minute). */
  onionKeys: { rotatedAt: string; rotationDays: number } | null;
  /** Every transport (a bridge may run several; `transport` is the first). */
  transports?: Array<TransportStatus & { cpuShare: number | null }>;
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
  /** Twins drained or restarted on purpose: the health check leaves them down. */
  private readonly held = new Set<string>();
  private readonly rotation: OnionRotation;
  private readonly rolling: RollingRestart;
  private onionKeys: BridgeStatus['onionKeys'] = null;
  private fingerprint: string | null = null;
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
    this.rotation = new OnionRotation({ ...this.cycleHost(), cfg: () => this.cfg });
    this.rolling = new RollingRestart(this.cycleHost(), () => this.cfg.dataDir);
  }

  /** What drains and restarts twins one at a time (rotation, rolling restart) work on. */
  private cycleHost(): CycleHost {
    return { twins: this.twins, balancer: () => this.balancer, logger: this.logger, held: this.held };
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
      twinTimeoutMs: c.balancer.twinTimeoutMs,
      idleTimeoutMs: c.balancer.idleTimeoutMs,
      maxSessions: c.balancer.maxSessions,
      choice: c.balancer.choice,
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
        /* a removed instance is no longer a twin of the balancer */
      }
    });
    await this.rotation.resume();
    await this.rolling.load();
    this.onionKeys = await this.rotation.keysInfo();
    this.fingerprint = await readFile(join(identityDir(c), 'keys', 'secret_id_key')).then(rsaFingerprint, () => null);
    await this.twins.start();
    for (const s of this.twins.status()) {
      balancer.addTwin({ name: s.name, address: s.extOrPort, cookieFile: s.extOrPortCookie });
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
      // The bridge's bandwidth is divided among the twins: the new count first, then the new twin.
      const n = this.twins.status().length + 1;
      const bw = bandwidthProblem(this.cfg.bandwidth, n);
      if (bw) throw new Error(`cannot add a twin: bandwidth.${bw.key}: ${bw.message}`);
      this.cfg = { ...this.cfg, instances: n };
      this.twins.updateConfig(this.cfg);
      const st = await this.twins.addInstance(i).catch((e: unknown) => {
        this.cfg = { ...this.cfg, instances: this.twins.status().length };
        this.twins.updateConfig(this.cfg);
        throw e;
      });
      this.balancer?.addTwin({ name: st.name, address: st.extOrPort, cookieFile: st.extOrPortCookie });
      await this.redivide();
      this.logger.info({ instance: st.name }, 'instance added');
      return st;
    });
  }

  /** After the twin count changed: every tor re-reads its torrc with its new share of the bandwidth. */
  private async redivide(): Promise<void> {
    if (!this.cfg.bandwidth?.rate) return;
    const told = await this.twins.reloadTorrcs();
    this.logger.info({ twins: told, instances: this.cfg.instances }, 'bandwidth divided anew among the twins');
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
      this.held.add(target);
      try {
        const left = await drainTwin(this.balancer, target, drainMs, 'being removed');
        if (left > 0) this.logger.warn({ instance: target, sessions: left, drainMs }, 'sessions still open after the drain period; removing anyway');
        await this.balancer?.removeTwin(target, { drainMs: 0 });
      } finally {
        this.held.delete(target);
      }
      await this.twins.removeInstance(target);
      this.cfg = { ...this.cfg, instances: this.twins.status().length };
      this.twins.updateConfig(this.cfg);
      await this.redivide();
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
      if (prev.torrc !== next.torrc || prev.contactInfo !== next.contactInfo || JSON.stringify(prev.bandwidth) !== JSON.stringify(next.bandwidth) || JSON.stringify(prev.metrics) !== JSON.stringify(next.metrics)) {
        const told = await this.twins.reloadTorrcs();
        changes.push(`torrc re-read by ${told.join(', ') || 'no running instance'}`);
      }
      const limits = ['handshakeTimeoutMs', 'twinTimeoutMs', 'idleTimeoutMs', 'maxSessions'] as const;
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

  /** Rolling restart of the twins (or the rest of an interrupted one); see rolling-restart.ts. */
  restartTwins(o: RestartOptions = {}): Promise<RestartResult> {
    return this.serialize(() => this.rolling.run(o));
  }

  /** Coordinated onion-key rotation now (see onion-rotation.ts). */
  rotateOnionKeys(o: RotationOptions = {}): Promise<RotationResult> {
    return this.serialize(() => this.rotation.rotate(o)).finally(() => void this.refreshKeysInfo());
  }

  /** Ends the onion-key grace period now: the previous keys' .old files go, the pins come back. */
  endOnionGrace(): Promise<RotationResult> {
    return this.serialize(() => this.rotation.endGrace());
  }

  private async refreshKeysInfo(): Promise<void> {
    this.onionKeys = await this.rotation.keysInfo();
  }

  /** The rotation schedule, checked every minute. */
  private async rotationTick(): Promise<void> {
    try {
      await this.refreshKeysInfo();
      const due = await this.rotation.due();
      if (due.repin) await this.endOnionGrace();
      if (due.rotate) await this.rotateOnionKeys();
    } catch (e) {
      this.logger.warn({ err: (e as Error).message }, 'scheduled onion-key rotation failed; trying again later');
    }
  }

  private async healthCheck(): Promise<void> {
    const b = this.balancer;
    if (!b) return;
    const down = new Set(b.stats().twins.filter((x) => !x.up && !x.draining).map((x) => x.name));
    for (const s of this.twins.status()) {
      if (s.state === 'running' && down.has(s.name) && !this.held.has(s.name)) {
        await b.markUp(s.name).catch((e: Error) => this.logger.debug({ instance: s.name, err: e.message }, 'twin still not usable'));
      }
    }
  }

  /** Ready once the balancer listens, the transport (if any) reported SMETHODS DONE and a twin is up. */
  private checkReady(): void {
    const anyUp = this.balancer?.stats().twins.some((b) => b.up) ?? false;
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
    const byName = new Map(stats?.twins.map((b) => [b.name, b]));
    const now = Date.now();
    const transports = this.transports.status().map((t) => ({ ...t, cpuShare: this.cpu.share(t.pid, t.startedAt, now) }));
    return {
      nickname: this.cfg.nickname,
      fingerprint: this.fingerprint,
      pid: process.pid,
      startedAt: this.startedAt,
      ready: this.readySent,
      cpuShare: this.cpu.share(process.pid, this.startedAt, now),
      instances: this.twins.status().map((s) => {
        const b = byName.get(s.name);
        return {
          ...s,
          fingerprint: s.fingerprint ?? this.fingerprint,
          uptimeMs: s.startedAt && s.pid ? now - s.startedAt : null,
          sessions: b?.current ?? 0,
          sessionsTotal: b?.total ?? 0,
          bytesIn: b?.bytesToTwin ?? 0,
          bytesOut: b?.bytesFromTwin ?? 0,
          balancerUp: b?.up ?? false,
          cpuShare: this.cpu.share(s.pid, s.startedAt, now),
        };
      }),
      balancer: stats,
      transport: transports[0] ?? null,
      transports,
      restart: this.rolling.progress,
      onionKeys: this.onionKeys,
    };
  }

  /**
   * A stop that drains (SIGTERM): new sessions are refused at once, open ones get up to
   * `stopDrainSeconds` to finish, then whatever is left is cut.
   */
  private async drain(): Promise<void> {
    const b = this.balancer;
    const ms = this.cfg.stopDrainSeconds * 1000;
    if (!b || ms <= 0) return;
    b.setLimits({ maxSessions: 0 });
    const open = (): number => b.stats().sessions.current;
    if (open() === 0) return;
    this.logger.info({ sessions: open(), stopDrainSeconds: this.cfg.stopDrainSeconds }, 'stopping: no new sessions; draining the open ones');
    const deadline = Date.now() + ms;
    while (open() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    if (open() > 0) this.logger.warn({ sessions: open() }, `cutting ${open()} sessions still open after ${this.cfg.stopDrainSeconds} s`);
  }

  async stop(o: { drain?: boolean } = {}): Promise<void> {
    // A fatal error can arrive while start() is still under way: let it finish first, so that
    // nothing it creates (the control socket, say) outlives the stop.
    await this.starting?.catch(() => undefined);
    this.notifier.stopping();
    if (o.drain) await this.drain();
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

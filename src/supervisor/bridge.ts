// The whole bridge: the twins, the balancer in front of their Extended ORPorts, the transport in
// front of the balancer, and a control socket for `bridgectl status` and friends.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { ResolvedConfig } from '../config/index.js';
import { readCookieFile } from '../extor-cookie/index.js';
import { createBalancer, type Balancer, type BalancerStats } from '../balancer/index.js';
import { Supervisor, type InstanceStatus } from './supervisor.js';
import { TransportRunner, type TransportStatus } from './transport.js';
import { ControlServer, type ControlHandlers } from './control.js';

export interface InstanceView extends InstanceStatus {
  uptimeMs: number | null;
  sessions: number;
  sessionsTotal: number;
  bytesIn: number;
  bytesOut: number;
  balancerUp: boolean;
}

export interface BridgeStatus {
  nickname: string;
  pid: number;
  startedAt: number;
  ready: boolean;
  instances: InstanceView[];
  balancer: BalancerStats | null;
  transport: TransportStatus | null;
}

export interface BridgeEvents {
  ready: [];
  fatal: [string];
  status: [string];
}

export class Bridge extends EventEmitter<BridgeEvents> {
  readonly twins: Supervisor;
  balancer: Balancer | null = null;
  transport: TransportRunner | null = null;
  private control: ControlServer | null = null;
  private health: NodeJS.Timeout | null = null;
  private readonly startedAt = Date.now();
  private readySent = false;
  private starting: Promise<void> | null = null;

  constructor(
    readonly cfg: ResolvedConfig,
    private readonly logger: Logger,
    private readonly extraHandlers: Partial<ControlHandlers> = {},
  ) {
    super();
    this.twins = new Supervisor(cfg, logger);
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
    const addr = await balancer.start();
    this.balancer = balancer;
    this.logger.info({ listen: `${addr.host}:${addr.port}` }, 'balancer listening');

    this.twins.on('bootstrapped', (s) => {
      balancer.markUp(s.name).then(
        () => this.checkReady(),
        (e: Error) => this.logger.warn({ instance: s.name, err: e.message }, 'cannot add twin to the balancer yet'),
      );
    });
    this.twins.on('down', (s, reason) => balancer.markDown(s.name, `tor ${reason}`));
    await this.twins.start();
    for (const s of this.twins.status()) {
      balancer.addBackend({ name: s.name, address: s.extOrPort, cookieFile: s.extOrPortCookie });
    }
    // Health check: a twin the balancer marked down (it refused, or failed auth) is tried again
    // while its tor is running and bootstrapped.
    this.health = setInterval(() => void this.healthCheck(), c.balancer.healthCheckMs);
    this.health.unref();

    if (c.transport) {
      const t = new TransportRunner(c, this.logger);
      this.transport = t;
      t.on('ready', () => this.checkReady());
      t.on('fatal', (msg) => this.emit('fatal', msg));
      t.start();
    }
    this.control = new ControlServer(c.runtimeDir, this.logger, {
      status: async () => this.status(),
      ...this.extraHandlers,
    });
    await this.control.start();
  }

  private async healthCheck(): Promise<void> {
    const b = this.balancer;
    if (!b) return;
    const down = new Set(b.stats().backends.filter((x) => !x.up && !x.draining).map((x) => x.name));
    for (const s of this.twins.status()) {
      if (s.state === 'running' && down.has(s.name)) {
        await b.markUp(s.name).catch((e: Error) => this.logger.debug({ instance: s.name, err: e.message }, 'twin still not usable'));
      }
    }
  }

  /** Ready once the balancer listens, the transport (if any) reported SMETHODS DONE and a twin is up. */
  private checkReady(): void {
    const anyUp = this.balancer?.stats().backends.some((b) => b.up) ?? false;
    const transportOk = !this.transport || this.transport.status().state === 'running';
    if (!this.readySent && anyUp && transportOk) {
      this.readySent = true;
      this.logger.info('bridge ready');
      this.emit('ready');
    }
  }

  status(): BridgeStatus {
    const stats = this.balancer?.stats() ?? null;
    const byName = new Map(stats?.backends.map((b) => [b.name, b]));
    const now = Date.now();
    return {
      nickname: this.cfg.nickname,
      pid: process.pid,
      startedAt: this.startedAt,
      ready: this.readySent,
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
        };
      }),
      balancer: stats,
      transport: this.transport?.status() ?? null,
    };
  }

  async stop(): Promise<void> {
    // A fatal error can arrive while start() is still under way: let it finish first, so that
    // nothing it creates (the control socket, say) outlives the stop.
    await this.starting?.catch(() => undefined);
    if (this.health) clearInterval(this.health);
    await this.control?.stop();
    await this.transport?.stop();
    await this.balancer?.stop();
    await this.twins.stop();
  }
}

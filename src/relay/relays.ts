// Relay mode's composition root, beside Bridge: N relays of one family, each its own identity and
// ORPort, supervised like the twins (Supervisor), with no balancer. Membership changes rewrite
// every relay's FamilyId/MyFamily lines and have each tor re-read its torrc; nothing restarts.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { instanceLayout, relayRuleIssues, type InstanceLayout, type ResolvedConfig } from '../config/index.js';
import { connectControl } from '../tor/index.js';
import { startMetricsServer, type MetricsServer } from '../metrics/index.js';
import {
  Supervisor,
  ControlServer,
  CpuMeter,
  systemdNotifier,
  type ControlHandlers,
  type InstanceStatus,
  type BridgeStatus,
  type InstanceView,
  type Notifier,
} from '../supervisor/index.js';
import { renderRelayTorrc, type FamilyView } from './torrc.js';
import { initRelays, relayProblems, familyOf, relayLayouts } from './members.js';
import { parseNsEntry, type ConsensusEntry } from '../tor/index.js';

export interface RelayView extends InstanceView {
  /** The relay's entry in the consensus its tor holds (flags, weight), or null while unlisted. */
  consensus: ConsensusEntry | null;
}

export interface RelaysStatus extends BridgeStatus {
  mode: 'relay';
  familyId: string;
  /** Every member's fingerprint, as each relay declares them. */
  family: string[];
  instances: RelayView[];
}

interface Observed {
  consensus: ConsensusEntry | null;
  read: number;
  written: number;
}

export class Relays extends EventEmitter<{ ready: []; fatal: [string] }> {
  readonly twins: Supervisor;
  private family: FamilyView = { id: '', members: [] };
  private control: ControlServer | null = null;
  private metrics: MetricsServer | null = null;
  private readonly notifier: Notifier;
  private readonly cpu = new CpuMeter();
  private readonly startedAt = Date.now();
  private readonly observed = new Map<string, Observed>();
  private timers: NodeJS.Timeout[] = [];
  private readySent = false;
  private changing: Promise<unknown> = Promise.resolve();
  private starting: Promise<void> | null = null;

  constructor(
    public cfg: ResolvedConfig,
    private readonly logger: Logger,
    private readonly extraHandlers: Partial<ControlHandlers> = {},
    notifier?: Notifier,
  ) {
    super();
    this.twins = new Supervisor(cfg, logger, Date.now, (c, l) => renderRelayTorrc(c, l, this.family));
    this.notifier = notifier ?? systemdNotifier(logger);
  }

  private serialize<T>(f: () => Promise<T>): Promise<T> {
    const p = this.changing.then(f, f);
    this.changing = p.catch(() => undefined);
    return p;
  }

  private layouts(): InstanceLayout[] {
    return this.twins.status().map((s) => s.index).sort((a, b) => a - b).map((i) => instanceLayout(this.cfg, i));
  }

  private async refreshFamily(layouts: InstanceLayout[]): Promise<void> {
    const f = await familyOf(this.cfg, layouts);
    this.family = { id: f.key.id, members: f.members };
  }

  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const layouts = relayLayouts(this.cfg);
    const problems = await relayProblems(this.cfg, layouts);
    if (problems.length) throw new Error(`refusing to start the relays:\n  ${problems.join('\n  ')}`);
    await this.refreshFamily(layouts);
    this.twins.on('fatal', (m) => this.emit('fatal', m));
    this.twins.on('bootstrapped', () => this.checkReady());
    await this.twins.start();
    this.control = new ControlServer(this.cfg.runtimeDir, this.logger, { status: async () => this.status(), ...this.extraHandlers });
    await this.control.start();
    if (this.cfg.metrics.listen) {
      this.metrics = await startMetricsServer({
        listen: this.cfg.metrics.listen,
        logger: this.logger.child({ component: 'metrics' }),
        getStatus: () => this.status(),
        instances: () => this.layouts().map((l) => ({ name: l.name, metricsAddress: l.metricsPortAddress })),
      });
    }
    const observe = setInterval(() => void this.observe(), 5_000);
    const status = setInterval(() => this.notifier.status(this.statusLine()), 5_000);
    for (const t of [observe, status]) t.unref();
    this.timers.push(observe, status);
    this.logger.info({ familyId: this.family.id, relays: layouts.map((l) => l.name) }, 'relays started');
  }

  private checkReady(): void {
    if (this.readySent || !this.twins.status().some((s) => s.state === 'running')) return;
    this.readySent = true;
    this.logger.info('relays ready');
    this.notifier.ready();
    this.notifier.status(this.statusLine());
    this.emit('ready');
  }

  statusLine(): string {
    const st = this.status();
    const up = st.instances.filter((i) => i.state === 'running').length;
    const listed = st.instances.filter((i) => i.consensus).length;
    return `${up}/${st.instances.length} relays up, ${listed} in the consensus`;
  }

  /** Asks each running tor for its consensus entry and traffic counters. */
  async observe(): Promise<void> {
    await Promise.all(
      this.twins.status().map(async (s) => {
        if (s.state !== 'running' || !s.fingerprint) return;
        const l = instanceLayout(this.cfg, s.index);
        try {
          const ctl = await connectControl(l.controlSocket, l.controlCookie, 2_000);
          try {
            const fp = s.fingerprint.replace(/\s/g, '');
            const ns = await ctl.command(`GETINFO ns/id/${fp}`).then((r) => r.lines.join('\n'), () => '');
            const read = Number(await ctl.getInfo('traffic/read'));
            const written = Number(await ctl.getInfo('traffic/written'));
            this.observed.set(s.name, { consensus: parseNsEntry(ns), read, written });
          } finally {
            ctl.close();
          }
        } catch (e) {
          this.logger.debug({ instance: s.name, err: (e as Error).message }, 'cannot observe relay');
        }
      }),
    );
  }

  /** A new relay: its own identity made by tor, the family key; every relay's family lines include it. */
  addInstance(): Promise<InstanceStatus> {
    return this.serialize(async () => {
      const used = new Set(this.twins.status().map((s) => s.index));
      let i = 1;
      while (used.has(i)) i++;
      const next = { ...this.cfg, instances: used.size + 1 };
      const l = instanceLayout(next, i);
      const issues = relayRuleIssues(next);
      if (issues.length) throw new Error(`cannot add a relay: ${issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ')}`);
      await initRelays(next, [l]);
      this.cfg = next;
      this.twins.updateConfig(next);
      await this.refreshFamily([...this.layouts(), l]);
      const told = await this.twins.reloadTorrcs();
      const st = await this.twins.addInstance(i);
      this.logger.info({ instance: st.name, reloaded: told }, 'relay added; the others declare it (torrc re-read, no restart)');
      return st;
    });
  }

  /** Stops a relay (default: the highest-numbered) and takes it out of every other relay's family lines. */
  removeInstance(name?: string, _drainMs?: number): Promise<string> {
    return this.serialize(async () => {
      const all = this.twins.status().sort((a, b) => b.index - a.index);
      if (all.length <= 1) throw new Error('refusing to remove the last instance');
      const target = name ?? all[0]!.name;
      if (!all.some((s) => s.name === target)) throw new Error(`no instance named ${target}`);
      await this.twins.removeInstance(target);
      this.observed.delete(target);
      this.cfg = { ...this.cfg, instances: this.twins.status().length };
      this.twins.updateConfig(this.cfg);
      await this.refreshFamily(this.layouts());
      const told = await this.twins.reloadTorrcs();
      this.logger.info({ instance: target, reloaded: told }, 'relay removed; the others no longer declare it');
      return target;
    });
  }

  /** Restarts the relays one at a time, each back (bootstrapped) before the next goes down. */
  rollingRestart(bootstrapMs = 120_000): Promise<string[]> {
    return this.serialize(async () => {
      const done: string[] = [];
      for (const l of this.layouts()) {
        const up = new Promise<void>((resolve, reject) => {
          const t = setTimeout(() => reject(new Error(`${l.name} did not bootstrap within ${bootstrapMs} ms after its restart`)), bootstrapMs);
          const on = (s: InstanceStatus): void => {
            if (s.name !== l.name) return;
            clearTimeout(t);
            this.twins.off('bootstrapped', on);
            resolve();
          };
          this.twins.on('bootstrapped', on);
        });
        await this.twins.restartInstance(l.name);
        await up;
        done.push(l.name);
      }
      return done;
    });
  }

  /** A new config: torrc lines re-read by every relay; the instance count through add/remove. */
  reload(next: ResolvedConfig): Promise<string[]> {
    return this.serialize(async () => {
      const prev = this.cfg;
      for (const k of ['dataDir', 'nickname', 'orPort', 'orPort6', 'torPath', 'runtimeDir', 'mode'] as const) {
        if (JSON.stringify(prev[k]) !== JSON.stringify(next[k])) this.logger.warn({ key: k }, `changing ${k} needs a restart of bridgectl; keeping the running value`);
      }
      const merged: ResolvedConfig = { ...next, dataDir: prev.dataDir, nickname: prev.nickname, orPort: prev.orPort, orPort6: prev.orPort6, torPath: prev.torPath, runtimeDir: prev.runtimeDir, mode: prev.mode, instances: prev.instances };
      this.cfg = merged;
      this.twins.updateConfig(merged);
      const told = await this.twins.reloadTorrcs();
      return [`torrc re-read by ${told.join(', ') || 'no running relay'}`];
    }).then(async (changes) => {
      while (this.twins.status().length < next.instances) changes.push(`added ${(await this.addInstance()).name}`);
      while (this.twins.status().length > next.instances) changes.push(`removed ${await this.removeInstance()}`);
      return changes;
    });
  }

  status(): RelaysStatus {
    const now = Date.now();
    return {
      mode: 'relay',
      nickname: this.cfg.nickname,
      pid: process.pid,
      startedAt: this.startedAt,
      ready: this.readySent,
      cpuShare: this.cpu.share(process.pid, this.startedAt, now),
      familyId: this.family.id,
      family: this.family.members.map((m) => m.fingerprint),
      instances: this.twins.status().sort((a, b) => a.index - b.index).map((s) => {
        const o = this.observed.get(s.name);
        return {
          ...s,
          uptimeMs: s.startedAt && s.pid ? now - s.startedAt : null,
          sessions: 0,
          sessionsTotal: 0,
          bytesIn: o?.read ?? 0,
          bytesOut: o?.written ?? 0,
          balancerUp: false,
          cpuShare: this.cpu.share(s.pid, s.startedAt, now),
          consensus: o?.consensus ?? null,
        };
      }),
      balancer: null,
      transport: null,
      // Each relay has its own identity (per-relay fingerprints are in instances); relays rotate
      // their own onion keys; the rolling restart of relay mode keeps no progress file.
      fingerprint: null,
      restart: null,
      onionKeys: null,
    };
  }

  async stop(): Promise<void> {
    await this.starting?.catch(() => undefined);
    this.notifier.stopping();
    for (const t of this.timers) clearInterval(t);
    this.notifier.close();
    await this.control?.stop();
    await this.metrics?.stop();
    await this.twins.stop();
  }
}

// Every transport of the bridge, each its own supervised process with its own state directory,
// all in front of the one balancer. Reload restarts only the entries that changed.
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { ResolvedConfig, ResolvedTransport } from '../config/index.js';
import { TransportRunner, type TransportStatus } from './transport.js';

export interface TransportSetEvents {
  ready: [TransportStatus];
  fatal: [string];
}

export class TransportSet extends EventEmitter<TransportSetEvents> {
  private runners: TransportRunner[] = [];

  constructor(
    private cfg: ResolvedConfig,
    private readonly logger: Logger,
  ) {
    super();
  }

  private make(t: ResolvedTransport): TransportRunner {
    const r = new TransportRunner(
      t,
      { dataDir: this.cfg.dataDir, extendedServerPort: this.cfg.balancer.listen, authCookieFile: this.cfg.balancer.cookieFile },
      this.logger,
      this.cfg.restart,
    );
    r.on('ready', (s) => this.emit('ready', s));
    r.on('fatal', (msg) => this.emit('fatal', msg));
    r.start();
    return r;
  }

  start(): void {
    this.runners = this.cfg.transports.map((t) => this.make(t));
  }

  status(): TransportStatus[] {
    return this.runners.map((r) => r.status());
  }

  /** Every transport reported SMETHODS DONE and was seen listening. */
  allRunning(): boolean {
    return this.runners.every((r) => r.status().state === 'running');
  }

  /** Restarts transport `name` alone. */
  async restart(name: string): Promise<TransportStatus> {
    const r = this.runners.find((x) => x.entry.name === name);
    if (!r) throw new Error(`no transport named ${name} (configured: ${this.runners.map((x) => x.entry.name).join(', ') || 'none'})`);
    const before = r.status().restarts;
    const up = new Promise<TransportStatus>((resolve, reject) => {
      const onReady = (s: TransportStatus): void => {
        if (s.restarts <= before) return;
        r.off('ready', onReady);
        r.off('fatal', onFatal);
        resolve(s);
      };
      const onFatal = (msg: string): void => {
        r.off('ready', onReady);
        reject(new Error(msg));
      };
      r.on('ready', onReady);
      r.on('fatal', onFatal);
    });
    await r.restart();
    return up;
  }

  /** Applies a new list: changed or new entries (re)start, removed ones stop, the rest keep running. */
  async reload(next: ResolvedConfig): Promise<string[]> {
    this.cfg = next;
    const changes: string[] = [];
    const keep: TransportRunner[] = [];
    for (const r of this.runners) {
      const same = next.transports.find((t) => t.name === r.entry.name);
      if (same && JSON.stringify(same) === JSON.stringify(r.entry)) keep.push(r);
      else {
        await r.stop();
        if (!same) changes.push(`transport ${r.entry.name} stopped`);
      }
    }
    this.runners = next.transports.map((t) => {
      const k = keep.find((r) => r.entry.name === t.name);
      if (k) return k;
      changes.push(`transport ${t.name} restarted`);
      return this.make(t);
    });
    return changes;
  }

  async stop(): Promise<void> {
    await Promise.all(this.runners.map((r) => r.stop()));
  }
}

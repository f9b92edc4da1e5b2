// What the metrics read from the bridge at each scrape. The metrics module does not know who
// composes it: the bridge hands over a function returning this shape (its status fits it).
import type { TwinStats, ListenerStats } from '../balancer/index.js';

export interface TwinView {
  name: string;
  state: string;
  pid: number | null;
  restarts: number;
  bootstrap: number;
  fingerprint: string | null;
  uptimeMs: number | null;
}

export interface BridgeView {
  ready: boolean;
  startedAt: number;
  instances: TwinView[];
  balancer: {
    listen: { host: string; port: number } | null;
    bindAddressNoPort: boolean;
    splice?: boolean;
    sessions: ListenerStats;
    twins: TwinStats[];
  } | null;
  transport: { name: string; state: string; restarts: number; pid?: number | null } | null;
  /** Every transport (a bridge may run several; `transport` is the first). */
  transports?: Array<{ name: string; state: string; restarts: number; pid?: number | null }>;
  /** The rolling restart under way (current: the twin out now), or the last one. */
  restart: { current: string | null; finishedAt: string | null } | null;
  /** When the current onion keys became current, and how often they rotate. */
  onionKeys: { rotatedAt: string; rotationDays: number } | null;
}

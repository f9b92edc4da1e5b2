// Where everything of one instance lives, derived from the config alone.
import { join } from 'node:path';
import type { ResolvedConfig } from './load.js';

export interface InstanceLayout {
  index: number;
  name: string;
  dataDir: string;
  keysDir: string;
  torrcPath: string;
  controlSocket: string;
  controlCookie: string;
  extOrPortAddress: string;
  extOrPortCookie: string;
  /** tor's MetricsPort for this instance, or null when disabled. */
  metricsPortAddress: string | null;
}

export function instanceNames(c: Pick<ResolvedConfig, 'nickname' | 'instances'>): string[] {
  return Array.from({ length: c.instances }, (_, i) => `${c.nickname}${i + 1}`);
}

export function instanceLayout(
  c: Pick<ResolvedConfig, 'nickname' | 'dataDir' | 'extOrPort'> & { metrics?: { listen?: string; torMetricsPort: number } },
  index: number,
): InstanceLayout {
  const name = `${c.nickname}${index}`;
  const dataDir = join(c.dataDir, 'instances', name);
  return {
    index,
    name,
    dataDir,
    keysDir: join(dataDir, 'keys'),
    torrcPath: join(dataDir, 'torrc'),
    controlSocket: join(dataDir, 'control'),
    controlCookie: join(dataDir, 'control_auth_cookie'),
    extOrPortAddress: `127.0.4.${index}:${c.extOrPort}`,
    extOrPortCookie: join(dataDir, 'extended_orport_auth_cookie'),
    // tor's MetricsPort is opened only when there is an endpoint to serve what it says.
    metricsPortAddress: c.metrics?.listen && c.metrics.torMetricsPort ? `127.0.4.${index}:${c.metrics.torMetricsPort}` : null,
  };
}

/** The bridge's own copy of its identity, outside any instance. */
export function identityDir(c: Pick<ResolvedConfig, 'dataDir'>): string {
  return join(c.dataDir, 'identity');
}

/** ORPort of twin i of a bridge with a public ORPort: the same address, the public port + i. */
export function twinOrPort(publicOrPort: string, index: number): string {
  const i = publicOrPort.lastIndexOf(':');
  const port = Number(publicOrPort.slice(i + 1)) + index;
  if (port > 65535) throw new Error(`publicOrPort ${publicOrPort}: twin ${index} would need port ${port}; choose a lower port`);
  return `${publicOrPort.slice(0, i)}:${port}`;
}

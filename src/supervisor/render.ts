// Rendering an instance's torrc from templates/torrc.tmpl.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { twinBandwidth, twinOrPort, type InstanceLayout, type ResolvedConfig } from '../config/index.js';

/** The package's templates/ folder (same place from src/ under tsx and from dist/src/). */
export function templatesDir(): string {
  const here = fileURLToPath(new URL('.', import.meta.url));
  for (const up of ['../../templates', '../../../templates']) {
    const p = join(here, up);
    try {
      readFileSync(join(p, 'torrc.tmpl'));
      return p;
    } catch {
      /* try the next */
    }
  }
  throw new Error(`cannot find bridgectl's templates folder from ${here}`);
}

/** Replaces {{key}} placeholders; an unknown placeholder is an error, not an empty string. */
export function fillTemplate(text: string, values: Record<string, string | number>): string {
  return text.replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
    const v = values[k];
    if (v === undefined) throw new Error(`template placeholder {{${k}}} has no value`);
    return String(v);
  });
}

function oneLine(key: string, v: string): string {
  if (/[\r\n]/.test(v)) throw new Error(`${key} must be a single line`);
  return v;
}

export function renderInstanceTorrc(
  c: ResolvedConfig,
  l: InstanceLayout,
  template: string = readFileSync(join(templatesDir(), 'torrc.tmpl'), 'utf8'),
): string {
  const bw = twinBandwidth(c.bandwidth, c.instances);
  return fillTemplate(template, {
    name: l.name,
    index: l.index,
    count: c.instances,
    nickname: c.nickname,
    dataDir: l.dataDir,
    // With a public ORPort each twin listens on its own port and advertises the shared one (kernel DNAT).
    orPort: c.publicOrPort ? `${twinOrPort(c.publicOrPort, l.index)} NoAdvertise` : oneLine('orPort', String(c.orPort)),
    publicOrPortLine: c.publicOrPort ? `ORPort ${c.publicOrPort} NoListen` : '# (no public ORPort: see docs/transports.md)',
    distribution: c.distribution ?? 'none',
    extOrPort: l.extOrPortAddress,
    controlSocket: l.controlSocket,
    contactInfoLine: c.contactInfo ? `ContactInfo ${oneLine('contactInfo', c.contactInfo)}` : '# (no ContactInfo set)',
    metricsPortLines: l.metricsPortAddress
      ? `MetricsPort ${l.metricsPortAddress}\nMetricsPortPolicy accept 127.0.0.0/8`
      : '# (no MetricsPort)',
    bandwidthLines: bw
      ? `# the bridge's bandwidth.rate/burst divided among its ${c.instances} twins\nRelayBandwidthRate ${bw.rate}\nRelayBandwidthBurst ${bw.burst}`
      : '# (no bandwidth limit)',
    extra: c.torrc.trim(),
  });
}

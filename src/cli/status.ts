import { loadConfig } from '../config/index.js';
import { controlRequest, type BridgeStatus } from '../supervisor/index.js';
import { parse } from './args.js';

function human(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : n} ${u[i]}`;
}

function dur(ms: number | null): string {
  if (ms === null) return '-';
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

export function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd()).join('\n');
}

export function formatStatus(s: BridgeStatus): string {
  const pct = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : `${Math.round(x * 100)}%`);
  const rows = [['INSTANCE', 'STATE', 'PID', 'BOOT', 'RESTARTS', 'UPTIME', 'SESSIONS', 'TOTAL', 'IN', 'OUT', 'CPU', 'FINGERPRINT']];
  for (const i of s.instances) {
    rows.push([
      i.name,
      i.state + (i.state === 'running' && !i.balancerUp ? ' (not in balancer)' : ''),
      String(i.pid ?? '-'),
      `${i.bootstrap}%`,
      String(i.restarts),
      dur(i.uptimeMs),
      String(i.sessions),
      String(i.sessionsTotal),
      human(i.bytesIn),
      human(i.bytesOut),
      pct(i.cpuShare),
      i.fingerprint ?? '-',
    ]);
  }
  const out = [`bridge ${s.nickname} (supervisor pid ${s.pid}, CPU ${pct(s.cpuShare)}, ${s.ready ? 'ready' : 'not ready'})`, table(rows)];
  if (s.balancer) {
    const l = s.balancer.listen;
    out.push(`balancer ${l ? `${l.host}:${l.port}` : '-'} (${s.balancer.engine ?? 'js'} engine): ${JSON.stringify(s.balancer.sessions)}`);
  }
  for (const t of s.transports ?? (s.transport ? [s.transport] : [])) {
    out.push(`transport ${t.name}: ${t.state}, pid ${t.pid ?? '-'}, CPU ${pct(t.cpuShare)}, restarts ${t.restarts}, ${t.smethod ? `listening on ${t.smethod.address}` : 'no SMETHOD yet'}${t.lastError ? `, last error: ${t.lastError}` : ''}`);
  }
  return out.join('\n');
}

export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' }, json: { type: 'boolean', default: false } });
  const { config } = loadConfig(values.config);
  const s = (await controlRequest(config.runtimeDir, 'status')) as BridgeStatus;
  console.log(values.json ? JSON.stringify(s, null, 2) : formatStatus(s));
  return 0;
}

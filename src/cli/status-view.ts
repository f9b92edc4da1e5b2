// `bridgectl status` in plain words: the balancer line, the transport, the rolling restart, and the
// live view of `status --watch` (one screen, redrawn in place, at most 80 columns).
import type { BridgeStatus } from '../supervisor/index.js';
import { restartLine } from './restart.js';

export function human(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i ? n.toFixed(1) : Math.round(n)} ${u[i]}`;
}

export function dur(ms: number | null): string {
  if (ms === null) return '-';
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  return `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`;
}

export const pct = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : `${Math.round(x * 100)}%`);
const plural = (n: number, one: string, many = `${one}s`): string => `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;

export function table(rows: string[][], right: Set<number> = new Set()): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => (right.has(i) ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd()).join('\n');
}

/** The balancer in words: where it listens, how many twins take sessions, what failed. */
export function balancerLine(s: BridgeStatus): string | null {
  const b = s.balancer;
  if (!b) return null;
  const taking = b.twins.filter((x) => x.up).length;
  const l = b.listen ? `${b.listen.host}:${b.listen.port}` : 'not listening';
  const x = b.sessions;
  const failed = [
    x.noTwin && `${x.noTwin.toLocaleString('en-US')} with no twin`,
    x.authFailures && `${x.authFailures.toLocaleString('en-US')} bad cookie`,
    x.protocolErrors && `${x.protocolErrors.toLocaleString('en-US')} malformed`,
    x.handshakeTimeouts && `${x.handshakeTimeouts.toLocaleString('en-US')} timed out`,
    x.rejectedOverCap && `${x.rejectedOverCap.toLocaleString('en-US')} over the session cap`,
  ].filter(Boolean);
  return (
    `balancer on ${l}: ${taking} of ${plural(b.twins.length, 'twin')} taking sessions; ` +
    `${plural(x.current, 'session')} open, ${x.accepted.toLocaleString('en-US')} accepted, ` +
    (failed.length ? `failed: ${failed.join(', ')}` : 'none failed')
  );
}

/** One line per transport (a bridge may run several), or null without any. */
export function transportLine(s: BridgeStatus): string | null {
  const list = s.transports ?? (s.transport ? [s.transport] : []);
  if (!list.length) return null;
  return list
    .map((t) => {
      const where = t.smethod ? `on ${t.smethod.address}` : 'not listening yet';
      return `transport ${t.name}: ${t.state} ${where}, CPU ${pct(t.cpuShare)}, ${plural(t.restarts, 'restart')}${t.lastError ? `; last error: ${t.lastError}` : ''}`;
    })
    .join('\n');
}

/** A twin's state in words. */
export function twinState(s: BridgeStatus, i: BridgeStatus['instances'][number]): string {
  if (s.restart && !s.restart.finishedAt && s.restart.current === i.name) return 'restarting';
  if (i.state === 'running') return i.balancerUp ? 'serving' : 'not in balancer';
  if (i.state === 'bootstrapping') return `booting ${i.bootstrap}%`;
  if (i.state === 'backoff') return 'crashed, waiting';
  return i.state;
}

/** Lines of 80 columns at most: the view `status --watch` redraws. `rates`: bytes/s per twin. */
export function watchFrame(s: BridgeStatus, rates: Map<string, number>, now = new Date()): string[] {
  const head = `bridge ${s.nickname} ${s.ready ? 'ready' : 'NOT READY'}, up ${dur(now.getTime() - s.startedAt)}, supervisor CPU ${pct(s.cpuShare)}`;
  const clock = now.toISOString().slice(11, 19) + ' UTC';
  const rows = [['TWIN', 'STATE', 'SESSIONS', 'BYTES/S', 'CPU', 'RESTARTS', 'UPTIME']];
  for (const i of s.instances) {
    const r = rates.get(i.name);
    rows.push([i.name, twinState(s, i), i.sessions.toLocaleString('en-US'), r === undefined ? '-' : `${human(r)}/s`, pct(i.cpuShare), String(i.restarts), dur(i.uptimeMs)]);
  }
  const lines = [`${head}${' '.repeat(Math.max(1, 80 - head.length - clock.length))}${clock}`, '', ...table(rows, new Set([2, 3, 4, 5])).split('\n'), ''];
  for (const l of [balancerLine(s), transportLine(s), restartLine(s.restart), s.fingerprint ? `fingerprint ${s.fingerprint}` : null]) {
    if (l) lines.push(...wrap(l, 80));
  }
  lines.push('', 'Ctrl-C to quit');
  return lines;
}

/** Breaks a line at spaces so that no piece is longer than `width`. */
export function wrap(line: string, width: number): string[] {
  const out: string[] = [];
  let cur = '';
  for (const w of line.split(' ')) {
    if (cur && cur.length + 1 + w.length > width) {
      out.push(cur);
      cur = `  ${w}`;
    } else cur = cur ? `${cur} ${w}` : w;
  }
  if (cur) out.push(cur);
  return out.map((l) => l.slice(0, width));
}

import { loadConfig } from '../config/index.js';
import { controlRequest, type BridgeStatus } from '../supervisor/index.js';
import { parse, UsageError } from './args.js';
import { formatRelayStatus } from './relay.js';
import type { RelaysStatus } from '../relay/index.js';
import { restartLine } from './restart.js';
import { balancerLine, dur, human, pct, table, transportLine, twinState, watchFrame } from './status-view.js';

export { table };

export function formatStatus(s: BridgeStatus): string {
  const rows = [['INSTANCE', 'STATE', 'PID', 'BOOT', 'RESTARTS', 'UPTIME', 'SESSIONS', 'TOTAL', 'IN', 'OUT', 'CPU', 'FINGERPRINT']];
  for (const i of s.instances) {
    rows.push([
      i.name,
      twinState(s, i),
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
  for (const l of [balancerLine(s), transportLine(s)]) if (l) out.push(l);
  const rl = restartLine(s.restart);
  if (rl) out.push(rl);
  return out.join('\n');
}

export async function statusCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    json: { type: 'boolean', default: false },
    watch: { type: 'boolean', default: false },
    interval: { type: 'string', default: '2' },
  });
  const { config } = loadConfig(values.config);
  if (values.watch) return watch(config.runtimeDir, Number(values.interval) * 1000);
  const s = (await controlRequest(config.runtimeDir, 'status')) as BridgeStatus | RelaysStatus;
  const o = config.instancesOverride;
  if (values.json) console.log(JSON.stringify({ ...s, instancesOverride: o ?? null }, null, 2));
  else {
    const relay = 'mode' in s && s.mode === 'relay';
    console.log((relay ? formatRelayStatus(s, table) : formatStatus(s as BridgeStatus)) + (o ? `\ninstances: ${config.instances}, changed at run time (${o.file}); the config file says ${o.configInstances}` : ''));
  }
  return 0;
}

/**
 * `status --watch`: the live view, redrawn in place every `everyMs` (cursor home, each line cleared
 * to its end, the rest of the screen cleared), until Ctrl-C. Bytes/s from the change between frames.
 */
async function watch(runtimeDir: string, everyMs: number): Promise<number> {
  if (!Number.isFinite(everyMs) || everyMs < 200) throw new UsageError('--interval must be at least 0.2 (seconds)');
  const tty = process.stdout.isTTY;
  let prev: { at: number; bytes: Map<string, number> } | null = null;
  let stop = false;
  const quit = (): void => {
    stop = true;
  };
  process.once('SIGINT', quit);
  process.once('SIGTERM', quit);
  if (tty) process.stdout.write('\x1b[?25l');
  try {
    while (!stop) {
      let lines: string[];
      try {
        const s = (await controlRequest(runtimeDir, 'status', {}, 5_000)) as BridgeStatus;
        const now = Date.now();
        const bytes = new Map(s.instances.map((i) => [i.name, i.bytesIn + i.bytesOut]));
        const rates = new Map<string, number>();
        if (prev) {
          for (const [n, b] of bytes) {
            const p = prev.bytes.get(n);
            if (p !== undefined && b >= p) rates.set(n, ((b - p) * 1000) / Math.max(1, now - prev.at));
          }
        }
        prev = { at: now, bytes };
        lines = watchFrame(s, rates, new Date(now));
      } catch (e) {
        lines = [`bridgectl status --watch: ${(e as Error).message}`, '', 'retrying; Ctrl-C to quit'];
      }
      process.stdout.write(tty ? `\x1b[H${lines.map((l) => `${l}\x1b[K`).join('\n')}\n\x1b[J` : `${lines.join('\n')}\n\n`);
      await new Promise<void>((r) => {
        const wake = (): void => {
          clearTimeout(t);
          process.off('SIGINT', wake);
          r();
        };
        const t = setTimeout(wake, everyMs);
        process.on('SIGINT', wake);
      });
    }
  } finally {
    if (tty) process.stdout.write('\x1b[?25h\n');
  }

  return 0;
}

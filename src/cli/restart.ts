// `bridgectl restart [--drain-seconds N]`: the running supervisor restarts its twins one at a time
// (each drained first, the next once the previous serves again). Prints each step as it happens.
// `bridgectl restart transport NAME`: that transport alone, twins and other transports untouched.
import { loadConfig } from '../config/index.js';
import { controlRequest, type BridgeStatus, type RestartResult, type TransportStatus } from '../supervisor/index.js';
import { parse, UsageError } from './args.js';

/** One line about a run's progress, for this command and for `bridgectl status`. */
export function restartLine(r: BridgeStatus['restart']): string | null {
  if (!r) return null;
  const n = `${r.done.length}/${r.order.length}`;
  if (r.finishedAt) return `last rolling restart: done at ${r.finishedAt} (${r.order.length} twins)`;
  if (r.current) return `rolling restart: restarting ${r.current} (${n} done)`;
  if (r.error) return `rolling restart: stopped after ${n} twins: ${r.error} (run "bridgectl restart" to resume)`;
  return `rolling restart: ${n} twins done`;
}

export async function restartCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      config: { type: 'string' },
      'drain-seconds': { type: 'string', default: '30' },
      'bootstrap-seconds': { type: 'string', default: '120' },
    },
    true,
  );
  if (positionals.length) {
    if (positionals[0] !== 'transport' || positionals.length !== 2) throw new UsageError('usage: bridgectl restart [--drain-seconds N] | bridgectl restart transport NAME [--config FILE]');
    const { config } = loadConfig(values.config);
    const s = (await controlRequest(config.runtimeDir, 'restart-transport', { name: positionals[1] }, 120_000)) as TransportStatus;
    console.log(`transport ${s.name} restarted: pid ${s.pid}, ${s.smethod ? `listening on ${s.smethod.address}` : 'no SMETHOD'}; twins and other transports untouched`);
    return 0;
  }
  const { config } = loadConfig(values.config);
  const drainMs = Number(values['drain-seconds']) * 1000;
  const bootstrapMs = Number(values['bootstrap-seconds']) * 1000;
  if (!Number.isFinite(drainMs) || drainMs < 0) throw new UsageError('--drain-seconds must be a number ≥ 0');
  if (!Number.isFinite(bootstrapMs) || bootstrapMs <= 0) throw new UsageError('--bootstrap-seconds must be a number > 0');
  const first = (await controlRequest(config.runtimeDir, 'status')) as BridgeStatus;
  const twins = Math.max(first.instances.length, 1);
  // Progress while the supervisor works: its status names the twin being restarted.
  let shown = '';
  const poll = setInterval(() => {
    controlRequest(config.runtimeDir, 'status', {}, 5_000).then(
      (s) => {
        const r = (s as BridgeStatus).restart;
        const line = r && !r.finishedAt ? restartLine(r) : null;
        if (line && line !== shown) console.log((shown = line));
      },
      () => undefined,
    );
  }, 1_000);
  try {
    const r = (await controlRequest(config.runtimeDir, 'restart', { drainMs, bootstrapMs }, twins * (drainMs + bootstrapMs + 30_000))) as RestartResult;
    if (r.alreadyDone.length) console.log(`resumed a run begun ${r.startedAt}: ${r.alreadyDone.join(', ')} already restarted`);
    console.log(r.restarted.length ? `restarted ${r.restarted.join(', ')}, one at a time` : 'nothing left to restart');
    return 0;
  } finally {
    clearInterval(poll);
  }
}

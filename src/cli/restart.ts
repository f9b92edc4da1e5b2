import { loadConfig } from '../config/index.js';
import { controlRequest, type TransportStatus } from '../supervisor/index.js';
import { parse, UsageError } from './args.js';

/** `bridgectl restart transport NAME`: the running supervisor restarts that transport alone. */
export async function restartCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { config: { type: 'string' } }, true);
  if (positionals[0] !== 'transport' || positionals.length !== 2) throw new UsageError('usage: bridgectl restart transport NAME [--config FILE]');
  const { config } = loadConfig(values.config);
  const s = (await controlRequest(config.runtimeDir, 'restart-transport', { name: positionals[1] }, 120_000)) as TransportStatus;
  console.log(`transport ${s.name} restarted: pid ${s.pid}, ${s.smethod ? `listening on ${s.smethod.address}` : 'no SMETHOD'}; twins and other transports untouched`);
  return 0;
}

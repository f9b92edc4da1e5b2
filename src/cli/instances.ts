import { loadConfig } from '../config/index.js';
import { controlRequest } from '../supervisor/index.js';
import { parse } from './args.js';

/** `bridgectl add-instance`: a running supervisor adds a twin and updates the config file. */
export async function addInstanceCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  const { config } = loadConfig(values.config);
  const r = (await controlRequest(config.runtimeDir, 'add-instance', {}, 120_000)) as { added: string };
  console.log(`added ${r.added}; it joins the balancer once bootstrapped`);
  return 0;
}

/** `bridgectl remove-instance [NAME] [--drain-seconds N]`: drain, then stop one twin. */
export async function removeInstanceCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { config: { type: 'string' }, 'drain-seconds': { type: 'string', default: '30' } }, true);
  const { config } = loadConfig(values.config);
  const drainMs = Number(values['drain-seconds']) * 1000;
  if (!Number.isFinite(drainMs) || drainMs < 0) throw new Error('--drain-seconds must be a number ≥ 0');
  const r = (await controlRequest(config.runtimeDir, 'remove-instance', { name: positionals[0], drainMs }, drainMs + 60_000)) as {
    removed: string;
  };
  console.log(`removed ${r.removed} (its data directory and keys stay on disk)`);
  return 0;
}

/** `bridgectl reload`: the running supervisor re-reads its config file (like SIGHUP). */
export async function reloadCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  const { config } = loadConfig(values.config);
  const r = (await controlRequest(config.runtimeDir, 'reload', {}, 120_000)) as { changes: string[] };
  console.log(r.changes.length ? `reloaded: ${r.changes.join('; ')}` : 'reloaded: nothing changed');
  return 0;
}

import { loadConfig } from '../config/index.js';
import { verifyIdentity } from '../keysync/index.js';
import { Supervisor } from '../supervisor/index.js';
import { parse, makeLogger } from './args.js';
import { identityDir, instanceTargets } from './init.js';

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  const { config, file } = loadConfig(values.config);
  const logger = makeLogger(config.logLevel);
  const keys = await verifyIdentity(identityDir(config), instanceTargets(config));
  if (!keys.ok) {
    throw new Error(`the instances do not share one pinned identity; run "bridgectl init" first:\n  ${keys.problems.join('\n  ')}`);
  }
  const sup = new Supervisor(config, logger);
  let stopping: Promise<void> | null = null;
  const done = new Promise<number>((resolve) => {
    const stop = (sig: string): void => {
      if (stopping) return;
      logger.info({ signal: sig }, 'stopping');
      stopping = sup.stop().then(() => resolve(0));
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  });
  logger.info({ config: file, instances: config.instances, fingerprint: keys.fingerprint }, 'starting bridge');
  await sup.start();
  const code = await done;
  logger.info('all instances stopped');
  return code;
}

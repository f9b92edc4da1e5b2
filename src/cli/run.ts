import { loadConfig } from '../config/index.js';
import { verifyIdentity } from '../keysync/index.js';
import { Bridge } from '../supervisor/index.js';
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
  const bridge = new Bridge(config, logger);
  let stopping = false;
  const done = new Promise<number>((resolve) => {
    const stop = (why: string, code: number): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ why }, 'stopping');
      bridge.stop().then(
        () => resolve(code),
        (e: Error) => {
          logger.error({ err: e.message }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM', 0));
    process.on('SIGINT', () => stop('SIGINT', 0));
    bridge.on('fatal', (msg) => {
      console.error(`bridgectl: ${msg}`);
      stop(msg, 1);
    });
  });
  logger.info({ config: file, instances: config.instances, fingerprint: keys.fingerprint }, 'starting bridge');
  try {
    await bridge.start();
  } catch (e) {
    await bridge.stop().catch(() => undefined);
    throw e;
  }
  const code = await done;
  logger.info({ code }, 'bridge stopped');
  return code;
}

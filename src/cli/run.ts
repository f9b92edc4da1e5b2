import { watch } from 'chokidar';
import { readFile } from 'node:fs/promises';
import { loadConfig, setInstancesInFile, saveInstanceCount, clearInstanceCount, parseConfigText, ConfigError, type ResolvedConfig } from '../config/index.js';
import { verifyIdentity } from '../keysync/index.js';
import { Bridge, preflight } from '../supervisor/index.js';
import { Relays } from '../relay/index.js';
import { parse, makeLogger } from './args.js';
import { printError } from '../log/index.js';
import { identityDir, instanceTargets } from './init.js';

export async function runCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  const { config, file } = loadConfig(values.config);
  const logger = makeLogger(config.logLevel);
  await preflight(config);
  // Relay mode: each relay its own identity (Relays checks them and the family key at start).
  const relay = config.mode === 'relay';
  const keys = relay ? { ok: true, fingerprint: 'one per relay', problems: [] } : await verifyIdentity(identityDir(config), instanceTargets(config));
  if (!keys.ok) {
    throw new Error(`the instances do not share one pinned identity; run "bridgectl init" first:\n  ${keys.problems.join('\n  ')}`);
  }

  // Our own writes to the config file (add/remove-instance) must not count as an operator's edit.
  let ownText: string | null = null;
  // The count goes into the config file when the service may write it, else into
  // <dataDir>/instance-count.json, which overrides the file's `instances` (see src/config/instance-count.ts).
  const writeInstances = async (n: number): Promise<void> => {
    try {
      ownText = await setInstancesInFile(file, n);
      await clearInstanceCount(config.dataDir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EACCES' && code !== 'EROFS' && code !== 'EPERM') throw e;
      const fileInstances = parseConfigText(await readFile(file, 'utf8'), file).instances;
      const saved = await saveInstanceCount(config.dataDir, n, fileInstances);
      logger.info({ instances: n, configInstances: fileInstances, file: saved }, `the config file is read-only to bridgectl; the instance count is kept in ${saved}`);
    }
  };

  /** Re-reads the config file and applies it; a broken one is rejected and the running one kept. */
  const reloadFromFile = async (why: string): Promise<string[]> => {
    let next: ResolvedConfig;
    try {
      next = loadConfig(file).config;
    } catch (e) {
      const msg = e instanceof ConfigError ? e.message : (e as Error).message;
      logger.error({ why, problems: e instanceof ConfigError ? e.problems : undefined }, `new config rejected, keeping the running one:\n${msg}`);
      throw new Error(`new config rejected, keeping the running one:\n${msg}`);
    }
    // A count saved at run time no longer applies once the operator changed `instances`.
    if (!next.instancesOverride) await clearInstanceCount(config.dataDir).catch(() => undefined);
    try {
      return await bridge.reload(next);
    } catch (e) {
      logger.error({ why, err: (e as Error).message }, 'reload failed');
      throw e;
    }
  };
  const reloadQuietly = (why: string): void => void reloadFromFile(why).catch(() => undefined);

  const handlers = {
    'add-instance': async () => {
      const st = await bridge.addInstance();
      await writeInstances(bridge.twins.status().length);
      return { added: st.name };
    },
    'remove-instance': async (args: Record<string, unknown>) => {
      const name = typeof args.name === 'string' ? args.name : undefined;
      const drainMs = typeof args.drainMs === 'number' ? args.drainMs : 30_000;
      const removed = await bridge.removeInstance(name, drainMs);
      await writeInstances(bridge.twins.status().length);
      return { removed };
    },
    reload: async () => ({ changes: await reloadFromFile('control'), instances: bridge.twins.status().length }),
    restart: async (args: Record<string, unknown>) =>
      (bridge as Bridge).restartTwins({
        drainMs: typeof args.drainMs === 'number' ? args.drainMs : undefined,
        bootstrapMs: typeof args.bootstrapMs === 'number' ? args.bootstrapMs : undefined,
      }),
    'rotate-onion': async (args: Record<string, unknown>) => {
      if (!(bridge instanceof Bridge)) throw new Error('relays rotate their own onion keys; there is nothing to coordinate in relay mode');
      return args.endGrace === true
        ? bridge.endOnionGrace()
        : bridge.rotateOnionKeys({ drainMs: typeof args.drainMs === 'number' ? args.drainMs : undefined });
    },
    // Relay mode's rolling restart, answering as the ops branch's `bridgectl restart` expects.
    ...(relay
      ? {
          restart: async (args: Record<string, unknown>) => {
            const startedAt = new Date().toISOString();
            const bootstrapMs = typeof args.bootstrapMs === 'number' ? args.bootstrapMs : undefined;
            return { restarted: await (bridge as Relays).rollingRestart(bootstrapMs), alreadyDone: [], startedAt };
          },
        }
      : {}),
  };
  const bridge: Bridge | Relays = relay ? new Relays(config, logger, handlers) : new Bridge(config, logger, handlers);

  let stopping = false;
  const done = new Promise<number>((resolve) => {
    const stop = (why: string, code: number, drain = false): void => {
      if (stopping) return;
      stopping = true;
      logger.info({ why }, 'stopping');
      bridge.stop({ drain }).then(
        () => resolve(code),
        (e: Error) => {
          logger.error({ err: e.message }, 'error while stopping');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM', 0, true));
    process.on('SIGINT', () => stop('SIGINT', 0, true));
    bridge.on('fatal', (msg) => {
      printError(`bridgectl: ${msg}`);
      stop(msg, 1);
    });
  });
  process.on('SIGHUP', () => reloadQuietly('SIGHUP'));

  if (config.instancesOverride) {
    logger.info({ file: config.instancesOverride.file, configInstances: config.instancesOverride.configInstances }, `running ${config.instances} instances, the count saved at run time (the config says ${config.instancesOverride.configInstances})`);
  }
  logger.info({ config: file, mode: config.mode, instances: config.instances, fingerprint: keys.fingerprint }, relay ? 'starting relays' : 'starting bridge');
  try {
    await bridge.start();
  } catch (e) {
    await bridge.stop().catch(() => undefined);
    throw e;
  }

  // Reload when the config file changes (editors replace files, so watch with atomic handling).
  let debounce: NodeJS.Timeout | null = null;
  const watcher = watch(file, { ignoreInitial: true, awaitWriteFinish: { stabilityThreshold: 200, pollInterval: 50 }, atomic: true });
  watcher.on('all', () => {
    if (debounce) clearTimeout(debounce);
    debounce = setTimeout(() => {
      void readFile(file, 'utf8').then(
        (text) => {
          if (text === ownText) return;
          reloadQuietly('config file changed');
        },
        () => logger.warn({ config: file }, 'config file is gone; keeping the running config'),
      );
    }, 300);
  });

  const code = await done;
  if (debounce) clearTimeout(debounce);
  await watcher.close();
  logger.info({ code }, 'bridge stopped');
  return code;
}

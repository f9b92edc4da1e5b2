import { loadConfig } from '../config/index.js';
import { verifyIdentity } from '../keysync/index.js';
import { parse, UsageError } from './args.js';
import { identityDir, instanceTargets } from './init.js';

export async function keysCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub !== 'verify') throw new UsageError('usage: bridgectl keys verify [--config FILE]');
  const { values } = parse(rest, { config: { type: 'string' }, json: { type: 'boolean' } });
  const { config } = loadConfig(values.config);
  const r = await verifyIdentity(identityDir(config), instanceTargets(config));
  if (values.json) {
    console.log(JSON.stringify(r, null, 2));
  } else if (r.ok) {
    console.log(`ok: ${config.instances} instances share fingerprint ${r.fingerprint} (ed25519 ${r.ed25519}); onion keys pinned`);
  } else {
    console.error(`keys verify failed:\n${r.problems.map((p) => `  ${p}`).join('\n')}`);
  }
  return r.ok ? 0 : 1;
}

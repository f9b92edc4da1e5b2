import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { loadConfig } from '../config/index.js';
import { rsaFingerprint } from '../keysync/index.js';
import { readSmethod, bridgeLine } from '../supervisor/index.js';
import { parse } from './args.js';
import { identityDir } from './init.js';

export async function bridgelineCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' } });
  const { config } = loadConfig(values.config);
  const t = config.transport;
  if (!t) throw new Error('no transport is configured (the config has no "transport:" section)');
  const fp = rsaFingerprint(await readFile(join(identityDir(config), 'keys', 'secret_id_key')));
  const sm = await readSmethod(config);
  if (!sm || sm.transport !== t.name) {
    throw new Error(`transport ${t.name} has not reported its SMETHOD yet; start the bridge (bridgectl run) once first`);
  }
  const address = t.publicAddress ?? sm.address;
  if (/^(0\.0\.0\.0|\[::\]):/.test(address)) {
    throw new Error(`the transport listens on ${address}; set transport.publicAddress to the address clients use`);
  }
  console.log(bridgeLine(t.name, address, fp, sm.args));
  return 0;
}

import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { loadConfig, type ResolvedConfig } from '../config/index.js';
import { rsaFingerprint } from '../keysync/index.js';
import { readSmethod } from '../supervisor/index.js';
import { transportKind, type BridgeLineInput } from '../transports/index.js';
import { parse } from './args.js';
import { identityDir } from './init.js';

export interface TransportLines {
  transport: string;
  kind: string;
  bridgeLine: string;
  /** snowflake: the line for the broker's bridge list. */
  brokerEntry?: string;
}

/** Each transport's bridge line (and broker entry), from its last SMETHOD and the config's client parameters. */
export async function transportLines(config: ResolvedConfig): Promise<TransportLines[]> {
  if (!config.transports.length) throw new Error('no transport is configured (the config has no "transport:" or "transports:" section)');
  const fingerprint = rsaFingerprint(await readFile(join(identityDir(config), 'keys', 'secret_id_key')));
  const out: TransportLines[] = [];
  for (const entry of config.transports) {
    const smethod = await readSmethod(config, entry.name);
    if (!smethod) throw new Error(`transport ${entry.name} has not reported its SMETHOD yet; start the bridge (bridgectl run) once first`);
    const kind = transportKind(entry.name);
    const i: BridgeLineInput = { entry, smethod, fingerprint, nickname: config.nickname };
    out.push({ transport: entry.name, kind: kind.kind, bridgeLine: kind.bridgeLine(i), ...(kind.brokerEntry ? { brokerEntry: kind.brokerEntry(i) } : {}) });
  }
  return out;
}

export async function bridgelineCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' }, json: { type: 'boolean', default: false }, broker: { type: 'boolean', default: false } });
  const { config } = loadConfig(values.config);
  const lines = await transportLines(config);
  if (values.json) {
    console.log(JSON.stringify(lines, null, 2));
  } else if (values.broker) {
    const b = lines.filter((l) => l.brokerEntry);
    if (!b.length) throw new Error('no transport of this bridge goes through a Snowflake broker');
    for (const l of b) console.log(l.brokerEntry);
  } else {
    for (const l of lines) console.log(l.bridgeLine);
    if (lines.some((l) => l.brokerEntry)) console.error('(the Snowflake broker needs this bridge in its bridge list: bridgectl bridgeline --broker)');
  }
  return 0;
}

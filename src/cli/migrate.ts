// `bridgectl migrate`: show (default) or do (--apply) the move of an existing bridge onto bridgectl.
import { readSource, buildPlan, applyPlan, checkTarget, MigrateError, type Plan } from '../migrate/index.js';
import { parse, UsageError } from './args.js';
import { initBridge } from './init.js';

export const MIGRATE_USAGE = `usage: bridgectl migrate [--apply] [--config FILE] [--data-dir DIR] [--root DIR] [--from recipe|tor]
                         [--instances-dir DIR] [--instances-data-dir DIR] [--transport-unit FILE] [--haproxy FILE]
                         [--torrc FILE] [--tor-data-dir DIR] [--nickname NAME]
  Reads an existing bridge and prints what it takes and the config it would write; --apply writes it.
  --from recipe   tor@ instances (/etc/tor/instances/NAME/torrc, /var/lib/tor-instances/NAME), the
                  transport's systemd unit (TOR_PT_* environment), HAProxy, the static cookie
  --from tor      one tor with ServerTransportPlugin (/etc/tor/torrc, /var/lib/tor, pt_state/)
                  (default: recipe when /etc/tor/instances has instances, else tor)
  --root DIR      read that layout under DIR instead of / (paths given with the other flags are taken as they are)
  --config FILE   the config to write (default /etc/bridgectl/bridgectl.yaml)
  --data-dir DIR  where keys and state go (default /var/lib/bridgectl)
  The source is never changed; a second run is a no-op; a failed --apply removes what it wrote.`;

function show(plan: Plan, configFile: string): void {
  console.log(`Source: ${plan.kind === 'recipe' ? `FOCI recipe, ${plan.instances.length} tor@ instances` : 'a single tor'}; bridge ${plan.fingerprint}`);
  console.log('It takes:');
  for (const t of plan.takes) console.log(`  - ${t}`);
  if (plan.notes.length) console.log('Changes on purpose:');
  for (const n of plan.notes) console.log(`  - ${n}`);
  console.log(plan.untranslated.length ? 'Not translated (check these by hand):' : 'Not translated: nothing');
  for (const u of plan.untranslated) console.log(`  - ${u}`);
  console.log(`\nConfig (${configFile}):\n${plan.configText.replace(/^/gm, '  ')}`);
}

function nextSteps(plan: Plan, configFile: string): void {
  const units = plan.units.join(' ');
  console.log(`Next steps (the bridge is down between the first two, about as long as the twins take to bootstrap):
  1. systemctl disable --now ${units}
  2. systemctl enable --now bridgectl    (or: bridgectl run --config ${configFile}); then bridgectl keys verify --config ${configFile}
  Roll back: systemctl disable --now bridgectl && systemctl enable --now ${units}
  (the old setup was not changed; after bridgectl rotates the onion keys, roll back only with bridgectl keys export/import)`);
}

export async function migrateCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    {
      apply: { type: 'boolean' },
      config: { type: 'string' },
      'data-dir': { type: 'string' },
      root: { type: 'string' },
      from: { type: 'string' },
      'instances-dir': { type: 'string' },
      'instances-data-dir': { type: 'string' },
      'transport-unit': { type: 'string' },
      haproxy: { type: 'string' },
      torrc: { type: 'string' },
      'tor-data-dir': { type: 'string' },
      nickname: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    true,
  );
  if (values.help) {
    console.log(MIGRATE_USAGE);
    return 0;
  }
  if (positionals.length) throw new UsageError(`unexpected ${positionals.join(' ')}\n${MIGRATE_USAGE}`);
  if (values.from && values.from !== 'recipe' && values.from !== 'tor') throw new UsageError(`--from: recipe or tor, not ${values.from}`);
  const configFile = values.config ?? '/etc/bridgectl/bridgectl.yaml';
  try {
    const source = await readSource({
      root: values.root,
      from: values.from as 'recipe' | 'tor' | undefined,
      instancesDir: values['instances-dir'],
      instancesDataDir: values['instances-data-dir'],
      transportUnit: values['transport-unit'],
      haproxy: values.haproxy,
      torrc: values.torrc,
      torDataDir: values['tor-data-dir'],
    });
    const plan = buildPlan(source, { configFile, dataDir: values['data-dir'] ?? '/var/lib/bridgectl', nickname: values.nickname });
    if (!values.apply) {
      const t = await checkTarget(plan, configFile);
      show(plan, configFile);
      if (t.configSame) console.log('Already migrated: --apply has nothing to do.');
      else console.log('Dry run: nothing was written. Run again with --apply to do it.');
      return 0;
    }
    const r = await applyPlan(plan, configFile, initBridge);
    if (!r.written.length) {
      console.log(`Already migrated: ${configFile} and the keys of ${plan.fingerprint} are in place; nothing was written.`);
    } else {
      show(plan, configFile);
      console.log(`Migrated: wrote ${configFile} and ${plan.instances.length} twins' keys under ${plan.config.dataDir as string}; keys verify passes.`);
    }
    nextSteps(plan, configFile);
    return 0;
  } catch (e) {
    if (e instanceof MigrateError) {
      console.error(`bridgectl migrate: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

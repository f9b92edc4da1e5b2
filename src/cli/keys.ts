import { loadConfig } from '../config/index.js';
import { verifyIdentity, exportKeys, writeKeyArchive, readKeyArchive, importKeys, KeyArchiveError } from '../keysync/index.js';
import { controlRequest, type RotationResult } from '../supervisor/index.js';
import { parse, UsageError } from './args.js';
import { identityDir, instanceTargets, initBridge, giveToServiceUser } from './init.js';
import { signCommand, relayExport, relayImport } from './relay.js';

export const KEYS_USAGE = `usage:
  bridgectl keys verify [--config FILE] [--json]
      check that every instance shares one identity and is pinned
  bridgectl keys export FILE [--config FILE] [--include-cookie] [--force]
      write the bridge's identity and onion keys (with their modes and a manifest) to FILE (mode 0600);
      --include-cookie adds the static Extended ORPort cookie; --force replaces an existing FILE
  bridgectl keys import FILE [--config FILE] [--force]
      install the keys of FILE into dataDir (the bridge's copy and every instance), then what init does;
      refuses to replace other keys unless --force, which moves them aside (never deletes them)
  bridgectl keys rotate-onion [--config FILE] [--drain-seconds N] [--end-grace]
      the running bridge makes one new onion key pair for every twin, keeps the previous pair as .old
      files for keys.graceDays, and restarts the twins one at a time, each drained first (N s, default 30);
      --end-grace ends the grace period now (previous keys removed, pins back)
  bridgectl keys sign [--config FILE] [--no-restart]
      relay mode with relay.masterKeyDir: renew every relay's ed25519 signing key and certificate from
      its master key (tor --keygen), then a rolling restart of the running relays so each loads it`;

export async function keysCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  switch (sub) {
    case 'verify':
      return verify(rest);
    case 'export':
      return exportCommand(rest);
    case 'import':
      return importCommand(rest);
    case 'rotate-onion':
      return rotateOnionCommand(rest);
    case 'sign':
      return signCommand(rest);
    default:
      throw new UsageError(KEYS_USAGE);
  }
}

async function verify(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' }, json: { type: 'boolean' } });
  const { config } = loadConfig(values.config);
  const r = await verifyIdentity(identityDir(config), instanceTargets(config));
  if (values.json) {
    console.log(JSON.stringify(r, null, 2));
  } else if (r.ok) {
    const onion = r.rotation === 'pinned' ? 'onion keys pinned' : `onion-key rotation ${r.rotation}: previous keys kept as .old files`;
    console.log(`ok: ${config.instances} instances share fingerprint ${r.fingerprint} (ed25519 ${r.ed25519}); ${onion}`);
  } else {
    console.error(`keys verify failed:\n${r.problems.map((p) => `  ${p}`).join('\n')}`);
  }
  return r.ok ? 0 : 1;
}

function oneFile(positionals: string[], what: string): string {
  const [file, ...extra] = positionals;
  if (!file || extra.length) throw new UsageError(`bridgectl keys ${what} needs exactly one FILE\n${KEYS_USAGE}`);
  return file;
}

async function exportCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(
    argv,
    { config: { type: 'string' }, 'include-cookie': { type: 'boolean' }, force: { type: 'boolean' } },
    true,
  );
  const file = oneFile(positionals, 'export');
  const { config } = loadConfig(values.config);
  if (config.mode === 'relay') return relayExport(config, file, values.force ?? false);
  try {
    const archive = await exportKeys({
      identityDir: identityDir(config),
      nickname: config.nickname,
      cookieFile: values['include-cookie'] ? config.balancer.cookieFile : undefined,
    });
    await writeKeyArchive(file, archive, values.force);
    console.log(`wrote ${file} (mode 0600): bridge ${config.nickname}, fingerprint ${archive.fingerprint}, ed25519 ${archive.ed25519}`);
    console.log(`  ${archive.files.map((f) => `${f.name} ${f.mode}`).join(', ')}${archive.extOrPortCookie ? ', static Extended ORPort cookie' : ''}`);
    console.log('  it holds the bridge\'s secret keys: keep it private');
  } catch (e) {
    if (e instanceof KeyArchiveError) {
      console.error(`keys export: ${e.message}`);
      return 1;
    }
    throw e;
  }
  // The archive is the bridge's own copy; say so when the twins drifted from it.
  const v = await verifyIdentity(identityDir(config), instanceTargets(config));
  if (v.problems.length) console.error(`warning: keys verify reports:\n${v.problems.map((p) => `  ${p}`).join('\n')}`);
  return 0;
}

async function importCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { config: { type: 'string' }, force: { type: 'boolean' } }, true);
  const file = oneFile(positionals, 'import');
  const { config } = loadConfig(values.config);
  if (config.mode === 'relay') {
    const code = await relayImport(config, file);
    const given: string[] = [];
    if (code === 0) await giveToServiceUser(config, given);
    for (const a of given) console.log(`  ${a}`);
    return code;
  }
  try {
    const archive = await readKeyArchive(file);
    const r = await importKeys({
      archive,
      identityDir: identityDir(config),
      instances: instanceTargets(config),
      cookieFile: config.balancer.cookieFile,
      force: values.force,
    });
    // Then what init does (a no-op for the keys now): pins, the static cookie.
    const init = await initBridge(config);
    await giveToServiceUser(config, init.actions);
    if (init.fingerprint !== r.fingerprint) throw new Error(`after import the bridge has fingerprint ${init.fingerprint}, not ${r.fingerprint}`);
    const verb = { installed: 'installed', unchanged: 'already had', replaced: 'installed (replacing other keys)' }[r.outcome];
    console.log(`bridge ${config.nickname} ${verb} identity ${r.fingerprint} (ed25519 ${r.ed25519}) from ${file}`);
    if (archive.nickname && archive.nickname !== config.nickname) {
      console.log(`  note: the archive was made by bridge ${archive.nickname}; the nickname here is ${config.nickname}`);
    }
    for (const a of [...r.actions, ...init.actions]) console.log(`  ${a}`);
    for (const k of r.kept) console.log(`  kept ${k} (same identity; differs from the archive's; --force replaces it)`);
    if (r.outcome === 'unchanged' && !init.actions.length) console.log('  nothing to do');
    return 0;
  } catch (e) {
    if (e instanceof KeyArchiveError) {
      console.error(`keys import: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

async function rotateOnionCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    'drain-seconds': { type: 'string', default: '30' },
    'end-grace': { type: 'boolean' },
  });
  const { config } = loadConfig(values.config);
  const drainMs = Number(values['drain-seconds']) * 1000;
  if (!Number.isFinite(drainMs) || drainMs < 0) throw new UsageError('--drain-seconds must be a number ≥ 0');
  const timeoutMs = config.instances * (drainMs + 180_000) + 60_000;
  const r = (await controlRequest(config.runtimeDir, 'rotate-onion', { drainMs, endGrace: values['end-grace'] ?? false }, timeoutMs)) as RotationResult;
  if (values['end-grace']) {
    console.log(`grace period over: previous onion keys removed, ${r.twins.length} twins pinned; next rotation ${r.nextRotation}`);
  } else {
    console.log(`rotated the onion keys of ${r.twins.join(', ')} (ntor ${r.previous} -> ${r.current})`);
    console.log(`  previous keys kept as .old files until ${r.graceEnds}; next rotation ${r.nextRotation}`);
  }
  return 0;
}

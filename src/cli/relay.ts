// Relay mode's parts of the CLI: `keys sign` (offline master keys), the relay checks of doctor, the status table.
import type { ResolvedConfig } from '../config/index.js';
import { loadConfig } from '../config/index.js';
import { readFile } from 'node:fs/promises';
import {
  signAll,
  relayFindings,
  exportRelayKeys,
  writeRelayArchive,
  parseRelayArchive,
  importRelayKeys,
  initRelays,
  type RelaysStatus,
} from '../relay/index.js';
import { controlRequest } from '../supervisor/index.js';
import { runDoctor, countByStatus, defaultDoctorIo, type DoctorReport } from '../host-doctor/index.js';
import { parse, UsageError } from './args.js';
import { identityDir, instanceTargets } from './init.js';
import { human } from './status-view.js';

export async function signCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, { config: { type: 'string' }, 'no-restart': { type: 'boolean' } });
  const { config } = loadConfig(values.config);
  if (config.mode !== 'relay') throw new UsageError('keys sign is for mode: relay (a bridge keeps its ed25519 master key online)');
  const r = await signAll(config);
  for (const s of r) console.log(`${s.name}: new signing certificate, valid until ${s.expires}`);
  if (values['no-restart']) return 0;
  let restarted: string[];
  try {
    restarted = ((await controlRequest(config.runtimeDir, 'restart', {}, config.instances * 180_000 + 30_000)) as { restarted: string[] }).restarted;
  } catch (e) {
    if (/^no supervisor is running/.test((e as Error).message)) {
      console.log('no running supervisor: the relays load the new certificates when they start');
      return 0;
    }
    throw e;
  }
  console.log(`restarted ${restarted.join(', ')} one at a time; each loaded its new certificate (fingerprints unchanged)`);
  return 0;
}

/** The bridge doctor's system checks, with the twin-identity check replaced by the relay checks. */
export async function relayDoctor(c: ResolvedConfig, file: string, sessions: number, limitsFile?: string, user?: string): Promise<DoctorReport> {
  const base = await runDoctor(
    { configFile: file, config: c, identityDir: identityDir(c), instances: instanceTargets(c), sessionsPerInstance: sessions, limitsFile, user },
    // Relays have no shared identity to verify; relayFindings checks theirs.
    { ...defaultDoctorIo(), verify: async () => ({ ok: true, fingerprint: 'one per relay', problems: [] }) },
  );
  const checks = [...base.checks.filter((f) => f.id !== 'keys.fingerprint'), ...(await relayFindings(c, file))];
  const counts = countByStatus(checks);
  return { ...base, checks, counts, ok: counts.fail === 0 };
}

/** `bridgectl status` for relays: per relay its fingerprint, bootstrap, flags and weight once listed, traffic. */
export function formatRelayStatus(s: RelaysStatus, table: (rows: string[][]) => string): string {
  const rows = [['RELAY', 'STATE', 'PID', 'BOOT', 'RESTARTS', 'FLAGS', 'WEIGHT', 'READ', 'WRITTEN', 'FINGERPRINT']];
  for (const i of s.instances) {
    rows.push([
      i.name,
      i.state,
      String(i.pid ?? '-'),
      `${i.bootstrap}%`,
      String(i.restarts),
      i.consensus ? i.consensus.flags.join(',') || '(none)' : 'not listed yet',
      i.consensus?.weight === null || !i.consensus ? '-' : String(i.consensus.weight),
      human(i.bytesIn),
      human(i.bytesOut),
      i.fingerprint ?? '-',
    ]);
  }
  return [`relay family ${s.nickname} (supervisor pid ${s.pid}, ${s.ready ? 'ready' : 'not ready'}), FamilyId ${s.familyId}`, table(rows)].join('\n');
}

/** `keys export FILE` in relay mode: every relay's identity and the family key. */
export async function relayExport(c: ResolvedConfig, file: string, force: boolean): Promise<number> {
  const a = await exportRelayKeys(c);
  await writeRelayArchive(file, a, force);
  console.log(`wrote ${file} (mode 0600): family ${c.nickname} (FamilyId ${a.familyId}), ${a.relays.length} relays`);
  for (const r of a.relays) console.log(`  ${r.name} ${r.fingerprint}: ${r.files.map((f) => f.name).join(', ')}`);
  console.log("  it holds the relays' secret keys: keep it private");
  return 0;
}

/** `keys import FILE` in relay mode: install it, then what init does. */
export async function relayImport(c: ResolvedConfig, file: string): Promise<number> {
  const a = parseRelayArchive(await readFile(file, 'utf8'), file);
  const actions = await importRelayKeys(c, a);
  const init = await initRelays(c);
  console.log(`family ${c.nickname}: FamilyId ${init.familyId}, ${init.members.length} relays from ${file}`);
  for (const x of [...actions, ...init.actions]) console.log(`  ${x}`);
  if (!actions.length && !init.actions.length) console.log('  nothing to do');
  return 0;
}

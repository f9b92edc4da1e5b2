// `bridgectl doctor`: reads the facts (read.ts), runs the pure checks (checks.ts), and returns one
// report whose JSON form is documented in docs/doctor.md.
import { join } from 'node:path';
import type { ResolvedConfig } from '../config/index.js';
import { IDENTITY_FILES, verifyIdentity, type KeyTarget, type VerifyResult } from '../keysync/index.js';
import { engineMissingMessage } from '../balancer/index.js';
import { torVersion } from '../tor/index.js';
import { budget, type Budget } from './budget.js';
import {
  checkConntrackAtBoot,
  checkConntrackBuckets,
  checkConntrackMax,
  checkFileMax,
  checkPipeUserPages,
  checkFingerprint,
  checkKeyModes,
  checkNativeEngine,
  checkListenPortsOutsideRange,
  checkNofileHard,
  checkNofileSoft,
  checkNrOpen,
  checkPortRange,
  checkTorVersion,
  type IdentityFacts,
  type KeyPath,
  type ListenPort,
} from './checks.js';
import { countByStatus, type Finding, type Status } from './findings.js';
import { fsReader, lookupUser, readSystemFacts, statPaths, type Reader, type SystemFacts } from './read.js';

/** Bumped only on incompatible changes to the JSON (docs/doctor.md). */
export const DOCTOR_SCHEMA_VERSION = 1;

export interface DoctorReport {
  schemaVersion: number;
  ok: boolean;
  config: string;
  instances: number;
  expectedSessionsPerInstance: number;
  budget: Budget;
  counts: Record<Status, number>;
  checks: Finding[];
}

/** The kernel and limits checks alone (pure). */
export function systemFindings(f: SystemFacts, b: Budget, listen: ListenPort[]): Finding[] {
  return [
    checkNofileHard(f.nofile, b),
    checkNofileSoft(f.nofile, b),
    checkNrOpen(f.nrOpen, b),
    checkFileMax(f.fileMax, b),
    checkPipeUserPages(f.pipeUserPagesSoft, b),
    checkPortRange(f.portRange, b),
    checkListenPortsOutsideRange(f.portRange, f.reservedPorts, listen),
    checkConntrackMax(f.conntrackMax, b),
    checkConntrackBuckets(f.conntrackBuckets, f.conntrackMax),
    checkConntrackAtBoot({
      conntrackPresent: f.conntrackMax !== null,
      loadedModules: f.loadedModules,
      modulesLoad: f.modulesLoad,
      sysctlFilesSettingConntrack: f.sysctlFiles
        .filter((s) => [...s.settings.keys()].some((k) => k.startsWith('net.netfilter.nf_conntrack_')))
        .map((s) => s.file),
    }),
  ];
}

export type DoctorConfig = Pick<ResolvedConfig, 'dataDir' | 'instances' | 'torPath' | 'extOrPort' | 'balancer' | 'transports'>;

/** Ports bridgectl listens on, from the config: the balancer, tor's Extended ORPorts, every transport. */
export function listenPorts(c: DoctorConfig): ListenPort[] {
  const port = (hostPort: string): number => Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));
  const out: ListenPort[] = [
    { port: port(c.balancer.listen), what: 'balancer.listen' },
    { port: c.extOrPort, what: 'extOrPort' },
  ];
  for (const t of c.transports) out.push({ port: port(t.listen), what: c.transports.length > 1 ? `transports.${t.name}.listen` : 'transport.listen' });
  return out;
}

/** The key directories and files whose modes and owner doctor checks. */
export function keyPaths(c: DoctorConfig, identityDir: string, instances: KeyTarget[]): Array<Omit<KeyPath, 'stat'>> {
  const out: Array<Omit<KeyPath, 'stat'>> = [{ path: c.dataDir, kind: 'dir' }];
  for (const dataDir of [identityDir, ...instances.map((i) => i.dataDir)]) {
    const keys = join(dataDir, 'keys');
    out.push({ path: dataDir, kind: 'dir' }, { path: keys, kind: 'dir' });
    for (const f of IDENTITY_FILES) out.push({ path: join(keys, f), kind: 'file' });
  }
  out.push({ path: c.balancer.cookieFile, kind: 'file' });
  return out;
}

export interface DoctorOptions {
  configFile: string;
  config: DoctorConfig;
  identityDir: string;
  instances: KeyTarget[];
  sessionsPerInstance: number;
  /** Default /proc/self/limits; /proc/PID/limits to look at a running supervisor. */
  limitsFile?: string;
  /** Who must own the keys (name or uid); default the user running doctor. */
  user?: string | number;
}

export interface DoctorIo {
  reader: Reader;
  verify(identityDir: string, instances: KeyTarget[]): Promise<VerifyResult>;
  torVersion(torPath: string): Promise<string>;
  uid(): number;
  /** Why the native engine is not there, or null (default: engineMissingMessage). */
  engineProblem?(): string | null;
}

export const defaultDoctorIo = (): DoctorIo => ({
  reader: fsReader(),
  verify: verifyIdentity,
  torVersion,
  uid: () => process.getuid?.() ?? 0,
});

export async function runDoctor(o: DoctorOptions, io: DoctorIo = defaultDoctorIo()): Promise<DoctorReport> {
  const b = budget(o.sessionsPerInstance, o.config.instances);
  const facts = await readSystemFacts(io.reader, o.limitsFile);
  const checks = systemFindings(facts, b, listenPorts(o.config));

  const who = o.user ?? io.uid();
  const user = (await lookupUser(io.reader, who)) ?? (typeof who === 'number' ? { name: String(who), uid: who } : null);
  if (!user) throw new Error(`no such user: ${who}`);
  checks.push(checkKeyModes(await statPaths(io.reader, keyPaths(o.config, o.identityDir, o.instances)), user.uid, user.name));

  let identity: IdentityFacts;
  try {
    identity = await io.verify(o.identityDir, o.instances);
  } catch (e) {
    identity = { ok: false, problems: [], error: (e as Error).message };
  }
  checks.push(checkFingerprint(identity, o.config.instances, o.configFile));

  let version: string | null = null;
  let versionError: string | null = null;
  try {
    version = await io.torVersion(o.config.torPath);
  } catch (e) {
    versionError = (e as Error).message;
  }
  checks.push(checkTorVersion(version, versionError, o.config.torPath));
  checks.push(checkNativeEngine((io.engineProblem ?? engineMissingMessage)()));

  const counts = countByStatus(checks);
  return {
    schemaVersion: DOCTOR_SCHEMA_VERSION,
    ok: counts.fail === 0,
    config: o.configFile,
    instances: o.config.instances,
    expectedSessionsPerInstance: o.sessionsPerInstance,
    budget: b,
    counts,
    checks,
  };
}

/** The human view: one row per check, the fix indented under each that is not fine. */
export function formatReport(r: DoctorReport): string {
  const label: Record<Status, string> = { pass: 'ok', warn: 'WARN', fail: 'FAIL', skip: 'skip' };
  const width = Math.max(...r.checks.map((c) => c.title.length));
  const lines = [
    `bridgectl doctor: ${r.config}, ${r.instances} instance${r.instances === 1 ? '' : 's'}, ${r.expectedSessionsPerInstance.toLocaleString('en-US')} expected sessions per instance (${r.budget.sessions.toLocaleString('en-US')} in all)`,
    '',
  ];
  for (const c of r.checks) {
    const [first, ...rest] = c.found.split('\n');
    lines.push(`  ${label[c.status].padEnd(4)}  ${c.title.padEnd(width)}  ${first}`);
    for (const more of rest) lines.push(`  ${''.padEnd(4)}  ${''.padEnd(width)}  ${more}`);
    if (c.status === 'fail' || c.status === 'warn') {
      lines.push(`        want: ${c.expected}`);
      const [f0, ...fr] = (c.fix ?? '').split('\n');
      lines.push(`        fix:  ${f0}`);
      for (const f of fr) lines.push(`              ${f}`);
    }
  }
  const { pass, warn, fail, skip } = r.counts;
  lines.push('', `${pass} ok, ${warn} warning${warn === 1 ? '' : 's'}, ${fail} failed, ${skip} skipped`);
  return lines.join('\n');
}

// `bridgectl doctor` against a real kernel: a network namespace of its own whose per-namespace
// sysctls the test sets wrong, then right (by running the fix doctor printed), and a real bridge
// identity made by `bridgectl init`. Needs root (scripts/netns.sh runs the tests as root).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { budget } from '../src/host-doctor/index.js';
import { CLI, cli, tmp } from './helpers.js';

interface Check {
  id: string;
  title: string;
  status: 'pass' | 'warn' | 'fail' | 'skip';
  found: string;
  expected: string;
  fix: string | null;
}
interface Report {
  schemaVersion: number;
  ok: boolean;
  config: string;
  instances: number;
  expectedSessionsPerInstance: number;
  counts: Record<string, number>;
  checks: Check[];
}

// A namespace of our own: other test files run concurrently in scripts/netns.sh's namespace, and
// a 101-port ephemeral range there would break them.
const NS = `bridgectl-doctor-${process.pid}`;
const inNs = (cmd: string[]) => execa('ip', ['netns', 'exec', NS, ...cmd], { reject: false, all: true });
// procps' sysctl is what operators run; minimal images lack it, so fall back to /proc/sys.
const HAS_SYSCTL = execa('sh', ['-c', 'command -v sysctl'], { reject: false }).then((r) => r.exitCode === 0);
/** `sysctl -w KEY="VALUE"` as it is, or as a write to /proc/sys without procps. */
async function shellLine(line: string): Promise<string> {
  const m = /^sysctl -w ([\w.-]+)="([^"]*)"$/.exec(line);
  if (!m || (await HAS_SYSCTL)) return line;
  return `printf '%s\\n' '${m[2]}' > /proc/sys/${m[1]!.replace(/\./g, '/')}`;
}
const sysctl = async (key: string, value: string): Promise<void> => {
  const r = await inNs(['sh', '-c', await shellLine(`sysctl -w ${key}="${value}"`)]);
  assert.equal(r.exitCode, 0, r.all);
};

before(async () => {
  const add = await execa('ip', ['netns', 'add', NS], { reject: false, all: true });
  assert.equal(add.exitCode, 0, add.all);
});
after(async () => {
  await execa('ip', ['netns', 'del', NS], { reject: false });
});

/** What 1,000 sessions on one instance need per process (the model is tested in host-doctor.test.ts). */
const NEED = budget(1000, 1).perProcessFds;

/**
 * Runs doctor in the namespace with a known open-file limit (by default exactly what is needed).
 * prlimit can only lower the hard limit without CAP_SYS_RESOURCE, hence the check that the host
 * allows NEED.
 */
async function doctor(file: string, extra: string[] = [], nofile = NEED) {
  return inNs(['prlimit', `--nofile=${nofile}:${nofile}`, process.execPath, CLI, 'doctor', '--config', file, '--expected-sessions', '1000', ...extra]);
}
async function doctorJson(file: string, nofile?: number): Promise<{ exitCode: number; report: Report }> {
  const r = await doctor(file, ['--json'], nofile);
  assert.ok(r.exitCode === 0 || r.exitCode === 1, `doctor exited ${r.exitCode}: ${r.all}`);
  const report = JSON.parse(r.stdout) as Report;
  // the exit code is exactly "some check failed"
  assert.equal(r.exitCode, report.checks.some((c) => c.status === 'fail') ? 1 : 0);
  assert.equal(report.ok, r.exitCode === 0);
  return { exitCode: r.exitCode!, report };
}
const check = (r: Report, id: string): Check => {
  const c = r.checks.find((x) => x.id === id);
  assert.ok(c, `no check ${id} in ${r.checks.map((x) => x.id).join(', ')}`);
  return c;
};
/** Runs the command lines of a fix (the ones that are commands) in the namespace. */
async function runFix(fix: string): Promise<void> {
  const first = fix.split('\n')[0]!;
  assert.match(first, /^(sysctl -w |chmod |chown )/, `not a command: ${first}`);
  const lines = fix.split('\n').filter((l) => /^(sysctl -w |chmod |chown )/.test(l));
  const r = await inNs(['sh', '-c', (await Promise.all(lines.map(shellLine))).join(' && ')]);
  assert.equal(r.exitCode, 0, r.all);
}

const hostHard = Number(/^Max open files\s+\S+\s+(\S+)/m.exec(await readFile('/proc/self/limits', 'utf8'))?.[1]?.replace('unlimited', 'Infinity'));

test('doctor on a namespace whose sysctls are set wrong, then right', { skip: hostHard < NEED && `the hard open-file limit here is below ${NEED}` }, async () => {
  const dir = await tmp('doctor');
  const file = join(dir, 'bridgectl.yaml');
  await writeFile(file, `nickname: doc\ninstances: 1\ndataDir: ${dir}/data\n`);
  const init = await cli(['init', '--config', file]);
  assert.equal(init.exitCode, 0, init.all);

  // Wrong: 101 ephemeral ports for 1,000 sessions.
  await sysctl('net.ipv4.ip_local_port_range', '40000 40100');
  let { exitCode, report } = await doctorJson(file);
  assert.equal(exitCode, 1);
  assert.equal(report.schemaVersion, 1);
  assert.equal(report.config, file);
  assert.equal(report.expectedSessionsPerInstance, 1000);
  let range = check(report, 'net.ip_local_port_range');
  assert.equal(range.status, 'fail');
  assert.match(range.found, /40000–40100: 101 ports/);
  assert.match(range.expected, /1,000 ports/);
  assert.match(range.fix!, /^sysctl -w net\.ipv4\.ip_local_port_range="15000 64999"$/m);
  // the human view shows the failure with its fix under it
  const human = await doctor(file);
  assert.equal(human.exitCode, 1);
  assert.match(human.stdout, /FAIL\s+ephemeral port range \(net\.ipv4\.ip_local_port_range\)\s+40000–40100: 101 ports/);
  assert.match(human.stdout, /fix:\s+sysctl -w net\.ipv4\.ip_local_port_range="15000 64999"/);

  // Right: run the fix doctor printed, in the same namespace.
  await runFix(range.fix!);
  assert.equal((await inNs(['cat', '/proc/sys/net/ipv4/ip_local_port_range'])).stdout.trim(), '15000\t64999');
  ({ exitCode, report } = await doctorJson(file));
  range = check(report, 'net.ip_local_port_range');
  assert.equal(range.status, 'pass', range.found);
  assert.equal(range.fix, null);
  // what the test controls is all fine now (the host's fs.* and conntrack are the host's)
  for (const id of ['net.ip_local_port_range', 'net.ip_local_port_range.listen', 'nofile.hard', 'keys.modes', 'keys.fingerprint']) {
    assert.equal(check(report, id).status, 'pass', `${id}: ${check(report, id).found}`);
  }
  assert.match(check(report, 'keys.fingerprint').found, /^fingerprint [0-9A-F]{40} on all 1 instances$/);
  if (!report.checks.some((c) => c.status === 'fail')) assert.equal(exitCode, 0);

  // The open-file limit, read from the kernel: too low for 1,000 sessions, then enough.
  ({ report } = await doctorJson(file, NEED - 1));
  const nofile = check(report, 'nofile.hard');
  assert.equal(nofile.status, 'fail');
  assert.equal(nofile.found, `hard limit ${(NEED - 1).toLocaleString('en-US')}`);
  assert.match(nofile.fix!, new RegExp(`ulimit -Hn ${NEED} `));
  ({ report } = await doctorJson(file, NEED));
  assert.equal(check(report, 'nofile.hard').status, 'pass');

  // The balancer's port inside the range: a warning, until it is reserved (also per namespace).
  await sysctl('net.ipv4.ip_local_port_range', '9000 60999');
  ({ report } = await doctorJson(file));
  const listen = check(report, 'net.ip_local_port_range.listen');
  assert.equal(listen.status, 'warn');
  assert.match(listen.found, /balancer\.listen 10000, extOrPort 10100 inside 9000–60999/);
  await runFix(listen.fix!);
  assert.equal((await inNs(['cat', '/proc/sys/net/ipv4/ip_local_reserved_ports'])).stdout.trim(), '10000,10100');
  ({ report } = await doctorJson(file));
  assert.equal(check(report, 'net.ip_local_port_range.listen').status, 'pass');
});

test('doctor: key modes wrong, then fixed by the printed fix; fingerprint disagreement', { skip: hostHard < NEED && `the hard open-file limit here is below ${NEED}` }, async () => {
  const dir = await tmp('doctor-keys');
  const file = join(dir, 'bridgectl.yaml');
  await writeFile(file, `nickname: dock\ninstances: 2\ndataDir: ${dir}/data\n`);
  const init = await cli(['init', '--config', file]);
  assert.equal(init.exitCode, 0, init.all);
  const key = join(dir, 'data/instances/dock2/keys/secret_id_key');
  await chmod(key, 0o644);
  let { exitCode, report } = await doctorJson(file);
  assert.equal(exitCode, 1);
  const modes = check(report, 'keys.modes');
  assert.equal(modes.status, 'fail');
  assert.match(modes.found, new RegExp(`${key} has mode 0644`));
  assert.equal(modes.fix, `chmod go= ${key}`);
  await runFix(modes.fix!);
  ({ report } = await doctorJson(file));
  assert.equal(check(report, 'keys.modes').status, 'pass');

  // a twin with another identity
  const other = join(dir, 'data/instances/dock2/keys/secret_id_key');
  const text = await readFile(join(dir, 'data/identity/keys/secret_id_key'), 'utf8');
  await writeFile(other, text.replace(/[A-Za-z]/, (ch) => (ch === 'A' ? 'B' : 'A')));
  ({ exitCode, report } = await doctorJson(file));
  assert.equal(exitCode, 1);
  const fp = check(report, 'keys.fingerprint');
  assert.equal(fp.status, 'fail');
  assert.match(fp.found, /instance dock2: RSA identity differs/);
  assert.match(fp.fix!, /bridgectl keys verify --config/);

  // keys owned by another user than --user
  const r = await doctor(file, ['--json', '--user', 'nobody']);
  const owner = check(JSON.parse(r.stdout) as Report, 'keys.modes');
  assert.equal(owner.status, 'fail');
  assert.match(owner.fix!, /^chown nobody: /m);

  const bad = await doctor(file, ['--expected-sessions', '0']);
  assert.equal(bad.exitCode, 2);
});

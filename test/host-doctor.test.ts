// Unit tests of the sysctl module: parsers, the load model, each check fed values, the readers on a
// fake tree, and the sysctl.d / modules-load.d diff and write (also through `bridgectl sysctl`).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  budget,
  checkConntrackAtBoot,
  checkConntrackBuckets,
  checkConntrackMax,
  checkFileMax,
  checkPipeUserPages,
  checkFingerprint,
  checkKeyModes,
  checkListenPortsOutsideRange,
  checkNofileHard,
  checkNofileSoft,
  checkNrOpen,
  checkPortRange,
  checkTorVersion,
  compareVersions,
  fileDiff,
  fsReader,
  lookupUser,
  parseModulesLoad,
  parseNofile,
  parsePortList,
  parsePortRange,
  parseSysctlConf,
  parseTorVersion,
  planSysctlFiles,
  readSystemFacts,
  renderModulesLoadConf,
  renderSysctlConf,
  recommendedSysctls,
  runDoctor,
  systemFindings,
  writePlanned,
  MODULES_FILE,
  SYSCTL_FILE,
  type Finding,
  type KeyPath,
} from '../src/host-doctor/index.js';
import { cli, tmp } from './helpers.js';

const LIMITS = (soft: string, hard: string): string =>
  `Limit                     Soft Limit           Hard Limit           Units     \n` +
  `Max cpu time              unlimited            unlimited            seconds   \n` +
  `Max open files            ${soft.padEnd(20)} ${hard.padEnd(20)} files     \n`;

test('parsers read the kernel formats', () => {
  assert.deepEqual(parseNofile(LIMITS('1024', '524288')), { soft: 1024, hard: 524288 });
  assert.deepEqual(parseNofile(LIMITS('unlimited', 'unlimited')), { soft: null, hard: null });
  assert.equal(parseNofile('Max cpu time unlimited unlimited seconds\n'), null);
  assert.deepEqual(parsePortRange('32768\t60999\n'), [32768, 60999]);
  assert.throws(() => parsePortRange('32768'), /ip_local_port_range/);
  assert.deepEqual(parsePortList('\n'), []);
  assert.deepEqual(parsePortList('8080,10000-10010\n'), [[8080, 8080], [10000, 10010]]);
  assert.deepEqual(parseModulesLoad('# comment\n; also\n\nnf_conntrack\n  br_netfilter  \n'), ['nf_conntrack', 'br_netfilter']);
  const conf = parseSysctlConf('# x\nnet.ipv4.ip_local_port_range = 1 2\nnet/netfilter/nf_conntrack_max=5\n-fs.file-max = 9\n');
  assert.equal(conf.get('net.ipv4.ip_local_port_range'), '1 2');
  assert.equal(conf.get('net.netfilter.nf_conntrack_max'), '5');
  assert.equal(conf.get('fs.file-max'), '9');
  assert.deepEqual(parseTorVersion('0.4.8.12-dev'), [0, 4, 8, 12]);
  assert.deepEqual(parseTorVersion('0.4.9.1-alpha'), [0, 4, 9, 1]);
  assert.equal(parseTorVersion('banana'), null);
  // Numeric, not string, comparison: 0.4.10 is newer than 0.4.7.
  assert.equal(compareVersions([0, 4, 10, 0], [0, 4, 7, 13]), 1);
  assert.equal(compareVersions([0, 4, 7, 12], [0, 4, 7, 13]), -1);
  assert.equal(compareVersions([0, 4, 7, 13], [0, 4, 7, 13]), 0);
});

test('the load model scales with sessions and instances', () => {
  const one = budget(10_000, 1);
  const four = budget(10_000, 4);
  assert.equal(four.sessions, 40_000);
  // balancer and transport hold 2 fds per session of the whole bridge
  assert.equal(four.balancerFds - one.balancerFds, 2 * 30_000);
  assert.equal(four.perProcessFds, Math.max(four.balancerFds, four.transportFds, four.torFds));
  // each tor carries only its share
  assert.equal(four.torFds, one.torFds);
  assert.equal(four.ephemeralPorts, 40_000);
  assert.ok(four.systemFds > four.balancerFds + four.transportFds + 4 * four.torFds - 1);
  assert.equal(four.conntrack - one.conntrack, 3 * 30_000 + 3 * 8192);
  assert.throws(() => budget(0, 1), /positive/);
  assert.throws(() => budget(1.5, 1), /positive/);
});

const byStatus = (f: Finding): string => `${f.id}:${f.status}`;

test('open-file limits against the expected sessions', () => {
  const b = budget(10_000, 4);
  const need = b.perProcessFds;
  const hardLow = checkNofileHard({ soft: need, hard: need - 1 }, b);
  assert.equal(hardLow.status, 'fail');
  assert.match(hardLow.found, new RegExp(`hard limit ${(need - 1).toLocaleString('en-US')}`));
  assert.match(hardLow.fix!, new RegExp(`ulimit -Hn ${need}`));
  assert.match(hardLow.fix!, /LimitNOFILE=1048576/);
  assert.equal(checkNofileHard({ soft: 1, hard: need }, b).status, 'pass');
  assert.equal(checkNofileHard({ soft: 1, hard: null }, b).status, 'pass');
  assert.equal(checkNofileHard(null, b).status, 'skip');
  // more sessions make the same limit insufficient
  assert.equal(checkNofileHard({ soft: need, hard: need }, budget(10_001, 4)).status, 'fail');

  const softLow = checkNofileSoft({ soft: 1024, hard: 1_048_576 }, b);
  assert.equal(softLow.status, 'warn');
  assert.match(softLow.fix!, new RegExp(`ulimit -Sn ${need}`));
  assert.match(checkNofileSoft({ soft: 1024, hard: 1024 }, b).fix!, /hard limit first/);
  assert.equal(checkNofileSoft({ soft: need, hard: need }, b).status, 'pass');
  assert.equal(checkNofileSoft({ soft: null, hard: null }, b).fix, null);
});

test('fs.nr_open and fs.file-max', () => {
  const b = budget(10_000, 4);
  assert.equal(checkNrOpen(1_048_576, b).status, 'pass');
  const nr = checkNrOpen(1_048_575, b);
  assert.equal(nr.status, 'fail');
  assert.match(nr.fix!, /sysctl -w fs\.nr_open="1048576"/);
  // when one process needs more than the unit's limit, nr_open must follow
  const big = budget(600_000, 1);
  assert.equal(checkNrOpen(1_048_576, big).status, 'fail');
  assert.equal(checkNrOpen(null, b).status, 'skip');

  assert.equal(checkFileMax(b.systemFds, b).status, 'pass');
  const fm = checkFileMax(b.systemFds - 1, b);
  assert.equal(fm.status, 'fail');
  const wanted = Number(/fs\.file-max="(\d+)"/.exec(fm.fix!)?.[1]);
  assert.ok(wanted >= b.systemFds, `fix value ${wanted} covers ${b.systemFds}`);
  assert.match(fm.fix!, new RegExp(SYSCTL_FILE.replace(/\./g, '\\.')));
});

test('fs.pipe-user-pages-soft: the kernel default warns for a busy bridge, 0 is no limit, the fix covers the need', () => {
  const b = budget(10_000, 4); // 40,000 sessions: 1,280,000 pages at 2 × 16
  const need = b.sessions * 32;
  assert.equal(checkPipeUserPages(16_384, b).status, 'warn');
  assert.equal(checkPipeUserPages(need - 1, b).status, 'warn');
  assert.equal(checkPipeUserPages(need, b).status, 'pass');
  assert.equal(checkPipeUserPages(0, b).status, 'pass');
  assert.equal(checkPipeUserPages(null, b).status, 'skip');
  const wanted = Number(/fs\.pipe-user-pages-soft="(\d+)"/.exec(checkPipeUserPages(16_384, b).fix!)?.[1]);
  assert.ok(wanted >= need, `fix value ${wanted} covers ${need}`);
  // a small bridge gets the recommended file's value, which then passes
  const small = budget(1000, 1);
  const rec = Number(recommendedSysctls()['fs.pipe-user-pages-soft']);
  assert.equal(Number(/="(\d+)"/.exec(checkPipeUserPages(16_384, small).fix!)?.[1]), rec);
  assert.equal(checkPipeUserPages(rec, small).status, 'pass');
});

test('ephemeral port range width, with the boundary exact', () => {
  const b = budget(10_000, 1);
  assert.equal(checkPortRange([20_000, 29_999], b).status, 'pass'); // exactly 10,000 ports
  const narrow = checkPortRange([20_000, 29_998], b);
  assert.equal(narrow.status, 'fail');
  assert.match(narrow.found, /9,999 ports/);
  assert.match(narrow.fix!, /sysctl -w net\.ipv4\.ip_local_port_range="15000 64999"/);
  assert.doesNotMatch(narrow.fix!, /orport-srcaddr/);
  // more sessions than any range can give: the fix says to spread source addresses
  const huge = checkPortRange([15_000, 64_999], budget(30_000, 2));
  assert.equal(huge.status, 'fail');
  assert.match(huge.fix!, /orport-srcaddr/);
  assert.equal(checkPortRange(null, b).status, 'skip');
});

test('listening ports inside the ephemeral range are flagged unless reserved', () => {
  const listen = [
    { port: 10000, what: 'balancer.listen' },
    { port: 10100, what: 'extOrPort' },
    { port: 443, what: 'transport.listen' },
  ];
  assert.equal(checkListenPortsOutsideRange([15000, 64999], [], listen).status, 'pass');
  const inside = checkListenPortsOutsideRange([1024, 65535], [[8080, 8080]], listen);
  assert.equal(inside.status, 'warn');
  assert.match(inside.found, /balancer\.listen 10000, extOrPort 10100/);
  assert.doesNotMatch(inside.found, /transport/);
  // keeps the already reserved ports in the new list
  assert.match(inside.fix!, /ip_local_reserved_ports="8080,10000,10100"/);
  assert.equal(checkListenPortsOutsideRange([1024, 65535], [[10000, 10100]], listen).status, 'pass');
  assert.equal(checkListenPortsOutsideRange([1024, 65535], [[10000, 10099]], listen).status, 'warn');
});

test('connection tracking: table size, hash size, loaded at boot', () => {
  const b = budget(10_000, 4);
  assert.equal(checkConntrackMax(b.conntrack, b).status, 'pass');
  const low = checkConntrackMax(b.conntrack - 1, b);
  assert.equal(low.status, 'fail');
  assert.match(low.fix!, /sysctl -w net\.netfilter\.nf_conntrack_max="524288"/);
  const big = budget(100_000, 4);
  const want = Number(/nf_conntrack_max="(\d+)"/.exec(checkConntrackMax(65536, big).fix!)?.[1]);
  assert.ok(want >= big.conntrack && (want & (want - 1)) === 0, `${want} is a power of two ≥ ${big.conntrack}`);
  assert.equal(checkConntrackMax(null, b).status, 'skip');

  assert.equal(checkConntrackBuckets(65536, 262144).status, 'pass');
  const few = checkConntrackBuckets(16384, 262144);
  assert.equal(few.status, 'warn');
  assert.match(few.fix!, /nf_conntrack_buckets="262144"/);
  assert.equal(checkConntrackBuckets(null, null).status, 'skip');

  const facts = { conntrackPresent: true, loadedModules: ['nf_conntrack', 'ext4'], modulesLoad: [], sysctlFilesSettingConntrack: [] };
  assert.equal(checkConntrackAtBoot(facts).status, 'warn');
  const lost = checkConntrackAtBoot({ ...facts, sysctlFilesSettingConntrack: ['/etc/sysctl.d/nf.conf'] });
  assert.equal(lost.status, 'fail');
  assert.match(lost.found, /\/etc\/sysctl\.d\/nf\.conf/);
  assert.match(lost.fix!, new RegExp(MODULES_FILE));
  assert.equal(checkConntrackAtBoot({ ...facts, modulesLoad: [{ file: '/etc/modules-load.d/x.conf', modules: ['nf_conntrack'] }] }).status, 'pass');
  assert.equal(checkConntrackAtBoot({ ...facts, modulesLoad: [{ file: '/etc/modules-load.d/x.conf', modules: ['nf_nat'] }] }).status, 'warn');
  // built in: present, but not a module
  assert.equal(checkConntrackAtBoot({ ...facts, loadedModules: ['ext4'] }).status, 'pass');
  assert.equal(checkConntrackAtBoot({ ...facts, loadedModules: null }).status, 'pass');
  // not loaded now, but it is a modular kernel
  assert.equal(checkConntrackAtBoot({ ...facts, conntrackPresent: false, loadedModules: ['ext4'] }).status, 'warn');
});

test('key file modes and owner', () => {
  const st = (mode: number, uid = 1000, isDirectory = false): KeyPath['stat'] => ({ mode: (isDirectory ? 0o040000 : 0o100000) | mode, uid, isDirectory });
  const good: KeyPath[] = [
    { path: '/d', kind: 'dir', stat: st(0o700, 1000, true) },
    { path: '/d/keys/secret_id_key', kind: 'file', stat: st(0o600) },
    { path: '/d/keys/secret_onion_key', kind: 'file', stat: st(0o400) },
    { path: '/d/keys/missing', kind: 'file', stat: null },
  ];
  const ok = checkKeyModes(good, 1000, 'bridgectl');
  assert.equal(ok.status, 'pass', ok.found);
  assert.match(ok.found, /3 paths/);

  const readable = checkKeyModes([...good, { path: '/d/keys/ed25519_master_id_secret_key', kind: 'file', stat: st(0o644) }], 1000, 'bridgectl');
  assert.equal(readable.status, 'fail');
  assert.match(readable.found, /ed25519_master_id_secret_key has mode 0644/);
  assert.equal(readable.fix, 'chmod go= /d/keys/ed25519_master_id_secret_key');

  const openDir = checkKeyModes([{ path: '/d/keys', kind: 'dir', stat: st(0o755, 1000, true) }], 1000, 'bridgectl');
  assert.equal(openDir.status, 'fail');
  assert.equal(openDir.fix, 'chmod go= /d/keys');
  assert.equal(checkKeyModes([{ path: '/d/keys', kind: 'dir', stat: st(0o500, 1000, true) }], 1000, 'b').status, 'fail');

  const owner = checkKeyModes([{ path: '/d/keys/secret_id_key', kind: 'file', stat: st(0o600, 0) }], 1000, 'bridgectl');
  assert.equal(owner.status, 'fail');
  assert.equal(owner.fix, 'chown bridgectl: /d/keys/secret_id_key');
  assert.equal(checkKeyModes([{ path: '/x', kind: 'file', stat: null }], 0, 'root').status, 'skip');
  assert.equal(checkKeyModes([{ path: '/d/keys', kind: 'dir', stat: st(0o600) }], 1000, 'b').status, 'fail');
});

test('fingerprint agreement and tor version', () => {
  assert.equal(checkFingerprint({ ok: true, fingerprint: 'AB'.repeat(20), problems: [] }, 3, '/c.yaml').status, 'pass');
  const none = checkFingerprint({ ok: false, problems: ['no bridge identity in /d/identity/keys; run bridgectl init'] }, 3, '/c.yaml');
  assert.equal(none.status, 'fail');
  assert.equal(none.fix, 'bridgectl init --config /c.yaml');
  const differs = checkFingerprint({ ok: false, fingerprint: 'X', problems: ['instance b2: RSA identity differs'] }, 3, '/c.yaml');
  assert.equal(differs.status, 'fail');
  assert.match(differs.found, /b2: RSA identity differs/);
  assert.match(differs.fix!, /keys verify --config \/c\.yaml/);
  assert.equal(checkFingerprint({ ok: false, problems: [], error: 'EACCES' }, 3, '/c.yaml').status, 'fail');

  assert.equal(checkTorVersion('0.4.7.12', null, 'tor').status, 'warn');
  assert.equal(checkTorVersion('0.4.7.13', null, 'tor').status, 'pass');
  assert.equal(checkTorVersion('0.4.10.1-alpha', null, 'tor').status, 'pass');
  assert.equal(checkTorVersion('0.3.5.17', null, 'tor').status, 'warn');
  const missing = checkTorVersion(null, 'spawn /opt/tor ENOENT', '/opt/tor');
  assert.equal(missing.status, 'fail');
  assert.match(missing.found, /\/opt\/tor --version: spawn \/opt\/tor ENOENT/);
});

/** A fake system under `root`: /proc files, sysctl.d, modules-load.d, /etc/passwd. */
async function fakeSystem(root: string, o: { range?: string; conntrack?: boolean; modules?: string | null; modulesLoad?: string; sysctlD?: string } = {}) {
  const put = async (p: string, text: string): Promise<void> => {
    await mkdir(join(root, p, '..'), { recursive: true });
    await writeFile(join(root, p), text);
  };
  await put('/proc/self/limits', LIMITS('1024', '1048576'));
  await put('/proc/sys/fs/nr_open', '1048576\n');
  await put('/proc/sys/fs/file-max', '9223372036854775807\n');
  await put('/proc/sys/fs/pipe-user-pages-soft', '16384\n');
  await put('/proc/sys/net/ipv4/ip_local_port_range', `${o.range ?? '32768\t60999'}\n`);
  await put('/proc/sys/net/ipv4/ip_local_reserved_ports', '\n');
  if (o.conntrack !== false) {
    await put('/proc/sys/net/netfilter/nf_conntrack_max', '262144\n');
    await put('/proc/sys/net/netfilter/nf_conntrack_buckets', '65536\n');
  }
  if (o.modules !== null) await put('/proc/modules', o.modules ?? 'nf_conntrack 180224 3 nf_nat, Live 0x0\next4 1 0 - Live 0x0\n');
  if (o.modulesLoad) await put('/etc/modules-load.d/fw.conf', o.modulesLoad);
  if (o.sysctlD) await put('/usr/lib/sysctl.d/50-nf.conf', o.sysctlD);
  await put('/etc/passwd', 'root:x:0:0:root:/root:/bin/bash\nbridgectl:x:998:998::/var/lib/bridgectl:/usr/sbin/nologin\n');
}

test('readers on a fake tree feed the checks', async () => {
  const root = await tmp('sysfacts');
  await fakeSystem(root, { range: '40000\t40100', sysctlD: 'net.netfilter.nf_conntrack_max = 524288\n' });
  const r = fsReader(root);
  const f = await readSystemFacts(r);
  assert.deepEqual(f.nofile, { soft: 1024, hard: 1_048_576 });
  assert.deepEqual(f.portRange, [40000, 40100]);
  assert.equal(f.fileMax, Number.MAX_SAFE_INTEGER);
  assert.equal(f.conntrackMax, 262144);
  assert.deepEqual(f.loadedModules, ['nf_conntrack', 'ext4']);
  assert.deepEqual(f.sysctlFiles.map((s) => s.file), ['/usr/lib/sysctl.d/50-nf.conf']);
  const findings = systemFindings(f, budget(1000, 2), [{ port: 10000, what: 'balancer.listen' }]).map(byStatus);
  assert.deepEqual(findings, [
    'nofile.hard:pass',
    'nofile.soft:warn',
    'fs.nr_open:pass',
    'fs.file-max:pass',
    'fs.pipe-user-pages-soft:warn', // the kernel's 16,384 < 2,000 sessions × 32 pages
    'net.ip_local_port_range:fail', // 101 ports < 2,000 sessions
    'net.ip_local_port_range.listen:pass',
    'conntrack.max:pass',
    'conntrack.buckets:pass',
    'conntrack.boot:fail', // a sysctl.d file sets nf_conntrack_max, the module is not loaded at boot
  ]);
  assert.deepEqual(await lookupUser(r, 'bridgectl'), { name: 'bridgectl', uid: 998 });
  assert.deepEqual(await lookupUser(r, 0), { name: 'root', uid: 0 });
  assert.equal(await lookupUser(r, 'nobody-here'), null);

  // no conntrack in a kernel without modules: nothing to check
  const bare = await tmp('sysfacts-bare');
  await fakeSystem(bare, { conntrack: false, modules: null });
  const g = systemFindings(await readSystemFacts(fsReader(bare)), budget(1000, 1), []);
  assert.deepEqual(g.filter((x) => x.id.startsWith('conntrack')).map(byStatus), ['conntrack.max:skip', 'conntrack.buckets:skip', 'conntrack.boot:skip']);
});

test('runDoctor: report shape, ok flag, and injected identity / tor', async () => {
  const root = await tmp('doctor-unit');
  await fakeSystem(root, { range: '15000\t64999', modulesLoad: 'nf_conntrack\n' });
  const dataDir = '/var/lib/bridgectl';
  await mkdir(join(root, dataDir, 'identity', 'keys'), { recursive: true, mode: 0o700 });
  await writeFile(join(root, dataDir, 'identity', 'keys', 'secret_id_key'), 'k', { mode: 0o644 });
  const config = {
    dataDir,
    instances: 2,
    torPath: 'tor',
    extOrPort: 10100,
    balancer: { listen: '127.0.0.1:10000', cookieFile: `${dataDir}/cookie`, sourceRange: '127.0.2.0/24', handshakeTimeoutMs: 1, idleTimeoutMs: 1, maxSessions: 1 },
    transports: [],
  } as unknown as Parameters<typeof runDoctor>[0]['config'];
  const io = (version: string) => ({
    reader: fsReader(root),
    verify: async () => ({ ok: true, fingerprint: 'F'.repeat(40), problems: [] }),
    torVersion: async () => version,
    uid: () => process.getuid!(),
  });
  const opts = {
    configFile: '/etc/bridgectl/bridgectl.yaml',
    config,
    identityDir: `${dataDir}/identity`,
    instances: [{ name: 'b1', dataDir: `${dataDir}/instances/b1` }, { name: 'b2', dataDir: `${dataDir}/instances/b2` }],
    sessionsPerInstance: 1000,
  };
  const bad = await runDoctor(opts, io('0.4.8.10'));
  assert.equal(bad.schemaVersion, 1);
  assert.equal(bad.ok, false);
  const keys = bad.checks.find((c) => c.id === 'keys.modes')!;
  assert.equal(keys.status, 'fail');
  assert.match(keys.fix!, new RegExp(`chmod go= ${dataDir}/identity/keys/secret_id_key`));
  assert.equal(bad.counts.fail, bad.checks.filter((c) => c.status === 'fail').length);
  assert.deepEqual(Object.keys(bad.checks[0]!).sort(), ['expected', 'fix', 'found', 'id', 'status', 'title']);

  await writeFile(join(root, dataDir, 'identity', 'keys', 'secret_id_key'), 'k', { mode: 0o600 });
  const { chmod } = await import('node:fs/promises');
  await chmod(join(root, dataDir, 'identity', 'keys', 'secret_id_key'), 0o600);
  await chmod(join(root, dataDir), 0o700);
  await chmod(join(root, dataDir, 'identity'), 0o700);
  const good = await runDoctor(opts, io('0.4.8.10'));
  assert.deepEqual(good.checks.filter((c) => c.status === 'fail').map((c) => c.id), []);
  assert.equal(good.ok, true);
  // every transport's port is checked against the ephemeral range, not only the first's
  const transports = [{ name: 'obfs4', listen: '0.0.0.0:443' }, { name: 'webtunnel', listen: '127.0.0.1:20000' }];
  const two = await runDoctor({ ...opts, config: { ...config, transports } as typeof config }, io('0.4.8.10'));
  const inRange = two.checks.find((c) => c.id === 'net.ip_local_port_range.listen')!;
  assert.equal(inRange.status, 'warn');
  assert.match(inRange.found, /^transports\.webtunnel\.listen 20000 inside 15000–64999$/);
  // an old tor is a warning, not a failure
  const old = await runDoctor(opts, io('0.4.7.12'));
  assert.equal(old.checks.find((c) => c.id === 'tor.version')!.status, 'warn');
  assert.equal(old.ok, true);
  // keys owned by someone else than --user
  const other = await runDoctor({ ...opts, user: 'bridgectl' }, io('0.4.8.10'));
  assert.match(other.checks.find((c) => c.id === 'keys.modes')!.fix!, /chown bridgectl: /);
  await assert.rejects(runDoctor({ ...opts, user: 'no-such-user' }, io('0.4.8.10')), /no such user/);
});

test('recommended files: contents as data, diff, write', async () => {
  const sysctl = renderSysctlConf();
  for (const [k, v] of Object.entries(recommendedSysctls())) assert.match(sysctl, new RegExp(`^${k.replace(/\./g, '\\.')} = ${v}$`, 'm'));
  assert.deepEqual([...parseSysctlConf(sysctl).keys()].sort(), Object.keys(recommendedSysctls()).sort());
  assert.deepEqual(parseModulesLoad(renderModulesLoadConf()), ['nf_conntrack']);
  assert.equal(fileDiff('/etc/x', 'same\n', 'same\n'), '');
  assert.match(fileDiff('/etc/x', null, 'a\n'), /--- \/dev\/null[\s\S]*\+\+\+ \/etc\/x[\s\S]*\n\+a\n/);

  const root = await tmp('sysctl-write');
  let plan = await planSysctlFiles(fsReader(root));
  assert.deepEqual(plan.map((p) => [p.path, p.changed]), [[SYSCTL_FILE, true], [MODULES_FILE, true]]);
  assert.match(plan[0]!.diff, /^\+net\.ipv4\.ip_local_port_range = 15000 64999$/m);
  assert.deepEqual(await writePlanned(plan, root), [SYSCTL_FILE, MODULES_FILE]);
  assert.equal(await readFile(join(root, SYSCTL_FILE), 'utf8'), sysctl);
  assert.equal((await stat(join(root, MODULES_FILE))).mode & 0o777, 0o644);
  plan = await planSysctlFiles(fsReader(root));
  assert.deepEqual(plan.map((p) => p.changed), [false, false]);
  // an edited file shows what would be replaced
  await writeFile(join(root, SYSCTL_FILE), sysctl.replace('15000 64999', '32768 60999'));
  plan = await planSysctlFiles(fsReader(root));
  assert.match(plan[0]!.diff, /^-net\.ipv4\.ip_local_port_range = 32768 60999$/m);
  assert.match(plan[0]!.diff, /^\+net\.ipv4\.ip_local_port_range = 15000 64999$/m);
  assert.equal(plan[1]!.changed, false);
});

test('bridgectl sysctl: dry run by default, --write writes under --root', async () => {
  const root = await tmp('sysctl-cli');
  const dry = await cli(['sysctl', '--root', root]);
  assert.equal(dry.exitCode, 0, dry.stderr);
  assert.match(dry.stdout, /\+net\.netfilter\.nf_conntrack_max = 524288/);
  assert.match(dry.stdout, /dry run: nothing written/);
  await assert.rejects(stat(join(root, SYSCTL_FILE)), /ENOENT/);

  const w = await cli(['sysctl', '--write', '--root', root]);
  assert.equal(w.exitCode, 0, w.stderr);
  assert.match(w.stdout, /\+nf_conntrack/); // the diff comes first
  assert.match(w.stdout, /wrote /);
  assert.equal(await readFile(join(root, MODULES_FILE), 'utf8'), renderModulesLoadConf());
  const again = await cli(['sysctl', '--root', root]);
  assert.match(again.stdout, /60-bridgectl\.conf: up to date/);
  assert.doesNotMatch(again.stdout, /dry run/);
  const both = await cli(['sysctl', '--write', '--dry-run', '--root', root]);
  assert.equal(both.exitCode, 2);
});

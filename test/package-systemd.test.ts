// The Debian package under a real systemd (issue 11): a Debian 13 root (mmdebstrap, cached) booted
// with systemd-nspawn --private-network --boot (loopback only, tor.service and tor@.service masked),
// the .deb installed with dpkg, a private lab network inside, and every "Proof in CI" check,
// including the nine faults. Commands run in the container through nsenter -t <its PID 1> -a.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { stringify } from 'yaml';
import { waitFor } from './helpers.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const booted: Array<{ nspawn: ResultPromise; leader: number }> = [];

interface Box {
  leader: number;
  sh(cmd: string, timeoutMs?: number): Promise<{ code: number; out: string }>;
  ok(cmd: string, timeoutMs?: number): Promise<string>;
  bg(cmd: string): Bg;
}

interface Bg {
  proc: ResultPromise;
  out: () => string;
  exited: () => boolean;
}

/** The host's environment stays out: the container's own PATH, no NODE_* variables. */
const CLEAN_ENV = ['env', '-i', 'PATH=/usr/sbin:/usr/bin:/sbin:/bin', 'HOME=/root', 'LANG=C.UTF-8', 'SYSTEMD_PAGER=', 'SYSTEMD_COLORS=0'];

function box(leader: number): Box {
  const sh = async (cmd: string, timeoutMs = 120_000): Promise<{ code: number; out: string }> => {
    const r = await execa('nsenter', ['-t', String(leader), '-a', ...CLEAN_ENV, 'sh', '-c', cmd], { reject: false, all: true, timeout: timeoutMs, stdin: 'ignore' });
    return { code: r.exitCode ?? -1, out: r.all ?? '' };
  };
  return {
    leader,
    sh,
    ok: async (cmd, timeoutMs) => {
      const r = await sh(cmd, timeoutMs);
      assert.equal(r.code, 0, `${cmd}:\n${r.out}`);
      return r.out;
    },
    bg: (cmd) => {
      const proc = execa('nsenter', ['-t', String(leader), '-a', ...CLEAN_ENV, 'sh', '-c', cmd], { reject: false, buffer: false, stdin: 'ignore' });
      let out = '';
      let done = false;
      proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      void proc.finally(() => (done = true));
      return { proc, out: () => out, exited: () => done };
    },
  };
}

/** Boots `root` (read-only, changes in a tmpfs overlay) and waits until its systemd is running. */
async function boot(root: string, name: string, hostRoot = false): Promise<Box> {
  const nspawnArgs = ['-q', '-D', root, '--volatile=overlay', '--private-network', '--boot', '--register=no', '--keep-unit', '--console=pipe',
      `--machine=${name}`, `--bind-ro=${REPO}:/src`, '--', 'systemd.mask=tor.service', 'systemd.mask=tor@.service'];
  // nspawn refuses --volatile=overlay -D /: bind / to a directory in a private mount namespace
  // first, with a tmpfs over its /run.
  const nspawn = hostRoot
    ? execa('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
        `mkdir -p ${root} && mount --bind / ${root} && mount -t tmpfs tmpfs ${root}/run && exec systemd-nspawn "$@"`, 'sh', ...nspawnArgs],
      { reject: false, all: true, stdin: 'ignore' })
    : execa('systemd-nspawn', nspawnArgs, { reject: false, all: true, stdin: 'ignore' });
  const parent = hostRoot
    ? await waitFor('nspawn', async () => Number((await execa('pgrep', ['-P', String(nspawn.pid), '-x', 'systemd-nspawn'], { reject: false })).stdout.trim()) || Number(nspawn.pid) , 10_000, 100)
    : nspawn.pid;
  const leader = await waitFor('the container\'s PID 1', async () => {
    const r = await execa('ps', ['-o', 'pid=,comm=', '--ppid', String(parent)], { reject: false });
    const line = r.stdout.split('\n').find((l) => / systemd$/.test(l.trim()) || /\bsystemd$/.test(l));
    return line ? Number(line.trim().split(/\s+/)[0]) : undefined;
  }, 30_000, 100);
  booted.push({ nspawn, leader });
  const b = box(leader);
  // PID 1 exists before its bus does: ask until systemd answers.
  await waitFor('the container to boot', async () => /^(running|degraded)$/m.test((await b.sh('systemctl is-system-running --wait', 60_000)).out), 60_000, 200);
  // Only loopback: nothing in here can reach beyond this machine.
  assert.equal((await b.ok("awk -F: 'NR>2 {gsub(/ /,\"\",$1); print $1}' /proc/net/dev")).trim(), 'lo');
  assert.equal((await b.ok('ip -4 route show')).trim(), '');
  assert.equal((await b.sh('systemctl is-active tor.service')).out.trim(), 'inactive');
  return b;
}

after(async () => {
  for (const { nspawn, leader } of booted) {
    await execa('nsenter', ['-t', String(leader), '-a', 'systemctl', 'poweroff'], { reject: false, timeout: 10_000 });
    const t = setTimeout(() => nspawn.kill('SIGKILL'), 20_000);
    await nspawn;
    clearTimeout(t);
  }
});

const show = async (b: Box, props: string): Promise<Record<string, string>> =>
  Object.fromEntries(
    (await b.ok(`systemctl show bridgectl -p ${props}`)).split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );

interface St {
  pid: number;
  instances: Array<{ name: string; pid: number | null; balancerUp: boolean; fingerprint: string | null }>;
  instancesOverride: { configInstances: number } | null;
}
const status = async (b: Box): Promise<St> => JSON.parse(await b.ok('bridgectl status --json')) as St;
const allUp = async (b: Box, n: number): Promise<St> =>
  waitFor(`${n} twins in the balancer`, async () => {
    const r = await b.sh('bridgectl status --json');
    if (r.code !== 0) return undefined;
    const s = JSON.parse(r.out) as St;
    return s.instances.length === n && s.instances.every((i) => i.balancerUp) ? s : undefined;
  }, 150_000, 500);

async function packageChecks(b: Box, deb: string): Promise<void> {
  const journal = async (args: string): Promise<string> => b.ok(`journalctl -u bridgectl --no-pager -o cat ${args}`);
  const ver = (await b.ok('node --version')).trim();

  // Install: user and state dir made, nothing started or enabled.
  await b.ok(`dpkg -i /src/${deb}`);
  assert.match(await b.ok('getent passwd bridgectl'), /^bridgectl:x:\d+:\d+:.*:\/var\/lib\/bridgectl:\/usr\/sbin\/nologin$/m);
  assert.equal((await b.ok('stat -c %U:%a /var/lib/bridgectl')).trim(), 'bridgectl:700');
  assert.equal((await b.ok('stat -c %U:%G:%a /etc/bridgectl/bridgectl.yaml')).trim(), 'root:bridgectl:640');
  assert.equal((await b.sh('systemctl is-active bridgectl')).out.trim(), 'inactive', 'not started on first install');
  assert.equal((await b.sh('systemctl is-enabled bridgectl')).out.trim(), 'disabled');
  assert.match(await b.ok('bridgectl --version'), /^bridgectl \d+\.\d+\.\d+/);
  assert.match(await b.ok('bridgectl reload --help'), /usage: bridgectl reload/);
  assert.ok((await b.ok('ls /usr/lib/bridgectl/build/Release/bind_no_port.node /usr/lib/bridgectl/node_modules/sd-notify/build/Release/notify.node')).includes('notify.node'));

  // The lab network (TestingTorNetwork) inside the container.
  const lab = b.bg('exec node /src/dist/test/container-lab.js lab /root/lab /root/lab.json');
  await waitFor('the lab network', async () => (await b.sh('test -s /root/lab.json')).code === 0 || lab.exited(), 120_000, 500);
  assert.ok(!lab.exited(), `lab helper exited: ${lab.out()}`);
  const labInfo = JSON.parse(await b.ok('cat /root/lab.json')) as { torrcLines: string[]; url: string; sha256: string };
  const config = (over: Record<string, unknown> = {}): string =>
    stringify({
      nickname: 'pkg',
      instances: 2,
      dataDir: '/var/lib/bridgectl',
      runtimeDir: '/run/bridgectl',
      contactInfo: 'one@localhost',
      stopDrainSeconds: 6,
      restart: { initialDelayMs: 300 },
      torrc: [...labInfo.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
      transport: { name: 'obfs4', command: ['/usr/bin/obfs4proxy'], listen: '127.0.0.1:4430' },
      ...over,
    });
  const writeConfig = async (text: string): Promise<void> => {
    await b.ok(`cat > /etc/bridgectl/bridgectl.yaml <<'YAML'\n${text}YAML`);
  };
  await writeConfig(config());

  // Fault 6: init as root leaves nothing root-owned in the state dir; as the service user too.
  await b.ok('cd / && bridgectl init');
  assert.equal((await b.ok('find /var/lib/bridgectl ! -user bridgectl')).trim(), '', 'init as root gave the files to bridgectl');
  assert.match(await b.ok('runuser -u bridgectl -- bridgectl init'), /already in place/);
  const fp = (await b.ok('cat /var/lib/bridgectl/identity/fingerprint 2>/dev/null || true')).trim();
  void fp;

  // Active: READY=1 reached systemd (Type=notify: start returns only then), with a STATUS= line.
  const enabled = await b.sh('systemctl enable --now bridgectl', 180_000);
  if (enabled.code !== 0) assert.fail(`systemctl enable --now bridgectl:\n${enabled.out}\n${(await b.sh('journalctl -u bridgectl --no-pager -n 40')).out}`);
  let p = await show(b, 'ActiveState,SubState,StatusText,MainPID');
  assert.equal(p.ActiveState, 'active');
  assert.equal(p.SubState, 'running');
  assert.match(p.StatusText!, /^\d\/2 twins up, \d+ sessions, obfs4 running$/);
  let st = await allUp(b, 2);
  // Fault 7: plain `bridgectl status` (no --config, no ./bridgectl.yaml) finds /etc/bridgectl/bridgectl.yaml.
  assert.match(await b.ok('cd / && bridgectl status'), /bridge pkg \(supervisor pid \d+/);
  await waitFor('a current STATUS=', async () => /^2\/2 twins up/.test((await show(b, 'StatusText')).StatusText!), 20_000);

  // A real obfs4 client using `bridgectl bridgeline` downloads intact.
  const line = (await b.ok('bridgectl bridgeline')).trim();
  assert.match(line, /^obfs4 127\.0\.0\.1:4430 [0-9A-F]{40} cert=\S+ iat-mode=\d$/);
  const client = b.bg(`exec node /src/dist/test/container-lab.js client /root/client /root/lab.json '${line}'`);
  const socks = await waitFor('the obfs4 client', () => /socks (\d+)/.exec(client.out())?.[1] ?? (client.exited() ? 'dead' : undefined), 150_000, 500);
  assert.notEqual(socks, 'dead', client.out());
  const fetch = async (): Promise<string> => (await b.ok(`node /src/dist/test/container-lab.js fetch ${socks} ${labInfo.url}`, 90_000)).trim();
  assert.equal(await fetch(), labInfo.sha256);

  // Fault 8: tor-geoipdb is there and tor read it.
  const log1 = await journal('');
  assert.doesNotMatch(log1, /Failed to open GEOIP file/);
  assert.match(log1, /GEOIP IPv4 file \/usr\/share\/tor\/geoip/);
  // Fault 3: the journal has each line at its priority; one pid key per line is the journal's own _PID.
  assert.doesNotMatch(log1, /"pid":/);

  // Reload: good (reloaded), broken (fault 4: non-zero, still active, old config serving).
  await writeConfig(config({ contactInfo: 'two@localhost' }));
  await b.ok('systemctl reload bridgectl');
  assert.match(await journal('-n 50'), /config reloaded/);
  await writeConfig(config({ contactInfo: 'three@localhost' }).replace('instances:', 'instnces:'));
  const bad = await b.sh('systemctl reload bridgectl');
  assert.notEqual(bad.code, 0, 'systemctl reload with a broken config fails');
  assert.equal((await show(b, 'ActiveState')).ActiveState, 'active');
  assert.equal(await fetch(), labInfo.sha256, 'the old config still serves');
  // Fault 3: bridgectl's warnings and errors are at their priority (error 3, warning 4).
  await writeConfig(config({ contactInfo: 'two@localhost', extOrPort: 10200 }));
  await b.ok('systemctl reload bridgectl');
  const warnings = await journal('-p warning');
  assert.match(warnings, /instnces: unknown key/);
  assert.match(warnings, /changing extOrPort needs a restart/);
  assert.doesNotMatch(warnings, /config reloaded/, 'info lines are not warnings');
  await writeConfig(config({ contactInfo: 'two@localhost' }));
  await b.ok('systemctl reload bridgectl');

  // A SIGKILLed twin is back in the balancer.
  st = await status(b);
  const victim = st.instances[0]!;
  await b.ok(`kill -9 ${victim.pid}`);
  st = await waitFor('the twin back', async () => {
    const s = await allUp(b, 2);
    const v = s.instances.find((i) => i.name === victim.name)!;
    return v.pid !== victim.pid ? s : undefined;
  }, 120_000, 500);

  // Fault 1: add-instance works with /etc read-only to the service and survives a restart.
  assert.match(await b.ok('bridgectl add-instance'), /added pkg3/);
  st = await allUp(b, 3);
  assert.match(await b.ok('bridgectl status'), /instances: 3, changed at run time \(\/var\/lib\/bridgectl\/instance-count\.json\); the config file says 2/);
  await b.ok('systemctl restart bridgectl', 180_000);
  st = await allUp(b, 3);
  assert.equal(st.instancesOverride?.configInstances, 2);

  // Watchdog: a WatchdogSec= drop-in is pinged; a SIGSTOPped supervisor is killed and restarted, no orphan.
  await b.ok("mkdir -p /etc/systemd/system/bridgectl.service.d && printf '[Service]\\nWatchdogSec=6s\\nTimeoutAbortSec=5s\\n' > /etc/systemd/system/bridgectl.service.d/watchdog.conf && systemctl daemon-reload");
  await b.ok('systemctl restart bridgectl', 180_000);
  st = await allUp(b, 3);
  const w0 = (await show(b, 'WatchdogTimestampMonotonic')).WatchdogTimestampMonotonic;
  await waitFor('a watchdog ping', async () => (await show(b, 'WatchdogTimestampMonotonic')).WatchdogTimestampMonotonic !== w0, 10_000, 200);
  p = await show(b, 'MainPID,NRestarts');
  const oldTors = st.instances.map((i) => i.pid);
  await b.ok(`kill -STOP ${p.MainPID}`);
  await waitFor('the watchdog restart', async () => {
    const q = await show(b, 'MainPID,NRestarts,ActiveState');
    return q.ActiveState === 'active' && q.MainPID !== p.MainPID && Number(q.NRestarts) > Number(p.NRestarts);
  }, 90_000, 500);
  for (const pid of [Number(p.MainPID), ...oldTors]) assert.notEqual((await b.sh(`kill -0 ${pid}`)).code, 0, `pid ${pid} is gone`);
  st = await allUp(b, 3);
  const mine = (await b.ok('pgrep -u bridgectl')).trim().split('\n').map(Number);
  const main = Number((await show(b, 'MainPID')).MainPID);
  const cg = await b.ok(`cat /proc/${main}/cgroup`);
  for (const pid of mine) assert.equal(await b.ok(`cat /proc/${pid}/cgroup`), cg, `pid ${pid} of bridgectl is in the service's cgroup`);
  await b.ok('rm -r /etc/systemd/system/bridgectl.service.d && systemctl daemon-reload');

  // Fault 9: SIGTERM drains: the client's open session still works during stopDrainSeconds (6).
  assert.equal(await fetch(), labInfo.sha256);
  const t0 = Date.now();
  await b.ok('systemctl stop --no-block bridgectl');
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await fetch(), labInfo.sha256, 'an open session survives the start of the stop');
  await waitFor('the stop', async () => (await b.sh('systemctl is-active bridgectl')).out.trim() === 'inactive', 90_000, 200);
  assert.ok(Date.now() - t0 >= 5_000, `the stop drained (${Date.now() - t0} ms)`);
  assert.match(await journal('-n 100'), /draining the open ones/);
  // stop leaves no process of the service user
  assert.equal((await b.sh('pgrep -u bridgectl')).out.trim(), '');

  // Fault 2: exit 78 ends failed, not restarting.
  await writeConfig(config().replace('instances:', 'instnces:'));
  assert.notEqual((await b.sh('systemctl start bridgectl', 60_000)).code, 0);
  p = await show(b, 'ActiveState,ExecMainStatus,NRestarts');
  assert.equal(p.ActiveState, 'failed');
  assert.equal(p.ExecMainStatus, '78');
  await new Promise((r) => setTimeout(r, 7_000)); // longer than RestartSec=5s
  const p2 = await show(b, 'ActiveState,NRestarts');
  assert.equal(p2.ActiveState, 'failed');
  assert.equal(p2.NRestarts, p.NRestarts, 'not restarted');
  await writeConfig(config());
  await b.ok('systemctl reset-failed bridgectl && systemctl start bridgectl', 180_000);
  st = await allUp(b, 3);

  // Reinstalling over the running service keeps the keys and the fingerprint and serves again.
  const keys = await b.ok('sha256sum /var/lib/bridgectl/identity/keys/*');
  const fpBefore = st.instances[0]!.fingerprint;
  const pidBefore = (await show(b, 'MainPID')).MainPID;
  await b.ok(`dpkg -i /src/${deb}`, 180_000);
  assert.equal((await show(b, 'ActiveState')).ActiveState, 'active');
  assert.notEqual((await show(b, 'MainPID')).MainPID, pidBefore, 'restarted by the upgrade');
  st = await allUp(b, 3);
  assert.equal(st.instances[0]!.fingerprint, fpBefore);
  assert.equal(await b.ok('sha256sum /var/lib/bridgectl/identity/keys/*'), keys);
  await waitFor('a download after the reinstall', async () => (await b.sh(`node /src/dist/test/container-lab.js fetch ${socks} ${labInfo.url}`, 90_000)).out.trim() === labInfo.sha256, 120_000, 1000);

  // Remove keeps keys and config; purge deletes them.
  await b.ok('dpkg -r bridgectl', 120_000);
  assert.equal((await b.sh('pgrep -u bridgectl')).out.trim(), '');
  await b.ok('test -s /etc/bridgectl/bridgectl.yaml && ls /var/lib/bridgectl/identity/keys/secret_id_key');
  await b.ok('dpkg -P bridgectl');
  assert.notEqual((await b.sh('test -e /var/lib/bridgectl || test -e /etc/bridgectl')).code, 0, 'purge removes state and config');
  void ver;
  client.proc.kill('SIGTERM');
  lab.proc.kill('SIGTERM');
}

let deb = '';
test('npm run package builds a .deb (lintian: no errors) and prints its path last', { timeout: 300_000 }, async () => {
  const r = await execa('bash', [`${REPO}/scripts/package.sh`], { reject: false, all: true, env: { PACKAGE_OUT: `${REPO}/dist/deb` } });
  assert.equal(r.exitCode, 0, r.all);
  const last = r.stdout.trim().split('\n').at(-1)!;
  assert.match(last, /\/bridgectl_\d+\.\d+\.\d+_[a-z0-9]+\.deb$/);
  deb = last.slice(REPO.length).replace(/^\//, '');
  const info = await execa('dpkg-deb', ['-f', last, 'Depends', 'Recommends']);
  assert.match(info.stdout, /nodejs \(>= 20\.5\)/);
  assert.match(info.stdout, /tor-geoipdb/);
  assert.match(info.stdout, /Recommends: obfs4proxy/);
  const conf = await execa('dpkg-deb', ['--ctrl-tarfile', last]).pipe('tar', ['-xO', './conffiles']);
  assert.equal(conf.stdout.trim(), '/etc/bridgectl/bridgectl.yaml');
});

test('Debian 13 under systemd-nspawn: install, serve, reload, twins, watchdog, drain, exit 78, reinstall, remove', { timeout: 900_000 }, async () => {
  assert.ok(deb, 'the package was built');
  const root = (await execa('bash', [`${REPO}/scripts/container-root.sh`, 'trixie'])).stdout.trim().split('\n').at(-1)!;
  const b = await boot(root, `bctl13-${process.pid}`);
  await packageChecks(b, deb);
});

test('Debian 12 (this machine\'s root as an overlay, its NodeSource Node.js) under systemd-nspawn: the same checks', { timeout: 900_000 }, async () => {
  assert.ok(deb, 'the package was built');
  const b = await boot(`/run/bridgectl-test-root-${process.pid}`, `bctl12-${process.pid}`, true);
  assert.match(await b.ok('cat /etc/debian_version'), /^12\./);
  await packageChecks(b, deb);
});

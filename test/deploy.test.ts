// deploy/: the committed files are exactly what `bridgectl render` prints; the unit has what the
// issue asks for and passes systemd-analyze; the HAProxy layout is valid HAProxy; install.sh.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, lstat, readlink, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { execa } from 'execa';
import { instanceLayout, parseConfigText, resolveConfig } from '../src/config/index.js';
import { addressInRange, renderSystemdUnit, renderedDeployFiles } from '../src/deploy/index.js';
import { renderInstanceTorrc } from '../src/supervisor/index.js';
import { UNIT_LIMIT_NOFILE } from '../src/host-doctor/index.js';
import { cli, tmp } from './helpers.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const has = async (cmd: string): Promise<boolean> => (await execa('sh', ['-c', `command -v ${cmd}`], { reject: false })).exitCode === 0;

/** [Section] key=value lines of a unit, values of repeated keys in order. */
function parseUnit(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    const key = `${section}.${line.slice(0, eq)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

test('committed deploy/ files equal what render prints for the defaults', async () => {
  for (const f of renderedDeployFiles()) {
    const committed = await readFile(join(REPO, f.path), 'utf8');
    assert.equal(committed, f.text, `${f.path} differs from \`${f.render}\`: regenerate it with ${f.render} > ${f.path}`);
    const [, , what] = f.render.split(' ');
    const r = await cli(['render', what!]);
    assert.equal(r.exitCode, 0, r.stderr);
    assert.equal(r.stdout + '\n', committed, `${f.render} output differs from ${f.path}`);
  }
});

test('the unit has what a bridge service needs', async () => {
  const u = parseUnit(await readFile(join(REPO, 'deploy/bridgectl.service'), 'utf8'));
  const one = (k: string): string | undefined => u.get(k)?.at(-1);
  assert.equal(one('Service.Type'), 'notify');
  assert.equal(one('Service.NotifyAccess'), 'main');
  assert.equal(one('Service.ExecStart'), '/usr/bin/bridgectl run --config /etc/bridgectl/bridgectl.yaml');
  assert.equal(one('Service.ExecReload'), '/usr/bin/bridgectl reload --config /etc/bridgectl/bridgectl.yaml');
  assert.equal(one('Service.RestartPreventExitStatus'), '78');
  assert.equal(one('Service.LimitNOFILE'), String(UNIT_LIMIT_NOFILE)); // what doctor's fs.nr_open check assumes
  assert.equal(one('Service.LimitNOFILE'), '1048576');
  assert.equal(one('Service.User'), 'bridgectl');
  assert.equal(one('Service.Group'), 'bridgectl');
  assert.equal(one('Service.Restart'), 'on-failure');
  assert.equal(one('Service.StateDirectory'), 'bridgectl');
  assert.equal(one('Service.RuntimeDirectory'), 'bridgectl');
  assert.equal(one('Service.NoNewPrivileges'), 'yes');
  assert.equal(one('Service.ProtectSystem'), 'strict');
  assert.deepEqual(u.get('Service.ReadWritePaths'), ['/var/lib/bridgectl']);
  assert.equal(one('Service.PrivateTmp'), 'yes');
  assert.equal(one('Service.ProtectHome'), 'yes');
  assert.equal(one('Service.CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
  assert.equal(one('Service.AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
  assert.equal(one('Install.WantedBy'), 'multi-user.target');
  // Node.js JIT needs W+X memory; a user namespace would take CAP_NET_BIND_SERVICE's effect away.
  assert.equal(u.get('Service.MemoryDenyWriteExecute'), undefined);
  assert.equal(u.get('Service.PrivateUsers'), undefined);
  // unix sockets (tor's control port) and the transport's TCP
  assert.match(one('Service.RestrictAddressFamilies')!, /AF_UNIX/);
  assert.match(one('Service.RestrictAddressFamilies')!, /AF_INET6/);
  // the example config uses the unit's directories
  const example = parseConfigText(await readFile(join(REPO, 'deploy/bridgectl.example.yaml'), 'utf8'), 'bridgectl.example.yaml');
  assert.equal(example.dataDir, `/var/lib/${one('Service.StateDirectory')}`);
  assert.equal(example.runtimeDir, `/run/${one('Service.RuntimeDirectory')}`);
});

test('render systemd options, and refusals', async () => {
  const u = parseUnit(renderSystemdUnit({ bin: '/usr/local/bin/bridgectl', config: '/srv/b.yaml', user: 'tor-b' }));
  assert.deepEqual(u.get('Service.ExecStart'), ['/usr/local/bin/bridgectl run --config /srv/b.yaml']);
  assert.deepEqual(u.get('Service.User'), ['tor-b']);
  assert.deepEqual(u.get('Service.ReadWritePaths'), ['/var/lib/tor-b']);
  assert.throws(() => renderSystemdUnit({ bin: 'bridgectl' }), /absolute/);
  assert.throws(() => renderSystemdUnit({ config: '/a b.yaml' }), /one word/);
  assert.throws(() => renderSystemdUnit({ user: 'Root; rm' }), /user name/);
  const r = await cli(['render', 'systemd', '--bin', '/opt/bridgectl/bin/bridgectl']);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /^ExecStart=\/opt\/bridgectl\/bin\/bridgectl run --config \/etc\/bridgectl\/bridgectl\.yaml$/m);
  assert.equal((await cli(['render', 'nonsense'])).exitCode, 2);
});

test('systemd-analyze verify accepts the unit and rejects a broken or weakened one', async (t) => {
  if (!(await has('systemd-analyze'))) {
    t.skip('systemd-analyze is not installed (package systemd)');
    return;
  }
  const script = join(REPO, 'scripts/verify-unit.sh');
  const ok = await execa('bash', [script], { reject: false, all: true });
  assert.equal(ok.exitCode, 0, ok.all);
  assert.match(ok.stdout, /verify ok/);
  const dir = await tmp('unit');
  const good = await readFile(join(REPO, 'deploy/bridgectl.service'), 'utf8');
  await writeFile(join(dir, 'bridgectl.service'), good.replace('Restart=on-failure', 'Restart=on-failure\nRestartt=always'));
  const typo = await execa('bash', [script, join(dir, 'bridgectl.service')], { reject: false, all: true });
  assert.equal(typo.exitCode, 1);
  assert.match(typo.all!, /Unknown key '?Restartt'?/);
  const weak = good
    .split('\n')
    .filter((l) => !/^(NoNewPrivileges|ProtectSystem|CapabilityBoundingSet|SystemCallFilter|PrivateDevices|ProtectKernel\w+)=/.test(l))
    .join('\n');
  await writeFile(join(dir, 'bridgectl.service'), weak);
  const w = await execa('bash', [script, join(dir, 'bridgectl.service')], { reject: false, all: true });
  assert.equal(w.exitCode, 1, w.all);
  assert.match(w.all!, /exposure above/);
});

async function writeConfig(dir: string, text: string): Promise<string> {
  const file = join(dir, 'bridgectl.yaml');
  await writeFile(file, text);
  return file;
}

test('render haproxy: one server per twin with its own source address; valid for haproxy -c', async (t) => {
  const dir = await tmp('haproxy');
  const file = await writeConfig(dir, `nickname: flakey\ninstances: 3\ndataDir: ${dir}/data\nbalancer:\n  listen: 127.0.0.1:10400\n  sourceRange: 127.0.9.0/24\n`);
  const r = await cli(['render', 'haproxy', '--config', file]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(r.stdout, /^\tbind 127\.0\.0\.1:10400$/m);
  const servers = r.stdout.split('\n').filter((l) => l.startsWith('\tserver '));
  assert.deepEqual(servers, [
    '\tserver flakey1 127.0.3.1:10000 source 127.0.9.1',
    '\tserver flakey2 127.0.3.2:10000 source 127.0.9.2',
    '\tserver flakey3 127.0.3.3:10000 source 127.0.9.3',
  ]);
  assert.match(r.stdout, /ServerTransportPlugin extor_static_cookie exec \/usr\/bin\/bridgectl extor-static-cookie .*static_extended_orport_auth_cookie/);
  assert.match(r.stdout, /ServerTransportListenAddr extor_static_cookie 127\.0\.3\.3:10000/);
  assert.equal(addressInRange('127.0.2.0/24', 254), '127.0.2.254');
  assert.throws(() => addressInRange('127.0.2.0/30', 3), /no room/);
  if (!(await has('haproxy'))) {
    t.skip('haproxy is not installed');
    return;
  }
  await writeFile(join(dir, 'haproxy.cfg'), `${r.stdout}\n`);
  const c = await execa('haproxy', ['-c', '-f', join(dir, 'haproxy.cfg')], { reject: false, all: true });
  assert.equal(c.exitCode, 0, c.all);
});

test('render torrc N is the supervisor\'s torrc for instance N', async () => {
  const dir = await tmp('torrc');
  const text = `nickname: twin\ninstances: 2\ndataDir: ${dir}/data\ntorrc: "MaxMemInQueues 1 GB"\n`;
  const file = await writeConfig(dir, text);
  const config = resolveConfig(parseConfigText(text, file), file);
  const r = await cli(['render', 'torrc', '2', '--config', file]);
  assert.equal(r.exitCode, 0, r.stderr);
  assert.equal(r.stdout + '\n', renderInstanceTorrc(config, instanceLayout(config, 2)));
  assert.match(r.stdout, /^Nickname twin2$/m);
  const out = await cli(['render', 'torrc', '3', '--config', file]);
  assert.equal(out.exitCode, 2);
  assert.match(out.stderr, /instances 1\.\.2/);
  assert.equal((await cli(['render', 'torrc', '--config', file])).exitCode, 2);
  const missing = await cli(['render', 'torrc', '1', '--config', join(dir, 'nope.yaml')]);
  assert.equal(missing.exitCode, 78);
  assert.match(missing.stderr, /nope\.yaml:0: config file not found/);
});

test('install.sh into DESTDIR installs the files and keeps an existing config', async () => {
  const dest = await tmp('install');
  const env = { DESTDIR: dest, BRIDGECTL_BIN: '/opt/bridgectl/main.js' };
  const r = await execa('bash', [join(REPO, 'deploy/install.sh')], { reject: false, all: true, env });
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.stdout, /nothing has been started/);
  const files: Array<[string, string]> = [
    ['deploy/bridgectl.service', 'etc/systemd/system/bridgectl.service'],
    ['deploy/sysctl.d/60-bridgectl.conf', 'etc/sysctl.d/60-bridgectl.conf'],
    ['deploy/modules-load.d/bridgectl.conf', 'etc/modules-load.d/bridgectl.conf'],
    ['deploy/bridgectl.example.yaml', 'etc/bridgectl/bridgectl.yaml'],
  ];
  for (const [src, dst] of files) {
    assert.equal(await readFile(join(dest, dst), 'utf8'), await readFile(join(REPO, src), 'utf8'), dst);
  }
  assert.equal((await stat(join(dest, 'etc/bridgectl/bridgectl.yaml'))).mode & 0o777, 0o640);
  assert.equal((await stat(join(dest, 'etc/bridgectl'))).mode & 0o777, 0o750);
  assert.equal((await stat(join(dest, 'var/lib/bridgectl'))).mode & 0o777, 0o700);
  assert.ok((await lstat(join(dest, 'usr/bin/bridgectl'))).isSymbolicLink());
  assert.equal(await readlink(join(dest, 'usr/bin/bridgectl')), '/opt/bridgectl/main.js');

  await writeFile(join(dest, 'etc/bridgectl/bridgectl.yaml'), 'nickname: Mine\n');
  const again = await execa('bash', [join(REPO, 'deploy/install.sh')], { reject: false, all: true, env });
  assert.equal(again.exitCode, 0, again.all);
  assert.match(again.stdout, /kept the existing/);
  assert.match(again.stdout, /unchanged \/etc\/systemd\/system\/bridgectl\.service/);
  assert.equal(await readFile(join(dest, 'etc/bridgectl/bridgectl.yaml'), 'utf8'), 'nickname: Mine\n');
});

test('install.sh refuses to link /usr/bin/bridgectl into /tmp (the unit has PrivateTmp=yes); no sudo in its next steps', async () => {
  const dest = await tmp('install-tmp');
  const r = await execa('bash', [join(REPO, 'deploy/install.sh')], { reject: false, all: true, env: { DESTDIR: dest, BRIDGECTL_BIN: '/tmp/checkout/dist/src/cli/main.js' } });
  assert.equal(r.exitCode, 1, r.all);
  assert.match(r.all!, /refusing to link \/usr\/bin\/bridgectl to \/tmp\/checkout.*PrivateTmp/);
  await assert.rejects(lstat(join(dest, 'usr/bin/bridgectl')));
  const ok = await execa('bash', [join(REPO, 'deploy/install.sh')], { reject: false, all: true, env: { DESTDIR: await tmp('install-ok'), BRIDGECTL_BIN: '/opt/b/main.js' } });
  assert.equal(ok.exitCode, 0, ok.all);
  assert.doesNotMatch(ok.stdout, /\bsudo\b/);
  assert.match(ok.stdout, /bridgectl init/);
});

// keys export → import into a fresh dataDir gives the same fingerprint (issue 5 acceptance), with
// real tor in the private lab: the twins of the new bridge bootstrap and report the old identity.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startLab, freePort, type Lab } from '../src/lab/index.js';
import { connectControl, waitBootstrapped } from '../src/tor/index.js';
import { cli, cliBackground, pidsWith, procName, tmp, waitFor, testLogger } from './helpers.js';

let lab: Lab;
let dir: string;
let sup: ReturnType<typeof cliBackground> | null = null;

async function writeConfig(name: string, instances: number, extOrPort: number): Promise<string> {
  const file = join(dir, `${name}.yaml`);
  await writeFile(
    file,
    stringify({
      nickname: name,
      instances,
      dataDir: join(dir, name),
      contactInfo: 'lab@localhost',
      // Ports of their own: other lab tests run at the same time in the same namespace.
      extOrPort,
      torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
      balancer: { listen: `127.0.0.1:${await freePort()}` },
      metrics: { torMetricsPort: 0 },
    }),
  );
  return file;
}

before(async () => {
  dir = await tmp('keys-lab');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
});

after(async () => {
  if (sup) {
    sup.kill('SIGKILL');
    await sup;
  }
  for (const p of pidsWith(dir)) if (procName(p) === 'tor') process.kill(p, 'SIGKILL');
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('export on the old host, import + init on a fresh one: its twins run with the same fingerprint', { timeout: 240_000 }, async () => {
  const oldConf = await writeConfig('keyold', 1, 10800);
  const init = await cli(['init', '--config', oldConf]);
  assert.equal(init.exitCode, 0, init.all);
  const fp = /fingerprint ([0-9A-F]{40})/.exec(init.all ?? '')![1]!;
  const ed25519 = (await readFile(join(dir, 'keyold', 'identity', 'keys', 'ed25519_master_id_public_key'))).subarray(32).toString('base64').replace(/=+$/, '');

  const archive = join(dir, 'keyold-keys.json');
  const ex = await cli(['keys', 'export', archive, '--config', oldConf]);
  assert.equal(ex.exitCode, 0, ex.all);
  assert.equal((await stat(archive)).mode & 0o777, 0o600);

  // The new host: another nickname, two twins, nothing in its dataDir yet.
  const newConf = await writeConfig('keynew', 2, 10810);
  const im = await cli(['keys', 'import', archive, '--config', newConf]);
  assert.equal(im.exitCode, 0, im.all);
  const again = await cli(['init', '--config', newConf]);
  assert.equal(again.exitCode, 0, again.all);
  assert.match(again.all ?? '', new RegExp(`fingerprint ${fp}`));

  sup = cliBackground(['run', '--config', newConf]);
  for (const name of ['keynew1', 'keynew2']) {
    const d = join(dir, 'keynew', 'instances', name);
    const ctl = await connectControl(join(d, 'control'), join(d, 'control_auth_cookie'), 60_000);
    try {
      await waitBootstrapped(ctl, 120_000);
      assert.equal((await ctl.getInfo('fingerprint')).trim(), fp, `${name}: tor reports the exported fingerprint`);
    } finally {
      ctl.close();
    }
    // tor writes its ed25519 identity next to its keys.
    const edFile = await waitFor(`${name}'s fingerprint-ed25519`, () => readFile(join(d, 'fingerprint-ed25519'), 'utf8'), 10_000);
    assert.equal(edFile.trim().split(/\s+/)[1], ed25519, `${name}: same ed25519 identity`);
  }
  sup.kill('SIGTERM');
  const r = await sup;
  sup = null;
  assert.equal(r.exitCode, 0, r.all?.slice(-2000));

  // A dataDir with an identity of its own: importing there without --force is refused, naming both.
  const otherConf = await writeConfig('keyother', 1, 10820);
  const otherFp = /fingerprint ([0-9A-F]{40})/.exec((await cli(['init', '--config', otherConf])).all ?? '')![1]!;
  const refused = await cli(['keys', 'import', archive, '--config', otherConf]);
  assert.equal(refused.exitCode, 1);
  assert.match(refused.stderr, new RegExp(`holds identity ${fp}.*has identity ${otherFp}`));
});

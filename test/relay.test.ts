// Relay mode without a network: the config's refusals (each with its message), the relay torrc,
// the ORPort arithmetic, signing-certificate expiry, and the on-disk refusals (shared identity,
// missing family key) with keys made by the real tor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseConfigText, resolveConfig, orPortFor, instanceLayout, type ResolvedConfig } from '../src/config/index.js';
import { renderRelayTorrc, initRelays, relayProblems, signingCertExpiry, rsaFingerprint, familyKeyDirOf } from '../src/relay/index.js';
import { listFingerprint, parseNsEntry } from '../src/tor/index.js';
import { cli, configProblems, tmp } from './helpers.js';

const RELAY = `mode: relay
nickname: fam
instances: 3
dataDir: /var/lib/bridgectl
orPort: 192.0.2.10:9001
`;

test('relay config: orPort ADDR:PORT gives instance i PORT+i-1; a list gives one each; IPv6 the same', () => {
  const c = parseConfigText(RELAY + 'orPort6: "[2001:db8::1]:9050"\n', 'x.yaml');
  assert.equal(c.mode, 'relay');
  assert.deepEqual([1, 2, 3].map((i) => orPortFor(c.orPort, i)), ['192.0.2.10:9001', '192.0.2.10:9002', '192.0.2.10:9003']);
  assert.deepEqual([1, 3].map((i) => orPortFor(c.orPort6, i)), ['[2001:db8::1]:9050', '[2001:db8::1]:9052']);
  const l = parseConfigText(RELAY.replace('orPort: 192.0.2.10:9001', 'orPort: [192.0.2.10:443, 192.0.2.11:443, 192.0.2.12:9001]'), 'x.yaml');
  assert.equal(orPortFor(l.orPort, 2), '192.0.2.11:443');
  assert.equal(parseConfigText('nickname: b\ninstances: 2\ndataDir: /d\n', 'x.yaml').mode, 'bridge');
});

test('relay config refuses more relays per IPv4 address than the authorities list (8)', () => {
  const p = configProblems(RELAY.replace('instances: 3', 'instances: 9'));
  const hit = p.find((x) => x.key === 'instances');
  assert.ok(hit, JSON.stringify(p));
  assert.match(hit.message, /9 relays on 192\.0\.2\.10: the directory authorities list at most 8 relays per IPv4 address/);
  assert.equal(hit.line, 3);
  // Eight on one address, or nine spread over two, are fine.
  parseConfigText(RELAY.replace('instances: 3', 'instances: 8'), 'x.yaml');
  const spread = Array.from({ length: 9 }, (_, i) => `192.0.2.${i < 5 ? 1 : 2}:${9001 + i}`);
  parseConfigText(RELAY.replace('instances: 3', 'instances: 9').replace('orPort: 192.0.2.10:9001', `orPort: [${spread.join(', ')}]`), 'x.yaml');
});

test('relay config refuses bridge-only keys (transport, balancer) with file, line and key', () => {
  const p = configProblems(RELAY + 'balancer:\n  listen: 127.0.0.1:10000\ntransport:\n  name: obfs4\n  command: [/usr/bin/obfs4proxy]\n  listen: 0.0.0.0:443\n');
  const b = p.find((x) => x.key === 'balancer');
  const t = p.find((x) => x.key === 'transport');
  assert.ok(b && t, JSON.stringify(p));
  assert.match(b.message, /"balancer" is for bridges; mode: relay has no balancer/);
  assert.equal(b.line, 6);
  assert.equal(t.line, 8);
  assert.equal(b.file, '/etc/bridgectl.yaml');
  // And the other way round: a relay section in a bridge config.
  const r = configProblems('nickname: b\ninstances: 2\ndataDir: /d\nrelay:\n  myFamily: true\n');
  assert.match(r.find((x) => x.key === 'relay')?.message ?? '', /the "relay" section is for mode: relay/);
});

test('relay config refuses ORPorts that cannot work: auto, a short list, a repeated port, v4 where v6 belongs', () => {
  assert.match(configProblems(RELAY.replace('orPort: 192.0.2.10:9001', 'orPort: 127.0.0.1:auto')).find((x) => x.key === 'orPort')?.message ?? '', /must be an IPv4 ADDRESS:PORT in relay mode/);
  assert.match(configProblems(RELAY.replace('orPort: 192.0.2.10:9001', 'orPort: [192.0.2.1:1, 192.0.2.1:2]')).find((x) => x.key === 'orPort')?.message ?? '', /lists 2 ports for 3 instances/);
  assert.match(configProblems(RELAY.replace('orPort: 192.0.2.10:9001', 'orPort: [192.0.2.1:1, 192.0.2.1:2, 192.0.2.1:1]')).find((x) => x.key === 'orPort.2')?.message ?? '', /listed twice/);
  assert.match(configProblems(RELAY + 'orPort6: 192.0.2.1:9001\n').find((x) => x.key === 'orPort6')?.message ?? '', /IPv6/);
  assert.match(configProblems(RELAY.replace('orPort: 192.0.2.10:9001', 'orPort: 192.0.2.10:65534')).find((x) => x.key === 'orPort')?.message ?? '', /run past 65535/);
  // A bridge keeps its single ORPort line: a list there is refused.
  assert.match(configProblems('nickname: b\ninstances: 2\ndataDir: /d\norPort: [127.0.0.1:1, 127.0.0.1:2]\n').find((x) => x.key === 'orPort')?.message ?? '', /for mode: relay/);
});

function cfg(extra = ''): ResolvedConfig {
  return resolveConfig(parseConfigText(RELAY + 'contactInfo: ops@example.org\ntorrc: "MaxMemInQueues 1 GB"\n' + extra, '/etc/bridgectl.yaml'), '/etc/bridgectl.yaml');
}

test('relay torrc: own nickname and ORPorts, FamilyId and its key directory, MyFamily, exit policy, extra lines', () => {
  const c = cfg('orPort6: "[2001:db8::1]:9001"\nrelay:\n  exitPolicy: ["accept *:443", "reject *:*"]\n');
  const fps = ['A'.repeat(40), 'B'.repeat(40), 'C'.repeat(40)];
  const l = instanceLayout(c, 2);
  const members = fps.map((fingerprint, i) => ({ name: `fam${i + 1}`, fingerprint }));
  const t = renderRelayTorrc(c, l, { id: 'pJp9/YTs1SVeGYvOYwKdOCrzyiYK9Oe1lGMXQWSDd78', members });
  const lines = t.split('\n');
  for (const want of [
    'Nickname fam2',
    'ORPort 192.0.2.10:9002',
    'ORPort [2001:db8::1]:9002',
    'FamilyId pJp9/YTs1SVeGYvOYwKdOCrzyiYK9Oe1lGMXQWSDd78',
    `FamilyKeyDirectory ${familyKeyDirOf(l)}`,
    `MyFamily $${fps[0]},$${fps[2]}`, // every other member
    'ExitPolicy accept *:443',
    'ExitPolicy reject *:*',
    'MaxMemInQueues 1 GB',
    'ContactInfo ops@example.org',
  ]) assert.ok(lines.includes(want), `missing "${want}" in\n${t}`);
  for (const never of ['BridgeRelay', 'ExtORPort', 'OfflineMasterKey']) assert.ok(!t.includes(never), `${never} in a relay torrc`);
  assert.ok(renderRelayTorrc(cfg('relay:\n  masterKeyDir: /media/keys\n'), l, { id: 'x', members }).includes('\nOfflineMasterKey 1\n'));
  assert.ok(!renderRelayTorrc(cfg('relay:\n  myFamily: false\n'), l, { id: 'x', members }).includes('MyFamily'));
});

test('relay torrc: the bandwidth section is divided among the relays (R/3 each, R/4 with a fourth)', () => {
  const members = [{ name: 'fam1', fingerprint: 'A'.repeat(40) }];
  const three = cfg('bandwidth:\n  rate: 3 MBytes\n  burst: 6 MBytes\n');
  const t3 = renderRelayTorrc(three, instanceLayout(three, 1), { id: 'x', members }).split('\n');
  assert.ok(t3.includes(`RelayBandwidthRate ${Math.floor((3 * 1024 * 1024) / 3)}`), t3.join('\n'));
  assert.ok(t3.includes(`RelayBandwidthBurst ${Math.floor((6 * 1024 * 1024) / 3)}`), t3.join('\n'));
  const four = { ...three, instances: 4 };
  const t4 = renderRelayTorrc(four, instanceLayout(four, 4), { id: 'x', members }).split('\n');
  assert.ok(t4.includes(`RelayBandwidthRate ${Math.floor((3 * 1024 * 1024) / 4)}`), t4.join('\n'));
  assert.ok(!renderRelayTorrc(cfg(''), instanceLayout(three, 1), { id: 'x', members }).includes('RelayBandwidthRate'));
});

test('signing certificate expiry is read from tor-cert bytes (hours since the epoch)', () => {
  const b = Buffer.alloc(32 + 40);
  b.write('== ed25519v1-cert: type4 ==');
  b[32] = 1;
  b[33] = 4;
  b.writeUInt32BE(498983, 34);
  assert.equal(signingCertExpiry(b).toISOString(), new Date(498983 * 3600_000).toISOString());
  assert.throws(() => signingCertExpiry(Buffer.alloc(80)), /bad header/);
});

test('init makes each relay its own identity with tor and one family key; shared identity and missing family key are refused', async () => {
  const dir = await tmp('relay-init');
  try {
    const file = join(dir, 'bridgectl.yaml');
    await writeFile(file, RELAY.replace('/var/lib/bridgectl', join(dir, 'data')));
    const r = await cli(['init', '--config', file]);
    assert.equal(r.exitCode, 0, r.all);
    assert.match(r.all ?? '', /FamilyId [A-Za-z0-9+/]{43}/);
    const c = resolveConfig(parseConfigText(await readFile(file, 'utf8'), file), file);
    const layouts = [1, 2, 3].map((i) => instanceLayout(c, i));
    const fps = await Promise.all(layouts.map((l) => rsaFingerprint(l.keysDir)));
    assert.equal(new Set(fps).size, 3, 'three identities');
    // Our fingerprint reading agrees with tor's.
    assert.equal(fps[0], await listFingerprint(layouts[0]!.dataDir, 'fam1'));
    const keys = await Promise.all(layouts.map((l) => readFile(join(familyKeyDirOf(l), 'fam.secret_family_key'))));
    assert.ok(keys.every((k) => k.equals(keys[0]!)), 'one family key on every instance');
    assert.deepEqual(await relayProblems(c), []);
    // Idempotent: a second init changes nothing.
    const again = await cli(['init', '--config', file]);
    assert.match(again.all ?? '', /everything was already in place/);
    assert.deepEqual(await Promise.all(layouts.map((l) => rsaFingerprint(l.keysDir))), fps);

    // render torrc shows what relay 2's tor reads: its family, from the keys on disk.
    const rendered = (await cli(['render', 'torrc', '2', '--config', file])).stdout;
    assert.match(rendered, /^Nickname fam2$/m);
    assert.match(rendered, /^ORPort 192\.0\.2\.10:9002$/m);
    assert.match(rendered, /^FamilyId [A-Za-z0-9+/]{43}$/m);
    assert.ok(rendered.includes(`MyFamily $${fps[0]},$${fps[2]}\n`), rendered);

    // keys export/import: every relay's identity and the family key move to another data directory.
    const archive = join(dir, 'relays.keys');
    const ex = await cli(['keys', 'export', archive, '--config', file]);
    assert.equal(ex.exitCode, 0, ex.all);
    assert.equal((await stat(archive)).mode & 0o777, 0o600);
    const fileB = join(dir, 'b.yaml');
    await writeFile(fileB, RELAY.replace('/var/lib/bridgectl', join(dir, 'dataB')));
    const im = await cli(['keys', 'import', archive, '--config', fileB]);
    assert.equal(im.exitCode, 0, im.all);
    const cB = resolveConfig(parseConfigText(await readFile(fileB, 'utf8'), fileB), fileB);
    const layoutsB = [1, 2, 3].map((i) => instanceLayout(cB, i));
    assert.deepEqual(await Promise.all(layoutsB.map((l) => rsaFingerprint(l.keysDir))), fps, 'same identities after import');
    assert.match(im.all ?? '', new RegExp(`FamilyId ${(/FamilyId (\S+)/.exec(r.all ?? '')?.[1] ?? 'x').replace(/[+/]/g, '\\$&')}`));
    assert.deepEqual(await relayProblems(cB), []);
    assert.match((await cli(['keys', 'import', archive, '--config', fileB])).all ?? '', /nothing to do/);
    // A corrupt archive, and an archive over another identity, are refused and change nothing.
    const text = await readFile(archive, 'utf8');
    const a = JSON.parse(text) as { relays: Array<{ files: Array<{ data: string }> }> };
    a.relays[0]!.files[0]!.data = Buffer.from('x').toString('base64');
    await writeFile(join(dir, 'bad.keys'), JSON.stringify(a));
    assert.match((await cli(['keys', 'import', join(dir, 'bad.keys'), '--config', fileB])).all ?? '', /does not match its digest/);
    await rm(layoutsB[0]!.keysDir, { recursive: true });
    await cp(layoutsB[1]!.keysDir, layoutsB[0]!.keysDir, { recursive: true });
    const other = await cli(['keys', 'import', archive, '--config', fileB]);
    assert.notEqual(other.exitCode, 0);
    assert.match(other.all ?? '', /fam1 already has another identity .* move .* aside first/);
    assert.equal(await rsaFingerprint(layoutsB[0]!.keysDir), fps[1], 'nothing changed');

    // A family key missing on one instance: refused with its name.
    await rm(join(familyKeyDirOf(layouts[1]!), 'fam.secret_family_key'));
    assert.match((await relayProblems(c)).join('\n'), /fam2 has no family key/);
    const run = await cli(['run', '--config', file]);
    assert.notEqual(run.exitCode, 0);
    assert.match(run.all ?? '', /refusing to start the relays:[\s\S]*fam2 has no family key/);
    await initRelays(c); // puts it back
    assert.deepEqual(await relayProblems(c), []);

    // An identity copied from one instance to another: refused.
    await rm(layouts[2]!.keysDir, { recursive: true });
    await cp(layouts[0]!.keysDir, layouts[2]!.keysDir, { recursive: true });
    const p = (await relayProblems(c)).join('\n');
    assert.match(p, /fam1 and fam3 share one identity .* in relay mode every instance needs its own/);
    await assert.rejects(initRelays(c), /share one identity/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('offline master keys: init keeps them out of the data directories; doctor flags a certificate about to expire; keys sign renews all, fingerprints kept', async () => {
  const dir = await tmp('relay-offline');
  try {
    const file = join(dir, 'bridgectl.yaml');
    const master = join(dir, 'usb-stick');
    const text = (days: number): string =>
      RELAY.replace('/var/lib/bridgectl', join(dir, 'data')).replace('instances: 3', 'instances: 2') +
      `relay:\n  masterKeyDir: ${master}\n  signingKeyLifetimeDays: ${days}\n  signingWarnDays: 14\n`;
    await writeFile(file, text(2));
    const init = await cli(['init', '--config', file]);
    assert.equal(init.exitCode, 0, init.all);
    const c = resolveConfig(parseConfigText(await readFile(file, 'utf8'), file), file);
    const layouts = [1, 2].map((i) => instanceLayout(c, i));
    const fps = await Promise.all(layouts.map((l) => rsaFingerprint(l.keysDir)));
    const ed = await Promise.all(layouts.map((l) => readFile(join(l.keysDir, 'ed25519_master_id_public_key'))));
    for (const l of layouts) {
      await assert.rejects(readFile(join(l.keysDir, 'ed25519_master_id_secret_key')), /ENOENT/, `${l.name}: master secret key in the data directory`);
      assert.ok((await readFile(join(master, l.name, 'keys', 'ed25519_master_id_secret_key'))).length > 0);
    }
    const certs = await Promise.all(layouts.map((l) => readFile(join(l.keysDir, 'ed25519_signing_cert'))));

    type Report = { ok: boolean; checks: Array<{ id: string; status: string; found: string }> };
    const doctor = async (): Promise<Report['checks'][number]> => {
      const r = await cli(['doctor', '--json', '--config', file]);
      const rep = JSON.parse(r.stdout) as Report;
      const f = rep.checks.find((x) => x.id === 'relay.signing-cert');
      assert.ok(f, r.all);
      assert.equal(rep.checks.find((x) => x.id === 'relay.identities')?.status, 'pass', r.stdout);
      const per = rep.checks.find((x) => x.id === 'relay.per-address');
      assert.equal(per?.status, 'pass', r.stdout);
      assert.equal(per?.found, '2 on 192.0.2.10');
      assert.ok(!rep.checks.some((x) => x.id === 'keys.fingerprint'), 'no twin-identity check in relay mode');
      return f;
    };
    const soon = await doctor();
    assert.equal(soon.status, 'warn', soon.found);
    assert.match(soon.found, /fam1 expires .* \(\d\.\d days\)/);

    await writeFile(file, text(30));
    const sign = await cli(['keys', 'sign', '--config', file]);
    assert.equal(sign.exitCode, 0, sign.all);
    assert.match(sign.all ?? '', /fam1: new signing certificate[\s\S]*fam2: new signing certificate[\s\S]*no running supervisor/);
    const after = await Promise.all(layouts.map((l) => readFile(join(l.keysDir, 'ed25519_signing_cert'))));
    after.forEach((cert, i) => {
      assert.ok(!cert.equals(certs[i]!), `fam${i + 1}'s certificate renewed`);
      assert.ok(signingCertExpiry(cert).getTime() > Date.now() + 29 * 86_400_000);
    });
    assert.equal((await doctor()).status, 'pass');
    assert.deepEqual(await Promise.all(layouts.map((l) => rsaFingerprint(l.keysDir))), fps, 'RSA fingerprints kept');
    assert.deepEqual(await Promise.all(layouts.map((l) => readFile(join(l.keysDir, 'ed25519_master_id_public_key')))), ed, 'ed25519 identities kept');
    // tor itself loads the new keys without its master key.
    assert.equal(await listFingerprint(layouts[0]!.dataDir, 'fam1', 'tor', ['--OfflineMasterKey', '1']), fps[0]);

    // With one master key missing, nothing is signed.
    await rm(join(master, 'fam2'), { recursive: true });
    const refused = await cli(['keys', 'sign', '--config', file]);
    assert.notEqual(refused.exitCode, 0);
    assert.match(refused.all ?? '', /fam2: no master key at .*ed25519_master_id_secret_key/);
    assert.ok((await readFile(join(layouts[0]!.keysDir, 'ed25519_signing_cert'))).equals(after[0]!), 'fam1 untouched');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a relay\'s consensus entry from GETINFO ns/id (as the control client joins its data block)', () => {
  const e = parseNsEntry('ns/id/AAAA=r labrelay1 q83v dGVzdA 2038-01-01 00:00:00 127.0.0.1 9001 0\ns Fast Guard Running Stable Valid\nw Bandwidth=20');
  assert.deepEqual(e, { nickname: 'labrelay1', flags: ['Fast', 'Guard', 'Running', 'Stable', 'Valid'], weight: 20 });
  assert.equal(parseNsEntry(''), null);
});

// Relay mode against real tor 0.4.9 in the private lab (issue 15 acceptance 1 and 2): three relays,
// each its own identity, in the lab consensus as separate relays, declaring one family; a lab client
// builds circuits through each, pinned as guard and as middle, and downloads intact; add-instance
// brings a fourth into the consensus and the family without restarting the others; remove-instance
// takes it out of every declaration.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { stringify } from 'yaml';
import { startLab, startClient, freePort, type Lab, type LabClient } from '../src/lab/index.js';
import { connectControl, type TorControl } from '../src/tor/index.js';
import { SocksClient } from 'socks';
import { cli, cliBackground, pidsWith, procName, tmp, waitFor, testLogger } from './helpers.js';

let lab: Lab;
let dir: string;
let configFile: string;
let dataDir: string;
let sup: ReturnType<typeof cliBackground>;
let client: LabClient | null = null;
let metricsPort = 0;
const fps = new Map<string, string>();

const torPids = (name = ''): number[] => pidsWith(join(dataDir, 'instances', name)).filter((p) => procName(p) === 'tor');

function dirGet(path: string): Promise<string> {
  const a = lab.authorities[0]!;
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: a.dirPort, path, timeout: 5000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks).toString('latin1')) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
      })
      .on('error', reject)
      .on('timeout', function (this: http.ClientRequest) {
        this.destroy(new Error('timeout'));
      });
  });
}

/** Nickname → hex fingerprint of every relay in the authorities' current consensus. */
async function consensusRelays(): Promise<Map<string, string>> {
  const text = await dirGet('/tor/status-vote/current/consensus');
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^r (\S+) (\S+) /gm)) out.set(m[1]!, Buffer.from(m[2]!, 'base64').toString('hex').toUpperCase());
  return out;
}

/** Each relay's current server descriptor at the authority, as published. */
async function descriptors(fingerprints: string[]): Promise<Map<string, string>> {
  const text = await dirGet(`/tor/server/fp/${fingerprints.join('+')}`);
  const out = new Map<string, string>();
  for (const d of text.split(/^(?=router )/m).filter((x) => x.startsWith('router '))) {
    const fp = /^fingerprint ((?:[0-9A-F]{4} ?){10})$/m.exec(d)?.[1]?.replace(/ /g, '');
    if (fp) out.set(fp, d);
  }
  return out;
}

/** The `family` line's members (MyFamily as tor publishes it: $FP, sometimes with ~nick). */
function familyLine(desc: string): string[] {
  const l = /^family (.*)$/m.exec(desc)?.[1] ?? '';
  return l.split(' ').filter(Boolean).map((x) => x.replace(/^\$/, '').replace(/[~=].*$/, '').toUpperCase());
}

async function freeRun(n: number): Promise<number> {
  const free = (p: number): Promise<boolean> =>
    new Promise((r) => {
      const s = net.createServer();
      s.once('error', () => r(false));
      s.listen(p, '127.0.0.1', () => s.close(() => r(true)));
    });
  for (;;) {
    const base = 20000 + Math.floor(Math.random() * 20000);
    let ok = true;
    for (let i = 0; i < n && ok; i++) ok = await free(base + i);
    if (ok) return base;
  }
}

before(async () => {
  dir = await tmp('relays');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger, fileSize: 256 * 1024 });
  dataDir = join(dir, 'relays');
  configFile = join(dir, 'bridgectl.yaml');
  await writeFile(
    configFile,
    stringify({
      mode: 'relay',
      nickname: 'labrelay',
      instances: 3,
      dataDir,
      orPort: `127.0.0.1:${await freeRun(4)}`,
      contactInfo: 'lab@localhost',
      torrc: [...lab.torrcLines, 'Address 127.0.0.1', 'AssumeReachable 1'].join('\n') + '\n',
      restart: { initialDelayMs: 300 },
      metrics: { listen: `127.0.0.1:${(metricsPort = await freePort())}` },
      logLevel: 'debug',
    }),
  );
});

after(async () => {
  await client?.stop();
  sup?.kill('SIGTERM');
  await sup?.catch(() => undefined);
  for (const p of torPids()) process.kill(p, 'SIGKILL');
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('three relays: separate identities in the lab consensus, one declared family', { timeout: 150_000 }, async () => {
  const init = await cli(['init', '--config', configFile]);
  assert.equal(init.exitCode, 0, init.all);
  const familyId = /FamilyId (\S+)/.exec(init.all ?? '')?.[1];
  assert.ok(familyId, init.all);
  for (const m of (init.all ?? '').matchAll(/^ {2}(labrelay\d) ([0-9A-F]{40})$/gm)) fps.set(m[1]!, m[2]!);
  assert.equal(new Set(fps.values()).size, 3, init.all);

  sup = cliBackground(['run', '--config', configFile]);
  const listed = await waitFor(
    'three relays in the consensus',
    async () => {
      const c = await consensusRelays();
      return ['labrelay1', 'labrelay2', 'labrelay3'].every((n) => c.get(n) === fps.get(n)) ? c : null;
    },
    120_000,
    1000,
  ).catch((e: Error) => assert.fail(`${e.message}\n${sup.all ?? ''}`));
  assert.equal(new Set(['labrelay1', 'labrelay2', 'labrelay3'].map((n) => listed.get(n))).size, 3);

  // Every descriptor declares the other two (MyFamily) and carries a family certificate (FamilyId).
  const all = [...fps.values()];
  const descs = await descriptors(all);
  for (const [name, fp] of fps) {
    const d = descs.get(fp);
    assert.ok(d, `no descriptor for ${name}`);
    assert.deepEqual(familyLine(d).filter((x) => x !== fp).sort(), all.filter((x) => x !== fp).sort(), `${name}'s family line`);
    assert.match(d, /^family-cert\n-----BEGIN FAMILY CERT-----/m, `${name} has no family-cert`);
  }
  // The certificates are made by one family key: the microdescriptors name one family id.
  const micro = await dirGet('/tor/status-vote/current/consensus-microdesc');
  const digests = [...micro.matchAll(/^r (labrelay\d) [\s\S]*?^m (\S+)$/gm)].map((m) => m[2]!);
  assert.equal(digests.length, 3, 'three microdescriptors');
  const mds = await dirGet(`/tor/micro/d/${digests.join('-')}`);
  const ids = [...mds.matchAll(/^family-ids (.*)$/gm)].map((m) => m[1]);
  assert.equal(ids.length, 3, mds);
  assert.ok(ids.every((x) => x === ids[0] && x!.includes(familyId!.replace(/=$/, ''))), `family-ids ${ids.join(' | ')} vs FamilyId ${familyId}`);

  // Listed by the authorities can come before each tor reports itself bootstrapped: wait for that.
  type St = { mode: string; instances: Array<{ name: string; fingerprint: string; state: string }> };
  const st = await waitFor(
    'status: three relays running',
    async () => {
      const s = JSON.parse((await cli(['status', '--json', '--config', configFile])).stdout) as St;
      return s.instances.every((i) => i.state === 'running') ? s : null;
    },
    60_000,
    500,
  );
  assert.equal(st.mode, 'relay');
  assert.deepEqual(st.instances.map((i) => [i.name, i.fingerprint, i.state]), [...fps].map(([n, f]) => [n, f, 'running']));
});

/** A circuit along `path` (fingerprints), a stream attached to it, and a download through it. */
async function fetchThrough(ctl: TorControl, socksPort: number, path: string[]): Promise<Buffer> {
  const r = await ctl.command(`EXTENDCIRCUIT 0 ${path.map((f) => `$${f}`).join(',')}`);
  const circ = /EXTENDED (\d+)/.exec(r.lines[0] ?? '')?.[1];
  assert.ok(circ, r.lines.join(' '));
  const built = new Promise<void>((resolve, reject) => {
    const on = (lines: string[]): void => {
      const m = new RegExp(`^CIRC ${circ} (BUILT|FAILED|CLOSED)`).exec(lines[0] ?? '');
      if (!m) return;
      ctl.off('event', on);
      if (m[1] === 'BUILT') resolve();
      else reject(new Error(`circuit ${path.join(',')}: ${lines[0]}`));
    };
    ctl.on('event', on);
  });
  await built;
  const attach = (lines: string[]): void => {
    const m = /^STREAM (\d+) NEW 0 /.exec(lines[0] ?? '');
    if (m) void ctl.command(`ATTACHSTREAM ${m[1]} ${circ}`).catch(() => undefined);
  };
  ctl.on('event', attach);
  try {
    const u = new URL(lab.http.url);
    const { socket } = await SocksClient.createConnection({
      proxy: { host: '127.0.0.1', port: socksPort, type: 5 },
      command: 'connect',
      destination: { host: u.hostname, port: Number(u.port) },
      timeout: 60_000,
    });
    const body = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      socket.on('data', (d: Buffer) => chunks.push(d));
      socket.on('error', reject);
      socket.on('close', () => {
        const all = Buffer.concat(chunks);
        resolve(all.subarray(all.indexOf('\r\n\r\n') + 4));
      });
      socket.write(`GET ${u.pathname} HTTP/1.0\r\nHost: ${u.host}\r\n\r\n`);
    });
    return body;
  } finally {
    ctl.off('event', attach);
    await ctl.command(`CLOSECIRCUIT ${circ}`).catch(() => undefined);
  }
}

test('a lab client builds circuits through each relay, as guard and as middle, and downloads intact', { timeout: 120_000 }, async () => {
  const cdir = join(dir, 'client');
  client = await startClient({ name: 'client', dir: cdir, labTorrc: lab.torrcLines, logger: testLogger });
  const ctl = await connectControl(join(cdir, 'control'), join(cdir, 'control_auth_cookie'), 30_000);
  try {
    // Known from the consensus is not enough for EXTENDCIRCUIT: it needs each relay's microdescriptor.
    await waitFor('the client has the three relays\' microdescriptors', async () => {
      for (const fp of fps.values()) await ctl.getInfo(`md/id/${fp}`);
      return true;
    }, 60_000, 1000);
    await ctl.command('SETCONF __LeaveStreamsUnattached=1');
    await ctl.command('SETEVENTS CIRC STREAM');
    const [a1, a2, a3] = lab.authorities.map((a) => a.fingerprint);
    for (const [name, fp] of fps) {
      for (const [role, path] of [['guard', [fp, a1!, a2!]], ['middle', [a3!, fp, a2!]]] as const) {
        const body = await fetchThrough(ctl, client.socksPort, [...path]);
        assert.equal(createHash('sha256').update(body).digest('hex'), lab.http.sha256, `download through ${name} as ${role}`);
      }
    }
  } finally {
    ctl.close();
  }
});

test('add-instance: a fourth relay joins consensus and family, the others declare it without a restart; remove-instance takes it out', { timeout: 150_000 }, async () => {
  const before = new Map(['labrelay1', 'labrelay2', 'labrelay3'].map((n) => [n, torPids(n)]));
  const add = await cli(['add-instance', '--config', configFile]);
  assert.equal(add.exitCode, 0, add.all);
  assert.match(add.all ?? '', /added labrelay4/);
  assert.match(await readFile(configFile, 'utf8'), /^instances: 4$/m);
  const fp4 = await waitFor('labrelay4 in the consensus', async () => (await consensusRelays()).get('labrelay4'), 90_000, 1000);
  assert.ok(![...fps.values()].includes(fp4), 'its own identity');
  const all = [...fps.values(), fp4];
  await waitFor(
    'every relay declaring all four',
    async () => {
      const d = await descriptors(all);
      return all.every((fp) => {
        const fam = familyLine(d.get(fp) ?? '');
        return all.filter((x) => x !== fp).every((x) => fam.includes(x));
      });
    },
    60_000,
    1000,
  );
  for (const [n, pids] of before) assert.deepEqual(torPids(n), pids, `${n} was not restarted`);

  const rm4 = await cli(['remove-instance', 'labrelay4', '--config', configFile]);
  assert.equal(rm4.exitCode, 0, rm4.all);
  assert.match(await readFile(configFile, 'utf8'), /^instances: 3$/m);
  assert.deepEqual(torPids('labrelay4'), []);
  const three = [...fps.values()];
  await waitFor(
    'no relay declaring labrelay4 any more',
    async () => {
      const d = await descriptors(three);
      return three.every((fp) => d.has(fp) && !familyLine(d.get(fp)!).includes(fp4));
    },
    60_000,
    1000,
  );
  for (const [n, pids] of before) assert.deepEqual(torPids(n), pids, `${n} was not restarted`);
});

test('status shows each relay\'s flags and weight once listed; a rolling restart keeps every fingerprint', { timeout: 120_000 }, async () => {
  let last = '';
  const text = await waitFor(
    'flags of all three relays in status',
    async () => {
      const r = await cli(['status', '--config', configFile]);
      last = r.stdout;
      return [...fps].every(([n, fp]) => new RegExp(`^${n} +running .*\\bRunning\\b.* +\\d+ +.* ${fp}$`, 'm').test(r.stdout)) ? r.stdout : null;
    },
    60_000,
    1000,
  ).catch((e: Error) => assert.fail(`${e.message}; last status:\n${last}`));
  assert.match(text, /^relay family labrelay .*FamilyId \S+/m);
  // Metrics: bridgectl's per-relay gauges and every relay's own tor MetricsPort, labelled per relay.
  const scrape = await new Promise<string>((resolve, reject) =>
    http.get({ host: '127.0.0.1', port: metricsPort, path: '/metrics' }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (b += d));
      res.on('end', () => resolve(b));
    }).on('error', reject),
  );
  for (const n of fps.keys()) {
    // Each relay is told apart by a label of its own (twin=), as the bridge's twins are; instance stays the host's.
    assert.match(scrape, new RegExp(`^bridgectl_instance_up\\{twin="${n}"\\} 1$`, 'm'), `${n} up in metrics`);
    assert.match(scrape, new RegExp(`^tor_\\w+\\{[^}]*twin="${n}"`, 'm'), `${n}'s tor metrics`);
  }
  const before = [...fps.keys()].map((n) => torPids(n)[0]);
  const { controlRequest } = await import('../src/supervisor/index.js');
  const { loadConfig } = await import('../src/config/index.js');
  const r = (await controlRequest(loadConfig(configFile).config.runtimeDir, 'restart', {}, 100_000)) as { restarted: string[] };
  assert.deepEqual(r.restarted, [...fps.keys()]);
  const after = [...fps.keys()].map((n) => torPids(n)[0]);
  after.forEach((p, i) => assert.notEqual(p, before[i], 'a new tor process'));
  const st = JSON.parse((await cli(['status', '--json', '--config', configFile])).stdout) as { instances: Array<{ name: string; fingerprint: string; state: string }> };
  assert.deepEqual(st.instances.map((i) => [i.name, i.fingerprint, i.state]), [...fps].map(([n, f]) => [n, f, 'running']));
});

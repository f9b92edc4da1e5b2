// Two transports at once behind the one balancer, with real tor and obfs4proxy (issue 13): obfs4
// and bridgectl's own extor-static-cookie as a second managed transport, each carrying downloads;
// `bridgectl restart transport obfs4` restarts it alone while a download through the other goes on.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, rm } from 'node:fs/promises';
import net from 'node:net';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { stringify } from 'yaml';
import { startLab, startClient, fetchViaSocks, freePort, type Lab, type LabClient } from '../src/lab/index.js';
import { dialExtOr, readCookieFile } from '../src/extorport/index.js';
import type { BridgeStatus } from '../src/supervisor/index.js';
import { CLI, cli, cliBackground, tmp, waitFor, testLogger } from './helpers.js';

const OBFS4 = '/usr/bin/obfs4proxy';
let lab: Lab;
let dir: string;
let configFile: string;
let sup: ReturnType<typeof cliBackground> | null = null;
let shim: net.Server | null = null;
const clients: LabClient[] = [];
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const status = async (): Promise<BridgeStatus> => JSON.parse((await cli(['status', '--json', '--config', configFile])).stdout) as BridgeStatus;

before(async () => {
  dir = await tmp('pts');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger, fileSize: 8 << 20 });
  configFile = join(dir, 'bridgectl.yaml');
  const dataDir = join(dir, 'bridge');
  await writeFile(configFile, stringify({
    nickname: 'pts', instances: 2, dataDir, extOrPort: 10250,
    torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
    restart: { initialDelayMs: 300 },
    balancer: { listen: `127.0.0.1:${await freePort()}` },
    transports: [
      { name: 'obfs4', command: [OBFS4], listen: `127.0.0.1:${await freePort()}` },
      { name: 'extor_static_cookie', command: [process.execPath, CLI, 'extor-static-cookie', join(dataDir, 'static_extended_orport_auth_cookie')], listen: `127.0.0.1:${await freePort()}` },
    ],
  }));
  const init = await cli(['init', '--config', configFile]);
  assert.equal(init.exitCode, 0, init.all);
});

after(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  shim?.close();
  sup?.kill('SIGTERM');
  await sup;
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('obfs4 and extor_static_cookie at once: each its own process and state dir, each carries downloads; restart one alone', { timeout: 240_000 }, async () => {
  sup = cliBackground(['run', '--config', configFile]);
  const st = await waitFor('both transports and the twins', async () => {
    const s = await status().catch(() => null);
    return s?.ready && s.instances.every((i) => i.state === 'running') && s.transports?.every((t) => t.state === 'running') ? s : null;
  }, 150_000, 500);
  assert.deepEqual(st.transports!.map((t) => t.name), ['obfs4', 'extor_static_cookie']);
  assert.notEqual(st.transports![0]!.stateDir, st.transports![1]!.stateDir);
  const bl = await cli(['bridgeline', '--config', configFile]);
  assert.equal(bl.exitCode, 0, bl.all);
  const lines = bl.stdout.trim().split('\n');
  assert.equal(lines.length, 2);
  assert.match(lines[0]!, /^obfs4 127\.0\.0\.1:\d+ [0-9A-F]{40} cert=\S+ iat-mode=0$/);
  const fp = st.instances[0]!.fingerprint!;
  // A vanilla client reaches extor_static_cookie through a small shim that speaks its Extended ORPort side.
  const esc = st.transports![1]!.smethod!.address.split(':');
  const cookie = await readCookieFile(join(dir, 'bridge', 'static_extended_orport_auth_cookie'));
  shim = net.createServer((c) => {
    c.pause();
    dialExtOr({ host: esc[0]!, port: Number(esc[1]), cookie, userAddr: '127.0.0.1:1', transport: 'extor_static_cookie' }).then(
      ({ socket, rest }) => {
        if (rest.length) c.write(rest);
        c.pipe(socket).pipe(c);
        c.resume();
        socket.on('close', () => c.destroy());
        c.on('close', () => socket.destroy());
      },
      () => c.destroy(),
    );
  });
  await new Promise<void>((r) => shim!.listen(0, '127.0.0.1', r));
  const shimPort = (shim.address() as net.AddressInfo).port;
  const [a, b] = await Promise.all([
    startClient({ name: 'obfs4c', dir: join(dir, 'ca'), labTorrc: lab.torrcLines, bridges: [lines[0]!], transportPlugins: [`obfs4 exec ${OBFS4}`], logger: testLogger }),
    startClient({ name: 'escc', dir: join(dir, 'cb'), labTorrc: lab.torrcLines, bridges: [`127.0.0.1:${shimPort} ${fp}`], logger: testLogger }),
  ]);
  clients.push(a!, b!);
  assert.equal(sha(await fetchViaSocks(a!.socksPort, lab.http.url)), lab.http.sha256);
  assert.equal(sha(await fetchViaSocks(b!.socksPort, lab.http.url)), lab.http.sha256);
  // Restart obfs4 alone while a download through extor_static_cookie goes on.
  const before = await status();
  const twinPids = before.instances.map((i) => i.pid);
  const escPid = before.transports![1]!.pid;
  const download = fetchViaSocks(b!.socksPort, lab.http.url, 120_000);
  const r = await cli(['restart', 'transport', 'obfs4', '--config', configFile]);
  assert.equal(r.exitCode, 0, r.all);
  assert.equal(sha(await download), lab.http.sha256, 'the other transport\'s download went on');
  const afterSt = await status();
  assert.notEqual(afterSt.transports![0]!.pid, before.transports![0]!.pid, 'obfs4 has a new process');
  assert.equal(afterSt.transports![1]!.pid, escPid, 'extor_static_cookie untouched');
  assert.deepEqual(afterSt.instances.map((i) => i.pid), twinPids, 'twins untouched');
  assert.equal(afterSt.transports![1]!.restarts, 0);
  const again = await waitFor('obfs4 again', () => fetchViaSocks(a!.socksPort, lab.http.url, 30_000), 120_000, 1000);
  assert.equal(sha(again), lab.http.sha256);
});

// The whole path with real parts: tor client + obfs4proxy → supervised obfs4proxy → balancer →
// twins (issue 4 acceptance 1-4).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { stringify, parse as parseYaml } from 'yaml';
import { startLab, startClient, fetchViaSocks, freePort, type Lab, type LabClient } from '../src/lab/index.js';
import { controlRequest, type BridgeStatus } from '../src/supervisor/index.js';
import { cli, cliBackground, pidsWith, procName, tmp, waitFor, testLogger } from './helpers.js';

const OBFS4 = '/usr/bin/obfs4proxy';
let lab: Lab;
let dir: string;
let dataDir: string;
let configFile: string;
let sup: ReturnType<typeof cliBackground> | null = null;
const clients: LabClient[] = [];
let line = '';

async function writeConfig(file: string, transport: object): Promise<void> {
  await writeFile(
    file,
    stringify({
      nickname: 'ptlab',
      instances: 3,
      dataDir,
      contactInfo: 'lab@localhost',
      extOrPort: 10200,
      torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
      restart: { initialDelayMs: 300 },
      balancer: { listen: `127.0.0.1:${await freePort()}` },
      transport,
    }),
  );
}

const status = async (): Promise<BridgeStatus> => {
  const r = await cli(['status', '--json', '--config', configFile]);
  assert.equal(r.exitCode, 0, r.all);
  return JSON.parse(r.stdout) as BridgeStatus;
};

/** Pids of managed transports started as servers (their environment names server transports). */
function serverTransportPids(): number[] {
  return pidsWith(OBFS4).filter((p) => {
    try {
      return readFileSync(`/proc/${p}/environ`, 'utf8').includes(`TOR_PT_STATE_LOCATION=${join(dataDir, 'pt_state')}\0`);
    } catch {
      return false;
    }
  });
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

async function fetchWithRetry(c: LabClient, timeoutMs: number): Promise<Buffer> {
  return waitFor(`a download through ${c.name}`, () => fetchViaSocks(c.socksPort, lab.http.url, 20_000), timeoutMs, 1000);
}

before(async () => {
  dir = await tmp('pt');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  dataDir = join(dir, 'bridge');
  configFile = join(dir, 'bridgectl.yaml');
  // The transport section of the worked example in templates/, on a lab address.
  const example = parseYaml(await readFile(new URL('../../templates/transports/obfs4proxy.yaml', import.meta.url), 'utf8')) as {
    transport: Record<string, unknown>;
  };
  assert.equal(example.transport.command?.toString(), OBFS4);
  await writeConfig(configFile, { ...example.transport, listen: `127.0.0.1:${await freePort()}`, publicAddress: undefined });
  const init = await cli(['init', '--config', configFile]);
  assert.equal(init.exitCode, 0, init.all);
});

after(async () => {
  await Promise.all(clients.map((c) => c.stop()));
  sup?.kill('SIGTERM');
  await sup;
  await lab?.stop();
  await rm(dir, { recursive: true, force: true });
});

test('a real obfs4 client using `bridgectl bridgeline` downloads through obfs4proxy → balancer → twins', { timeout: 180_000 }, async () => {
  sup = cliBackground(['run', '--config', configFile]);
  const st = await waitFor('the bridge to be ready', async () => {
    const s = await status().catch(() => null);
    return s?.ready && s.instances.every((i) => i.state === 'running') ? s : null;
  }, 120_000, 500);
  assert.equal(st.transport?.state, 'running');
  const bl = await cli(['bridgeline', '--config', configFile]);
  assert.equal(bl.exitCode, 0, bl.all);
  line = bl.stdout.trim();
  const fp = st.instances[0]!.fingerprint!;
  assert.match(line, new RegExp(`^obfs4 127\\.0\\.0\\.1:\\d+ ${fp} cert=\\S+ iat-mode=0$`));
  const c = await startClient({
    name: 'obfs4-a',
    dir: join(dir, 'client-a'),
    labTorrc: lab.torrcLines,
    bridges: [line],
    transportPlugins: [`obfs4 exec ${OBFS4}`],
    logger: testLogger,
  });
  clients.push(c);
  for (let i = 0; i < 2; i++) assert.equal(sha(await fetchViaSocks(c.socksPort, lab.http.url)), lab.http.sha256);
});

test('with 4 obfs4 clients and 3 twins, every twin carries sessions', { timeout: 180_000 }, async () => {
  const more = await Promise.all(
    ['b', 'c', 'd'].map((k) =>
      startClient({
        name: `obfs4-${k}`,
        dir: join(dir, `client-${k}`),
        labTorrc: lab.torrcLines,
        bridges: [line],
        transportPlugins: [`obfs4 exec ${OBFS4}`],
        logger: testLogger,
      }),
    ),
  );
  clients.push(...more);
  await Promise.all(clients.map(async (c) => assert.equal(sha(await fetchViaSocks(c.socksPort, lab.http.url)), lab.http.sha256)));
  const st = await status();
  for (const i of st.instances) assert.ok(i.sessionsTotal > 0, `${i.name} carried sessions: ${JSON.stringify(st.instances.map((x) => [x.name, x.sessionsTotal]))}`);
  assert.ok(st.instances.reduce((a, i) => a + i.bytesOut, 0) >= 4 * lab.http.file.length, 'bytes from the twins counted');
});

test('SIGKILL of the transport: it is restarted and a client that retries succeeds again', { timeout: 180_000 }, async () => {
  const before = await status();
  const pid = before.transport!.pid!;
  assert.equal(procName(pid), 'obfs4proxy');
  const t0 = Date.now();
  process.kill(pid, 'SIGKILL');
  const after = await waitFor('a new transport', async () => {
    const s = (await controlRequest(join(dataDir, 'run'), 'status')) as BridgeStatus;
    return s.transport?.state === 'running' && s.transport.pid !== pid ? s : null;
  }, 2_000, 50);
  assert.ok(Date.now() - t0 <= 2_000, 'restarted and set up again within 2 s');
  assert.equal(after.transport!.restarts, before.transport!.restarts + 1);
  assert.equal(procName(pid), '', 'the killed transport is gone');
  // The obfs4 cert is kept in the state dir, so the same bridge line still works.
  const bl = await cli(['bridgeline', '--config', configFile]);
  assert.equal(bl.stdout.trim(), line);
  assert.equal(sha(await fetchWithRetry(clients[0]!, 120_000)), lab.http.sha256);
});

test('a transport that prints SMETHOD-ERROR, or a command that does not exist: clear error, non-zero exit, no hang', { timeout: 120_000 }, async () => {
  sup?.kill('SIGTERM');
  assert.equal((await sup!).exitCode, 0);
  sup = null;
  // A port that is taken makes the real obfs4proxy print SMETHOD-ERROR.
  const squatter = net.createServer();
  await new Promise<void>((r) => squatter.listen(0, '127.0.0.1', r));
  const taken = (squatter.address() as net.AddressInfo).port;
  const cases: Array<[object, RegExp]> = [
    [{ name: 'obfs4', command: [OBFS4], listen: `127.0.0.1:${taken}` }, /SMETHOD-ERROR obfs4: .*address already in use/],
    [{ name: 'nosuchpt', command: [OBFS4], listen: `127.0.0.1:${await freePort()}` }, /SMETHOD-ERROR nosuchpt: no such transport is supported/],
    [{ name: 'obfs4', command: ['/nonexistent/obfs4proxy'], listen: `127.0.0.1:${await freePort()}` }, /transport command not found.*\/nonexistent\/obfs4proxy/],
  ];
  for (const [transport, re] of cases) {
    const f = join(dir, 'bad-transport.yaml');
    await writeConfig(f, transport);
    const t0 = Date.now();
    const r = await cli(['run', '--config', f]);
    assert.notEqual(r.exitCode, 0);
    assert.match(r.stderr, re);
    assert.ok(Date.now() - t0 < 60_000, 'did not hang');
    assert.deepEqual(pidsWith(join(dataDir, 'instances')).filter((p) => procName(p) === 'tor'), [], 'no twin left running');
    assert.deepEqual(serverTransportPids(), [], 'no transport left running');
  }
  squatter.close();
});

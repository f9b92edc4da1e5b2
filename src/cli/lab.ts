// `bridgectl lab`: the private-lab demo. Builds a private Tor network on loopback inside its own
// network namespace, runs a bridge of N twins behind the balancer with obfs4proxy in front, and
// has several real tor clients download through it while a live per-twin table shows the load.
// Leaves no process behind.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { resolveConfig, configSchema, type ResolvedConfig } from '../config/index.js';
import { Bridge, type BridgeStatus } from '../supervisor/index.js';
import { bridgeLine } from '../pt/index.js';
import { rsaFingerprint, readKeySet } from '../keysync/index.js';
import { startLab, startClient, fetchViaSocks, freePort, type LabClient } from '../lab/index.js';
import { parse, makeLogger } from './args.js';
import { initBridge, identityDir } from './init.js';
import { reexecInNetns } from './netns.js';
import { formatStatus } from './status.js';

export const OBFS4PROXY = process.env.BRIDGECTL_OBFS4PROXY ?? '/usr/bin/obfs4proxy';

export async function labBridgeConfig(dir: string, labTorrc: string[], instances: number, extra: object = {}): Promise<ResolvedConfig> {
  const c = configSchema.parse({
    nickname: 'labbridge',
    instances,
    dataDir: join(dir, 'bridge'),
    contactInfo: 'lab@localhost',
    torrc: [...labTorrc, 'PublishServerDescriptor 0'].join('\n'),
    balancer: { listen: `127.0.0.1:${await freePort()}` },
    transport: { name: 'obfs4', command: [OBFS4PROXY], listen: `127.0.0.1:${await freePort()}`, options: {} },
    restart: { initialDelayMs: 300 },
    ...extra,
  });
  return resolveConfig(c, join(dir, 'bridgectl.yaml'));
}

export function waitFor(what: string, cond: () => boolean, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + timeoutMs;
    const tick = (): void => {
      if (cond()) return resolve();
      if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 200);
    };
    tick();
  });
}

export async function bridgeLineOf(b: Bridge): Promise<string> {
  const st = b.status();
  const sm = st.transport?.smethod;
  if (!sm) throw new Error('the transport has not reported its SMETHOD');
  const keys = await readKeySet(join(identityDir(b.cfg), 'keys'));
  return bridgeLine(sm.transport, sm.address, rsaFingerprint(keys.get('secret_id_key')!), sm.args);
}

export async function labCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    instances: { type: 'string', default: '3' },
    clients: { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    keep: { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'error' },
  });
  const code = await reexecInNetns();
  if (code !== null) return code;
  const n = Number(values.instances);
  const nClients = Number(values.clients);
  const rounds = Number(values.rounds);
  if (!Number.isInteger(n) || n < 1 || n > 20) throw new Error('--instances must be 1..20');
  if (!Number.isInteger(nClients) || nClients < 1 || nClients > 20) throw new Error('--clients must be 1..20');
  const logger = makeLogger(values['log-level']);
  const dir = await mkdtemp(join(tmpdir(), 'bridgectl-lab-'));
  const say = (s: string): void => console.log(`[lab] ${s}`);
  say(`private Tor network in an isolated network namespace, working in ${dir}`);
  const t0 = Date.now();
  const lab = await startLab({ dir: join(dir, 'net'), logger });
  say(`3 directory authorities published a consensus after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const cfg = await labBridgeConfig(dir, lab.torrcLines, n);
  const bridge = new Bridge(cfg, logger);
  const clients: LabClient[] = [];
  let ok = 0;
  let failed = 0;
  let bytes = 0;
  let ticker: NodeJS.Timeout | null = null;
  try {
    const init = await initBridge(cfg);
    say(`bridge identity ${init.fingerprint}: ${n} twins behind the balancer at ${cfg.balancer.listen}, obfs4 at ${cfg.transport!.listen}`);
    let fatal: string | null = null;
    bridge.on('fatal', (m) => (fatal = m));
    await bridge.start();
    await waitFor('the bridge to be ready', () => {
      if (fatal) throw new Error(fatal);
      return bridge.status().instances.every((i) => i.state === 'running') && bridge.status().ready;
    }, 120_000);
    const line = await bridgeLineOf(bridge);
    say(`Bridge ${line}`);
    const show = (s: BridgeStatus): void => console.log(`\n${formatStatus(s)}\n`);
    show(bridge.status());
    ticker = setInterval(() => show(bridge.status()), 5000);
    say(`starting ${nClients} tor clients with ClientTransportPlugin obfs4 exec ${OBFS4PROXY}`);
    clients.push(
      ...(await Promise.all(
        Array.from({ length: nClients }, (_, k) =>
          startClient({
            name: `client${k + 1}`,
            dir: join(dir, `client${k + 1}`),
            labTorrc: lab.torrcLines,
            bridges: [line],
            transportPlugins: [`obfs4 exec ${OBFS4PROXY}`],
            logger,
          }),
        ),
      )),
    );
    say(`all clients bootstrapped through the bridge; each downloads ${rounds} × ${lab.http.file.length} bytes`);
    await Promise.all(
      clients.map(async (c) => {
        for (let r = 0; r < rounds; r++) {
          try {
            const body = await fetchViaSocks(c.socksPort, lab.http.url);
            const good = createHash('sha256').update(body).digest('hex') === lab.http.sha256;
            if (good) ok++;
            else failed++;
            bytes += body.length;
          } catch (e) {
            failed++;
            say(`${c.name}: download failed: ${(e as Error).message}`);
          }
        }
      }),
    );
    if (ticker) clearInterval(ticker);
    const final = bridge.status();
    show(final);
    const carrying = final.instances.filter((i) => i.sessionsTotal > 0).length;
    say(
      `summary: ${ok} downloads verified, ${failed} failed, ${(bytes / 1048576).toFixed(1)} MiB in ${((Date.now() - t0) / 1000).toFixed(0)} s; ` +
        `${carrying} of ${n} twins carried sessions`,
    );
  } finally {
    if (ticker) clearInterval(ticker);
    await Promise.all(clients.map((c) => c.stop()));
    await bridge.stop();
    await lab.stop();
    if (!values.keep) await rm(dir, { recursive: true, force: true });
  }
  say('everything stopped');
  return failed || !ok ? 1 : 0;
}

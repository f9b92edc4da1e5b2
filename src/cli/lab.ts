// `bridgectl lab`: the private-lab demo. Builds a private Tor network on loopback inside its own
// network namespace, runs a bridge of N twins, and fetches a file through each twin with a real
// tor client. Leaves no process behind.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { resolveConfig, configSchema, type ResolvedConfig } from '../config/index.js';
import { Supervisor, type InstanceStatus } from '../supervisor/index.js';
import { startLab, startClient, fetchViaSocks } from '../lab/index.js';
import { parse, makeLogger } from './args.js';
import { initBridge } from './init.js';
import { reexecInNetns } from './netns.js';

export function labBridgeConfig(dir: string, labTorrc: string[], instances: number, extra: object = {}): ResolvedConfig {
  const c = configSchema.parse({
    nickname: 'labbridge',
    instances,
    dataDir: join(dir, 'bridge'),
    contactInfo: 'lab@localhost',
    torrc: [...labTorrc, 'PublishServerDescriptor 0'].join('\n'),
    ...extra,
  });
  return resolveConfig(c, join(dir, 'bridgectl.yaml'));
}

export function waitAllBootstrapped(sup: Supervisor, names: string[], timeoutMs: number): Promise<InstanceStatus[]> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      const st = names.map((n) => sup.get(n));
      if (st.every((s) => s?.state === 'running')) {
        cleanup();
        resolve(st as InstanceStatus[]);
        return true;
      }
      return false;
    };
    const onBoot = (): void => void check();
    const t = setTimeout(() => {
      cleanup();
      reject(new Error(`instances not bootstrapped in ${timeoutMs} ms: ${JSON.stringify(sup.status().map((s) => [s.name, s.state]))}`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(t);
      sup.off('bootstrapped', onBoot);
    };
    sup.on('bootstrapped', onBoot);
    check();
  });
}

export async function labCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    instances: { type: 'string', default: '3' },
    keep: { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'error' },
  });
  const code = await reexecInNetns();
  if (code !== null) return code;
  const n = Number(values.instances);
  if (!Number.isInteger(n) || n < 1 || n > 20) throw new Error('--instances must be 1..20');
  const logger = makeLogger(values['log-level']);
  const dir = await mkdtemp(join(tmpdir(), 'bridgectl-lab-'));
  const say = (s: string): void => console.log(`[lab] ${s}`);
  say(`private Tor network in an isolated network namespace, working in ${dir}`);
  const t0 = Date.now();
  const lab = await startLab({ dir: join(dir, 'net'), logger });
  say(`3 directory authorities published a consensus after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const cfg = labBridgeConfig(dir, lab.torrcLines, n);
  const sup = new Supervisor(cfg, logger);
  let failures = 0;
  try {
    const init = await initBridge(cfg);
    say(`bridge identity ${init.fingerprint}, ${n} twins`);
    await sup.start();
    const st = await waitAllBootstrapped(sup, sup.status().map((s) => s.name), 120_000);
    for (const s of st) say(`  ${s.name}: pid ${s.pid}, fingerprint ${s.fingerprint}, ORPort ${s.orPort}`);
    for (const s of st) {
      const c = await startClient({
        name: `client-${s.name}`,
        dir: join(dir, `client-${s.name}`),
        labTorrc: lab.torrcLines,
        bridges: [`${s.orPort} ${s.fingerprint}`],
        logger,
      });
      try {
        const t = Date.now();
        const body = await fetchViaSocks(c.socksPort, lab.http.url);
        const ok = createHash('sha256').update(body).digest('hex') === lab.http.sha256;
        if (!ok) failures++;
        say(`  through ${s.name}: fetched ${body.length} bytes in ${Date.now() - t} ms, checksum ${ok ? 'matches' : 'DIFFERS'}`);
      } catch (e) {
        failures++;
        say(`  through ${s.name}: FAILED: ${(e as Error).message}`);
      } finally {
        await c.stop();
      }
    }
  } finally {
    await sup.stop();
    await lab.stop();
    if (!values.keep) await rm(dir, { recursive: true, force: true });
  }
  say(failures ? `${failures} fetches failed` : `all ${n} twins carried a verified download; everything stopped`);
  return failures ? 1 : 0;
}

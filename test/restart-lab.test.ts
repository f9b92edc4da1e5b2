// Rolling restart (issue 14) against real tor 0.4.9 in the private lab: three twins behind the
// balancer under session churn (new sessions in a loop), `bridgectl restart` restarts every twin
// in order, one at a time, with zero failed sessions; an interrupted run is resumed, not redone.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, rm, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { startLab, freePort, type Lab } from '../src/lab/index.js';
import { controlRequest, restartStatePath, type BridgeStatus, type RestartState } from '../src/supervisor/index.js';
import { cli, cliBackground, extOrLoad, tmp, waitFor, testLogger } from './helpers.js';

let lab: Lab;
let dir: string;
let dataDir: string;
let configFile: string;
let balancerPort: number;
let sup: ReturnType<typeof cliBackground> | null = null;
const names = ['roll1', 'roll2', 'roll3'];

const status = async (): Promise<BridgeStatus> => (await controlRequest(join(dataDir, 'run'), 'status', {}, 10_000)) as BridgeStatus;
const allUp = (): Promise<BridgeStatus> =>
  waitFor(
    'every twin running and in the balancer',
    async () => {
      const s = await status().catch(() => null);
      return s && s.instances.length === 3 && s.instances.every((i) => i.state === 'running' && i.balancerUp) ? s : null;
    },
    150_000,
    300,
  );

/** Samples status while `f` runs: per sample, the twins out of the balancer and the run's progress. */
async function watching<T>(f: () => Promise<T>): Promise<{ result: T; samples: Array<{ out: string[]; restart: RestartState | null }> }> {
  const samples: Array<{ out: string[]; restart: RestartState | null }> = [];
  let on = true;
  const poller = (async () => {
    while (on) {
      const s = await status().catch(() => null);
      if (s) samples.push({ out: s.instances.filter((i) => !i.balancerUp).map((i) => i.name), restart: s.restart });
      await new Promise((r) => setTimeout(r, 150));
    }
  })();
  try {
    return { result: await f(), samples };
  } finally {
    on = false;
    await poller;
  }
}

before(async () => {
  dir = await tmp('restart');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  dataDir = join(dir, 'bridge');
  configFile = join(dir, 'bridgectl.yaml');
  balancerPort = await freePort();
  await writeFile(
    configFile,
    stringify({
      nickname: 'roll',
      instances: 3,
      dataDir,
      extOrPort: 10700,
      torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
      restart: { initialDelayMs: 300 },
      balancer: { listen: `127.0.0.1:${balancerPort}` },
      metrics: { torMetricsPort: 0 },
      logLevel: 'debug',
    }),
  );
  const init = await cli(['init', '--config', configFile]);
  assert.equal(init.exitCode, 0, init.all);
  sup = cliBackground(['run', '--config', configFile]);
});

after(async () => {
  sup?.kill('SIGTERM');
  await sup;
  await lab?.stop();
  if (process.env.KEEP_LAB) console.error(`kept ${dir}`);
  else await rm(dir, { recursive: true, force: true });
});

test('bridgectl restart under session churn: every twin in order, one at a time, zero failed sessions, keys verify after', { timeout: 300_000 }, async () => {
  const before1 = await allUp();
  const load = extOrLoad(balancerPort, join(dataDir, 'static_extended_orport_auth_cookie'), 4);
  await waitFor('sessions flowing', () => load.ok > 20, 30_000);
  const t0 = Date.now();
  const { result: r, samples } = await watching(() => cli(['restart', '--drain-seconds', '10', '--config', configFile]));
  const okDuring = load.ok;
  await new Promise((res) => setTimeout(res, 500));
  await load.stop();
  assert.equal(r.exitCode, 0, r.all);
  assert.match(r.stdout, /restarted roll1, roll2, roll3, one at a time/);
  assert.deepEqual(load.failures, [], 'no session failed during the rolling restart');
  assert.ok(okDuring > 50, `sessions kept succeeding during the restart (${okDuring})`);

  const after1 = await status();
  const start = (n: string, s: BridgeStatus): number => s.instances.find((i) => i.name === n)!.startedAt!;
  for (const n of names) {
    const pid0 = before1.instances.find((i) => i.name === n)!.pid;
    const pid1 = after1.instances.find((i) => i.name === n)!.pid;
    assert.notEqual(pid1, pid0, `${n} runs a new tor`);
    assert.ok(start(n, after1) >= t0, `${n} started during the run`);
  }
  assert.ok(start('roll1', after1) < start('roll2', after1) && start('roll2', after1) < start('roll3', after1), 'restarted in order');
  // One at a time: never two twins out of the balancer in the same sample; each was out once.
  assert.ok(samples.length > 10, `enough status samples (${samples.length})`);
  assert.deepEqual(samples.filter((s) => s.out.length > 1), [], 'never two twins out at once');
  const outOrder = samples.flatMap((s) => s.out).filter((n, i, a) => a[i - 1] !== n);
  assert.deepEqual(outOrder, names, 'each twin out of the balancer once, in order');
  assert.ok(samples.some((s) => s.restart?.current === 'roll2' && s.restart.done.join() === 'roll1'), 'status shows the progress');
  assert.ok(after1.restart?.finishedAt, 'status shows the finished run');
  assert.match(r.stdout, /rolling restart: restarting roll1/, 'the command shows its progress');

  const v = await cli(['keys', 'verify', '--config', configFile]);
  assert.equal(v.exitCode, 0, v.all);
});

test('an interrupted rolling restart is resumed by the next bridgectl restart, not redone', { timeout: 300_000 }, async () => {
  await allUp();
  // A twin that does not come back in time stops the run (tor cannot bootstrap in 50 ms).
  const r1 = await cli(['restart', '--drain-seconds', '0', '--bootstrap-seconds', '0.05', '--config', configFile]);
  assert.equal(r1.exitCode, 1, r1.all);
  assert.match(r1.stderr, /rolling restart stopped at roll1: roll1 did not bootstrap/);
  const st = JSON.parse(await readFile(restartStatePath(dataDir), 'utf8')) as RestartState;
  assert.equal(st.finishedAt, null);
  assert.match(st.error ?? '', /did not bootstrap/);
  const mid = await allUp();
  const s = await cli(['status', '--config', configFile]);
  assert.match(s.stdout, /rolling restart: stopped after 0\/3 twins: .*run "bridgectl restart" to resume/);
  const pid1 = mid.instances.find((i) => i.name === 'roll1')!.pid;

  const r2 = await cli(['restart', '--drain-seconds', '5', '--config', configFile]);
  assert.equal(r2.exitCode, 0, r2.all);
  assert.match(r2.stdout, /already restarted/);
  assert.match(r2.stdout, /restarted roll2, roll3, one at a time/);
  const end = await allUp();
  assert.equal(end.instances.find((i) => i.name === 'roll1')!.pid, pid1, 'roll1 (done by the first run) was not restarted again');
  assert.ok(end.restart?.finishedAt);
});

// In the private lab with real tor: four twins share the bridge's bandwidth (each tor, asked over
// its control port, says RelayBandwidthRate R/4; after add-instance, R/5, with no restart), and
// `bridgectl status --watch` runs in a real terminal (tmux, 80 columns), checked on the screen.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { stringify } from 'yaml';
import { startLab, freePort, type Lab } from '../src/lab/index.js';
import { controlRequest, type BridgeStatus } from '../src/supervisor/index.js';
import { connectControl } from '../src/tor/index.js';
import { CLI, cli, cliBackground, tmp, waitFor, testLogger } from './helpers.js';

let lab: Lab;
let dir: string;
let dataDir: string;
let configFile: string;
let balancerPort: number;
let fingerprint: string;
let sup: ReturnType<typeof cliBackground> | null = null;
const TMUX = ['-L', `bridgectl-view-${process.pid}`];
const RATE = 4 * 1024 * 1024;
const BURST = 8 * 1024 * 1024;

const status = async (): Promise<BridgeStatus> => (await controlRequest(join(dataDir, 'run'), 'status', {}, 10_000)) as BridgeStatus;
const allUp = (n: number): Promise<BridgeStatus> =>
  waitFor(
    `${n} twins serving`,
    async () => {
      const s = await status().catch(() => null);
      return s && s.instances.length === n && s.instances.every((i) => i.state === 'running' && i.balancerUp) ? s : null;
    },
    180_000,
    300,
  );
/** What a twin's own tor says its relay bandwidth limits are. */
async function getconf(name: string): Promise<{ rate: number; burst: number; pid: string }> {
  const d = join(dataDir, 'instances', name);
  const ctl = await connectControl(join(d, 'control'), join(d, 'control_auth_cookie'), 20_000);
  try {
    const r = await ctl.command('GETCONF RelayBandwidthRate RelayBandwidthBurst');
    const v = (k: string): number => Number(r.lines.find((l) => l.startsWith(`${k}=`))?.slice(k.length + 1));
    return { rate: v('RelayBandwidthRate'), burst: v('RelayBandwidthBurst'), pid: await ctl.getInfo('process/pid') };
  } finally {
    ctl.close();
  }
}
const screen = async (): Promise<string[]> => (await execa('tmux', [...TMUX, 'capture-pane', '-p', '-t', 'view'])).stdout.split('\n');

before(async () => {
  dir = await tmp('view');
  lab = await startLab({ dir: join(dir, 'net'), logger: testLogger });
  dataDir = join(dir, 'bridge');
  configFile = join(dir, 'bridgectl.yaml');
  balancerPort = await freePort();
  await writeFile(
    configFile,
    stringify({
      nickname: 'view',
      instances: 4,
      dataDir,
      extOrPort: 10900,
      torrc: [...lab.torrcLines, 'PublishServerDescriptor 0'].join('\n') + '\n',
      balancer: { listen: `127.0.0.1:${balancerPort}` },
      bandwidth: { rate: '4 MBytes', burst: '8 MBytes' },
      metrics: { torMetricsPort: 0 },
      logLevel: 'debug',
    }),
  );
  const init = await cli(['init', '--config', configFile]);
  assert.equal(init.exitCode, 0, init.all);
  fingerprint = /fingerprint ([0-9A-F]{40})/.exec(init.all ?? '')?.[1] ?? '';
  assert.ok(fingerprint);
});

after(async () => {
  await execa('tmux', [...TMUX, 'kill-server'], { reject: false });
  sup?.kill('SIGTERM');
  await sup;
  await lab?.stop();
  if (process.env.KEEP_LAB) console.error(`kept ${dir}`);
  else await rm(dir, { recursive: true, force: true });
});

test('status knows the fingerprint from the keys before any twin bootstrapped', { timeout: 60_000 }, async () => {
  sup = cliBackground(['run', '--config', configFile]);
  const early = await waitFor('a status while the twins boot', () => status().catch(() => null), 30_000, 50);
  assert.ok(early.instances.some((i) => i.state !== 'running'), 'asked before every twin bootstrapped');
  assert.equal(early.fingerprint, fingerprint);
  for (const i of early.instances) assert.equal(i.fingerprint, fingerprint, `${i.name} (${i.state})`);
});

test('R with 4 twins: each tor runs with RelayBandwidthRate R/4; after add-instance, R/5 in every tor, none restarted', { timeout: 240_000 }, async () => {
  await allUp(4);
  const four = await Promise.all(['view1', 'view2', 'view3', 'view4'].map(getconf));
  for (const g of four) assert.deepEqual({ rate: g.rate, burst: g.burst }, { rate: RATE / 4, burst: BURST / 4 });

  const add = await cli(['add-instance', '--config', configFile]);
  assert.equal(add.exitCode, 0, add.all);
  await allUp(5);
  const five = await waitFor(
    'every tor re-read its torrc',
    async () => {
      const g = await Promise.all(['view1', 'view2', 'view3', 'view4', 'view5'].map(getconf));
      return g.every((x) => x.rate === Math.floor(RATE / 5)) ? g : null;
    },
    30_000,
    500,
  );
  for (const g of five) assert.deepEqual({ rate: g.rate, burst: g.burst }, { rate: Math.floor(RATE / 5), burst: Math.floor(BURST / 5) });
  four.forEach((g, i) => assert.equal(five[i]!.pid, g.pid, `view${i + 1} was not restarted`));
});

test('status --watch in a real terminal (tmux, 80x30): readable, refreshed in place, follows a new twin', { timeout: 120_000 }, async () => {
  await execa('tmux', [...TMUX, 'new-session', '-d', '-s', 'view', '-x', '80', '-y', '30', `${process.execPath} ${CLI} status --watch --interval 0.5 --config ${configFile}`]);
  const shown = await waitFor('the live view with rates', async () => {
    const s = await screen();
    return s.some((l) => /^view5\s+serving\s+\d+\s+\S+ \S+\/s\s+\S+%\s+\d+\s+\S+$/.test(l)) ? s : null;
  }, 30_000, 250);
  const text = shown.join('\n');
  assert.ok(shown.every((l) => l.length <= 80), 'no line over 80 columns');
  assert.match(shown[0]!, /^bridge view ready, up \S+, supervisor CPU \d+%\s+\d\d:\d\d:\d\d UTC$/);
  assert.match(text, /^TWIN\s+STATE\s+SESSIONS\s+BYTES\/S\s+CPU\s+RESTARTS\s+UPTIME$/m);
  for (const n of ['view1', 'view2', 'view3', 'view4', 'view5']) assert.match(text, new RegExp(`^${n}\\s+serving\\s`, 'm'));
  assert.match(text, new RegExp(`^balancer on 127\\.0\\.0\\.1:${balancerPort}: 5 of 5 twins taking sessions;`, 'm'));
  assert.match(text, new RegExp(`^fingerprint ${fingerprint}$`, 'm'));
  assert.doesNotMatch(text, /[{}"]/, 'no raw JSON');
  // In place: the clock moves, the frame stays at the top, nothing scrolls into history.
  const clock = shown[0]!.slice(-12);
  await waitFor('the clock to move', async () => ((await screen())[0]!.slice(-12) !== clock ? true : null), 10_000, 200);
  const history = (await execa('tmux', [...TMUX, 'capture-pane', '-p', '-S', '-1000', '-t', 'view'])).stdout.split('\n');
  assert.equal(history.filter((l) => l.startsWith('TWIN')).length, 1, 'one frame on the screen and in its history');
  // A twin drained away shows in words.
  const rm1 = cli(['remove-instance', 'view5', '--drain-seconds', '1', '--config', configFile]);
  assert.equal((await rm1).exitCode, 0);
  await waitFor('view5 gone from the view, 4 of 4', async () => {
    const t = (await screen()).join('\n');
    return !/^view5/m.test(t) && /4 of 4 twins taking sessions/.test(t) ? true : null;
  }, 20_000, 250);
});

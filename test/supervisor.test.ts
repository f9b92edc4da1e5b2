import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CpuMeter, cpuSeconds } from '../src/supervisor/index.js';
import { backoffDelay, nextFailures, parseTorLogLine, renderInstanceTorrc, fillTemplate } from '../src/supervisor/index.js';
import { parseConfigText, resolveConfig, instanceLayout } from '../src/config/index.js';

const policy = { initialDelayMs: 500, maxDelayMs: 60_000, stableAfterMs: 60_000 };

test('backoff doubles from the initial delay and is capped', () => {
  assert.deepEqual([1, 2, 3, 4].map((n) => backoffDelay(n, policy)), [500, 1000, 2000, 4000]);
  assert.equal(backoffDelay(20, policy), 60_000);
  assert.equal(backoffDelay(1000, policy), 60_000);
});

test('a long healthy run resets the failure count', () => {
  assert.equal(nextFailures(5, 120_000, policy), 1);
  assert.equal(nextFailures(5, 1_000, policy), 6);
});

test('tor log lines are split into level and message', () => {
  assert.deepEqual(parseTorLogLine('Nov 22 04:36:37.293 [warn] Couldn\'t rotate onion key.'), {
    level: 'warn',
    msg: "Couldn't rotate onion key.",
  });
  assert.deepEqual(parseTorLogLine('garbage'), { level: 'notice', msg: 'garbage' });
});

test('the rendered torrc has what a twin needs, distinct per instance', () => {
  const c = resolveConfig(
    parseConfigText('nickname: br\ninstances: 2\ndataDir: /d\ncontactInfo: me@x\ntorrc: "MaxMemInQueues 1 GB\\n"\n', '/e/c.yaml'),
    '/e/c.yaml',
  );
  const t1 = renderInstanceTorrc(c, instanceLayout(c, 1)).split('\n');
  const t2 = renderInstanceTorrc(c, instanceLayout(c, 2)).split('\n');
  for (const l of [
    'Nickname br1',
    'BridgeRelay 1',
    'AssumeReachable 1',
    'BridgeDistribution none',
    'ORPort 127.0.0.1:auto',
    'ExtORPort 127.0.4.1:10100',
    'SocksPort 0',
    'ControlPort unix:/d/instances/br1/control',
    'CookieAuthentication 1',
    'DataDirectory /d/instances/br1',
    'ContactInfo me@x',
  ]) {
    assert.ok(t1.includes(l), `missing "${l}"`);
  }
  assert.ok(t2.includes('Nickname br2') && t2.includes('ExtORPort 127.0.4.2:10100'));
  // extra lines come last, so they can override
  assert.equal(t1.filter((l) => l.trim()).at(-1), 'MaxMemInQueues 1 GB');
});

test('a line break in a single-line value is refused (it would inject torrc options)', () => {
  const c = resolveConfig(parseConfigText('nickname: br\ninstances: 1\ndataDir: /d\ncontactInfo: "a\\nExitRelay 1"\n', '/c.yaml'), '/c.yaml');
  assert.throws(() => renderInstanceTorrc(c, instanceLayout(c, 1)), /single line/);
});

test('an unknown template placeholder is an error', () => {
  assert.throws(() => fillTemplate('x {{nope}}', {}), /nope/);
});

test('CPU seconds come from utime + stime of /proc/PID/stat, even with ") " in the command name', () => {
  const stat = (u: number, s: number): string =>
    `42 (tor (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 ${u} ${s} 0 0 20 0 3 0 100 0 0`;
  assert.equal(cpuSeconds(42, () => stat(250, 50)), 3);
  assert.equal(cpuSeconds(42, () => { throw new Error('gone'); }), null);
});

test('CpuMeter: share of a core over a window of at least a second, shared by several readers', () => {
  let ticks = 0;
  const m = new CpuMeter(() => `7 (tor) S 1 7 7 0 -1 0 0 0 0 0 ${ticks} 0 0 0 20 0 1 0 1 0 0`, 1_000, 5_000);
  const t0 = 1_000_000;
  ticks = 100; // 1 s of CPU in the first 2 s of life
  assert.equal(m.share(7, t0, t0 + 2_000), 0.5);
  ticks = 150;
  assert.equal(m.share(7, t0, t0 + 2_100), 150 / 100 / 2.1, 'the window still starts at start-up');
  ticks = 1_000; // after the reference moved (5 s), 10 s of CPU in 5 s = 2 cores
  m.share(7, t0, t0 + 5_000);
  ticks = 1_000 + 500;
  assert.equal(m.share(7, t0, t0 + 10_000), 1);
  assert.equal(m.share(null, t0, t0), null);
});

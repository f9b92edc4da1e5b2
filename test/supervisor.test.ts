import { test } from 'node:test';
import assert from 'node:assert/strict';
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

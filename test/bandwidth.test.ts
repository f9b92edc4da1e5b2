// The bridge's bandwidth divided among the twins, and the same options refused in `torrc` with
// the file's own line and the reason (pure: config and torrc rendering).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText, resolveConfig, instanceLayout, parseBandwidth, ConfigError } from '../src/config/index.js';
import { renderInstanceTorrc } from '../src/supervisor/index.js';

const base = 'nickname: b\ninstances: 4\ndataDir: /tmp/x\n';
const error = (text: string): string => {
  try {
    parseConfigText(text, '/etc/bridgectl.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.message;
  }
  return '';
};

test('rates in tor units', () => {
  assert.equal(parseBandwidth('4 MBytes'), 4 * 1024 * 1024);
  assert.equal(parseBandwidth('100 Mbits'), 12_500_000);
  assert.equal(parseBandwidth('75 KB'), 76_800);
  assert.equal(parseBandwidth(1000000), 1000000);
  assert.ok(parseBandwidth('fast') instanceof Error);
  assert.ok(parseBandwidth('10 parsecs') instanceof Error);
});

test('R with 4 twins: each torrc says RelayBandwidthRate R/4 (burst B/4); with 5, R/5', () => {
  const c = resolveConfig(parseConfigText(`${base}bandwidth:\n  rate: 4 MBytes\n  burst: 8 MBytes\n`, '/etc/b.yaml'), '/etc/b.yaml');
  const t = renderInstanceTorrc(c, instanceLayout(c, 2));
  assert.match(t, /^RelayBandwidthRate 1048576$/m);
  assert.match(t, /^RelayBandwidthBurst 2097152$/m);
  const t5 = renderInstanceTorrc({ ...c, instances: 5 }, instanceLayout(c, 5));
  assert.match(t5, /^RelayBandwidthRate 838860$/m);
  assert.match(t5, /^RelayBandwidthBurst 1677721$/m);
  const none = resolveConfig(parseConfigText(base, '/etc/b.yaml'), '/etc/b.yaml');
  assert.doesNotMatch(renderInstanceTorrc(none, instanceLayout(none, 1)), /BandwidthRate/);
});

test('bandwidth and accounting options in torrc are refused with file:line:key and why', () => {
  const m = error(`${base}torrc: |\n  MaxMemInQueues 2 GB\n  RelayBandwidthRate 10 MBytes\n  accountingmax 1 TB\n`);
  assert.match(m, /^\/etc\/bridgectl\.yaml:6: torrc: RelayBandwidthRate: every twin would get it, so the bridge would allow N times it; use bandwidth\.rate/m);
  assert.match(m, /^\/etc\/bridgectl\.yaml:7: torrc: accountingmax: each twin would count its own bytes and hibernate on its own/m);
  assert.doesNotMatch(m, /MaxMemInQueues/);
  assert.match(error(`${base}torrc: "BandwidthBurst 5 MB"\n`), /^\/etc\/bridgectl\.yaml:4: torrc: BandwidthBurst: /m);
});

test('a rate tor would refuse per twin, a burst below the rate, a bad unit: refused naming the key', () => {
  assert.match(error(`${base}bandwidth:\n  rate: 200 KBytes\n`), /:5: bandwidth\.rate: divided among 4 twins this is 51200 bytes\/s each; tor needs at least 76800/);
  assert.match(error(`${base}bandwidth:\n  rate: 4 MBytes\n  burst: 1 MBytes\n`), /:6: bandwidth\.burst: must be at least bandwidth\.rate/);
  assert.match(error(`${base}bandwidth:\n  rate: 4 furlongs\n`), /:5: bandwidth\.rate: "4 furlongs" is not a rate/);
  assert.match(error(`${base}bandwidth:\n  accounting: 1 TB\n`), /:5: bandwidth\.accounting: unknown key/);
});

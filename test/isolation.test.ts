import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkIsolation, assertIsolated } from '../src/lab/index.js';

const DEV_HEADER = 'Inter-|   Receive\n face |bytes\n';
const files = (dev: string[], route: string[], v6: string[]) => (p: string): string => {
  if (p === '/proc/net/dev') return DEV_HEADER + dev.map((d) => `  ${d}: 0 0 0`).join('\n');
  if (p === '/proc/net/route') return ['Iface\tDestination\tGateway', ...route].join('\n');
  return v6.join('\n');
};
const V6LO = '00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo';
const V6ETH = '00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000001 00000000 00000003     eth0';

test('loopback only is isolated', () => {
  assert.deepEqual(checkIsolation(files(['lo'], [], [V6LO])), { isolated: true, reasons: [] });
});

test('another interface, an IPv4 route or an IPv6 route out are each refused', () => {
  assert.equal(checkIsolation(files(['lo', 'eth0'], [], [V6LO])).isolated, false);
  assert.equal(checkIsolation(files(['lo'], ['eth0\t00000000\t0102A8C0'], [V6LO])).isolated, false);
  assert.equal(checkIsolation(files(['lo'], [], [V6LO, V6ETH])).isolated, false);
});

test('this test process itself runs in an isolated namespace (scripts/netns.sh)', () => {
  assert.doesNotThrow(() => assertIsolated());
});

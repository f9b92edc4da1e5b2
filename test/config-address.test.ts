// Addresses and ranges in the config are checked as addresses (IPv4, IPv6, ports 1..65535), and
// a bad one is refused naming the file, the line and the key.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfigText, ConfigError } from '../src/config/index.js';

const base = 'nickname: b\ninstances: 2\ndataDir: /tmp/x\n';
function problems(text: string): string {
  try {
    parseConfigText(text, '/etc/bridgectl.yaml');
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.message;
  }
  return '';
}

test('999.1.1.1:99999 is refused with file:line:key, both halves named', () => {
  const m = problems(`${base}balancer:\n  listen: 999.1.1.1:99999\n`);
  assert.match(m, /^\/etc\/bridgectl\.yaml:5: balancer\.listen: 999\.1\.1\.1 is not an IPv4 address$/m);
  assert.match(problems(`${base}balancer:\n  listen: 10.1.1.1:99999\n`), /^\/etc\/bridgectl\.yaml:5: balancer\.listen: port 99999 is not a number in 1\.\.65535$/m);
  assert.match(problems(`${base}metrics:\n  listen: 127.0.0.1:0\n`), /:5: metrics\.listen: port 0 is not/);
  assert.match(problems(`${base}transport:\n  name: obfs4\n  command: [/usr/bin/obfs4proxy]\n  listen: 1.2.3:443\n`), /:7: transport\.listen: 1\.2\.3 is not an IPv4 address/);
  assert.match(problems(`${base}transport:\n  name: obfs4\n  command: [/x]\n  listen: 0.0.0.0:443\n  publicAddress: "2001:db8::1:443"\n`), /:8: transport\.publicAddress: .*an IPv6 address goes in brackets/);
  assert.match(problems(`${base}balancer:\n  listen: "[2001:db8::g]:443"\n`), /:5: balancer\.listen: 2001:db8::g is not an IPv6 address/);
});

test('good IPv4 and IPv6 addresses pass', () => {
  for (const a of ['127.0.0.1:10000', '[::1]:10000', '[2001:db8::1]:443', '0.0.0.0:65535', '[::]:1']) {
    assert.equal(problems(`${base}balancer:\n  listen: "${a}"\n`), '', a);
  }
});

test('source ranges are IPv4 CIDR ranges', () => {
  assert.equal(problems(`${base}balancer:\n  sourceRange: 127.0.2.0/24\n`), '');
  assert.match(problems(`${base}balancer:\n  sourceRange: 127.0.2.0/33\n`), /:5: balancer\.sourceRange: "127\.0\.2\.0\/33" is not an address range/);
  assert.match(problems(`${base}balancer:\n  sourceRange: 300.0.2.0/24\n`), /:5: balancer\.sourceRange: .* is not an address range/);
  assert.match(problems(`${base}balancer:\n  sourceRange: "fd00::/64"\n`), /:5: balancer\.sourceRange: must be an IPv4 range/);
});

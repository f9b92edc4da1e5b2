import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile, readdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { parseConfigText, resolveConfig } from '../src/config/index.js';
import { ptServerEnv } from '../src/pt/index.js';

const dir = fileURLToPath(new URL('../../templates/transports/', import.meta.url));

test('every example transport config in templates/transports is a valid bridgectl config', async () => {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.yaml'));
  assert.deepEqual(files.sort(), ['lyrebird.yaml', 'meek-server.yaml', 'obfs4-webtunnel.yaml', 'obfs4proxy.yaml', 'snowflake-server.yaml', 'webtunnel.yaml']);
  for (const f of files) {
    const p = join(dir, f);
    const text = await readFile(p, 'utf8');
    const c = resolveConfig(parseConfigText(text, p), p);
    assert.ok(c.transport, `${f} has a transport`);
    // The shipped unit (ProtectSystem=strict) leaves only /var/lib/bridgectl writable: no log files elsewhere.
    for (const t of c.transports) assert.ok(!t.command.some((a) => /^--?(log|enableLogging)\b/.test(a)), `${f}: ${t.name} logs to stderr`);
  }
});

test('the snowflake example passes orport-srcaddr and num-turbotunnel as transport options', async () => {
  const p = join(dir, 'snowflake-server.yaml');
  const c = resolveConfig(parseConfigText(await readFile(p, 'utf8'), p), p);
  const env = ptServerEnv({
    transport: c.transport!.name,
    listen: c.transport!.listen,
    extendedServerPort: c.balancer.listen,
    authCookieFile: c.balancer.cookieFile,
    stateDir: c.transport!.stateDir,
    options: c.transport!.options,
  });
  assert.equal(env.TOR_PT_SERVER_TRANSPORT_OPTIONS, 'snowflake:orport-srcaddr=127.0.3.0/24;snowflake:num-turbotunnel=2');
  assert.equal(env.TOR_PT_EXTENDED_SERVER_PORT, '127.0.0.1:10000');
  assert.equal(env.TOR_PT_AUTH_COOKIE_FILE, '/var/lib/bridgectl/static_extended_orport_auth_cookie');
  assert.equal(env.TOR_PT_SERVER_BINDADDR, 'snowflake-0.0.0.0:443');
});

test('a value with pt-spec separators is escaped', () => {
  const env = ptServerEnv({ transport: 'webtunnel', listen: '127.0.0.1:1', extendedServerPort: 'x', authCookieFile: 'y', stateDir: 'z', options: { url: 'https://a/b;c=d' } });
  assert.equal(env.TOR_PT_SERVER_TRANSPORT_OPTIONS, 'webtunnel:url=https\\://a/b\\;c\\=d');
});

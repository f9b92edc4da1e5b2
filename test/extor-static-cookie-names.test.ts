// `bridgectl extor-static-cookie` serves every transport name tor asks for (issue 12): the recipe
// names the shim after its transport (`ServerTransportPlugin snowflake exec extor-static-cookie
// FILE`), so a shim that only answered to `extor_static_cookie` made tor log "didn't launch any
// pluggable transport listeners". Here the shim runs in-process against a stand-in for tor's
// ExtORPort (helpers.echoTwin); the lab test (migrate-lab.test.ts) runs it under real tor.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { join } from 'node:path';
import { rm } from 'node:fs/promises';
import { parsePtServerSetup } from '../src/pt/index.js';
import { extorStaticCookieCommand } from '../src/cli/balancer.js';
import { createCookieFile, dialExtOr, CMD } from '../src/extorport/index.js';
import { freePort } from '../src/lab/index.js';
import { echoTwin, tmp, waitFor } from './helpers.js';

const base = {
  TOR_PT_MANAGED_TRANSPORT_VER: '1',
  TOR_PT_EXTENDED_SERVER_PORT: '127.0.0.1:5555',
  TOR_PT_AUTH_COOKIE_FILE: '/var/lib/tor/extended_orport_auth_cookie',
};

test('parsePtServerSetup: every name in TOR_PT_SERVER_TRANSPORTS, each with its bind address', () => {
  const r = parsePtServerSetup({ ...base, TOR_PT_SERVER_TRANSPORTS: 'snowflake,meek', TOR_PT_SERVER_BINDADDR: 'meek-127.0.0.1:7002,snowflake-127.0.0.1:7001' }, 'x');
  assert.ok('ok' in r);
  assert.deepEqual(r.ok.methods, [
    { name: 'snowflake', bindAddr: { host: '127.0.0.1', port: 7001 } },
    { name: 'meek', bindAddr: { host: '127.0.0.1', port: 7002 } },
  ]);
  const star = parsePtServerSetup({ ...base, TOR_PT_SERVER_TRANSPORTS: '*' }, 'extor_static_cookie');
  assert.ok('ok' in star);
  assert.deepEqual(star.ok.methods, [{ name: 'extor_static_cookie', bindAddr: { host: '127.0.0.1', port: 0 } }]);
  const bad = parsePtServerSetup({ ...base, TOR_PT_SERVER_TRANSPORTS: 'obfs4', TOR_PT_SERVER_BINDADDR: '127.0.0.1:1' }, 'x');
  assert.ok('lines' in bad && /ENV-ERROR .*NAME-ADDRESS:PORT/.test(bad.lines[1]!));
});

test('extor-static-cookie answers SMETHOD for the names tor gives (not only extor_static_cookie) and forwards each to tor', async () => {
  const dir = await tmp('shim-names');
  try {
    const tor = await echoTwin(join(dir, 'tor_cookie'), '127.0.0.1');
    const staticFile = join(dir, 'static_cookie');
    const cookie = await createCookieFile(staticFile);
    const [p1, p2] = [await freePort(), await freePort()];
    const stdout = new PassThrough();
    const stdin = new PassThrough();
    let text = '';
    stdout.on('data', (d: Buffer) => (text += d.toString()));
    const run = extorStaticCookieCommand([staticFile], {
      env: {
        ...base,
        TOR_PT_SERVER_TRANSPORTS: 'snowflake,meek_lite',
        TOR_PT_SERVER_BINDADDR: `snowflake-127.0.0.1:${p1},meek_lite-127.0.0.1:${p2}`,
        TOR_PT_EXTENDED_SERVER_PORT: tor.address,
        TOR_PT_AUTH_COOKIE_FILE: tor.cookieFile,
        TOR_PT_EXIT_ON_STDIN_CLOSE: '1',
      },
      stdout,
      stdin,
    });
    await waitFor('SMETHODS DONE', () => text.includes('SMETHODS DONE'), 10_000, 20);
    assert.deepEqual(text.trim().split('\n'), ['VERSION 1', `SMETHOD snowflake 127.0.0.1:${p1}`, `SMETHOD meek_lite 127.0.0.1:${p2}`, 'SMETHODS DONE']);
    for (const port of [p1, p2]) {
      const r = await dialExtOr({ host: '127.0.0.1', port, cookie, userAddr: '203.0.113.9:443', transport: 'snowflake' });
      assert.equal(r.reply.type, CMD.OKAY);
      r.socket.destroy();
    }
    assert.equal(tor.sessions(), 2, 'both listeners reached tor');
    stdin.end();
    assert.equal(await run, 0, 'exits when tor closes its stdin');
    tor.server.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

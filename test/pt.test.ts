// pt-spec, both directions (src/pt): the transport's side reading tor's environment.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePtServerEnv, parsePtLine, ptServerEnv } from '../src/pt/index.js';

test('pt-spec environment', () => {
  const base = {
    TOR_PT_MANAGED_TRANSPORT_VER: '1',
    TOR_PT_SERVER_TRANSPORTS: 'extor_static_cookie',
    TOR_PT_SERVER_BINDADDR: 'other-127.0.0.1:1,extor_static_cookie-127.0.0.1:10001',
    TOR_PT_EXTENDED_SERVER_PORT: '127.0.0.1:5555',
    TOR_PT_AUTH_COOKIE_FILE: '/var/lib/tor/extended_orport_auth_cookie',
    TOR_PT_EXIT_ON_STDIN_CLOSE: '1',
  };
  const ok = parsePtServerEnv(base, 'extor_static_cookie');
  assert.ok('ok' in ok);
  assert.deepEqual(ok.ok.bindAddr, { host: '127.0.0.1', port: 10001 });
  assert.deepEqual(ok.ok.extOrPort, { host: '127.0.0.1', port: 5555 });
  assert.equal(ok.ok.exitOnStdinClose, true);
  assert.deepEqual(parsePtServerEnv({ ...base, TOR_PT_MANAGED_TRANSPORT_VER: '2' }, 'extor_static_cookie'), { lines: ['VERSION-ERROR no-version'], code: 1 });
  assert.deepEqual(parsePtServerEnv({ ...base, TOR_PT_SERVER_TRANSPORTS: 'obfs4' }, 'extor_static_cookie'), { lines: ['VERSION 1', 'SMETHODS DONE'], code: 0 });
  const noExt = parsePtServerEnv({ ...base, TOR_PT_EXTENDED_SERVER_PORT: '' }, 'extor_static_cookie');
  assert.ok('lines' in noExt && /ENV-ERROR .*ExtORPort auto/.test(noExt.lines[1]!));
  const star = parsePtServerEnv({ ...base, TOR_PT_SERVER_TRANSPORTS: '*', TOR_PT_SERVER_BINDADDR: '' }, 'extor_static_cookie');
  assert.ok('ok' in star && star.ok.bindAddr.port === 0);
});

test('SMETHOD lines as the real servers print them', () => {
  assert.deepEqual(parsePtLine('SMETHOD snowflake 0.0.0.0:443 ARGS:hostname=snowflake.example.org,tls=yes'), {
    kind: 'SMETHOD', transport: 'snowflake', address: '0.0.0.0:443', args: { hostname: 'snowflake.example.org', tls: 'yes' }, options: [],
  });
  const wt = parsePtLine('SMETHOD webtunnel [2001:db8:9443:367a:3276:1e74:91c3:7a5a]:443 ARGS:url=https://example.org/path,ver=0.0.1');
  assert.ok(wt.kind === 'SMETHOD' && wt.args.url === 'https://example.org/path' && wt.args.ver === '0.0.1');
  const meek = parsePtLine('SMETHOD meek 127.0.0.1:8080');
  assert.ok(meek.kind === 'SMETHOD' && Object.keys(meek.args).length === 0);
  assert.deepEqual(parsePtLine('SMETHOD-ERROR snowflake num-turbotunnel must be at least 1'), { kind: 'SMETHOD-ERROR', transport: 'snowflake', message: 'num-turbotunnel must be at least 1' });
});

test('each transport is started with its own name, bind address and state directory', () => {
  const env = ptServerEnv({ transport: 'webtunnel', listen: '127.0.0.1:15000', extendedServerPort: '127.0.0.1:10000', authCookieFile: '/c', stateDir: '/s/webtunnel', options: { url: 'https://a/b' } });
  assert.equal(env.TOR_PT_SERVER_TRANSPORTS, 'webtunnel');
  assert.equal(env.TOR_PT_SERVER_BINDADDR, 'webtunnel-127.0.0.1:15000');
  assert.equal(env.TOR_PT_STATE_LOCATION, '/s/webtunnel');
  assert.equal(env.TOR_PT_EXIT_ON_STDIN_CLOSE, '1');
});

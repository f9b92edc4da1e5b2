// Per-transport descriptors (src/transports), the transports: list, distribution and the public
// ORPort: pure logic.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { stringify } from 'yaml';
import { parseConfigText, resolveConfig, instanceLayout, ConfigError } from '../src/config/index.js';
import { transportKind, classifyStderrLine, scrubAddresses, listeningInodes, socketInodes, type TransportEntry } from '../src/transports/index.js';
import { renderInstanceTorrc } from '../src/supervisor/index.js';
import { renderNftables } from '../src/deploy/index.js';

const FP = '2B280B23E1107BB62ABFC40DDCC8824814F80A72';
const entry = (e: Partial<TransportEntry> & { name: string }): TransportEntry => ({ command: ['/x'], listen: '127.0.0.1:1', options: {}, stateDir: '/s', ...e });
const line = (e: TransportEntry, address: string, args: Record<string, string> = {}): string =>
  transportKind(e.name).bridgeLine({ entry: e, smethod: { transport: e.name, address, args }, fingerprint: FP, nickname: 'flakey' });

function load(o: object): ReturnType<typeof resolveConfig> {
  const f = '/etc/bridgectl.yaml';
  return resolveConfig(parseConfigText(stringify({ nickname: 'b', instances: 2, dataDir: '/var/lib/bridgectl', ...o }), f), f);
}
function problems(o: object): string {
  try {
    load(o);
  } catch (e) {
    if (e instanceof ConfigError) return e.message;
    throw e;
  }
  return '';
}

test('snowflake: placeholder address, fingerprint=, the broker URL and the client parameters; the broker entry', () => {
  const e = entry({
    name: 'snowflake',
    command: ['/usr/local/bin/snowflake-server', '--acme-hostnames', 'sf.example.org'],
    client: { url: 'https://broker.example.net/', fronts: ['a.example', 'b.example'], ice: ['stun:s1:3478', 'stun:s2:3478'], utlsImitate: 'hellorandomizedalpn' },
  });
  assert.equal(
    line(e, '0.0.0.0:443', { hostname: 'sf.example.org', tls: 'yes' }),
    `snowflake 192.0.2.3:80 ${FP} fingerprint=${FP} url=https://broker.example.net/ fronts=a.example,b.example ice=stun:s1:3478,stun:s2:3478 utls-imitate=hellorandomizedalpn`,
  );
  const b = transportKind('snowflake').brokerEntry!({ entry: e, smethod: { transport: 'snowflake', address: '0.0.0.0:443', args: { hostname: 'sf.example.org', tls: 'yes' } }, fingerprint: FP, nickname: 'flakey' });
  assert.deepEqual(JSON.parse(b), { displayName: 'flakey', webSocketAddress: 'wss://sf.example.org/', fingerprint: FP });
  assert.ok(!b.includes('\n'), 'one line');
  assert.throws(() => line(entry({ name: 'snowflake' }), '127.0.0.1:8000', { tls: 'no' }), /client\.url/);
});

test('meek: meek_lite with url= and front=; webtunnel: its synthetic address with url= and ver=; obfs4: cert= and iat-mode=', () => {
  const m = entry({ name: 'meek', client: { url: 'https://meek.example.net/', front: 'www.example.com' } });
  assert.equal(line(m, '127.0.0.1:8080'), `meek_lite 192.0.2.2:80 ${FP} url=https://meek.example.net/ front=www.example.com`);
  assert.throws(() => line(entry({ name: 'meek', client: { url: 'https://m/' } }), '127.0.0.1:1'), /client\.front/);
  const w = entry({ name: 'webtunnel', options: { url: 'https://www.example.org/p' } });
  assert.equal(line(w, '[2001:db8:9443::1]:443', { url: 'https://www.example.org/p', ver: '0.0.1' }), `webtunnel [2001:db8:9443::1]:443 ${FP} url=https://www.example.org/p ver=0.0.1`);
  const o = entry({ name: 'obfs4', publicAddress: '203.0.113.5:443' });
  assert.equal(line(o, '0.0.0.0:443', { cert: 'AbC', 'iat-mode': '0' }), `obfs4 203.0.113.5:443 ${FP} cert=AbC iat-mode=0`);
  assert.throws(() => line(entry({ name: 'obfs4' }), '0.0.0.0:443', { cert: 'x', 'iat-mode': '0' }), /publicAddress/);
  assert.equal(line(entry({ name: 'extor_static_cookie' }), '127.0.0.1:7'), `extor_static_cookie 127.0.0.1:7 ${FP}`);
});

test('required options are config errors with file, line and key', () => {
  assert.match(problems({ transport: { name: 'snowflake', command: ['/sf'], listen: '0.0.0.0:443' } }), /bridgectl\.yaml:\d+: transport\.command: snowflake-server needs --disable-tls .* or --acme-hostnames/);
  assert.match(problems({ transport: { name: 'snowflake', command: ['/sf', '--disable-tls', '-log', '/var/log/sf.log'], listen: '0.0.0.0:443' } }), /transport\.command: drop "-log \/var\/log\/sf\.log"/);
  assert.match(problems({ transport: { name: 'snowflake', command: ['/sf', '--disable-tls'], listen: '0.0.0.0:443', options: { 'num-turbotunnel': '0' } } }), /transport\.options\.num-turbotunnel: must be a whole number/);
  assert.match(problems({ transport: { name: 'meek', command: ['/meek-server'], listen: '127.0.0.1:8080' } }), /transport\.command: meek-server needs --disable-tls/);
  assert.equal(problems({ transport: { name: 'meek', command: ['/meek-server', '--cert', 'c', '--key', 'k'], listen: '127.0.0.1:8080' } }), '');
  assert.match(problems({ transports: [{ name: 'obfs4', command: ['/o'], listen: '0.0.0.0:443' }, { name: 'webtunnel', command: ['/w'], listen: '127.0.0.1:15000' }] }), /transports\.1\.options\.url: webtunnel needs url/);
  assert.match(problems({ transports: [{ name: 'obfs4', command: ['/o'], listen: '127.0.0.1:1' }, { name: 'obfs4', command: ['/o'], listen: '127.0.0.1:2' }] }), /transports\.1\.name: transport obfs4 is configured twice/);
  assert.match(problems({ transport: { name: 'obfs4', command: ['/o'], listen: '127.0.0.1:1' }, transports: [{ name: 'x', command: ['/o'], listen: '127.0.0.1:2' }] }), /not both/);
});

test('transports: each gets its own state directory; the single transport: keeps pt_state', () => {
  const one = load({ transport: { name: 'obfs4', command: ['/o'], listen: '127.0.0.1:1' } });
  assert.deepEqual(one.transports.map((t) => t.stateDir), ['/var/lib/bridgectl/pt_state']);
  const two = load({ transports: [{ name: 'obfs4', command: ['/o'], listen: '127.0.0.1:1' }, { name: 'webtunnel', command: ['/w'], listen: '127.0.0.1:2', options: { url: 'https://a/b' } }] });
  assert.deepEqual(two.transports.map((t) => t.stateDir), ['/var/lib/bridgectl/transports/obfs4', '/var/lib/bridgectl/transports/webtunnel']);
  assert.equal(two.transport?.name, 'obfs4');
});

test('stderr: levels per line, Go timestamps stripped, client addresses scrubbed (loopback kept)', () => {
  assert.deepEqual(classifyStderrLine('obfs4', '2026/12/01 21:50:16 [NOTICE]: obfs4proxy - launched'), { level: 'info', message: '[NOTICE]: obfs4proxy - launched' });
  assert.equal(classifyStderrLine('obfs4', '2026/12/01 21:50:16 [WARN]: obfs4(127.0.0.1:443): handshake failed').level, 'warn');
  assert.equal(classifyStderrLine('obfs4', '[ERROR]: obfs4 - failed to load state').level, 'error');
  const taken = classifyStderrLine('snowflake', '2026/12/01 21:50:16 error in ListenAndServe: listen tcp 127.0.0.1:8000: bind: address already in use');
  assert.equal(taken.level, 'error');
  assert.match(taken.setupFailed ?? '', /address already in use/);
  assert.equal(classifyStderrLine('snowflake', '2026/12/01 21:50:16 error copying WebSocket to ORPort: EOF').level, 'debug');
  assert.equal(classifyStderrLine('meek', '2026/12/01 21:50:16 listening on 127.0.0.1:8080').level, 'info');
  assert.equal(classifyStderrLine('webtunnel', '2026/12/01 21:50:16 failed to handshake with ExtORPort').level, 'warn');
  assert.equal(scrubAddresses('from 198.51.100.7:5555 and [2001:db8::7]:443 and 2001:db8::8 to 127.0.0.1:10000 at 12:30:45'), 'from [scrubbed] and [scrubbed] and [scrubbed] to 127.0.0.1:10000 at 12:30:45');
  assert.equal(classifyStderrLine('snowflake', 'conn from 203.0.113.9:1234 closed').message.includes('203.0.113.9'), false);
});

test('exits at a stop: ACME snowflake exiting 1 is normal, others are not', () => {
  const acme = entry({ name: 'snowflake', command: ['/sf', '--acme-hostnames', 'h'] });
  const plain = entry({ name: 'snowflake', command: ['/sf', '--disable-tls'] });
  assert.equal(transportKind('snowflake').normalStopExit(acme, 1, null), true);
  assert.equal(transportKind('snowflake').normalStopExit(plain, 1, null), false);
  assert.equal(transportKind('obfs4').normalStopExit(entry({ name: 'obfs4' }), 1, null), false);
  assert.equal(transportKind('obfs4').normalStopExit(entry({ name: 'obfs4' }), null, 'SIGTERM'), true);
  assert.deepEqual(transportKind('snowflake').extraListens({ ...acme, listen: '0.0.0.0:443' }), ['0.0.0.0:80']);
  assert.deepEqual(transportKind('obfs4').state, ['obfs4_state.json', 'obfs4_bridgeline.txt']);
  assert.deepEqual(transportKind('snowflake').state, ['snowflake-certificate-cache']);
});

test('the listen probe reads /proc/net/tcp and fd links', () => {
  const table = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0',
    '   1: 0100007F:1F40 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 20 4 30 10 -1',
  ].join('\n');
  assert.deepEqual(listeningInodes(table, 8000), [4242]);
  assert.deepEqual(listeningInodes(table, 8001), []);
  assert.deepEqual(socketInodes(['socket:[4242]', 'pipe:[1]', '/dev/null']), [4242]);
});

test('distribution: default none; distributed needs a public ORPort; snowflake/meek-only bridges stay unlisted; torrc cannot repeat them', () => {
  const t = { name: 'obfs4', command: ['/o'], listen: '127.0.0.1:1' };
  const c = load({ transport: t });
  assert.equal(c.distribution, 'none');
  assert.match(renderInstanceTorrc(c, instanceLayout(c, 1)), /^BridgeDistribution none$/m);
  assert.match(problems({ transport: t, distribution: 'any' }), /publicOrPort: distribution any needs a reachable ORPort/);
  assert.match(problems({ transport: { name: 'snowflake', command: ['/sf', '--disable-tls'], listen: '127.0.0.1:1' }, distribution: 'https', publicOrPort: '203.0.113.5:9001' }), /distribution: snowflake and meek bridges .* leave distribution at none/);
  assert.match(problems({ transport: t, torrc: 'bridgedistribution any\n' }), /torrc: BridgeDistribution is set by bridgectl .* use distribution:/);
  assert.match(problems({ transport: t, torrc: 'MaxMemInQueues 1 GB\n  ORPort 9001\n' }), /torrc: ORPort is set by bridgectl/);
  const d = load({ transport: t, distribution: 'https', publicOrPort: '203.0.113.5:9001' });
  const torrc = renderInstanceTorrc(d, instanceLayout(d, 2));
  assert.match(torrc, /^BridgeDistribution https$/m);
  assert.match(torrc, /^ORPort 203\.0\.113\.5:9003 NoAdvertise$/m);
  assert.match(torrc, /^ORPort 203\.0\.113\.5:9001 NoListen$/m);
  assert.equal(torrc.match(/^ORPort /gm)?.length, 2);
  const nft = renderNftables(d);
  assert.match(nft, /ip daddr 203\.0\.113\.5 tcp dport 9001 dnat to 203\.0\.113\.5:numgen inc mod 2 map \{ 0 : 9002, 1 : 9003 \}/);
  assert.match(nft, /type nat hook prerouting/);
});

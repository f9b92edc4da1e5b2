// The Extended ORPort protocol and cookie files, against values computed here with node:crypto
// directly (not through the module). The same code against tor's real ExtORPort is in
// balancer-lab.test.ts (it needs the lab network).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, stat, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import {
  CMD,
  ExtOrClientHandshake,
  ExtOrServerHandshake,
  clientHash,
  createCookieFile,
  decodeCommand,
  encodeCommand,
  readCookieFile,
  serverHash,
  serverHandshake,
  dialExtOr,
  writeCookieFile,
  parseCookieFile,
  transportCommands,
  ExtOrError,
} from '../src/extorport/index.js';

const cookie = Buffer.from('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f', 'hex');
const clientNonce = Buffer.alloc(32, 0xc1);
const serverNonce = Buffer.alloc(32, 0x5e);

function refHmac(key: Buffer, text: string, a: Buffer, b: Buffer): Buffer {
  return createHmac('sha256', key).update(Buffer.concat([Buffer.from(text, 'ascii'), a, b])).digest();
}
const REF_SERVER = refHmac(cookie, 'ExtORPort authentication server-to-client hash', clientNonce, serverNonce);
const REF_CLIENT = refHmac(cookie, 'ExtORPort authentication client-to-server hash', clientNonce, serverNonce);

test('hashes match HMAC-SHA256 computed independently', () => {
  assert.deepEqual(serverHash(cookie, clientNonce, serverNonce), REF_SERVER);
  assert.deepEqual(clientHash(cookie, clientNonce, serverNonce), REF_CLIENT);
  assert.notDeepEqual(REF_SERVER, REF_CLIENT);
});

test('command framing: 2-byte type, 2-byte length, body', () => {
  assert.deepEqual(encodeCommand(CMD.DONE), Buffer.from('00000000', 'hex'));
  assert.deepEqual(encodeCommand(CMD.USERADDR, '1.2.3.4:5'), Buffer.concat([Buffer.from('00010009', 'hex'), Buffer.from('1.2.3.4:5')]));
  assert.deepEqual(encodeCommand(CMD.OKAY), Buffer.from('10000000', 'hex'));
  assert.deepEqual(encodeCommand(CMD.DENY), Buffer.from('10010000', 'hex'));
  const two = Buffer.concat([encodeCommand(CMD.TRANSPORT, 'obfs4'), encodeCommand(CMD.DONE)]);
  const d = decodeCommand(two);
  assert.ok(d);
  assert.equal(d.command.type, CMD.TRANSPORT);
  assert.equal(d.command.body.toString(), 'obfs4');
  assert.equal(d.length, 9);
  assert.equal(decodeCommand(two.subarray(0, 8)), null);
  assert.equal(decodeCommand(two.subarray(0, 3)), null);
});

test('server side, fed one byte at a time, answers with the reference hashes and collects commands', () => {
  const s = new ExtOrServerHandshake(cookie, { serverNonce });
  assert.deepEqual(s.greeting(), Buffer.from([0x01, 0x00]));
  const cmds = transportCommands({ userAddr: '192.0.2.7:4321', transport: 'snowflake' });
  const input = Buffer.concat([Buffer.from([0x01]), clientNonce, REF_CLIENT, cmds, Buffer.from('early')]);
  const sent: Buffer[] = [];
  let last = 'pending';
  for (const byte of input) {
    const step = s.feed(Buffer.from([byte]));
    sent.push(step.send);
    last = step.status;
    assert.notEqual(step.status, 'failed', step.error);
  }
  assert.equal(last, 'done');
  assert.deepEqual(Buffer.concat(sent), Buffer.concat([REF_SERVER, serverNonce, Buffer.from([0x01])]));
  assert.deepEqual(s.commands.map((c) => [c.type, c.body.toString()]), [
    [CMD.USERADDR, '192.0.2.7:4321'],
    [CMD.TRANSPORT, 'snowflake'],
  ]);
  assert.deepEqual(s.rawCommands(), cmds);
  assert.equal(s.rest.toString(), 'early');
});

test('server side answers 00 to a wrong client hash and fails', () => {
  const s = new ExtOrServerHandshake(cookie, { serverNonce });
  const bad = Buffer.from(REF_CLIENT);
  bad[31]! ^= 1;
  const step = s.feed(Buffer.concat([Buffer.from([0x01]), clientNonce, bad, encodeCommand(CMD.DONE)]));
  assert.equal(step.status, 'failed');
  assert.equal(step.authFailed, true);
  assert.deepEqual(step.send, Buffer.concat([REF_SERVER, serverNonce, Buffer.from([0x00])]));
  assert.equal(s.feed(encodeCommand(CMD.DONE)).status, 'failed');
});

test('server side refuses other auth types and commands tor would refuse', () => {
  const a = new ExtOrServerHandshake(cookie, { serverNonce });
  const r = a.feed(Buffer.from([0x02]));
  assert.equal(r.status, 'failed');
  assert.equal(r.authFailed, false);
  assert.equal(r.send.length, 0);
  const authed = Buffer.concat([Buffer.from([0x01]), clientNonce, REF_CLIENT]);
  for (const [type, body] of [
    [CMD.USERADDR, 'not an address'],
    [CMD.USERADDR, '1.2.3.4'],
    [CMD.USERADDR, '1.2.3.4:5\0'],
    [CMD.USERADDR, '10.0.0.1:0'], // tor closes on port 0 (found by balancer-fuzz.test.ts)
    [CMD.TRANSPORT, 'has space'],
    [CMD.TRANSPORT, '9lives'],
    [CMD.OKAY, ''],
  ] as const) {
    const s = new ExtOrServerHandshake(cookie, { serverNonce });
    const st = s.feed(Buffer.concat([authed, encodeCommand(type, body), encodeCommand(CMD.DONE)]));
    assert.equal(st.status, 'failed', `${type} ${JSON.stringify(body)} should be refused`);
  }
  for (const body of ['[2001:db8::1]:443', '10.0.0.1:65535']) {
    const s = new ExtOrServerHandshake(cookie, { serverNonce });
    assert.equal(s.feed(Buffer.concat([authed, encodeCommand(CMD.USERADDR, body), encodeCommand(CMD.DONE)])).status, 'done', body);
  }
  // Unknown commands pass (tor ignores them), in order.
  const s = new ExtOrServerHandshake(cookie, { serverNonce });
  assert.equal(s.feed(Buffer.concat([authed, encodeCommand(0x0042, 'x'), encodeCommand(CMD.DONE)])).status, 'done');
  assert.equal(s.commands[0]?.type, 0x0042);
  // A peer that never sends DONE cannot make us hold unbounded bytes.
  const big = new ExtOrServerHandshake(cookie, { serverNonce, maxCommandBytes: 1000 });
  big.feed(authed);
  let st = big.feed(encodeCommand(0x0042, Buffer.alloc(600)));
  assert.equal(st.status, 'pending');
  st = big.feed(encodeCommand(0x0042, Buffer.alloc(600)));
  assert.equal(st.status, 'failed');
});

test('client side sends the reference client hash and pipelined commands, then takes OKAY', () => {
  const cmds = transportCommands({ userAddr: '192.0.2.7:1', transport: 'obfs4' });
  const c = new ExtOrClientHandshake(cookie, { clientNonce, commands: cmds });
  let st = c.feed(Buffer.from([0x01]));
  assert.equal(st.status, 'pending');
  assert.equal(st.send.length, 0);
  st = c.feed(Buffer.from([0x00]));
  assert.deepEqual(st.send, Buffer.concat([Buffer.from([0x01]), clientNonce]));
  st = c.feed(Buffer.concat([REF_SERVER, serverNonce]));
  assert.deepEqual(st.send, Buffer.concat([REF_CLIENT, cmds]));
  st = c.feed(Buffer.concat([Buffer.from([0x01]), Buffer.from('1000', 'hex')]));
  assert.equal(st.status, 'pending');
  st = c.feed(Buffer.from([0x00]));
  assert.equal(st.status, 'pending');
  st = c.feed(Buffer.concat([Buffer.from([0x00]), Buffer.from('more')]));
  assert.equal(st.status, 'done');
  assert.equal(c.reply?.type, CMD.OKAY);
  assert.equal(c.rest.toString(), 'more');
});

test('client side fails on a server that does not know the cookie, before sending its own hash', () => {
  const other = randomBytes(32);
  const c = new ExtOrClientHandshake(cookie, { clientNonce, commands: transportCommands() });
  c.feed(Buffer.from([0x01, 0x00]));
  const st = c.feed(Buffer.concat([refHmac(other, 'ExtORPort authentication server-to-client hash', clientNonce, serverNonce), serverNonce]));
  assert.equal(st.status, 'failed');
  assert.equal(st.authFailed, true);
  assert.equal(st.send.length, 0);
  const c2 = new ExtOrClientHandshake(cookie, { clientNonce });
  assert.equal(c2.feed(Buffer.from([0x02, 0x00])).status, 'failed');
  const c3 = new ExtOrClientHandshake(cookie, { clientNonce });
  c3.feed(Buffer.from([0x01, 0x00]));
  c3.feed(Buffer.concat([REF_SERVER, serverNonce]));
  const r = c3.feed(Buffer.from([0x00]));
  assert.equal(r.status, 'failed');
  assert.equal(r.authFailed, true);
});

test('client and server machines talk to each other (and disagree on different cookies)', () => {
  for (const [ck, sk, ok] of [
    [cookie, cookie, true],
    [cookie, randomBytes(32), false],
  ] as const) {
    const s = new ExtOrServerHandshake(sk);
    const c = new ExtOrClientHandshake(ck, { commands: transportCommands({ transport: 't' }) });
    let toClient = s.greeting();
    let cs = c.feed(toClient);
    let ss = s.feed(cs.send);
    cs = c.feed(ss.send);
    if (!ok) {
      assert.equal(cs.status, 'failed');
      continue;
    }
    ss = s.feed(cs.send);
    assert.equal(ss.status, 'done');
    toClient = Buffer.concat([ss.send, ExtOrServerHandshake.okay()]);
    assert.equal(c.feed(toClient).status, 'done');
    assert.equal(c.reply?.type, CMD.OKAY);
    assert.equal(s.commands[0]?.body.toString(), 't');
  }
});

test('socket glue: serverHandshake and dialExtOr over TCP; wrong cookie gets 00 and a closed socket', async () => {
  const other = randomBytes(32);
  const srv = net.createServer((sock) => {
    serverHandshake(sock, cookie, 5000).then(
      (r) => sock.end(Buffer.concat([ExtOrServerHandshake.okay(), Buffer.from(r.commands[0]?.body ?? '')])),
      () => {},
    );
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  try {
    const ok = await dialExtOr({ host: '127.0.0.1', port, cookie, userAddr: '1.2.3.4:5', transport: 'x' });
    assert.equal(ok.reply.type, CMD.OKAY);
    ok.socket.destroy();

    // Wrong cookie, by hand so that we see the server's 00 and then the end of the stream.
    const sock = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    sock.on('data', (d) => got.push(d));
    await new Promise((r) => sock.once('connect', r));
    const closed = new Promise((r) => sock.once('close', r));
    const c = new ExtOrClientHandshake(other, { clientNonce });
    await new Promise((r) => setTimeout(r, 50));
    sock.write(c.feed(Buffer.concat(got)).send); // 01 + nonce
    await new Promise((r) => setTimeout(r, 50));
    const hs = Buffer.concat(got).subarray(2, 66);
    sock.write(refHmac(other, 'ExtORPort authentication client-to-server hash', clientNonce, hs.subarray(32)));
    await closed;
    const all = Buffer.concat(got);
    assert.equal(all.length, 2 + 64 + 1);
    assert.equal(all[66], 0x00);
    await assert.rejects(dialExtOr({ host: '127.0.0.1', port, cookie: other }), (e: unknown) => e instanceof ExtOrError && e.authFailed);
  } finally {
    srv.close();
  }
});

test('cookie files: write, read, validate, refuse to overwrite', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'extorport-'));
  const f = join(dir, 'cookie');
  const ck = await createCookieFile(f);
  const data = await readFile(f);
  assert.equal(data.length, 64);
  assert.equal(data.subarray(0, 32).toString('latin1'), '! Extended ORPort Auth Cookie !\n');
  assert.deepEqual(data.subarray(32), ck);
  assert.equal((await stat(f)).mode & 0o777, 0o600);
  assert.deepEqual(await readCookieFile(f), ck);
  // No silent overwrite; the file is unchanged and no temporary file is left behind.
  await assert.rejects(writeCookieFile(f, randomBytes(32)), /already exists/);
  assert.deepEqual(await readCookieFile(f), ck);
  assert.deepEqual(await readdir(dir), ['cookie']);
  const ck2 = randomBytes(32);
  await writeCookieFile(f, ck2, { overwrite: true });
  assert.deepEqual(await readCookieFile(f), ck2);
  assert.equal((await stat(f)).mode & 0o777, 0o600);
  // Validation names the file.
  await writeFile(join(dir, 'short'), data.subarray(0, 63));
  await assert.rejects(readCookieFile(join(dir, 'short')), (e: Error) => e.message.includes(join(dir, 'short')) && /64 bytes/.test(e.message));
  const badHeader = Buffer.from(data);
  badHeader[0] = 0x3f;
  await writeFile(join(dir, 'hdr'), badHeader);
  await assert.rejects(readCookieFile(join(dir, 'hdr')), (e: Error) => e.message.includes(join(dir, 'hdr')) && /header/.test(e.message));
  await assert.rejects(readCookieFile(join(dir, 'missing')), (e: Error) => e.message.includes(join(dir, 'missing')) && /ENOENT/.test(e.message));
  assert.throws(() => parseCookieFile(Buffer.alloc(65)), /64 bytes/);
});

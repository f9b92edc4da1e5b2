// A fast fake Extended ORPort (what tor's ExtORPort does up to its OKAY), so that tor is not the
// bottleneck: SAFE_COOKIE with its cookie file, then the TRANSPORT name the client sent picks what
// happens after OKAY:
//   okay         nothing (the client closes)          — session rate
//   idle         nothing, the session is held         — idle memory
//   sink_N       read N bytes, then answer one byte 'K' — bulk upload
//   source_N     write N bytes                         — bulk download
// Usage: node fake-extorport.js --listen HOST:PORT --cookie-file FILE   (prints "ready" when listening)
import net from 'node:net';
import { CMD, ExtOrServerHandshake, encodeCommand, readCookieFile } from '../src/extorport/index.js';
import { flags, need } from './common.js';

const f = flags(process.argv.slice(2));
const [host, port] = need(f, 'listen').split(':') as [string, string];
const cookie = await readCookieFile(need(f, 'cookie-file'));
const OKAY = encodeCommand(CMD.OKAY);
const CHUNK = Buffer.alloc(1 << 20, 0x5a);

function afterOkay(s: net.Socket, transport: string, rest: Buffer): void {
  const [mode, n] = transport.split('_') as [string, string | undefined];
  const total = Number(n ?? 0);
  if (mode === 'sink') {
    let got = rest.length;
    const check = (): void => {
      if (got >= total) {
        s.off('data', onData);
        s.write('K');
      }
    };
    const onData = (d: Buffer): void => {
      got += d.length;
      check();
    };
    s.on('data', onData);
    check();
  } else if (mode === 'source') {
    let sent = 0;
    const pump = (): void => {
      while (sent < total) {
        const k = Math.min(CHUNK.length, total - sent);
        sent += k;
        if (!s.write(k === CHUNK.length ? CHUNK : CHUNK.subarray(0, k))) return void s.once('drain', pump);
      }
    };
    s.resume();
    pump();
  } else {
    s.resume();
  }
}

const server = net.createServer({ noDelay: true }, (s) => {
  s.on('error', () => {});
  const hs = new ExtOrServerHandshake(cookie);
  const onData = (d: Buffer): void => {
    const st = hs.feed(d);
    if (st.send.length) s.write(st.send);
    if (st.status === 'failed') return void s.destroy();
    if (st.status !== 'done') return;
    s.off('data', onData);
    const t = hs.commands.find((c) => c.type === CMD.TRANSPORT)?.body.toString('latin1') ?? 'okay';
    s.write(OKAY);
    afterOkay(s, t, hs.rest);
  };
  s.on('data', onData);
  s.write(hs.greeting());
});
server.listen({ host, port: Number(port), backlog: 4096 }, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));

// The naive Node proxy, for reference: accept, connect to the backend, pipe() both ways. No
// authentication of its own (like HAProxy, the client authenticates end to end through it).
// Usage: node pipe-proxy.js --listen HOST:PORT --backend HOST:PORT   (prints "ready")
import net from 'node:net';
import { flags, need } from './common.js';

const f = flags(process.argv.slice(2));
const [host, port] = need(f, 'listen').split(':') as [string, string];
const [bhost, bport] = need(f, 'backend').split(':') as [string, string];

const server = net.createServer({ noDelay: true }, (c) => {
  const u = net.connect({ host: bhost, port: Number(bport), noDelay: true });
  c.on('error', () => u.destroy());
  u.on('error', () => c.destroy());
  c.on('close', () => u.destroy());
  u.on('close', () => c.destroy());
  c.pipe(u);
  u.pipe(c);
});
server.listen({ host, port: Number(port), backlog: 4096 }, () => process.stdout.write('ready\n'));
process.on('SIGTERM', () => process.exit(0));

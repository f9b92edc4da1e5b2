// A real tor client inside the lab, and fetching over its SOCKS port.
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { SocksClient } from 'socks';
import type { Logger } from 'pino';
import { spawnChild, torArgs, renderTorrc, connectControl, waitBootstrapped, TOR_BIN, type Child } from '../tor/index.js';
import { assertIsolated } from './isolation.js';
import { freePort } from './ports.js';

export interface LabClient {
  name: string;
  socksPort: number;
  child: Child;
  stop(): Promise<void>;
}

export interface ClientOptions {
  name: string;
  dir: string;
  labTorrc: string[];
  /** `Bridge` lines' values, e.g. `127.0.0.1:9001 FINGERPRINT` or `obfs4 127.0.0.1:443 FP cert=... iat-mode=0`. */
  bridges?: string[];
  /** `ClientTransportPlugin` values, e.g. `obfs4 exec /usr/bin/obfs4proxy`. */
  transportPlugins?: string[];
  extraTorrc?: string[];
  logger: Logger;
  bootstrapTimeoutMs?: number;
  /** Start again on the data directory of an earlier run (its cached descriptors) instead of a fresh one. */
  keepDir?: boolean;
  /** The SOCKS port (default: a free one); with keepDir and the same port, the torrc is the same. */
  socksPort?: number;
}

export async function startClient(o: ClientOptions): Promise<LabClient> {
  assertIsolated('a lab client');
  if (!o.keepDir) await rm(o.dir, { recursive: true, force: true });
  await mkdir(o.dir, { recursive: true, mode: 0o700 });
  const socksPort = o.socksPort ?? (await freePort());
  const torrc = join(o.dir, 'torrc');
  await writeFile(
    torrc,
    renderTorrc([
      ...o.labTorrc,
      `DataDirectory ${o.dir}`,
      `SocksPort 127.0.0.1:${socksPort}`,
      `ControlPort unix:${join(o.dir, 'control')}`,
      'CookieAuthentication 1',
      ...(o.bridges?.length ? ['UseBridges 1', ...o.bridges.map((b) => `Bridge ${b}`)] : []),
      ...(o.transportPlugins ?? []).map((p) => `ClientTransportPlugin ${p}`),
      `Log notice file ${join(o.dir, 'notice.log')}`,
      'Log warn stdout',
      ...(o.extraTorrc ?? []),
    ]),
  );
  const log = o.logger.child({ client: o.name });
  const child = spawnChild(TOR_BIN, torArgs(torrc), { onLine: (l) => log.debug({ tor: l }) });
  let alive = true;
  void child.exited.then(() => (alive = false));
  const stop = async (): Promise<void> => {
    await child.stop(5_000);
  };
  try {
    const ctl = await connectControl(join(o.dir, 'control'), join(o.dir, 'control_auth_cookie'), 30_000, () => alive);
    try {
      await waitBootstrapped(ctl, o.bootstrapTimeoutMs ?? 90_000, () => alive);
    } finally {
      ctl.close();
    }
  } catch (e) {
    await stop();
    throw new Error(`lab client ${o.name}: ${(e as Error).message}`);
  }
  return { name: o.name, socksPort, child, stop };
}

/** HTTP/1.0 GET through a SOCKS5 proxy; resolves to the body (status must be 200). */
export async function fetchViaSocks(socksPort: number, url: string, timeoutMs = 60_000): Promise<Buffer> {
  const u = new URL(url);
  const { socket } = await SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: socksPort, type: 5 },
    command: 'connect',
    destination: { host: u.hostname, port: Number(u.port || 80) },
    timeout: timeoutMs,
  });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`fetch ${url} timed out`));
    }, timeoutMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const sep = all.indexOf('\r\n\r\n');
      if (sep < 0) return reject(new Error(`fetch ${url}: no HTTP response`));
      const head = all.subarray(0, sep).toString('latin1');
      if (!/^HTTP\/1\.[01] 200 /.test(head)) return reject(new Error(`fetch ${url}: ${head.split('\r\n')[0]}`));
      resolve(all.subarray(sep + 4));
    });
    socket.write(`GET ${u.pathname}${u.search} HTTP/1.0\r\nHost: ${u.host}\r\n\r\n`);
  });
}

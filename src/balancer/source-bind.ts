// Connecting to a backend from a source address, with IP_BIND_ADDRESS_NO_PORT when we can.
//
// Node binds a socket before it connects and cannot set socket options, so with plain Node every
// `localAddress` connection reserves an ephemeral port of its address at bind() time. A tiny
// Node-API addon (native/bind_no_port.c, built by node-gyp from the package's binding.gyp on
// `npm install`) makes the socket, sets IP_BIND_ADDRESS_NO_PORT and binds it; Node then takes the fd
// (net.Socket({ fd })) and connects it, and the kernel picks the source port by the whole 4-tuple.
// Without the addon we fall back to Node's own bind (still a random source address) and say so once.
import net from 'node:net';
import { closeSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getSystemErrorMap } from 'node:util';
import type { Logger } from 'pino';

export interface BindNoPortAddon {
  openBound(address: string): number;
  bindAddressNoPort(fd: number): number;
}

let addon: BindNoPortAddon | null | undefined;
let addonError = '';
let warned = false;

function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  return null;
}

/** The addon, or null if it is not built here (the reason is in addonLoadError()). */
export function loadAddon(): BindNoPortAddon | null {
  if (addon !== undefined) return addon;
  if (process.env.BRIDGECTL_NO_NATIVE === '1') {
    addonError = 'disabled by BRIDGECTL_NO_NATIVE=1';
    return (addon = null);
  }
  const root = packageRoot();
  // BRIDGECTL_ADDON: another build of the addon (scripts/sanitize.sh's, with ASan and UBSan).
  const file = process.env.BRIDGECTL_ADDON || (root ? join(root, 'build', 'Release', 'bind_no_port.node') : null);
  try {
    if (!file || !existsSync(file)) throw new Error(`${file ?? 'build/Release/bind_no_port.node'} not found (run npm install, or npx node-gyp rebuild)`);
    addon = createRequire(import.meta.url)(file) as BindNoPortAddon;
  } catch (e) {
    addonError = (e as Error).message;
    addon = null;
  }
  return addon;
}

export function addonLoadError(): string {
  return addonError;
}

/** Logs, once per process, that source addresses are bound without IP_BIND_ADDRESS_NO_PORT. */
export function warnIfNoAddon(logger: Logger): void {
  if (loadAddon() || warned) return;
  warned = true;
  logger.warn(
    { reason: addonError },
    'IP_BIND_ADDRESS_NO_PORT is unavailable (native addon not loaded): binding source addresses the plain Node way, ' +
      'which reserves an ephemeral port per address at bind time',
  );
}

/** An Error like Node's own for a negative errno from the addon: "listen EADDRINUSE: address already in use 127.0.0.1:10000". */
export function errnoError(neg: number, syscall: string, address: string): NodeJS.ErrnoException {
  const [code, text] = getSystemErrorMap().get(neg) ?? ['UNKNOWN', 'unknown error'];
  const e: NodeJS.ErrnoException = new Error(`${syscall} ${code}: ${text} ${address}`);
  e.code = code;
  e.errno = neg;
  e.syscall = syscall;
  return e;
}

export interface ConnectOptions {
  host: string;
  port: number;
  /** Source address to bind; none means the kernel's choice. */
  localAddress?: string;
  /** Use the addon if loaded (default true). */
  noPort?: boolean;
}

/**
 * Starts a TCP connection, TCP_NODELAY set. Errors, including a failed bind, arrive as the socket's
 * 'error' event, never as a throw.
 */
export function connectFrom(opts: ConnectOptions): net.Socket {
  const a = opts.noPort === false ? null : loadAddon();
  if (!opts.localAddress || !a) {
    const s = net.connect({ host: opts.host, port: opts.port, localAddress: opts.localAddress, noDelay: true });
    return s;
  }
  const fd = a.openBound(opts.localAddress);
  if (fd < 0) {
    const s = new net.Socket();
    process.nextTick(() => s.destroy(errnoError(fd, 'bind', opts.localAddress ?? '')));
    return s;
  }
  let s: net.Socket;
  try {
    // manualStart: don't start reading an unconnected socket; Node starts reading once connected.
    s = new net.Socket({ fd, manualStart: true } as net.SocketConstructorOpts);
  } catch (e) {
    closeSync(fd);
    const s2 = new net.Socket();
    process.nextTick(() => s2.destroy(e as Error));
    return s2;
  }
  s.setNoDelay(true);
  s.connect({ host: opts.host, port: opts.port });
  return s;
}

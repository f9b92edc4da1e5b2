// The Extended ORPort protocol (torspec ext-orport-spec, pt-spec): constants, SAFE_COOKIE hashes
// and command framing. Pure functions over Buffers; no sockets here.
import { createHmac, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';

export const AUTH_TYPE_SAFE_COOKIE = 0x01;
/** What a server sends first: the list of auth types it supports, ended by 0x00. */
export const SERVER_AUTH_TYPES = Buffer.from([AUTH_TYPE_SAFE_COOKIE, 0x00]);
export const NONCE_LEN = 32;
export const HASH_LEN = 32;
export const COOKIE_LEN = 32;
export const AUTH_OK = 0x01;
export const AUTH_FAIL = 0x00;

export const SERVER_TO_CLIENT_CONST = 'ExtORPort authentication server-to-client hash';
export const CLIENT_TO_SERVER_CONST = 'ExtORPort authentication client-to-server hash';

/** Command types. Transport to bridge: DONE, USERADDR, TRANSPORT. Bridge to transport: OKAY, DENY, CONTROL. */
export const CMD = {
  DONE: 0x0000,
  USERADDR: 0x0001,
  TRANSPORT: 0x0002,
  OKAY: 0x1000,
  DENY: 0x1001,
  CONTROL: 0x1002,
} as const;

export const MAX_BODY_LEN = 0xffff;
export const COMMAND_HEADER_LEN = 4;

export interface ExtOrCommand {
  type: number;
  body: Buffer;
}

function hmac(cookie: Buffer, constant: string, clientNonce: Buffer, serverNonce: Buffer): Buffer {
  if (cookie.length !== COOKIE_LEN) throw new Error(`an ExtORPort cookie is ${COOKIE_LEN} bytes, got ${cookie.length}`);
  if (clientNonce.length !== NONCE_LEN || serverNonce.length !== NONCE_LEN) throw new Error(`nonces are ${NONCE_LEN} bytes`);
  return createHmac('sha256', cookie).update(constant, 'latin1').update(clientNonce).update(serverNonce).digest();
}

/** ServerHash = HMAC-SHA256(cookie, SERVER_TO_CLIENT_CONST | ClientNonce | ServerNonce). */
export function serverHash(cookie: Buffer, clientNonce: Buffer, serverNonce: Buffer): Buffer {
  return hmac(cookie, SERVER_TO_CLIENT_CONST, clientNonce, serverNonce);
}

/** ClientHash = HMAC-SHA256(cookie, CLIENT_TO_SERVER_CONST | ClientNonce | ServerNonce). */
export function clientHash(cookie: Buffer, clientNonce: Buffer, serverNonce: Buffer): Buffer {
  return hmac(cookie, CLIENT_TO_SERVER_CONST, clientNonce, serverNonce);
}

/** Constant-time comparison of two hashes. */
export function hashesEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Frames one command: 2-byte type, 2-byte length, body. */
export function encodeCommand(type: number, body: Buffer | string = Buffer.alloc(0)): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body, 'latin1') : body;
  if (!Number.isInteger(type) || type < 0 || type > 0xffff) throw new Error(`bad ExtORPort command type ${type}`);
  if (b.length > MAX_BODY_LEN) throw new Error(`ExtORPort command body too long (${b.length} bytes)`);
  const out = Buffer.allocUnsafe(COMMAND_HEADER_LEN + b.length);
  out.writeUInt16BE(type, 0);
  out.writeUInt16BE(b.length, 2);
  b.copy(out, COMMAND_HEADER_LEN);
  return out;
}

/**
 * Reads one framed command from the start of `buf`. Returns null if more bytes are needed, else the
 * command (its body a view into `buf`) and the number of bytes it took.
 */
export function decodeCommand(buf: Buffer): { command: ExtOrCommand; length: number } | null {
  if (buf.length < COMMAND_HEADER_LEN) return null;
  const len = buf.readUInt16BE(2);
  if (buf.length < COMMAND_HEADER_LEN + len) return null;
  return {
    command: { type: buf.readUInt16BE(0), body: buf.subarray(COMMAND_HEADER_LEN, COMMAND_HEADER_LEN + len) },
    length: COMMAND_HEADER_LEN + len,
  };
}

/** A readable name for a command type, for logs. */
export function commandName(type: number): string {
  for (const [k, v] of Object.entries(CMD)) if (v === type) return k;
  return `0x${type.toString(16).padStart(4, '0')}`;
}

const C_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Checks a transport-to-bridge command the way tor does before it would accept it (tor closes the
 * connection on a USERADDR that is not an IP address and port, or a TRANSPORT that is not a C
 * identifier, or either with a NUL). Returns a reason, or null if tor would take it. Unknown command
 * types are fine: tor ignores them.
 */
export function checkTransportCommand(cmd: ExtOrCommand): string | null {
  if (cmd.type === CMD.USERADDR || cmd.type === CMD.TRANSPORT) {
    if (cmd.body.includes(0)) return `NUL in ${commandName(cmd.type)}`;
    const s = cmd.body.toString('latin1');
    if (cmd.type === CMD.TRANSPORT) return C_IDENTIFIER.test(s) ? null : `TRANSPORT ${JSON.stringify(s)} is not a C identifier`;
    return parseUserAddr(s) ? null : `USERADDR ${JSON.stringify(s)} is not ADDRESS:PORT`;
  }
  if (cmd.type === CMD.OKAY || cmd.type === CMD.DENY || cmd.type === CMD.CONTROL) return `${commandName(cmd.type)} is a bridge-to-transport command`;
  return null;
}

/** Parses a USERADDR body: `1.2.3.4:5678` or `[::1]:5678` (port 1-65535, as tor takes it). */
export function parseUserAddr(s: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const host = m[1] ?? m[2] ?? '';
  const port = Number(m[3]);
  // Tor 0.4.9 refuses port 0 ("Port "0" out of range") and closes the connection before its OKAY.
  if (port < 1 || port > 65535) return null;
  if (m[1] !== undefined ? isIP(host) !== 6 : isIP(host) !== 4) return null;
  return { host, port };
}

// Thin glue between the handshake state machines and net.Socket.
import net from 'node:net';
import { ExtOrClientHandshake, ExtOrServerHandshake, type Step } from './handshake.js';
import { CMD, encodeCommand, type ExtOrCommand } from './protocol.js';

/** A handshake that failed; `authFailed` says it was the cookie, not a malformed or vanished peer. */
export class ExtOrError extends Error {
  constructor(
    message: string,
    readonly authFailed = false,
    readonly timedOut = false,
  ) {
    super(message);
    this.name = 'ExtOrError';
  }
}

interface Machine {
  feed(data: Buffer): Step;
}

/**
 * Feeds a socket's bytes to a handshake until it is done. On success the socket is left paused with
 * no 'data' listener of ours (bytes that came after the handshake are in the machine's `rest`).
 * On failure, what the machine had to say (an auth result 00) is written and the socket is ended
 * and destroyed shortly after. The socket must have an 'error' listener or get one here.
 */
export function driveHandshake(socket: net.Socket, machine: Machine, first: Buffer | null, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => finish(new ExtOrError(`Extended ORPort handshake timed out after ${timeoutMs} ms`, false, true)), timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('error', onError);
      socket.off('end', onEnd);
    };
    const finish = (err?: ExtOrError): void => {
      if (settled) return;
      settled = true;
      cleanup();
      if (err) {
        socket.on('error', () => {});
        socket.destroy();
        reject(err);
      } else {
        socket.pause();
        resolve();
      }
    };
    const onData = (data: Buffer): void => {
      const step = machine.feed(data);
      if (step.status === 'failed') {
        if (!settled) {
          settled = true;
          cleanup();
          socket.on('error', () => {});
          // Say it per protocol, then drop the connection; don't wait on a peer that won't read.
          if (step.send.length) socket.end(step.send);
          else socket.end();
          setTimeout(() => socket.destroy(), 1000).unref();
          reject(new ExtOrError(step.error ?? 'Extended ORPort handshake failed', step.authFailed ?? false));
        }
        return;
      }
      if (step.send.length) socket.write(step.send);
      if (step.status === 'done') finish();
    };
    const onClose = (): void => finish(new ExtOrError('peer closed the connection during the Extended ORPort handshake'));
    const onEnd = onClose;
    const onError = (e: Error): void => finish(new ExtOrError(`Extended ORPort handshake: ${e.message}`));
    socket.on('data', onData);
    socket.on('close', onClose);
    socket.on('end', onEnd);
    socket.on('error', onError);
    if (first?.length) socket.write(first);
    socket.resume();
  });
}

export interface ServerHandshakeResult {
  commands: ExtOrCommand[];
  /** The commands' bytes as the peer framed them, DONE included. */
  rawCommands: Buffer;
  /** Bytes the peer sent after DONE. */
  rest: Buffer;
}

/** Runs the bridge side on an accepted socket: authenticates the peer and collects its commands up to DONE. */
export async function serverHandshake(socket: net.Socket, cookie: Buffer, timeoutMs = 30_000): Promise<ServerHandshakeResult> {
  const m = new ExtOrServerHandshake(cookie);
  await driveHandshake(socket, m, m.greeting(), timeoutMs);
  return { commands: m.commands, rawCommands: m.rawCommands(), rest: m.rest };
}

export interface ClientHandshakeResult {
  reply: ExtOrCommand;
  /** The bridge's reply bytes, unchanged. */
  rawReply: Buffer;
  rest: Buffer;
}

/** Runs the transport side on a connected socket: authenticates, sends `commands` (DONE included), returns OKAY/DENY. */
export async function clientHandshake(socket: net.Socket, cookie: Buffer, commands: Buffer, timeoutMs = 30_000): Promise<ClientHandshakeResult> {
  const m = new ExtOrClientHandshake(cookie, { commands });
  await driveHandshake(socket, m, null, timeoutMs);
  if (!m.reply) throw new ExtOrError('no reply to DONE');
  return { reply: m.reply, rawReply: m.rawReply, rest: m.rest };
}

/** The usual transport commands: USERADDR and TRANSPORT if given, then DONE. */
export function transportCommands(opts: { userAddr?: string; transport?: string; extra?: ExtOrCommand[] } = {}): Buffer {
  const parts: Buffer[] = [];
  if (opts.userAddr !== undefined) parts.push(encodeCommand(CMD.USERADDR, opts.userAddr));
  if (opts.transport !== undefined) parts.push(encodeCommand(CMD.TRANSPORT, opts.transport));
  for (const c of opts.extra ?? []) parts.push(encodeCommand(c.type, c.body));
  parts.push(encodeCommand(CMD.DONE));
  return Buffer.concat(parts);
}

export interface DialOptions {
  host: string;
  port: number;
  cookie: Buffer;
  userAddr?: string;
  transport?: string;
  localAddress?: string;
  timeoutMs?: number;
}

/**
 * Connects to an Extended ORPort as a transport would, and runs the whole handshake. Resolves with
 * the (paused) socket and the bridge's reply; rejects, with the socket destroyed, on failure.
 */
export async function dialExtOr(opts: DialOptions): Promise<{ socket: net.Socket } & ClientHandshakeResult> {
  const socket = net.connect({ host: opts.host, port: opts.port, localAddress: opts.localAddress, noDelay: true });
  socket.on('error', () => {});
  const timeoutMs = opts.timeoutMs ?? 30_000;
  try {
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new ExtOrError('connect timed out', false, true)), timeoutMs);
      socket.once('connect', () => {
        clearTimeout(t);
        resolve();
      });
      socket.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
    const r = await clientHandshake(socket, opts.cookie, transportCommands(opts), timeoutMs);
    return { socket, ...r };
  } catch (e) {
    socket.destroy();
    throw e;
  }
}

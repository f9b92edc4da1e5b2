// Both sides of the Extended ORPort handshake as state machines fed bytes. They never touch a
// socket: feed() takes what arrived and returns what to write back, so they can be driven by tests
// byte by byte and by the socket glue in socket.ts alike.
import { randomBytes } from 'node:crypto';
import {
  AUTH_FAIL,
  AUTH_OK,
  AUTH_TYPE_SAFE_COOKIE,
  CMD,
  COMMAND_HEADER_LEN,
  HASH_LEN,
  NONCE_LEN,
  SERVER_AUTH_TYPES,
  checkTransportCommand,
  clientHash,
  commandName,
  decodeCommand,
  encodeCommand,
  hashesEqual,
  serverHash,
  type ExtOrCommand,
} from './protocol.js';

/** Where a handshake stands after a feed(). */
export type HandshakeStatus = 'pending' | 'done' | 'failed';

export interface Step {
  /** Bytes to write to the peer now (possibly empty). */
  send: Buffer;
  status: HandshakeStatus;
  /** Why it failed, when status is 'failed'. */
  error?: string;
  /** True when the failure is a wrong cookie (as opposed to a malformed or unexpected message). */
  authFailed?: boolean;
}

const EMPTY: Buffer = Buffer.alloc(0);

/** Accumulates bytes and hands out exact-length pieces. */
class Inbox {
  private buf: Buffer = EMPTY;
  push(data: Buffer): void {
    this.buf = this.buf.length === 0 ? data : Buffer.concat([this.buf, data]);
  }
  get length(): number {
    return this.buf.length;
  }
  peek(): Buffer {
    return this.buf;
  }
  take(n: number): Buffer {
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return out;
  }
  takeAll(): Buffer {
    const out = this.buf;
    this.buf = EMPTY;
    return out;
  }
}

/** What a state handler writes to and how it ends a feed(). */
interface Turn {
  /** Bytes to send, in order. */
  out: Buffer[];
  /** Needs more bytes. */
  pending(): Step;
  /** The handshake is over; what is left in the inbox is `rest`. */
  done(): Step;
  fail(error: string, authFailed?: boolean): Step;
}

/**
 * What both sides share: bytes in through an inbox, the states run until one needs more bytes or
 * the handshake ends (advance), and what becomes of bytes fed after the end.
 */
abstract class Machine<S extends string> {
  protected abstract state: S | 'done' | 'failed';
  protected readonly inbox = new Inbox();
  /**
   * Bytes the peer sent after the handshake: after DONE on the server side (tor would close on
   * these; the caller decides), after OKAY/DENY on the client side (data the bridge already sent on).
   */
  rest: Buffer = EMPTY;

  feed(data: Buffer): Step {
    if (this.state === 'failed') return { send: EMPTY, status: 'failed', error: 'handshake already failed' };
    if (this.state === 'done') {
      this.rest = this.rest.length ? Buffer.concat([this.rest, data]) : data;
      return { send: EMPTY, status: 'done' };
    }
    this.inbox.push(data);
    const out: Buffer[] = [];
    return this.advance({
      out,
      pending: () => ({ send: Buffer.concat(out), status: 'pending' }),
      done: () => {
        this.state = 'done';
        this.rest = this.inbox.takeAll();
        return { send: Buffer.concat(out), status: 'done' };
      },
      fail: (error, authFailed = false) => {
        this.state = 'failed';
        return { send: Buffer.concat(out), status: 'failed', error, authFailed };
      },
    });
  }

  protected abstract advance(t: Turn): Step;
}

export interface ServerOptions {
  /** Fixed server nonce, for tests; random otherwise. */
  serverNonce?: Buffer;
  /** Most command bytes (before DONE) a peer may send; protects memory. Default 64 KiB. */
  maxCommandBytes?: number;
  /** Check USERADDR/TRANSPORT the way tor does and fail on what tor would refuse. Default true. */
  validateCommands?: boolean;
}

type ServerState = 'auth-type' | 'client-nonce' | 'client-hash' | 'commands' | 'done' | 'failed';

/**
 * The bridge side (what tor does): authenticates a transport with SAFE_COOKIE, then collects its
 * commands until DONE. It does not send OKAY itself: the caller decides (tor's OKAY is relayed by the
 * balancer; `okay()` gives the bytes for a server that answers on its own).
 */
export class ExtOrServerHandshake extends Machine<ServerState> {
  protected state: ServerState = 'auth-type';
  private readonly serverNonce: Buffer;
  private expectedClientHash: Buffer | null = null;
  private commandBytes = 0;
  private readonly maxCommandBytes: number;
  private readonly validate: boolean;
  private readonly raw: Buffer[] = [];
  /** Commands received before DONE, in order (DONE excluded). Bodies are copies. */
  readonly commands: ExtOrCommand[] = [];

  constructor(
    private readonly cookie: Buffer,
    opts: ServerOptions = {},
  ) {
    super();
    this.serverNonce = opts.serverNonce ?? randomBytes(NONCE_LEN);
    this.maxCommandBytes = opts.maxCommandBytes ?? 64 * 1024;
    this.validate = opts.validateCommands ?? true;
  }

  /** The first bytes a server sends: its auth types. */
  greeting(): Buffer {
    return SERVER_AUTH_TYPES;
  }

  /** The raw bytes of all commands received, DONE included, exactly as the peer framed them. */
  rawCommands(): Buffer {
    return Buffer.concat(this.raw);
  }

  /** A reply for a server that answers by itself. */
  static okay(): Buffer {
    return encodeCommand(CMD.OKAY);
  }

  protected advance({ out, pending, done, fail }: Turn): Step {
    for (;;) {
      switch (this.state) {
        case 'auth-type': {
          if (this.inbox.length < 1) return pending();
          const t = this.inbox.take(1)[0];
          if (t !== AUTH_TYPE_SAFE_COOKIE) return fail(`unsupported auth type ${t}`);
          this.state = 'client-nonce';
          break;
        }
        case 'client-nonce': {
          if (this.inbox.length < NONCE_LEN) return pending();
          const clientNonce = Buffer.from(this.inbox.take(NONCE_LEN));
          out.push(serverHash(this.cookie, clientNonce, this.serverNonce), this.serverNonce);
          this.expectedClientHash = clientHash(this.cookie, clientNonce, this.serverNonce);
          this.state = 'client-hash';
          break;
        }
        case 'client-hash': {
          if (this.inbox.length < HASH_LEN) return pending();
          const got = this.inbox.take(HASH_LEN);
          if (!this.expectedClientHash || !hashesEqual(got, this.expectedClientHash)) {
            out.push(Buffer.from([AUTH_FAIL]));
            return fail('wrong client hash (the peer does not have our cookie)', true);
          }
          out.push(Buffer.from([AUTH_OK]));
          this.state = 'commands';
          break;
        }
        case 'commands': {
          const d = decodeCommand(this.inbox.peek());
          if (!d) {
            if (this.commandBytes + this.inbox.length > this.maxCommandBytes) return fail('too many command bytes before DONE');
            return pending();
          }
          this.commandBytes += d.length;
          if (this.commandBytes > this.maxCommandBytes) return fail('too many command bytes before DONE');
          const raw = Buffer.from(this.inbox.take(d.length));
          const cmd = { type: d.command.type, body: raw.subarray(COMMAND_HEADER_LEN) };
          if (this.validate) {
            const why = checkTransportCommand(cmd);
            if (why) return fail(`bad command: ${why}`);
          }
          this.raw.push(raw);
          if (cmd.type === CMD.DONE) return done();
          this.commands.push(cmd);
          break;
        }
        default:
          return fail(`unexpected state ${this.state}`);
      }
    }
  }
}

export interface ClientOptions {
  /** Fixed client nonce, for tests; random otherwise. */
  clientNonce?: Buffer;
  /**
   * Command bytes (DONE included) to send right after the client hash, in the same write, so that
   * the whole handshake costs two round trips. Without them the handshake ends at the auth result.
   */
  commands?: Buffer;
}

type ClientState = 'auth-types' | 'server-hash' | 'auth-result' | 'reply' | 'done' | 'failed';

/**
 * The transport side: picks SAFE_COOKIE, checks the server knows the cookie, proves that we do,
 * sends the commands and waits for the bridge's OKAY or DENY.
 */
export class ExtOrClientHandshake extends Machine<ClientState> {
  protected state: ClientState = 'auth-types';
  private readonly clientNonce: Buffer;
  private readonly commands: Buffer | null;
  private readonly replyParts: Buffer[] = [];
  /** The bridge's answer to DONE (OKAY or DENY), or null if commands were not given. */
  reply: ExtOrCommand | null = null;
  /** Everything the bridge sent after the auth result up to and including its OKAY/DENY, unchanged. */
  rawReply: Buffer = EMPTY;

  constructor(
    private readonly cookie: Buffer,
    opts: ClientOptions = {},
  ) {
    super();
    this.clientNonce = opts.clientNonce ?? randomBytes(NONCE_LEN);
    this.commands = opts.commands ?? null;
  }

  protected advance({ out, pending, done, fail }: Turn): Step {
    for (;;) {
      switch (this.state) {
        case 'auth-types': {
          const end = this.inbox.peek().indexOf(0);
          if (end < 0) return this.inbox.length > 255 ? fail('auth type list too long') : pending();
          const types = this.inbox.take(end + 1).subarray(0, end);
          if (!types.includes(AUTH_TYPE_SAFE_COOKIE)) return fail(`server offers no SAFE_COOKIE auth (types ${[...types].join(',')})`);
          out.push(Buffer.from([AUTH_TYPE_SAFE_COOKIE]), this.clientNonce);
          this.state = 'server-hash';
          break;
        }
        case 'server-hash': {
          if (this.inbox.length < HASH_LEN + NONCE_LEN) return pending();
          const got = this.inbox.take(HASH_LEN);
          const serverNonce = Buffer.from(this.inbox.take(NONCE_LEN));
          if (!hashesEqual(got, serverHash(this.cookie, this.clientNonce, serverNonce))) {
            return fail('wrong server hash (the server has another cookie)', true);
          }
          out.push(clientHash(this.cookie, this.clientNonce, serverNonce));
          if (this.commands) out.push(this.commands);
          this.state = 'auth-result';
          break;
        }
        case 'auth-result': {
          if (this.inbox.length < 1) return pending();
          const r = this.inbox.take(1)[0];
          if (r !== AUTH_OK) return fail(r === AUTH_FAIL ? 'server refused our client hash' : `bad auth result ${r}`, r === AUTH_FAIL);
          if (!this.commands) return done();
          this.state = 'reply';
          break;
        }
        case 'reply': {
          const d = decodeCommand(this.inbox.peek());
          if (!d) return pending();
          const raw = Buffer.from(this.inbox.take(d.length));
          this.replyParts.push(raw);
          if (d.command.type === CMD.OKAY || d.command.type === CMD.DENY) {
            this.reply = { type: d.command.type, body: raw.subarray(COMMAND_HEADER_LEN) };
            this.rawReply = this.replyParts.length === 1 ? raw : Buffer.concat(this.replyParts);
            return done();
          }
          if (this.replyParts.length > 16) return fail(`no OKAY or DENY (last: ${commandName(d.command.type)})`);
          break;
        }
        default:
          return fail(`unexpected state ${this.state}`);
      }
    }
  }
}

// A small client for tor's control protocol (control-spec.txt) over a unix socket,
// authenticating with the control cookie. Only what bridgectl needs: GETINFO, SIGNAL,
// and raw commands, one at a time, plus asynchronous events.
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import { EventEmitter } from 'node:events';

export interface ControlReply {
  status: number;
  lines: string[]; // each reply line's text after the status code and separator; data blocks joined
}

interface Pending {
  resolve: (r: ControlReply) => void;
  reject: (e: Error) => void;
}

export class TorControl extends EventEmitter {
  private buf = '';
  private current: string[] = [];
  private dataBlock: string[] | null = null;
  private queue: Pending[] = [];
  private closed = false;

  private constructor(private readonly sock: net.Socket) {
    super();
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => this.onData(d));
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new Error('control connection closed')));
  }

  /** Connects to `socketPath` and authenticates with the cookie at `cookiePath`. */
  static async connect(socketPath: string, cookiePath: string): Promise<TorControl> {
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.createConnection(socketPath);
      s.once('connect', () => { s.off('error', reject); resolve(s); });
      s.once('error', reject);
    });
    const ctl = new TorControl(sock);
    try {
      const cookie = await readFile(cookiePath);
      await ctl.command(`AUTHENTICATE ${cookie.toString('hex')}`);
    } catch (e) {
      ctl.close();
      throw e;
    }
    return ctl;
  }

  private fail(e: Error): void {
    if (this.closed) return;
    this.closed = true;
    for (const p of this.queue.splice(0)) p.reject(e);
    this.emit('close', e);
  }

  private onData(d: string): void {
    this.buf += d;
    let i: number;
    while ((i = this.buf.indexOf('\r\n')) >= 0) {
      const line = this.buf.slice(0, i);
      this.buf = this.buf.slice(i + 2);
      this.onLine(line);
    }
  }

  private onLine(line: string): void {
    if (this.dataBlock) {
      if (line === '.') {
        const last = this.current.pop() ?? '';
        this.current.push(last + this.dataBlock.join('\n'));
        this.dataBlock = null;
      } else {
        this.dataBlock.push(line.startsWith('..') ? line.slice(1) : line);
      }
      return;
    }
    const status = Number(line.slice(0, 3));
    const sep = line[3];
    const text = line.slice(4);
    if (sep === '+') {
      this.current.push(text);
      this.dataBlock = [];
      return;
    }
    this.current.push(text);
    if (sep === ' ') {
      const lines = this.current;
      this.current = [];
      if (status === 650) {
        this.emit('event', lines);
        return;
      }
      const p = this.queue.shift();
      if (!p) return;
      if (status >= 200 && status < 300) p.resolve({ status, lines });
      else p.reject(new Error(`tor control: ${status} ${lines.join(' ')}`));
    }
  }

  command(cmd: string): Promise<ControlReply> {
    if (this.closed) return Promise.reject(new Error('control connection closed'));
    return new Promise((resolve, reject) => {
      this.queue.push({ resolve, reject });
      this.sock.write(cmd + '\r\n');
    });
  }

  async getInfo(key: string): Promise<string> {
    const r = await this.command(`GETINFO ${key}`);
    const first = r.lines[0] ?? '';
    const prefix = `${key}=`;
    if (!first.startsWith(prefix)) throw new Error(`tor control: unexpected GETINFO reply ${first}`);
    return first.slice(prefix.length);
  }

  async signal(name: string): Promise<void> {
    await this.command(`SIGNAL ${name}`);
  }

  close(): void {
    this.closed = true;
    this.sock.destroy();
  }
}

/** Parses `status/bootstrap-phase` (e.g. `NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"`). */
export function parseBootstrapPhase(s: string): { progress: number; tag: string; summary: string } {
  const progress = Number(/PROGRESS=(\d+)/.exec(s)?.[1] ?? '0');
  const tag = /TAG=(\S+)/.exec(s)?.[1] ?? '';
  const summary = /SUMMARY="((?:[^"\\]|\\.)*)"/.exec(s)?.[1] ?? '';
  return { progress, tag, summary };
}

/** Parses a GETINFO value that is a quoted, space-separated list (e.g. `net/listeners/or`). */
export function parseQuotedList(s: string): string[] {
  return [...s.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1] ?? '');
}

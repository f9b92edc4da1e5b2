// The supervisor's control socket: one JSON request per line, one JSON reply per line, on a unix
// socket with mode 0600 in the runtime directory (0700).
import net from 'node:net';
import { mkdir, chmod, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';

export interface ControlHandlers {
  status: () => Promise<unknown>;
  [cmd: string]: (args: Record<string, unknown>) => Promise<unknown>;
}

export function controlSocketPath(runtimeDir: string): string {
  return join(runtimeDir, 'control.sock');
}

const MAX_REQUEST = 64 * 1024;

export class ControlServer {
  private server: net.Server | null = null;

  constructor(
    private readonly runtimeDir: string,
    private readonly logger: Logger,
    private readonly handlers: ControlHandlers,
  ) {}

  async start(): Promise<void> {
    await mkdir(this.runtimeDir, { recursive: true, mode: 0o700 });
    await chmod(this.runtimeDir, 0o700);
    const path = controlSocketPath(this.runtimeDir);
    await rm(path, { force: true });
    const server = net.createServer((sock) => this.serve(sock));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    await chmod(path, 0o600);
    this.server = server;
  }

  private serve(sock: net.Socket): void {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => sock.destroy());
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST) return void sock.destroy();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        void this.answer(line).then((reply) => {
          if (!sock.destroyed) sock.write(JSON.stringify(reply) + '\n');
        });
      }
    });
  }

  private async answer(line: string): Promise<unknown> {
    let req: { cmd?: unknown; args?: unknown };
    try {
      req = JSON.parse(line) as typeof req;
    } catch {
      return { ok: false, error: 'request is not JSON' };
    }
    const h = typeof req.cmd === 'string' ? this.handlers[req.cmd] : undefined;
    if (!h) return { ok: false, error: `unknown command ${String(req.cmd)}` };
    try {
      const args = req.args && typeof req.args === 'object' ? (req.args as Record<string, unknown>) : {};
      return { ok: true, result: await h(args) };
    } catch (e) {
      this.logger.warn({ cmd: req.cmd, err: (e as Error).message }, 'control command failed');
      return { ok: false, error: (e as Error).message };
    }
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise((r) => s.close(r));
    await rm(controlSocketPath(this.runtimeDir), { force: true });
  }
}

/** Sends one request to a running supervisor and returns its result (throws its error). */
export async function controlRequest(runtimeDir: string, cmd: string, args: Record<string, unknown> = {}, timeoutMs = 30_000): Promise<unknown> {
  const path = controlSocketPath(runtimeDir);
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(path);
    let buf = '';
    const t = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from the supervisor at ${path}`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ cmd, args }) + '\n'));
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      reject(
        new Error(
          e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? `no supervisor is running (no control socket at ${path})` : e.message,
        ),
      );
    });
    sock.on('data', (d: string) => {
      buf += d;
      const i = buf.indexOf('\n');
      if (i < 0) return;
      clearTimeout(t);
      sock.end();
      const reply = JSON.parse(buf.slice(0, i)) as { ok: boolean; result?: unknown; error?: string };
      if (reply.ok) resolve(reply.result);
      else reject(new Error(reply.error ?? 'supervisor refused'));
    });
  });
}

// Whether a process (or one of its children) holds a listening TCP socket on a port, from /proc.
import { readFile, readdir, readlink } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { listeningInodes, socketInodes } from '../transports/index.js';

async function descendants(pid: number): Promise<number[]> {
  const out = [pid];
  for (let i = 0; i < out.length && out.length < 64; i++) {
    const tasks = await readdir(`/proc/${out[i]}/task`).catch(() => [] as string[]);
    for (const t of tasks) {
      const kids = await readFile(`/proc/${out[i]}/task/${t}/children`, 'utf8').catch(() => '');
      for (const k of kids.split(/\s+/).filter(Boolean)) out.push(Number(k));
    }
  }
  return out;
}

async function ownSockets(pid: number): Promise<Set<number>> {
  const links: string[] = [];
  for (const p of await descendants(pid)) {
    const fds = await readdir(`/proc/${p}/fd`).catch(() => [] as string[]);
    for (const fd of fds) links.push(await readlink(`/proc/${p}/fd/${fd}`).catch(() => ''));
  }
  return new Set(socketInodes(links));
}

async function listensNow(pid: number, port: number): Promise<boolean> {
  const tables = await Promise.all(['/proc/net/tcp', '/proc/net/tcp6'].map((f) => readFile(f, 'utf8').catch(() => '')));
  const wanted = tables.flatMap((t) => listeningInodes(t, port));
  if (!wanted.length) return false;
  const own = await ownSockets(pid);
  return wanted.some((i) => own.has(i));
}

/** Polls for up to `withinMs` until `pid` (or a child) listens on `port`. */
export async function probeListening(pid: number, port: number, withinMs: number): Promise<boolean> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    if (await listensNow(pid, port)) return true;
    if (Date.now() > deadline) return false;
    await sleep(100);
  }
}

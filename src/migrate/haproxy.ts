// The HAProxy config of the recipe (frontend/backend/listen, bind, default_backend, balance,
// server ... source). Pure.

export interface HaproxyServer {
  name: string;
  address: string;
  source: string | null;
  line: number;
}

export interface HaproxySection {
  kind: 'frontend' | 'backend' | 'listen' | 'defaults' | 'global' | 'other';
  name: string;
  line: number;
  binds: string[];
  defaultBackend: string | null;
  balance: string | null;
  servers: HaproxyServer[];
}

export function parseHaproxy(text: string): HaproxySection[] {
  const out: HaproxySection[] = [];
  let cur: HaproxySection | null = null;
  text.split(/\r?\n/).forEach((raw, i) => {
    const l = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!l) return;
    const words = l.split(/\s+/);
    const head = words[0]!;
    if (['frontend', 'backend', 'listen', 'defaults', 'global', 'peers', 'resolvers', 'userlist', 'program', 'cache', 'mailers'].includes(head)) {
      const kind = (['frontend', 'backend', 'listen', 'defaults', 'global'].includes(head) ? head : 'other') as HaproxySection['kind'];
      cur = { kind, name: words[1] ?? '', line: i + 1, binds: [], defaultBackend: null, balance: null, servers: [] };
      out.push(cur);
      return;
    }
    if (!cur) return;
    const c: HaproxySection = cur;
    if (head === 'bind' && words[1]) c.binds.push(words[1]);
    else if (head === 'default_backend' && words[1]) c.defaultBackend = words[1];
    else if (head === 'balance' && words[1]) c.balance = words[1];
    else if (head === 'server' && words[1] && words[2]) {
      const s = words.indexOf('source');
      c.servers.push({ name: words[1], address: words[2], source: s > 0 ? (words[s + 1] ?? null) : null, line: i + 1 });
    }
  });
  return out;
}

/** The servers that connections to `listen` (HOST:PORT) reach: the frontend or listen section bound there. */
export function serversBehind(sections: HaproxySection[], listen: string): { front: HaproxySection; back: HaproxySection } | null {
  const port = listen.slice(listen.lastIndexOf(':') + 1);
  const host = listen.slice(0, listen.lastIndexOf(':'));
  const front = sections.find(
    (s) => (s.kind === 'frontend' || s.kind === 'listen') && s.binds.some((b) => b === listen || b === `*:${port}` || b === `:${port}` || (host === '127.0.0.1' && b === `0.0.0.0:${port}`)),
  );
  if (!front) return null;
  if (front.kind === 'listen') return { front, back: front };
  const back = sections.find((s) => s.kind === 'backend' && s.name === front.defaultBackend);
  return back ? { front, back } : null;
}

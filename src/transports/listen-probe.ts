// "Set up" for real: after SMETHODS DONE the transport's own process must hold a listening socket
// on its address (snowflake-server announces its SMETHOD even when the port is taken). Pure
// parsing of /proc/net/tcp{,6} and of /proc/PID/fd link targets; the reading is the caller's.

/** Inodes of sockets in LISTEN state on `port` in a /proc/net/tcp or tcp6 table. */
export function listeningInodes(table: string, port: number): number[] {
  const out: number[] = [];
  for (const row of table.split('\n').slice(1)) {
    const f = row.trim().split(/\s+/);
    if (f.length < 10) continue;
    const local = f[1]!;
    const st = f[3]!;
    const p = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
    if (st === '0A' && p === port) out.push(Number(f[9]));
  }
  return out;
}

/** Socket inodes among fd link targets (`socket:[123]`). */
export function socketInodes(links: string[]): number[] {
  return links.flatMap((l) => {
    const m = /^socket:\[(\d+)\]$/.exec(l);
    return m ? [Number(m[1])] : [];
  });
}

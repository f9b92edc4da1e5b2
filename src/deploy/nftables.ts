// The one public ORPort of a distributed bridge, shared by the twins in the kernel: nftables DNAT
// with `numgen inc mod N` sends each new connection to the next twin's own ORPort. DNAT keeps the
// client's source address, which tor's DoS defences and per-country statistics count by (a
// user-space proxy would hide it). Pure.
import { isIP } from 'node:net';

export interface PublicOrPortConfig {
  publicOrPort?: string;
  instances: number;
}

/** An `nft -f` file (re-runnable: it replaces its own table). Install it again after changing `instances`. */
export function renderNftables(c: PublicOrPortConfig): string {
  if (!c.publicOrPort) throw new Error('the config has no publicOrPort: the twins have no shared public ORPort to forward');
  const i = c.publicOrPort.lastIndexOf(':');
  const host = c.publicOrPort.slice(0, i).replace(/^\[|\]$/g, '');
  const port = Number(c.publicOrPort.slice(i + 1));
  const fam = isIP(host) === 6 ? 'ip6' : 'ip';
  const to = fam === 'ip6' ? `[${host}]` : host;
  const map = Array.from({ length: c.instances }, (_, k) => `${k} : ${port + k + 1}`).join(', ');
  const rule = `${fam} daddr ${host} tcp dport ${port} dnat to ${to}:numgen inc mod ${c.instances} map { ${map} }`;
  return `#!/usr/sbin/nft -f
# bridgectl: the public ORPort ${c.publicOrPort} shared by ${c.instances} twins (rendered by
# \`bridgectl render nftables\`). Each new connection goes to the next twin's ORPort (port + 1 ..
# port + ${c.instances}); DNAT keeps the client's own address. Render and load again after changing
# instances. The output chain covers connections made on this host itself.
table ${fam} bridgectl {}
flush table ${fam} bridgectl
table ${fam} bridgectl {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ${rule}
  }
  chain output {
    type nat hook output priority -100; policy accept;
    ${rule}
  }
}
`;
}

// Addresses in the config, checked as addresses (ipaddr.js: IPv4 dotted-quad and IPv6 parsing
// and CIDR ranges, rather than hand-written regular expressions), with errors that say what is wrong.
import ipaddr from 'ipaddr.js';
import { z } from 'zod';

/** Why `s` is not `IPV4:PORT` or `[IPV6]:PORT` with a port in 1..65535, or null when it is. */
export function hostPortProblem(s: string): string | null {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:]*)$/.exec(s);
  if (!m) return `${JSON.stringify(s)} is not ADDRESS:PORT (an IPv6 address goes in brackets: [2001:db8::1]:443)`;
  const [, v6, v4, portText] = m;
  if (v6 !== undefined) {
    if (!ipaddr.IPv6.isValid(v6)) return `${v6} is not an IPv6 address`;
  } else if (!ipaddr.IPv4.isValidFourPartDecimal(v4!)) {
    return ipaddr.IPv6.isValid(v4!) ? `an IPv6 address goes in brackets: [${v4}]:${portText}` : `${v4} is not an IPv4 address`;
  }
  const port = /^\d{1,5}$/.test(portText!) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) return `port ${portText} is not a number in 1..65535`;
  return null;
}

/** Why `s` is not an IPv4 CIDR range (`127.0.2.0/24`), or null when it is. */
export function ipv4RangeProblem(s: string): string | null {
  let range: [ipaddr.IPv4 | ipaddr.IPv6, number];
  try {
    range = ipaddr.parseCIDR(s);
  } catch {
    return `${JSON.stringify(s)} is not an address range like 127.0.2.0/24`;
  }
  if (range[0].kind() !== 'ipv4') return 'must be an IPv4 range (the balancer binds IPv4 source addresses)';
  if (!ipaddr.IPv4.isValidFourPartDecimal(s.split('/')[0]!)) return `${s.split('/')[0]} is not a dotted-quad IPv4 address`;
  return null;
}

const refined = (check: (s: string) => string | null) =>
  z.string().superRefine((s, ctx) => {
    const p = check(s);
    if (p) ctx.addIssue({ code: z.ZodIssueCode.custom, message: p });
  });

export const hostPort = refined(hostPortProblem);
export const ipv4Range = refined(ipv4RangeProblem);

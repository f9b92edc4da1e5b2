// Addresses: "host:port" endpoints and CIDR source ranges. Pure.
import { isIP } from 'node:net';
import { randomInt } from 'node:crypto';

// HOST:PORT endpoints are pt-spec's (src/pt): one parser for both.
export { parseEndpoint, formatEndpoint, type Endpoint } from '../pt/index.js';

/** An IPv4 range to pick source addresses from. */
export interface SourceRange {
  cidr: string;
  family: 4;
  /** How many addresses pick() chooses among. */
  size: number;
  /** A uniformly random address of the range (network and broadcast addresses excluded for prefixes up to /30). */
  pick(): string;
  /** The i-th usable address (0 <= i < size). */
  at(i: number): string;
}

function ipv4ToInt(s: string): number {
  const parts = s.split('.').map(Number);
  return (((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!) >>> 0;
}

function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Parses an IPv4 CIDR such as `127.0.2.0/24` (a bare address means /32). */
export function parseSourceRange(cidr: string): SourceRange {
  const m = /^([0-9.]+)(?:\/(\d{1,2}))?$/.exec(cidr.trim());
  const prefix = m?.[2] !== undefined ? Number(m[2]) : 32;
  if (!m || isIP(m[1]!) !== 4 || prefix > 32) {
    throw new Error(`source range ${JSON.stringify(cidr)} is not an IPv4 CIDR like 127.0.2.0/24 (IPv6 ranges are not supported)`);
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (ipv4ToInt(m[1]!) & mask) >>> 0;
  const total = 2 ** (32 - prefix);
  const first = prefix <= 30 ? network + 1 : network;
  const size = prefix <= 30 ? total - 2 : total;
  const at = (i: number): string => intToIpv4((first + i) >>> 0);
  return {
    cidr: `${intToIpv4(network)}/${prefix}`,
    family: 4,
    size,
    at,
    pick: () => at(size === 1 ? 0 : randomInt(size)),
  };
}

// Limits that mean what they say: the `bandwidth:` section is the whole bridge's, and bridgectl
// divides it among the twins (each tor gets RelayBandwidthRate/Burst = R/N). The same options in
// the `torrc` key would be copied into every twin (N times the limit), and tor's accounting would
// hibernate the twins one by one behind the balancer, so both are refused there. Pure.

/** Bytes per unit, as tor spells its bandwidth units (KBytes are 1024 bytes, kbits 1000 bits). */
const UNITS: Record<string, number> = {
  b: 1, byte: 1, bytes: 1,
  kb: 1024, kbyte: 1024, kbytes: 1024, kib: 1024,
  mb: 1024 ** 2, mbyte: 1024 ** 2, mbytes: 1024 ** 2, mib: 1024 ** 2,
  gb: 1024 ** 3, gbyte: 1024 ** 3, gbytes: 1024 ** 3, gib: 1024 ** 3,
  tb: 1024 ** 4, tbytes: 1024 ** 4,
  kbit: 125, kbits: 125, mbit: 125_000, mbits: 125_000, gbit: 125_000_000, gbits: 125_000_000,
};

/** tor refuses a relay's RelayBandwidthRate below 75 KBytes. */
export const MIN_TWIN_RATE = 76_800;

/** Bytes per second of `12.5 MBytes`, `100 Mbits`, `1048576`; an Error saying why not. */
export function parseBandwidth(v: string | number): number | Error {
  if (typeof v === 'number') return Number.isInteger(v) && v > 0 ? v : new Error(`${v} is not a whole number of bytes per second > 0`);
  const m = /^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$/.exec(v);
  const unit = UNITS[(m?.[2] || 'bytes').toLowerCase()];
  if (!m || unit === undefined) return new Error(`${JSON.stringify(v)} is not a rate like "10 MBytes" or "100 Mbits" (per second)`);
  const n = Math.floor(Number(m[1]) * unit);
  return n > 0 ? n : new Error(`${JSON.stringify(v)} is not above zero`);
}

export interface BandwidthConfig {
  rate?: string | number;
  burst?: string | number;
}

/** Each twin's share of the bridge's rate and burst (bytes/s), or null when the bridge has no limit. */
export function twinBandwidth(b: BandwidthConfig | undefined, twins: number): { rate: number; burst: number } | null {
  if (!b?.rate) return null;
  const rate = parseBandwidth(b.rate);
  const burst = parseBandwidth(b.burst ?? b.rate);
  if (rate instanceof Error) throw rate;
  if (burst instanceof Error) throw burst;
  return { rate: Math.floor(rate / twins), burst: Math.floor(burst / twins) };
}

/** Why the bridge's limit cannot be divided among `twins`, or null. */
export function bandwidthProblem(b: BandwidthConfig | undefined, twins: number): { key: string; message: string } | null {
  if (!b) return null;
  for (const k of ['rate', 'burst'] as const) {
    const v = b[k];
    if (v === undefined) continue;
    const n = parseBandwidth(v);
    if (n instanceof Error) return { key: k, message: n.message };
  }
  if (b.burst !== undefined && b.rate === undefined) return { key: 'burst', message: 'needs bandwidth.rate too' };
  const each = twinBandwidth(b, twins);
  if (!each) return null;
  if (each.burst < each.rate) return { key: 'burst', message: 'must be at least bandwidth.rate' };
  if (each.rate < MIN_TWIN_RATE) {
    return { key: 'rate', message: `divided among ${twins} twins this is ${each.rate} bytes/s each; tor needs at least ${MIN_TWIN_RATE} (75 KBytes) per twin` };
  }
  return null;
}

const DIVIDED = 'every twin would get it, so the bridge would allow N times it; use bandwidth.rate and bandwidth.burst, which bridgectl divides among the twins';
const ACCOUNTING = "each twin would count its own bytes and hibernate on its own behind the balancer; bridgectl does not divide accounting: cap the bridge's rate with bandwidth.rate";

/** torrc options refused in the `torrc` key, with why (tor's option names are case-insensitive). */
export const REFUSED_TORRC_OPTIONS: Record<string, string> = {
  bandwidthrate: DIVIDED,
  bandwidthburst: DIVIDED,
  relaybandwidthrate: DIVIDED,
  relaybandwidthburst: DIVIDED,
  accountingmax: ACCOUNTING,
  accountingstart: ACCOUNTING,
  accountingrule: ACCOUNTING,
};

/** The refused options in torrc text: line index within the text, option as written, why. */
export function refusedTorrcLines(torrc: string): Array<{ index: number; option: string; reason: string }> {
  const out: Array<{ index: number; option: string; reason: string }> = [];
  torrc.split('\n').forEach((line, index) => {
    const option = /^\s*\+?\/?([A-Za-z]+)\b/.exec(line)?.[1];
    const reason = option && REFUSED_TORRC_OPTIONS[option.toLowerCase()];
    if (option && reason) out.push({ index, option, reason });
  });
  return out;
}

// A relay's consensus entry: as tor's controller gives it (GETINFO ns/id/FP: the r, s and w lines),
// or one entry of a consensus document (from its r line to the next).
export interface ConsensusEntry {
  nickname: string;
  flags: string[];
  /** Consensus weight (the w line's Bandwidth=), or null when absent. */
  weight: number | null;
}

export function parseNsEntry(text: string): ConsensusEntry | null {
  // The reply's data block follows the key: "ns/id/FP=r nick ..." on the first line.
  const lines = text.replace(/^ns\/[^=\s]*=/, '').split('\n').map((l) => l.trim());
  const r = lines.find((l) => l.startsWith('r '));
  if (!r) return null;
  const flags = lines.find((l) => l.startsWith('s '))?.slice(2).split(' ').filter(Boolean) ?? [];
  const w = /\bBandwidth=(\d+)/.exec(lines.find((l) => l.startsWith('w ')) ?? '');
  return { nickname: r.split(' ')[1] ?? '', flags, weight: w ? Number(w[1]) : null };
}

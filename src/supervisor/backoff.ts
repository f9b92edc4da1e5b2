export interface BackoffPolicy {
  initialDelayMs: number;
  maxDelayMs: number;
  /** A run at least this long resets the failure count. */
  stableAfterMs: number;
}

/** Delay before restart number `failures` (1 = first failure in a row): initial · 2^(n-1), capped. */
export function backoffDelay(failures: number, p: BackoffPolicy): number {
  if (failures <= 0) return 0;
  const d = p.initialDelayMs * 2 ** Math.min(failures - 1, 30);
  return Math.min(d, p.maxDelayMs);
}

/** The failure count after a run of `ranMs` that ended in a crash. */
export function nextFailures(previous: number, ranMs: number, p: BackoffPolicy): number {
  return ranMs >= p.stableAfterMs ? 1 : previous + 1;
}

/** Parses a tor log line `Nov 22 04:36:37.293 [notice] text` into level and text. */
export function parseTorLogLine(line: string): { level: string; msg: string } {
  const m = /^\w{3} +\d+ [\d:.]+ \[(\w+)\] (.*)$/.exec(line);
  return m ? { level: m[1]!, msg: m[2]! } : { level: 'notice', msg: line };
}

/**
 * Waits `ms` (a restart backoff); `setWake` is handed a function that ends the wait early (a stop
 * does not sit out the backoff), and null once the wait is over.
 */
export async function backoffSleep(ms: number, setWake: (wake: (() => void) | null) => void): Promise<void> {
  await new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    setWake(() => {
      clearTimeout(t);
      resolve();
    });
  });
  setWake(null);
}

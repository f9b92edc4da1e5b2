// What a check says: one finding per check, with the exact fix to print when it is not fine.

/**
 * `pass`: fine. `warn`: works, but will hurt under load or after a reboot. `fail`: the bridge will
 * not carry the expected load (or not start); `bridgectl doctor` exits non-zero. `skip`: does not
 * apply on this system (e.g. no connection tracking loaded).
 */
export type Status = 'pass' | 'warn' | 'fail' | 'skip';

export interface Finding {
  /** Stable identifier, e.g. `net.ip_local_port_range` (see docs/doctor.md). */
  id: string;
  /** Short human title. */
  title: string;
  status: Status;
  /** What was found, in words with the numbers. */
  found: string;
  /** What is wanted, in words with the numbers. */
  expected: string;
  /** The exact fix (commands or file lines, possibly several lines); null when status is pass or skip. */
  fix: string | null;
}

export function finding(
  id: string,
  title: string,
  status: Status,
  found: string,
  expected: string,
  fix: string | null = null,
): Finding {
  return { id, title, status, found, expected, fix: status === 'pass' || status === 'skip' ? null : fix };
}

export function countByStatus(findings: Finding[]): Record<Status, number> {
  const c: Record<Status, number> = { pass: 0, warn: 0, fail: 0, skip: 0 };
  for (const f of findings) c[f.status]++;
  return c;
}

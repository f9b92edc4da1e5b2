// Waiting for a twin's sessions to end: the one place that does (removeTwin, drain). The engine
// reports no event when a session closes, so one timer per balancer looks at the counters of every
// pending wait while there is one, and stops when none is left.

/** How often pending waits look at the counters. */
const CHECK_MS = 100;

interface Wait {
  open: () => number;
  deadline: number;
  resolve: (left: number) => void;
}

export interface Drainer {
  /** Resolves when open() is 0 or timeoutMs passed, with open() then. */
  until(open: () => number, timeoutMs: number): Promise<number>;
}

export function createDrainer(): Drainer {
  const waits = new Set<Wait>();
  let timer: NodeJS.Timeout | null = null;
  const check = (): void => {
    const now = Date.now();
    for (const w of waits) {
      const left = w.open();
      if (left > 0 && now < w.deadline) continue;
      waits.delete(w);
      w.resolve(left);
    }
    if (waits.size === 0 && timer) {
      clearInterval(timer);
      timer = null;
    }
  };
  return {
    until(open, timeoutMs) {
      const left = open();
      if (left === 0 || timeoutMs <= 0) return Promise.resolve(left);
      return new Promise<number>((resolve) => {
        waits.add({ open, deadline: Date.now() + timeoutMs, resolve });
        timer ??= setInterval(check, CHECK_MS);
      });
    },
  };
}

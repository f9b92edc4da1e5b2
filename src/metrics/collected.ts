// A metric read afresh at every scrape: its collect callback resets it and fills it from the
// current state, so that series of things gone (a removed twin) disappear with them.
import type { Registry } from 'prom-client';

/** The configuration of such a metric, for `new Gauge(...)` or `new Counter(...)`; `fill` may be async. */
export function collected<M extends { reset(): void }>(
  registry: Registry,
  name: string,
  help: string,
  labelNames: string[],
  fill: (m: M) => void | Promise<void>,
) {
  return {
    name,
    help,
    labelNames,
    registers: [registry],
    collect(this: M): void | Promise<void> {
      this.reset();
      return fill(this);
    },
  };
}

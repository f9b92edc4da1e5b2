// createBalancer: the balancer on the native engine, the one data path. Without the engine built
// it throws the one line that says how to build it (see engineMissingMessage).
import { createNativeBalancer } from './native-balancer.js';
import { requireNativeEngine } from './native.js';
import type { Balancer, BalancerOptions } from './types.js';

export function createBalancer(opts: BalancerOptions): Balancer {
  return createNativeBalancer(opts, requireNativeEngine());
}

// Public face of the balancer: one auth-terminating Extended ORPort front for the twins, on the
// native engine (the contract: types.ts).
export { createBalancer } from './balancer.js';
export type { Balancer, BalancerOptions, BalancerStats, BalancerLimits, ListenerStats, TwinSpec, TwinStats } from './types.js';
export { engineMissingMessage, requireNativeEngine } from './native.js';
export { parseEndpoint, formatEndpoint, type Endpoint } from './address.js';

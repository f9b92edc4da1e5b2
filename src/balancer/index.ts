// Public face of the balancer: one auth-terminating Extended ORPort front for the twins, and the
// standalone commands built on it (`bridgectl balancer`, `bridgectl extor-static-cookie`).
export {
  createBalancer,
  DEFAULT_LISTEN,
  DEFAULT_SOURCE_RANGE,
  type Balancer,
  type BalancerOptions,
  type BalancerStats,
} from './balancer.js';
export type { BackendSpec, BackendStats } from './pool.js';
export type { ListenerStats } from './session.js';
export { parseEndpoint, parseSourceRange, type Endpoint, type SourceRange } from './address.js';
export { connectFrom, loadAddon, addonLoadError, type BindNoPortAddon } from './source-bind.js';
export { spliceRelay, spliceUnavailableReason, type SpliceRelay, type RelayCloseHandler } from './splice.js';
export { nativeEngine, engineUnavailableReason } from './native.js';
export { balancerCommand, extorStaticCookieCommand, BALANCER_USAGE, EXTOR_STATIC_COOKIE_USAGE } from './commands.js';


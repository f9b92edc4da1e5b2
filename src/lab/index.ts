// Public face of the lab: a private Tor network on loopback for tests, the demo and benchmarks.
// Nothing here starts tor outside a loopback-only network namespace.
export { checkIsolation, assertIsolated, type IsolationReport } from './isolation.js';
export { startLab, type Lab, type LabOptions, type Authority } from './network.js';
export { startClient, fetchViaSocks, type LabClient, type ClientOptions } from './client.js';
export { freePort } from './ports.js';

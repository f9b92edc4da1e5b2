// Public face of pt-spec (the pluggable-transport specification), both directions, in one place:
// the environment a managed server transport is started with and the lines it prints (tor's side,
// which the supervisor plays), what a transport reads from that environment (the transport's side,
// for `bridgectl extor-static-cookie`), and the client's bridge line.
export { ptServerEnv, serverTransportOptions, escapePtValue, type PtEnvInput } from './launch.js';
export { parsePtLine, parseSmethodArgs, parseKeyValues, type PtMessage } from './messages.js';
export { parsePtServerEnv, parsePtServerSetup, type PtServerEnv, type PtServerSetup, type PtServerMethod } from './server-env.js';
export { bridgeLine } from './bridge-line.js';
export { parseEndpoint, formatEndpoint, type Endpoint } from './endpoint.js';

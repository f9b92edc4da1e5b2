// Public face of the config module: the YAML file, validated, with errors naming file:line and key.
export { BALANCER_DEFAULTS } from './defaults.js';
export { configSchema, DISTRIBUTIONS, type Config, type BalancerConfig, type TransportConfig, type RelayConfig } from './schema.js';
export {
  loadConfig,
  parseConfigText,
  resolveConfig,
  configPath,
  SYSTEM_CONFIG,
  ConfigError,
  type ConfigProblem,
  type LoadedConfig,
  type ResolvedConfig,
  type ResolvedTransport,
} from './load.js';
export { instanceNames, instanceLayout, identityDir, twinOrPort, type InstanceLayout } from './layout.js';
export { setInstancesInFile } from './edit.js';
export { parseBandwidth, twinBandwidth, bandwidthProblem, refusedTorrcLines, REFUSED_TORRC_OPTIONS, MIN_TWIN_RATE } from './bandwidth.js';
export { hostPortProblem, ipv4RangeProblem } from './address.js';
export { saveInstanceCount, clearInstanceCount, readInstanceCount, effectiveInstances, instanceCountFile, type InstanceCount } from './instance-count.js';
export { orPortFor, relayRuleIssues, MAX_RELAYS_PER_IPV4 } from './relay.js';

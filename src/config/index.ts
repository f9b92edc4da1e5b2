// Public face of the config module: the YAML file, validated, with errors naming file:line and key.
export { configSchema, type Config, type BalancerConfig, type TransportConfig, type RelayConfig } from './schema.js';
export {
  loadConfig,
  parseConfigText,
  resolveConfig,
  configPath,
  ConfigError,
  type ConfigProblem,
  type LoadedConfig,
  type ResolvedConfig,
} from './load.js';
export { instanceNames, instanceLayout, identityDir, type InstanceLayout } from './layout.js';
export { setInstancesInFile } from './edit.js';
export { orPortFor, relayRuleIssues, MAX_RELAYS_PER_IPV4 } from './relay.js';

// Public face of the config module: the YAML file, validated, with errors naming file:line and key.
export { configSchema, DISTRIBUTIONS, type Config, type BalancerConfig, type TransportConfig } from './schema.js';
export {
  loadConfig,
  parseConfigText,
  resolveConfig,
  configPath,
  ConfigError,
  type ConfigProblem,
  type LoadedConfig,
  type ResolvedConfig,
  type ResolvedTransport,
} from './load.js';
export { instanceNames, instanceLayout, identityDir, twinOrPort, type InstanceLayout } from './layout.js';
export { setInstancesInFile } from './edit.js';

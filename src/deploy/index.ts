// Public face of deploy: the systemd unit, the HAProxy config of the older layout, and the files
// under deploy/ that `bridgectl render` prints.
export {
  renderSystemdUnit,
  renderHaproxy,
  renderedDeployFiles,
  addressInRange,
  DEFAULT_UNIT,
  SHIM_PORT,
  type UnitOptions,
  type HaproxyConfig,
} from './render.js';
export { renderNftables, type PublicOrPortConfig } from './nftables.js';

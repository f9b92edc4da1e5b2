// Public face of metrics: the Prometheus endpoint (bridgectl's own metrics plus every twin's tor
// MetricsPort output re-labelled with twin=) and the text-format tools it is built on.
export {
  startMetricsServer,
  fetchTorMetrics,
  type MetricsServer,
  type MetricsServerOptions,
  type MetricsTarget,
} from './server.js';
export { registerBridgeMetrics } from './bridge-metrics.js';
export type { BridgeView, TwinView } from './view.js';
export {
  parseExposition,
  mergeExpositions,
  withLabel,
  formatSample,
  escapeLabelValue,
  isMetricName,
  isLabelName,
  type Exposition,
  type Family,
  type Sample,
  type MetricType,
  type LabelledSource,
  type MergeOptions,
} from './exposition.js';

// Public face of the supervisor: spawns and watches the tor instances (and, later, the transport).
export { Supervisor, torComplaint, MAX_EARLY_TOR_EXITS, type InstanceStatus, type InstanceState, type SupervisorEvents } from './supervisor.js';
export { backoffDelay, nextFailures, parseTorLogLine, type BackoffPolicy } from './backoff.js';
export { renderInstanceTorrc, fillTemplate, templatesDir } from './render.js';
export { TransportSet } from './transports.js';
export {
  TransportRunner,
  readSmethod,
  smethodFile,
  whichExecutable,
  MAX_EARLY_EXITS,
  type TransportStatus,
  type TransportState,
  type Smethod,
} from './transport.js';
export { Bridge, type BridgeStatus, type InstanceView, type BridgeEvents, type RotationResult, type RotationOptions } from './bridge.js';
export { ControlServer, controlRequest, controlSocketPath, type ControlHandlers } from './control.js';
export { planRestart, readRestartState, restartStatePath, RESTART_STATE_FILE, type RestartState, type RestartResult, type RestartOptions } from './rolling-restart.js';
export { preflight } from './preflight.js';
export { systemdNotifier, type Notifier } from './notify.js';
export { CpuMeter, cpuSeconds } from './cpu.js';

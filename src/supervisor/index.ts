// Public face of the supervisor: spawns and watches the tor instances (and, later, the transport).
export { Supervisor, type InstanceStatus, type InstanceState, type SupervisorEvents } from './supervisor.js';
export { backoffDelay, nextFailures, parseTorLogLine, type BackoffPolicy } from './backoff.js';
export { renderInstanceTorrc, fillTemplate, templatesDir } from './render.js';

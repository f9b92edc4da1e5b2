// Public face of the tor module: starting tor so it dies with us, talking to its control port,
// and small helpers about torrc text and tor's own tools.
export { TorControl, parseBootstrapPhase, parseQuotedList, type ControlReply } from './control.js';
export { spawnChild, childEnv, torArgs, type Child, type ChildExit, type SpawnOptions } from './process.js';
export { connectControl, waitBootstrapped } from './bootstrap.js';
export { listFingerprint, torVersion, verifyConfig, TOR_BIN } from './tools.js';
export { renderTorrc, isValidNickname } from './torrc.js';
export { parseNsEntry, type ConsensusEntry } from './consensus.js';

// Public face of relay mode (`mode: relay`): N relays on one host, each its own identity made by
// tor, one declared family (FamilyId with a shared family key, and MyFamily for older tors).
export { Relays, type RelaysStatus, type RelayView } from './relays.js';
export { renderRelayTorrc, familyKeyDirOf, type FamilyView } from './torrc.js';
export { initRelays, relayProblems, relayLayouts, familyOf, familyName, type RelayInitResult } from './members.js';
export { ensureFamilyKey, readFamilyKey, familyDir, type FamilyKey } from './family.js';
export { rsaFingerprint, signingCertExpiry, readSigningExpiry, keygenSigning, installSigning, masterDirOf } from './identity.js';
export { signAll, signingStates, type SignResult, type SigningState } from './sign.js';
export { relayFindings } from './doctor.js';
export { exportRelayKeys, writeRelayArchive, parseRelayArchive, importRelayKeys, RELAY_ARCHIVE_FORMAT, type RelayArchive } from './archive.js';

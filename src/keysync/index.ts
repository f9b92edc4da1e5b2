// Public face of keysync: one identity shared by many tor data directories, with onion keys pinned.
export {
  IDENTITY_FILES,
  MUST_MATCH,
  PIN_DIRS,
  readKeySet,
  hasIdentity,
  keyDifferences,
  installKeySet,
  installPins,
  removePins,
  pinStatus,
  copyKeys,
  type KeySet,
} from './keys.js';
export {
  initIdentity,
  verifyIdentity,
  rsaFingerprint,
  ed25519Identity,
  type InitOptions,
  type InitResult,
  type VerifyResult,
  type KeyTarget,
} from './sync.js';

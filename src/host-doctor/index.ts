// Public face of host-doctor: kernel and limits checks for a busy bridge (`bridgectl doctor`), and the
// recommended sysctl.d / modules-load.d files (`bridgectl sysctl`, deploy/).
export { finding, countByStatus, type Finding } from './findings.js';
export { budget, DEFAULT_SESSIONS_PER_INSTANCE, UNIT_LIMIT_NOFILE } from './budget.js';
export {
  parseNofile,
  parsePortRange,
  parsePortList,
  parseModulesLoad,
  parseSysctlConf,
  parseTorVersion,
  compareVersions,
} from './parse.js';
export {
  checkNofileHard,
  checkNofileSoft,
  checkNrOpen,
  checkFileMax,
  checkPipeUserPages,
  checkPortRange,
  checkListenPortsOutsideRange,
  checkConntrackMax,
  checkConntrackBuckets,
  checkConntrackAtBoot,
  checkKeyModes,
  checkFingerprint,
  checkTorVersion,
  type KeyPath,
} from './checks.js';
export { fsReader, readSystemFacts, lookupUser } from './read.js';
export { runDoctor, systemFindings, formatReport, defaultDoctorIo, type DoctorReport } from './doctor.js';
export {
  recommendedSysctls,
  renderSysctlConf,
  renderModulesLoadConf,
  SYSCTL_FILE,
  MODULES_FILE,
  SYSCTL_FILE_NAME,
  MODULES_FILE_NAME,
} from './recommended.js';
export { fileDiff, planSysctlFiles, writePlanned } from './files.js';

// Public face of sysctl: kernel and limits checks for a busy bridge (`bridgectl doctor`), and the
// recommended sysctl.d / modules-load.d files (`bridgectl sysctl`, deploy/).
export { finding, worst, countByStatus, type Finding, type Status } from './findings.js';
export {
  budget,
  nextPowerOfTwo,
  DEFAULT_SESSIONS_PER_INSTANCE,
  FD_HEADROOM,
  TOR_RELAY_CONNECTIONS,
  SYSTEM_FD_HEADROOM,
  CONNTRACK_HEADROOM,
  UNIT_LIMIT_NOFILE,
  type Budget,
} from './budget.js';
export {
  parseNofile,
  parseIntValue,
  parsePortRange,
  parsePortList,
  parseProcModules,
  parseModulesLoad,
  parseSysctlConf,
  parseTorVersion,
  compareVersions,
  type NofileLimit,
} from './parse.js';
export {
  checkNofileHard,
  checkNofileSoft,
  checkNrOpen,
  checkFileMax,
  checkPortRange,
  checkListenPortsOutsideRange,
  checkConntrackMax,
  checkConntrackBuckets,
  checkConntrackAtBoot,
  checkKeyModes,
  checkFingerprint,
  checkTorVersion,
  checkNativeEngine,
  MIN_TOR_VERSION,
  type ListenPort,
  type KeyPath,
  type ConntrackBootFacts,
  type IdentityFacts,
} from './checks.js';
export {
  fsReader,
  readSystemFacts,
  statPaths,
  lookupUser,
  sysctlPath,
  MODULES_LOAD_DIRS,
  SYSCTL_DIRS,
  type Reader,
  type SystemFacts,
} from './read.js';
export {
  runDoctor,
  systemFindings,
  listenPorts,
  keyPaths,
  formatReport,
  defaultDoctorIo,
  DOCTOR_SCHEMA_VERSION,
  type DoctorReport,
  type DoctorOptions,
  type DoctorIo,
  type DoctorConfig,
} from './doctor.js';
export {
  recommendedSysctls,
  renderSysctlConf,
  renderModulesLoadConf,
  RECOMMENDED_PORT_RANGE,
  RECOMMENDED_CONNTRACK_MAX,
  RECOMMENDED_CONNTRACK_BUCKETS,
  RECOMMENDED_MODULES,
  SYSCTL_FILE,
  MODULES_FILE,
  SYSCTL_FILE_NAME,
  MODULES_FILE_NAME,
} from './recommended.js';
export { fileDiff, planFile, planSysctlFiles, writeFileAtomic, writePlanned, type PlannedFile } from './files.js';

// Public face of migrate: moving an existing bridge (the FOCI recipe's tor@ instances, HAProxy and
// transport unit, or one tor with ServerTransportPlugin) onto bridgectl without changing its keys,
// nicknames or bridge lines. Readers and the plan are pure; source.ts reads, apply.ts writes.
export { parseTorrc, lastValue, allValues, formatLine, type TorrcLine } from './torrc.js';
export { parseUnit, splitWords, parseEnvironment, parseEnvironmentFile, parseExecStart, type UnitEntry, type ExecStart } from './systemd.js';
export { parseHaproxy, serversBehind, type HaproxySection, type HaproxyServer } from './haproxy.js';
export { readSource, readTree, underRoot, MigrateError, type Source, type SourceInstance, type SourcePaths, type SourceTree } from './source.js';
export { buildPlan, parseTransportOptions, type Plan, type PlanTarget, type PlannedInstance } from './plan.js';
export { checkTarget, applyPlan, type ApplyResult, type TargetState } from './apply.js';

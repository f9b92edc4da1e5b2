import { loadConfig } from '../config/index.js';
import { DEFAULT_SESSIONS_PER_INSTANCE, formatReport, runDoctor } from '../host-doctor/index.js';
import { parse, UsageError } from './args.js';
import { identityDir, instanceTargets } from './init.js';
import { relayDoctor } from './relay.js';

export const DOCTOR_USAGE = `usage: bridgectl doctor [--config FILE] [--json] [--expected-sessions N] [--pid PID] [--user NAME]
Checks the kernel, the limits, the keys and tor against what the bridge needs, and prints the fix
for each problem. Exits 1 when any check fails (warnings do not fail).
  --expected-sessions N  concurrent sessions per tor instance (default ${DEFAULT_SESSIONS_PER_INSTANCE})
  --pid PID              check the open-file limit of a running process (e.g. the supervisor's)
                         instead of doctor's own
  --user NAME            who must own the key files (default: the user running doctor)
  --json                 the report as JSON (docs/doctor.md)`;

/** `bridgectl doctor [--config FILE] [--json] [--expected-sessions N] [--pid PID] [--user NAME]`. */
export async function doctorCommand(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    config: { type: 'string' },
    json: { type: 'boolean' },
    'expected-sessions': { type: 'string' },
    pid: { type: 'string' },
    user: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  });
  if (values.help) {
    console.log(DOCTOR_USAGE);
    return 0;
  }
  const sessions = values['expected-sessions'] ?? String(DEFAULT_SESSIONS_PER_INSTANCE);
  if (!/^[1-9]\d*$/.test(sessions)) throw new UsageError(`--expected-sessions must be a positive integer (got "${sessions}")`);
  if (values.pid !== undefined && !/^[1-9]\d*$/.test(values.pid)) throw new UsageError(`--pid must be a process id (got "${values.pid}")`);
  const { config, file } = loadConfig(values.config);
  if (config.mode === 'relay') {
    const r = await relayDoctor(config, file, Number(sessions), values.pid ? `/proc/${values.pid}/limits` : undefined, values.user);
    console.log(values.json ? JSON.stringify(r, null, 2) : formatReport(r));
    return r.ok ? 0 : 1;
  }
  const report = await runDoctor({
    configFile: file,
    config,
    identityDir: identityDir(config),
    instances: instanceTargets(config),
    sessionsPerInstance: Number(sessions),
    limitsFile: values.pid ? `/proc/${values.pid}/limits` : undefined,
    user: values.user,
  });
  console.log(values.json ? JSON.stringify(report, null, 2) : formatReport(report));
  return report.ok ? 0 : 1;
}

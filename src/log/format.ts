// Turning pino's JSON lines into what the reader at the other end wants: the journal (a syslog
// `<N>` priority on every line), a person at a terminal, or JSON for programs (pipes, files).
// Pure: no I/O here.

export type LogFormat = 'journal' | 'text' | 'json';

/** pino's numeric levels to syslog priorities (trace/debug 7, info 6, warn 4, error 3, fatal 2). */
export function syslogPriority(level: number): number {
  if (level >= 60) return 2;
  if (level >= 50) return 3;
  if (level >= 40) return 4;
  if (level >= 30) return 6;
  return 7;
}

const NAMES: Array<[number, string]> = [
  [60, 'FATAL'],
  [50, 'ERROR'],
  [40, 'WARN'],
  [30, 'INFO'],
  [20, 'DEBUG'],
  [0, 'TRACE'],
];
const levelName = (level: number): string => NAMES.find(([n]) => level >= n)![1];

/** `key=value` pairs; strings with spaces or quotes are JSON-quoted, objects are JSON. */
function fields(rec: Record<string, unknown>): string {
  return Object.entries(rec)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => {
      const s = typeof v === 'string' ? (/^[^\s"=]+$/.test(v) ? v : JSON.stringify(v)) : JSON.stringify(v);
      return `${k}=${s}`;
    })
    .join(' ');
}

/**
 * One pino JSON line in the given format (with its trailing newline). The journal form puts the
 * priority on every line of a multi-line message, so that journald files each at its level.
 */
export function formatLine(json: string, format: LogFormat): string {
  if (format === 'json') return json.endsWith('\n') ? json : `${json}\n`;
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return format === 'journal' ? `<6>${json.trimEnd()}\n` : json;
  }
  const { level, time, msg, pid: _pid, hostname: _host, ...rest } = rec;
  const lvl = typeof level === 'number' ? level : 30;
  const text = [typeof msg === 'string' ? msg : '', fields(rest)].filter(Boolean).join(' ');
  if (format === 'journal') {
    const p = syslogPriority(lvl);
    return text.split('\n').map((l) => `<${p}>${l}\n`).join('');
  }
  const t = typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : '';
  return `${t} ${levelName(lvl).padEnd(5)} ${text}\n`;
}

/** An error message for stderr: the journal form gives each line priority 3 (err). */
export function formatError(text: string, format: LogFormat): string {
  if (format !== 'journal') return text.endsWith('\n') ? text : `${text}\n`;
  return text.trimEnd().split('\n').map((l) => `<3>${l}\n`).join('');
}

/**
 * Which format a file descriptor wants: `$BRIDGECTL_LOG_FORMAT` if set; the journal when
 * `$JOURNAL_STREAM` names this descriptor's device and inode (systemd sets it for a service's
 * stdout/stderr); text on a terminal; JSON otherwise.
 */
export function chooseFormat(
  env: NodeJS.ProcessEnv,
  fdIdentity: string | null,
  isTty: boolean,
): LogFormat {
  const forced = env.BRIDGECTL_LOG_FORMAT;
  if (forced === 'journal' || forced === 'text' || forced === 'json') return forced;
  if (env.JOURNAL_STREAM && fdIdentity && env.JOURNAL_STREAM === fdIdentity) return 'journal';
  return isTty ? 'text' : 'json';
}

/**
 * The level a child's stderr line deserves. Tor writes `[warn]`/`[err]`/`[notice]`; Go programs
 * (obfs4proxy, snowflake, lyrebird) write `2024/01/02 03:04:05 [WARN]: ...` or a bare timestamped
 * line, which is information, not a warning.
 */
export function childLineLevel(line: string): 'debug' | 'info' | 'warn' | 'error' {
  const m = /\[(err|error|fatal|panic|crit|critical|warn|warning|notice|info|debug|trace)\]/i.exec(line);
  if (m) {
    const w = m[1]!.toLowerCase();
    if (w === 'err' || w === 'error' || w === 'fatal' || w === 'panic' || w === 'crit' || w === 'critical') return 'error';
    if (w === 'warn' || w === 'warning') return 'warn';
    if (w === 'debug' || w === 'trace') return 'debug';
    return 'info';
  }
  if (/^panic:|^fatal error:/.test(line)) return 'error';
  return 'info';
}

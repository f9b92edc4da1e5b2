// Loading the YAML config with errors that name the file, the line and the key.
import { readFileSync, existsSync } from 'node:fs';
import { dirname, resolve, isAbsolute, join } from 'node:path';
import { parseDocument, LineCounter, isMap, isPair, isScalar, type Document, type Node } from 'yaml';
import { z } from 'zod';
import { configSchema, type Config } from './schema.js';
import { readInstanceCount, effectiveInstances, instanceCountFile } from './instance-count.js';
import { bridgeOnlyKeyIssues } from './relay.js';

export interface ConfigProblem {
  file: string;
  line: number;
  key: string;
  message: string;
}

export class ConfigError extends Error {
  constructor(readonly problems: ConfigProblem[]) {
    super(problems.map((p) => `${p.file}:${p.line}: ${p.key ? `${p.key}: ` : ''}${p.message}`).join('\n'));
    this.name = 'ConfigError';
  }
}

export interface LoadedConfig {
  file: string;
  config: ResolvedConfig;
}

/** The config with defaults applied and paths made absolute. */
export type ResolvedTransport = NonNullable<Config['transport']> & { stateDir: string };

export type ResolvedConfig = Omit<Config, 'transport' | 'transports'> & {
  runtimeDir: string;
  /** Set when `instances` comes from <dataDir>/instance-count.json (a run-time change), not the file. */
  instancesOverride?: { file: string; configInstances: number };
  balancer: Config['balancer'] & { cookieFile: string };
  /** The first transport (the only one with `transport:`). */
  transport?: ResolvedTransport;
  /** Every transport, in config order (`transport:` gives a list of one). */
  transports: ResolvedTransport[];
};

/** The system-wide config, the one the packaged unit runs with. */
export const SYSTEM_CONFIG = '/etc/bridgectl/bridgectl.yaml';

/**
 * `--config FILE`, else `$BRIDGECTL_CONFIG`, else `./bridgectl.yaml` if it exists, else
 * /etc/bridgectl/bridgectl.yaml (what the packaged unit uses).
 */
export function configPath(flag?: string, env: NodeJS.ProcessEnv = process.env, exists: (p: string) => boolean = existsSync): string {
  if (flag ?? env.BRIDGECTL_CONFIG) return resolve((flag ?? env.BRIDGECTL_CONFIG)!);
  const local = resolve('bridgectl.yaml');
  return exists(local) ? local : SYSTEM_CONFIG;
}

function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++)
    for (let j = 1; j <= b.length; j++)
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length]![b.length]!;
}

function suggest(key: string, known: string[]): string {
  const best = known
    .map((k) => [k, editDistance(key.toLowerCase(), k.toLowerCase())] as const)
    .sort((x, y) => x[1] - y[1])[0];
  return best && best[1] <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean "${best[0]}"?)` : '';
}

/** Known keys of the object schema at `path`, for "did you mean". */
function knownKeys(path: (string | number)[]): string[] {
  let s: z.ZodTypeAny = configSchema;
  const unwrap = (t: z.ZodTypeAny): z.ZodTypeAny => {
    for (;;) {
      if (t instanceof z.ZodEffects) t = t.innerType();
      else if (t instanceof z.ZodDefault) t = t._def.innerType;
      else if (t instanceof z.ZodOptional) t = t.unwrap();
      else return t;
    }
  };
  s = unwrap(s);
  for (const p of path) {
    if (!(s instanceof z.ZodObject)) return [];
    const next = (s.shape as Record<string, z.ZodTypeAny>)[String(p)];
    if (!next) return [];
    s = unwrap(next);
  }
  return s instanceof z.ZodObject ? Object.keys(s.shape as object) : [];
}

export function parseConfigText(text: string, file: string): Config {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  const lineOf = (offset: number | undefined): number => (offset === undefined ? 1 : lc.linePos(offset).line);
  if (doc.errors.length) {
    throw new ConfigError(
      doc.errors.map((e) => ({
        file,
        line: e.linePos?.[0]?.line ?? lineOf(e.pos[0]),
        key: keyAt(doc, e.pos[0]) ?? '',
        message: `invalid YAML: ${e.message.split('\n')[0]}`,
      })),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError([{ file, line: 1, key: '', message: 'the config must be a mapping of keys to values' }]);
  }
  const r = configSchema.safeParse(raw);
  const problems: ConfigProblem[] = bridgeOnlyKeyIssues(raw as Record<string, unknown>).map((i) => ({
    file,
    line: lineOf(nearestKey(doc, String(i.path[0]))),
    key: i.path.join('.'),
    message: i.message,
  }));
  if (r.success && !problems.length) return r.data;
  if (r.success) throw new ConfigError(problems);
  for (const issue of r.error.issues) {
    if (issue.code === z.ZodIssueCode.unrecognized_keys) {
      const parent = issue.path.length ? doc.getIn(issue.path, true) : doc.contents;
      for (const k of issue.keys) {
        let line = 1;
        if (isMap(parent)) {
          const pair = parent.items.find((it) => isPair(it) && isScalar(it.key) && it.key.value === k);
          const keyNode = pair?.key as Node | undefined;
          line = lineOf(keyNode?.range?.[0]);
        }
        const key = [...issue.path, k].join('.');
        problems.push({ file, line, key, message: `unknown key${suggest(k, knownKeys(issue.path))}` });
      }
      continue;
    }
    const node = doc.getIn(issue.path, true) as Node | undefined;
    let line = lineOf(node?.range?.[0]);
    if (!node) line = lineOf(nearestRange(doc, issue.path));
    const torrcLine = issue.code === z.ZodIssueCode.custom ? (issue.params as { torrcLine?: number } | undefined)?.torrcLine : undefined;
    if (torrcLine !== undefined && isScalar(node)) {
      // A block scalar (`torrc: |`) starts on the line after its indicator.
      const block = node.type === 'BLOCK_LITERAL' || node.type === 'BLOCK_FOLDED';
      line += (block ? 1 : 0) + torrcLine;
    }
    const key = issue.path.join('.');
    const missing = issue.code === z.ZodIssueCode.invalid_type && issue.received === 'undefined';
    problems.push({ file, line, key, message: missing ? 'required key is missing' : issue.message });
  }
  throw new ConfigError(problems);
}

/** Offset of a top-level key (for a key whose value is empty). */
function nearestKey(doc: Document, key: string): number | undefined {
  const c = doc.contents;
  if (!isMap(c)) return undefined;
  const pair = c.items.find((it) => isPair(it) && isScalar(it.key) && it.key.value === key);
  return (pair?.key as Node | undefined)?.range?.[0];
}

/** Offset of the deepest existing node on `path` (for errors about missing keys). */
function nearestRange(doc: Document, path: (string | number)[]): number | undefined {
  for (let n = path.length - 1; n >= 0; n--) {
    const node = (n === 0 ? doc.contents : doc.getIn(path.slice(0, n), true)) as Node | null | undefined;
    if (node?.range) return node.range[0];
  }
  return undefined;
}

/** The top-level key whose value contains `offset`, if any. */
function keyAt(doc: Document, offset: number): string | undefined {
  const c = doc.contents;
  if (!isMap(c)) return undefined;
  for (const it of c.items) {
    const k = it.key as Node | undefined;
    const v = it.value as Node | undefined;
    const start = k?.range?.[0];
    const end = v?.range?.[2] ?? k?.range?.[2];
    if (start !== undefined && end !== undefined && offset >= start && offset <= end && isScalar(k)) return String(k.value);
  }
  return undefined;
}

export function resolveConfig(c: Config, file: string): ResolvedConfig {
  const base = dirname(file);
  const abs = (p: string): string => (isAbsolute(p) ? p : resolve(base, p));
  const dataDir = abs(c.dataDir);
  return {
    ...omitTransports(c),
    dataDir,
    runtimeDir: c.runtimeDir ? abs(c.runtimeDir) : join(dataDir, 'run'),
    balancer: {
      ...c.balancer,
      cookieFile: c.balancer.cookieFile ? abs(c.balancer.cookieFile) : join(dataDir, 'static_extended_orport_auth_cookie'),
    },
    relay: { ...c.relay, masterKeyDir: c.relay.masterKeyDir && abs(c.relay.masterKeyDir) },
    ...resolveTransports(c, abs, dataDir),
  };
}

function omitTransports(c: Config): Omit<Config, 'transport' | 'transports'> {
  const { transport: _a, transports: _b, ...rest } = c;
  return rest;
}

/** `transport:` keeps its state in `<dataDir>/pt_state` (as always); list entries in `<dataDir>/transports/<name>`. */
function resolveTransports(c: Config, abs: (p: string) => string, dataDir: string): Pick<ResolvedConfig, 'transport' | 'transports'> {
  const one = (t: NonNullable<Config['transport']>, dflt: string): ResolvedTransport => ({ ...t, stateDir: t.stateDir ? abs(t.stateDir) : dflt });
  const transports = c.transports
    ? c.transports.map((t) => one(t, join(dataDir, 'transports', t.name)))
    : c.transport
      ? [one(c.transport, join(dataDir, 'pt_state'))]
      : [];
  return { transport: transports[0], transports };
}

export function loadConfig(flag?: string): LoadedConfig {
  const file = configPath(flag);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    throw new ConfigError([
      { file, line: 0, key: '', message: err.code === 'ENOENT' ? 'config file not found' : `cannot read: ${err.message}` },
    ]);
  }
  const config = resolveConfig(parseConfigText(text, file), file);
  const saved = readInstanceCount(config.dataDir);
  const n = effectiveInstances(config.instances, saved);
  if (saved && n !== config.instances) {
    return { file, config: { ...config, instances: n, instancesOverride: { file: instanceCountFile(config.dataDir), configInstances: config.instances } } };
  }
  return { file, config };
}

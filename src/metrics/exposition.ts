// The Prometheus text exposition format (version 0.0.4): parsing one target's output, adding a
// label to every sample, and merging several targets into one valid exposition (one HELP and one
// TYPE per metric family, every family's samples in one group). Pure.
//
// Reference: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format

export type MetricType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';

export interface Sample {
  /** The sample's own name (for a histogram: `x_bucket`, `x_sum`, `x_count`). */
  name: string;
  /** Label pairs in their original order, values unescaped. */
  labels: Array<[string, string]>;
  /** The value exactly as written (`1`, `1.5e3`, `+Inf`, `NaN`...). */
  value: string;
  /** The timestamp (milliseconds) exactly as written, if any. */
  timestamp?: string;
}

export interface Family {
  name: string;
  /** The HELP text as written in the exposition (still escaped: `\\` and `\n`). */
  help?: string;
  type?: MetricType;
  samples: Sample[];
}

export interface Exposition {
  /** Families in the order they first appear. */
  families: Family[];
  /** Lines that are not valid exposition lines (1-based line number and why), dropped. */
  invalid: Array<{ line: number; text: string; reason: string }>;
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set<string>(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
/** A Go ParseFloat-able value, as Prometheus accepts it. */
const VALUE = /^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|0[xX][0-9a-fA-F]+|[Ii]nf(?:inity)?|NaN)$/;
const TIMESTAMP = /^-?\d+$/;

export function isMetricName(s: string): boolean {
  return METRIC_NAME.test(s);
}

export function isLabelName(s: string): boolean {
  return LABEL_NAME.test(s);
}

/** Escapes a label value for the text format: backslash, double quote and newline. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

class LineError extends Error {}

/** Parses `{a="x",b="y\"z"}` starting at `s[i] === '{'`; returns the labels and the index after `}`. */
function parseLabels(s: string, i: number): { labels: Array<[string, string]>; end: number } {
  const labels: Array<[string, string]> = [];
  i++; // '{'
  const skipWs = (): void => {
    while (s[i] === ' ' || s[i] === '\t') i++;
  };
  for (;;) {
    skipWs();
    if (s[i] === '}') return { labels, end: i + 1 };
    const start = i;
    while (i < s.length && /[a-zA-Z0-9_]/.test(s[i]!)) i++;
    const name = s.slice(start, i);
    if (!LABEL_NAME.test(name)) throw new LineError(`bad label name at column ${start + 1}`);
    skipWs();
    if (s[i] !== '=') throw new LineError(`expected = after label ${name}`);
    i++;
    skipWs();
    if (s[i] !== '"') throw new LineError(`expected " to open the value of label ${name}`);
    i++;
    let value = '';
    for (;;) {
      const c = s[i];
      if (c === undefined) throw new LineError(`unterminated value of label ${name}`);
      if (c === '"') {
        i++;
        break;
      }
      if (c === '\\') {
        const n = s[i + 1];
        if (n === '\\') value += '\\';
        else if (n === '"') value += '"';
        else if (n === 'n') value += '\n';
        else throw new LineError(`bad escape \\${n ?? ''} in the value of label ${name}`);
        i += 2;
        continue;
      }
      value += c;
      i++;
    }
    if (labels.some(([n]) => n === name)) throw new LineError(`label ${name} given twice`);
    labels.push([name, value]);
    skipWs();
    if (s[i] === ',') {
      i++;
      continue;
    }
    if (s[i] === '}') return { labels, end: i + 1 };
    throw new LineError(`expected , or } after the value of label ${name}`);
  }
}

function parseSample(line: string): Sample {
  let i = 0;
  while (i < line.length && /[a-zA-Z0-9_:]/.test(line[i]!)) i++;
  const name = line.slice(0, i);
  if (!METRIC_NAME.test(name)) throw new LineError('bad metric name');
  let labels: Array<[string, string]> = [];
  while (line[i] === ' ' || line[i] === '\t') i++;
  if (line[i] === '{') {
    const r = parseLabels(line, i);
    labels = r.labels;
    i = r.end;
  }
  const rest = line.slice(i).trim().split(/[ \t]+/);
  const [value, timestamp, extra] = rest;
  if (!value || !VALUE.test(value)) throw new LineError(`bad value ${JSON.stringify(value ?? '')}`);
  if (timestamp !== undefined && !TIMESTAMP.test(timestamp)) throw new LineError(`bad timestamp ${JSON.stringify(timestamp)}`);
  if (extra !== undefined) throw new LineError('unexpected text after the timestamp');
  return timestamp === undefined ? { name, labels, value } : { name, labels, value, timestamp };
}

/** The family a sample named `name` belongs to, given the families declared so far. */
function familyOf(name: string, declared: Map<string, Family>): string {
  if (declared.has(name)) return name;
  for (const [suffix, types] of [
    ['_bucket', ['histogram']],
    ['_sum', ['histogram', 'summary']],
    ['_count', ['histogram', 'summary']],
  ] as const) {
    if (name.endsWith(suffix)) {
      const base = name.slice(0, -suffix.length);
      const t = declared.get(base)?.type;
      if (t && (types as readonly string[]).includes(t)) return base;
    }
  }
  return name;
}

/**
 * Parses one target's exposition. Invalid lines are collected in `invalid` and dropped, so that
 * one odd line costs that line only; families keep the order in which they first appear.
 */
export function parseExposition(text: string): Exposition {
  const families = new Map<string, Family>();
  const invalid: Exposition['invalid'] = [];
  const family = (name: string): Family => {
    let f = families.get(name);
    if (!f) {
      f = { name, samples: [] };
      families.set(name, f);
    }
    return f;
  };
  const lines = text.split('\n');
  lines.forEach((raw, idx) => {
    const line = raw.replace(/\r$/, '');
    if (!line.trim()) return;
    try {
      if (line.startsWith('#')) {
        const m = /^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
        if (!m) return; // an ordinary comment
        const [, kind, name, rest = ''] = m;
        if (!METRIC_NAME.test(name!)) throw new LineError(`bad metric name in ${kind}`);
        const f = family(name!);
        if (kind === 'HELP') {
          if (f.help !== undefined) throw new LineError(`second HELP for ${name}`);
          f.help = rest;
        } else {
          const t = rest.trim();
          if (!TYPES.has(t)) throw new LineError(`unknown type ${JSON.stringify(t)}`);
          if (f.type !== undefined) throw new LineError(`second TYPE for ${name}`);
          if (f.samples.length) throw new LineError(`TYPE for ${name} after its samples`);
          f.type = t as MetricType;
        }
        return;
      }
      const s = parseSample(line.trim());
      family(familyOf(s.name, families)).samples.push(s);
    } catch (e) {
      if (!(e instanceof LineError)) throw e;
      invalid.push({ line: idx + 1, text: line.length > 200 ? `${line.slice(0, 200)}...` : line, reason: e.message });
    }
  });
  return { families: [...families.values()], invalid };
}

/**
 * The sample with `label="value"` added (first). A label of that name already on the sample is kept
 * as `exported_<label>` (what Prometheus itself does on a clash).
 */
export function withLabel(s: Sample, label: string, value: string): Sample {
  const labels = s.labels.map(([n, v]): [string, string] => [n === label ? `exported_${label}` : n, v]);
  return { ...s, labels: [[label, value], ...labels] };
}

export function formatSample(s: Sample): string {
  const labels = s.labels.length ? `{${s.labels.map(([n, v]) => `${n}="${escapeLabelValue(v)}"`).join(',')}}` : '';
  return `${s.name}${labels} ${s.value}${s.timestamp !== undefined ? ` ${s.timestamp}` : ''}`;
}

export interface LabelledSource {
  /** The value of the added label for every sample of this source. */
  value: string;
  exposition: Exposition;
}

export interface MergeOptions {
  /** Name of the label to add (default `twin`). */
  label?: string;
  /** Families to leave out (names already used by the one exposing the merge). */
  exclude?: ReadonlySet<string>;
}

/**
 * Merges several targets' expositions into one text, adding `label="<source value>"` to every
 * sample. Each family appears once: the first HELP and TYPE seen for it, then the samples of every
 * source in order. A family whose TYPE differs between sources keeps the first and its samples
 * from the disagreeing sources are dropped (the output would otherwise be invalid).
 */
export function mergeExpositions(sources: LabelledSource[], opts: MergeOptions = {}): string {
  const label = opts.label ?? 'twin';
  const merged = new Map<string, { help?: string; type?: MetricType; lines: string[] }>();
  for (const src of sources) {
    for (const f of src.exposition.families) {
      if (opts.exclude?.has(f.name)) continue;
      let m = merged.get(f.name);
      if (!m) {
        m = { help: f.help, type: f.type, lines: [] };
        merged.set(f.name, m);
      } else {
        if ((m.type ?? 'untyped') !== (f.type ?? 'untyped')) continue;
        m.help ??= f.help;
      }
      for (const s of f.samples) m.lines.push(formatSample(withLabel(s, label, src.value)));
    }
  }
  const out: string[] = [];
  for (const [name, m] of merged) {
    if (m.help !== undefined) out.push(`# HELP ${name}${m.help ? ` ${m.help}` : ''}`);
    if (m.type !== undefined) out.push(`# TYPE ${name} ${m.type}`);
    out.push(...m.lines);
  }
  return out.length ? `${out.join('\n')}\n` : '';
}

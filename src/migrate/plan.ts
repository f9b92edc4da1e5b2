// From what was read to what will be written (pure): checks that the instances are one bridge,
// translates torrc, unit and HAProxy settings into a bridgectl config, and lists what it cannot.
import { stringify } from 'yaml';
import { rsaFingerprint, ed25519Identity, keyDifferences, digest, lastRotated, type KeySet, type RotationState } from '../keysync/index.js';
import { parseConfigText } from '../config/index.js';
import { allValues, lastValue, formatLine } from './torrc.js';
import { splitWords } from './systemd.js';
import { serversBehind } from './haproxy.js';
import { MigrateError, envValue, type Source, type SourceInstance, type SourceTree } from './source.js';

export interface PlanTarget {
  configFile: string;
  dataDir: string;
  /** Base nickname when the source has none. */
  nickname?: string;
}

export interface PlannedInstance {
  source: SourceInstance;
  /** The twin's name in bridgectl (`<nickname><i>`). */
  name: string;
  keys: KeySet;
  old: KeySet;
  state: string | null;
}

export interface Plan {
  kind: Source['kind'];
  fingerprint: string;
  ed25519: string;
  instances: PlannedInstance[];
  config: Record<string, unknown>;
  configText: string;
  rotation: RotationState;
  cookie: Buffer | null;
  ptState: SourceTree | null;
  /** What it takes, for the operator to read. */
  takes: string[];
  /** What changes on purpose (said, not silent). */
  notes: string[];
  /** What it cannot translate: listed, not dropped silently. */
  untranslated: string[];
  /** The old units to stop (and start again to roll back). */
  units: string[];
}

const REQUIRED = ['secret_id_key', 'ed25519_master_id_public_key', 'secret_onion_key_ntor'] as const;

/** Options bridgectl writes itself, with the value its template gives them. */
const TEMPLATE: Record<string, string> = { bridgerelay: '1', bridgedistribution: 'none', assumereachable: '1', socksport: '0', cookieauthentication: '1' };
/** Handled one by one below. */
const HANDLED = new Set(['nickname', 'datadirectory', 'keydirectory', 'contactinfo', 'orport', 'extorport', 'servertransportplugin', 'servertransportlistenaddr', 'servertransportoptions']);
/** The supervisor provides these itself; the source's are not carried. */
const SUPERVISOR = new Set(['controlport', 'controlsocket', 'log', 'runasdaemon', 'user', 'pidfile', 'syslogidentifiertag', 'extorportcookieauthfile', 'cookieauthfile', 'cookieauthfilegroupreadable', 'datadirectorygroupreadable', 'cachedirectory', 'hashedcontrolpassword', '__owningcontrollerprocess']);
const NOT_CARRIED: Record<string, string> = {
  metricsport: 'set metrics.listen instead (each twin then gets its own MetricsPort)',
  metricsportpolicy: 'set metrics.listen instead',
  '%include': 'included files are not read; put their lines in the config\'s torrc key',
  offlinemasterkey: '',
};

/** TOR_PT_SERVER_TRANSPORT_OPTIONS `name:k=v;name:k=v` (backslash escapes) → the options of `name`. */
export function parseTransportOptions(s: string, name: string): Record<string, string> {
  const out: Record<string, string> = {};
  const items: string[] = [];
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    if (s[i] === '\\' && i + 1 < s.length) cur += s[++i];
    else if (s[i] === ';') {
      items.push(cur);
      cur = '';
    }
    else cur += s[i];
  }
  if (cur) items.push(cur);
  for (const it of items) {
    const c = it.indexOf(':');
    const eq = it.indexOf('=', c);
    if (c <= 0 || eq < 0) throw new MigrateError(`TOR_PT_SERVER_TRANSPORT_OPTIONS: "${it}" is not NAME:KEY=VALUE`);
    if (it.slice(0, c) === name) out[it.slice(c + 1, eq)] = it.slice(eq + 1);
  }
  return out;
}

function checkKeys(instances: SourceInstance[]): { fingerprint: string; ed25519: string } {
  for (const i of instances) {
    for (const f of REQUIRED) if (!i.keys.has(f)) throw new MigrateError(`instance ${i.name}: ${i.keysDir}/${f} is missing; nothing was changed`);
    if (!i.keys.has('ed25519_master_id_secret_key') || /^1$/.test(lastValue(i.torrc, 'OfflineMasterKey') ?? '')) {
      throw new MigrateError(
        `instance ${i.name} keeps its ed25519 master key offline (OfflineMasterKey: no ${i.keysDir}/ed25519_master_id_secret_key); bridgectl cannot renew the twins' signing keys without it. ` +
          'Put the master key back (tor --keygen) or keep this bridge as it is; nothing was changed',
      );
    }
    try {
      rsaFingerprint(i.keys.get('secret_id_key')!);
      ed25519Identity(i.keys.get('ed25519_master_id_public_key')!);
    } catch (e) {
      throw new MigrateError(`instance ${i.name}: cannot read its keys in ${i.keysDir} (${(e as Error).message}); nothing was changed`);
    }
  }
  const [first, ...rest] = instances;
  for (const i of rest) {
    const diff = keyDifferences(first!.keys, i.keys);
    const a = first!.keys.get('secret_onion_key');
    const b = i.keys.get('secret_onion_key');
    if ((a || b) && !(a && b && a.equals(b))) diff.push('TAP onion key');
    if (diff.length) {
      throw new MigrateError(
        `instance ${i.name} differs from instance ${first!.name} in its ${diff.join(', ')} (${i.keysDir} vs ${first!.keysDir}); they are not one bridge. Nothing was changed`,
      );
    }
    for (const [f, d] of i.old) {
      const o = first!.old.get(f);
      if (o && !o.equals(d)) throw new MigrateError(`instance ${i.name} has another previous onion key ${f} than instance ${first!.name}; nothing was changed`);
    }
  }
  return { fingerprint: rsaFingerprint(first!.keys.get('secret_id_key')!), ed25519: ed25519Identity(first!.keys.get('ed25519_master_id_public_key')!) };
}

/** Orders instances by their nickname's number and finds the base: flakey1..flakeyN. */
function nicknames(instances: SourceInstance[], fallback: string | undefined, notes: string[], extra: string[]): { base: string; ordered: SourceInstance[] } {
  const nicks = instances.map((i) => ({ i, nick: lastValue(i.torrc, 'Nickname') }));
  if (instances.length === 1) {
    const nick = nicks[0]!.nick ?? fallback;
    if (!nick) throw new MigrateError(`${instances[0]!.torrcPath} sets no Nickname; give the bridge one with --nickname NAME`);
    const m = /^([A-Za-z0-9]*[A-Za-z])1$/.exec(nick);
    if (m) return { base: m[1]!, ordered: instances };
    const base = nick.slice(0, 18).replace(/\d+$/, '') || 'bridge';
    extra.push(`Nickname ${nick}`);
    notes.push(`the nickname ${nick} is kept by a "Nickname ${nick}" line in the config's torrc (bridgectl would call its one twin ${base}1)`);
    return { base, ordered: instances };
  }
  const parsed = nicks.map(({ i, nick }) => {
    const m = nick ? /^([A-Za-z0-9]*?[A-Za-z])(\d+)$/.exec(nick) : null;
    if (!nick) throw new MigrateError(`instance ${i.name} (${i.torrcPath}) sets no Nickname; twins need distinct nicknames. Nothing was changed`);
    return { i, nick, base: m?.[1], n: m ? Number(m[2]) : NaN };
  });
  const base = parsed[0]!.base;
  const ns = parsed.map((p) => p.n).sort((a, b) => a - b);
  if (!base || parsed.some((p) => p.base !== base) || ns.some((n, k) => n !== k + 1)) {
    throw new MigrateError(
      `the instances' nicknames (${parsed.map((p) => p.nick).join(', ')}) are not NAME1..NAME${instances.length}, the only names bridgectl gives its twins; rename them in the torrcs first or they change. Nothing was changed`,
    );
  }
  return { base, ordered: parsed.sort((a, b) => a.n - b.n).map((p) => p.i) };
}

/** The torrc lines that are neither bridgectl's own nor handled: kept when every instance has them. */
function extraLines(instances: SourceInstance[], untranslated: string[], notes: string[]): string[] {
  const per = instances.map((i) => {
    const keep: string[] = [];
    for (const l of i.torrc) {
      const where = `${i.torrcPath}:${l.line}`;
      if (HANDLED.has(l.lower) || SUPERVISOR.has(l.lower)) continue;
      if (l.lower in NOT_CARRIED) {
        if (l.lower !== 'offlinemasterkey') untranslated.push(`${where}: ${l.key} ${l.value} (${NOT_CARRIED[l.lower]})`);
        continue;
      }
      if (l.lower in TEMPLATE) {
        if (l.value === TEMPLATE[l.lower]) continue;
        // BridgeDistribution becomes the config's distribution: (see publicOrPortOf).
        if (l.lower !== 'bridgedistribution') untranslated.push(`${where}: ${l.key} ${l.value} (bridgectl sets ${l.key} ${TEMPLATE[l.lower]})`);
        continue;
      }
      keep.push(formatLine(l));
    }
    return keep;
  });
  const common = per[0]!.filter((l) => per.every((p) => p.includes(l)));
  per.forEach((p, k) => {
    for (const l of p) if (!common.includes(l)) untranslated.push(`${instances[k]!.torrcPath}: "${l}" is only in some instances (the config's torrc applies to all twins)`);
  });
  const dropped = new Set(instances.flatMap((i) => i.torrc.filter((l) => SUPERVISOR.has(l.lower)).map((l) => l.key)));
  if (dropped.size) notes.push(`not carried, bridgectl sets its own: ${[...dropped].join(', ')} (tor logs to bridgectl's journal)`);
  return [...new Set(common)];
}

/** An ORPort address others can reach (not loopback, not auto). */
function isPublicOrPort(v: string): boolean {
  const a = v.split(/\s+/)[0]!;
  return !/(^|:)auto$/.test(a) && !/^(127\.|\[::1\]|localhost)/.test(a) && !/\bNoListen\b/i.test(v);
}

/**
 * A distributed bridge (BridgeDistribution other than none, or none given: tor's default is any)
 * with a public ORPort keeps both: `distribution:` and `publicOrPort:` (the twins share it by DNAT).
 * Otherwise the bridge is unlisted and its twins' ORPorts stay on loopback.
 */
function publicOrPortOf(instances: SourceInstance[], untranslated: string[], notes: string[]): { distribution?: string; publicOrPort?: string } {
  const first = instances[0]!;
  const given = lastValue(first.torrc, 'BridgeDistribution');
  const pub = allValues(first.torrc, 'ORPort').find(isPublicOrPort)?.split(/\s+/)[0];
  if (given === 'none') return {};
  if (!pub) {
    if (given) untranslated.push(`${first.torrcPath}: BridgeDistribution ${given} without a public ORPort: the migrated bridge is unlisted (distribution: none)`);
    return {};
  }
  const addr = /^\d+$/.test(pub) ? `0.0.0.0:${pub}` : pub;
  notes.push(`distributed bridge (BridgeDistribution ${given ?? 'any, tor\'s default'}): its ORPort ${addr} is shared by the twins (publicOrPort:, nftables DNAT; see docs/transports.md)`);
  return { distribution: given ?? 'any', publicOrPort: addr };
}

function orPort(instances: SourceInstance[], untranslated: string[], shared: string | undefined): string | undefined {
  const all = instances.map((i) => allValues(i.torrc, 'ORPort'));
  const firsts = [...new Set(all.map((a) => a[0] ?? ''))];
  for (const a of all) {
    for (const more of a.slice(1)) {
      const why = `bridgectl gives each twin one ORPort${shared ? ` and shares ${shared} among them` : ''}`;
      const line = `${instances[0]!.torrcPath}: ORPort ${more} is not carried (${why})`;
      if (!untranslated.includes(line)) untranslated.push(line);
    }
  }
  if (shared) return undefined;
  if (firsts.length === 1 && firsts[0]) {
    if (instances.length > 1 && !/:auto$|^auto$/.test(firsts[0].split(/\s+/)[0]!)) untranslated.push(`ORPort ${firsts[0]}: a fixed port cannot be shared by ${instances.length} twins`);
    else return firsts[0] === '127.0.0.1:auto' ? undefined : firsts[0];
  } else if (firsts.length > 1) untranslated.push(`the instances' ORPorts differ (${firsts.join(', ')}); each twin gets 127.0.0.1:auto (the transport, not the ORPort, is what clients reach)`);
  return undefined;
}

interface Translated {
  transport: Record<string, unknown>;
  balancer: Record<string, unknown>;
}

function fromUnit(s: Source, takes: string[], notes: string[], untranslated: string[]): Translated {
  const u = s.unit!;
  const env = u.env;
  const names = (envValue(env, 'TOR_PT_SERVER_TRANSPORTS') ?? '').split(',').filter(Boolean);
  const name = names[0]!;
  if (names.length > 1) untranslated.push(`${u.path}: TOR_PT_SERVER_TRANSPORTS also names ${names.slice(1).join(', ')}; only ${name} is carried`);
  if (!u.exec) throw new MigrateError(`${u.path} has no ExecStart; nothing was changed`);
  if (/@/.test(u.exec.prefixes)) untranslated.push(`${u.path}: ExecStart's "@" prefix (argv[0] differs from the program) is dropped`);
  const command = withoutLogFile(
    u.exec.argv.map((a) => {
      if (/%[a-zA-Z]/.test(a) || /\$\{?[A-Za-z_]/.test(a)) untranslated.push(`${u.path}: ExecStart argument "${a}" has a systemd specifier or variable; it is kept as written`);
      return a;
    }),
    u.path,
    notes,
  );
  const bind = (envValue(env, 'TOR_PT_SERVER_BINDADDR') ?? '').split(',').find((b) => b.startsWith(`${name}-`));
  if (!bind) throw new MigrateError(`${u.path}: TOR_PT_SERVER_BINDADDR has no address for ${name}; nothing was changed`);
  const options = parseTransportOptions(envValue(env, 'TOR_PT_SERVER_TRANSPORT_OPTIONS') ?? '', name);
  const extEnv: Record<string, string> = {};
  const managed = new Set(['TOR_PT_MANAGED_TRANSPORT_VER', 'TOR_PT_SERVER_TRANSPORTS', 'TOR_PT_SERVER_BINDADDR', 'TOR_PT_SERVER_TRANSPORT_OPTIONS', 'TOR_PT_STATE_LOCATION', 'TOR_PT_EXTENDED_SERVER_PORT', 'TOR_PT_AUTH_COOKIE_FILE', 'TOR_PT_EXIT_ON_STDIN_CLOSE']);
  for (const [k, v] of env) {
    if (managed.has(k)) continue;
    if (k === 'TOR_PT_ORPORT') untranslated.push(`${u.path}: TOR_PT_ORPORT=${v} (bridgectl's transport reaches tor through the balancer only)`);
    else extEnv[k] = v;
  }
  const skipped = u.entries.filter((e) => e.section === 'Service' && !['ExecStart', 'Environment', 'EnvironmentFile', 'Type', 'Restart', 'RestartSec'].includes(e.key));
  if (skipped.length) notes.push(`not carried from ${u.path} (bridgectl.service has its own): ${skipped.map((e) => `${e.key}=${e.value}`).join(' ')}`);
  const ext = envValue(env, 'TOR_PT_EXTENDED_SERVER_PORT');
  const balancer: Record<string, unknown> = {};
  if (ext) balancer.listen = ext;
  takes.push(`the transport ${name} from ${u.files.join(', ')}: ${command.join(' ')} on ${bind.slice(name.length + 1)}${Object.keys(options).length ? `, options ${JSON.stringify(options)}` : ''}`);
  if (s.haproxy && ext) {
    const hp = serversBehind(s.haproxy.sections, ext);
    if (!hp) untranslated.push(`${s.haproxy.path}: no frontend binds ${ext} (TOR_PT_EXTENDED_SERVER_PORT); HAProxy's settings are not read`);
    else {
      const shims = new Map(s.instances.map((i) => [lastValue(i.torrc, 'ServerTransportListenAddr')?.split(/\s+/)[1], i.name]));
      for (const sv of hp.back.servers) if (!shims.has(sv.address)) untranslated.push(`${s.haproxy.path}:${sv.line}: server ${sv.name} ${sv.address} is none of the instances' static-cookie listeners`);
      const sources = hp.back.servers.map((sv) => sv.source?.replace(/:\d+$/, '')).filter((x): x is string => !!x);
      const nets = [...new Set(sources.map((a) => a.split('.').slice(0, 3).join('.')))];
      if (nets.length === 1 && /^\d+\.\d+\.\d+$/.test(nets[0]!)) balancer.sourceRange = `${nets[0]}.0/24`;
      notes.push(`HAProxy (${s.haproxy.path}: ${hp.front.name} → ${hp.back.name}, balance ${hp.back.balance ?? 'roundrobin'}, ${hp.back.servers.length} servers) is replaced by bridgectl's balancer on ${ext}${balancer.sourceRange ? ` with source addresses from ${String(balancer.sourceRange)}` : ''}`);
    }
  }
  return { transport: { name, command, listen: bind.slice(name.length + 1), ...(Object.keys(options).length ? { options } : {}), ...(Object.keys(extEnv).length ? { env: extEnv } : {}) }, balancer };
}

/**
 * A transport's own log file (snowflake-server's and meek-server's `-log FILE`) is dropped: under the
 * shipped unit (ProtectSystem=strict) it could not be opened, and on stderr bridgectl logs each line.
 */
function withoutLogFile(argv: string[], where: string, notes: string[]): string[] {
  const out: string[] = [];
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k]!;
    if (/^--?log$/.test(a) && k + 1 < argv.length) {
      notes.push(`${where}: "${a} ${argv[k + 1]}" dropped: the transport logs to stderr, which bridgectl reads into its journal`);
      k++;
    } else if (/^--?log=/.test(a)) notes.push(`${where}: "${a}" dropped: the transport logs to stderr, which bridgectl reads into its journal`);
    else out.push(a);
  }
  return out;
}

function fromTorrc(i: SourceInstance, takes: string[], untranslated: string[], notes: string[]): Translated | null {
  const plugins = allValues(i.torrc, 'ServerTransportPlugin');
  if (!plugins.length) return null;
  const [namesField = '', how = '', ...cmd] = splitWords(plugins[0]!);
  if (how !== 'exec' || !cmd.length) throw new MigrateError(`${i.torrcPath}: ServerTransportPlugin ${plugins[0]}: expected "NAME exec PROGRAM [ARGS]"; nothing was changed`);
  const names = namesField.split(',');
  const name = names[0]!;
  if (names.length > 1 || plugins.length > 1) untranslated.push(`${i.torrcPath}: only the transport ${name} is carried (ServerTransportPlugin ${plugins.join(' / ')})`);
  const listen = allValues(i.torrc, 'ServerTransportListenAddr').map((v) => v.split(/\s+/)).find((w) => w[0] === name)?.[1];
  if (!listen) throw new MigrateError(`${i.torrcPath}: no ServerTransportListenAddr for ${name}: its port is in every bridge line handed out, so it must be given; nothing was changed`);
  const options: Record<string, string> = {};
  for (const v of allValues(i.torrc, 'ServerTransportOptions')) {
    const [n, ...kv] = v.split(/\s+/);
    if (n !== name) continue;
    for (const p of kv) {
      const eq = p.indexOf('=');
      if (eq > 0) options[p.slice(0, eq)] = p.slice(eq + 1);
    }
  }
  takes.push(`the transport ${name} from ${i.torrcPath}: ${cmd.join(' ')} on ${listen}${Object.keys(options).length ? `, options ${JSON.stringify(options)}` : ''}`);
  return { transport: { name, command: withoutLogFile(cmd, i.torrcPath, notes), listen, ...(Object.keys(options).length ? { options } : {}) }, balancer: {} };
}

function rotationOf(first: SourceInstance, instances: SourceInstance[], notes: string[]): RotationState {
  const times = instances.flatMap((i) => [i.state ? lastRotated(i.state) : null, i.ntorMtime]).filter((d): d is Date => d !== null);
  const at = times.length ? new Date(Math.min(...times.map((d) => d.getTime()))) : new Date(0);
  const grace = first.old.has('secret_onion_key_ntor.old');
  notes.push(`onion keys last rotated ${at.toISOString()} (tor's state LastRotatedOnionKey / the key file's age); ${grace ? 'the previous keys are in their grace period and kept as .old files' : 'rotation pinned'}`);
  return {
    version: 1,
    phase: grace ? 'grace' : 'pinned',
    rotatedAt: at.toISOString(),
    current: digest(first.keys.get('secret_onion_key_ntor')),
    previous: grace ? digest(first.old.get('secret_onion_key_ntor.old')) : null,
    done: [],
  };
}

export function buildPlan(s: Source, t: PlanTarget): Plan {
  const takes: string[] = [];
  const notes: string[] = [];
  const untranslated: string[] = [];
  const { fingerprint, ed25519 } = checkKeys(s.instances);
  const extra: string[] = [];
  const { base, ordered } = nicknames(s.instances, t.nickname, notes, extra);
  const contacts = [...new Set(ordered.map((i) => lastValue(i.torrc, 'ContactInfo') ?? ''))];
  if (contacts.length > 1) untranslated.push(`the instances' ContactInfo differ (${contacts.map((c) => JSON.stringify(c)).join(', ')}); ${JSON.stringify(contacts[0])} is kept`);
  const dist = publicOrPortOf(ordered, untranslated, notes);
  const port = orPort(ordered, untranslated, dist.publicOrPort);
  extra.push(...extraLines(ordered, untranslated, notes));
  const tr = s.kind === 'recipe' ? fromUnit(s, takes, notes, untranslated) : fromTorrc(ordered[0]!, takes, untranslated, notes);
  if (s.kind === 'recipe') {
    for (const i of ordered) {
      const shim = lastValue(i.torrc, 'ServerTransportPlugin');
      if (!shim || !/extor-static-cookie/.test(shim)) untranslated.push(`${i.torrcPath}: ServerTransportPlugin ${shim ?? '(none)'} is not an extor-static-cookie shim; bridgectl's balancer takes its place`);
    }
    if (!s.cookie) untranslated.push(`${s.unit!.path} sets no TOR_PT_AUTH_COOKIE_FILE; bridgectl makes a new static cookie`);
  }
  const rotation = rotationOf(ordered[0]!, ordered, notes);
  const instances: PlannedInstance[] = ordered.map((i, k) => ({ source: i, name: `${base}${k + 1}`, keys: i.keys, old: i.old, state: i.state }));
  const config: Record<string, unknown> = {
    nickname: base,
    instances: ordered.length,
    dataDir: t.dataDir,
    ...(contacts[0] ? { contactInfo: contacts[0] } : {}),
    ...(extra.length ? { torrc: `${extra.join('\n')}\n` } : {}),
    ...(port ? { orPort: port } : {}),
    ...dist,
    ...(tr && Object.keys(tr.balancer).length ? { balancer: tr.balancer } : {}),
    ...(tr ? { transport: tr.transport } : {}),
  };
  const header = `# Written by bridgectl migrate from the ${s.kind === 'recipe' ? 'tor@ instances ' + ordered.map((i) => i.name).join(', ') : 'tor of ' + ordered[0]!.torrcPath}.\n# Bridge ${fingerprint} (ed25519 ${ed25519}).\n`;
  const configText = header + stringify(config, { lineWidth: 0 });
  parseConfigText(configText, t.configFile); // what bridgectl run will read must load
  takes.unshift(
    `identity ${fingerprint} / ed25519 ${ed25519}, the same in all ${ordered.length} instance(s)`,
    ...instances.map((p) => `${p.source.keysDir} → twin ${p.name} (nickname ${lastValue(p.source.torrc, 'Nickname') ?? p.name}; ${p.keys.size} key files${p.old.size ? `, previous onion keys ${[...p.old.keys()].join(', ')}` : ''}${p.state ? ', tor state' : ''})`),
  );
  if (s.cookie) takes.push(`the static Extended ORPort cookie ${s.cookie.path}`);
  if (s.ptState) takes.push(`the transport's state directory ${s.ptState.path} (${s.ptState.files.length} files${s.ptState.files.some((f) => f.rel === 'obfs4_state.json') ? ', incl. obfs4_state.json: the cert= of its bridge lines' : ''})`);
  for (const k of s.ptState?.skipped ?? []) untranslated.push(`${s.ptState!.path}/${k}: not a file or directory; not copied`);
  if (tr && !s.ptState) notes.push('the transport has no state directory to carry; it starts with an empty one');
  const units = s.kind === 'recipe'
    ? [s.unit!.path.split('/').pop()!, ...(s.haproxy ? ['haproxy.service'] : []), ...ordered.map((i) => `tor@${i.name}.service`)]
    : ['tor.service'];
  return { kind: s.kind, fingerprint, ed25519, instances, config, configText, rotation, cookie: s.cookie?.data ?? null, ptState: s.ptState, takes, notes, untranslated, units };
}

// The configuration file's shape. Every key here is documented in README.md ("Configuration").
import { z } from 'zod';
import { hostPort, ipv4Range } from './address.js';
import { bandwidthProblem, refusedTorrcLines } from './bandwidth.js';
import { BALANCER_DEFAULTS } from './defaults.js';
import { relayRuleIssues } from './relay.js';
import { checkTransport } from '../transports/index.js';

const cidr = ipv4Range;

export const balancerSchema = z
  .object({
    listen: hostPort.default(BALANCER_DEFAULTS.listen),
    cookieFile: z.string().min(1).optional(),
    sourceRange: cidr.default(BALANCER_DEFAULTS.sourceRange),
    /** The transport's part of the handshake plus finding a twin, at most. */
    handshakeTimeoutMs: z.number().int().positive().default(BALANCER_DEFAULTS.handshakeTimeoutMs),
    /** One twin's part (connect, auth, OKAY), at most; then that twin is marked down. */
    twinTimeoutMs: z.number().int().positive().optional(),
    /** The old name of twinTimeoutMs, still accepted. */
    backendTimeoutMs: z.number().int().positive().optional(),
    /** A session with no byte either way for this long is closed (0: never). */
    idleTimeoutMs: z.number().int().min(0).default(BALANCER_DEFAULTS.idleTimeoutMs),
    /** Sessions open at once, at most (each holds two descriptors in bridgectl). */
    maxSessions: z.number().int().positive().default(BALANCER_DEFAULTS.maxSessions),
    /** How often a twin the balancer marked down is probed again while its tor runs. */
    healthCheckMs: z.number().int().positive().default(BALANCER_DEFAULTS.healthCheckMs),
    /** How a new session picks its twin: the one holding the fewest sessions, or the next in turn. */
    choice: z.enum(['least-connections', 'round-robin']).default(BALANCER_DEFAULTS.choice),
  })
  .strict()
  .superRefine((b, ctx) => {
    if (b.twinTimeoutMs !== undefined && b.backendTimeoutMs !== undefined && b.twinTimeoutMs !== b.backendTimeoutMs) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['backendTimeoutMs'], message: 'is the old name of twinTimeoutMs: give one of the two' });
    }
  })
  .transform(({ backendTimeoutMs, twinTimeoutMs, ...rest }) => ({
    ...rest,
    twinTimeoutMs: twinTimeoutMs ?? backendTimeoutMs ?? BALANCER_DEFAULTS.twinTimeoutMs,
  }));

export const transportSchema = z
  .object({
    /** The transport's name as the client knows it (obfs4, snowflake, webtunnel, ...). */
    name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be a pluggable-transport name (letters, digits, _)'),
    /** The server program and its arguments. */
    command: z.array(z.string().min(1)).min(1),
    /** Where the transport listens (TOR_PT_SERVER_BINDADDR). */
    listen: hostPort,
    /** The address clients use, for `bridgectl bridgeline` (default: `listen`). */
    publicAddress: hostPort.optional(),
    /** Per-transport options (TOR_PT_SERVER_TRANSPORT_OPTIONS). */
    options: z.record(z.string()).default({}),
    /** Extra environment variables for the transport. */
    env: z.record(z.string()).default({}),
    /** TOR_PT_STATE_LOCATION (default `<dataDir>/pt_state`; in a `transports:` list `<dataDir>/transports/<name>`). */
    stateDir: z.string().min(1).optional(),
    /** Client-side parameters of the bridge line (docs/transports.md). */
    client: z
      .object({
        placeholder: hostPort.optional(),
        transport: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional(),
        url: z.string().url().optional(),
        front: z.string().min(1).optional(),
        fronts: z.array(z.string().min(1)).optional(),
        ice: z.array(z.string().min(1)).optional(),
        utlsImitate: z.string().min(1).optional(),
        webSocketAddress: z.string().regex(/^wss?:\/\/\S+$/, 'must be a wss:// URL').optional(),
        args: z.record(z.string()).optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

export const relaySchema = z
  .object({
    /** MyFamily with every member's fingerprint, for tors older than 0.4.9 (FamilyId is always set). */
    myFamily: z.boolean().default(true),
    /** ExitPolicy lines for every instance (empty: tor's default, no exit). */
    exitPolicy: z.array(z.string().min(1)).default([]),
    /** Where the ed25519 master keys live, outside dataDir (set: OfflineMasterKey 1; `keys sign` renews). */
    masterKeyDir: z.string().min(1).optional(),
    /** Lifetime of the signing certificates `keys sign` makes. */
    signingKeyLifetimeDays: z.number().int().positive().default(30),
    /** `doctor` warns when a signing certificate expires within this many days. */
    signingWarnDays: z.number().int().positive().default(14),
  })
  .strict();
/** tor's BridgeDistribution values. */
export const DISTRIBUTIONS = ['none', 'any', 'https', 'email', 'moat', 'telegram', 'settings', 'reserved'] as const;

export const configSchema = z
  .object({
    /** bridge: N router twins of one identity behind the balancer; relay: N relays of one family. */
    mode: z.enum(['bridge', 'relay']).default('bridge'),
    /** Base nickname; instance i is `<nickname><i>`. */
    nickname: z.string().regex(/^[A-Za-z0-9]+$/, 'must be letters and digits only (a tor nickname)'),
    /** How many tor instances (router twins). */
    instances: z.number().int().min(1).max(254),
    /** Where keys, instance data directories and the static cookie live. */
    dataDir: z.string().min(1),
    contactInfo: z.string().default(''),
    /** Extra torrc text appended to every instance's torrc. */
    torrc: z.string().default(''),
    /** Port of each instance's Extended ORPort, on 127.0.4.<i>. */
    extOrPort: z.number().int().min(1).max(65535).default(10100),
    /** Bridge: each instance's ORPort line value. Relay: instance 1's ADDR:PORT (i uses PORT+i-1), or one per instance. */
    orPort: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).default('127.0.0.1:auto'),
    /** Relay: the IPv6 ORPort, as orPort. */
    orPort6: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]).optional(),
    relay: relaySchema.default({}),
    /** The tor binary. */
    torPath: z.string().min(1).default('tor'),
    /** Where the supervisor's control socket lives (default `<dataDir>/run`). */
    runtimeDir: z.string().min(1).optional(),
    /** On SIGTERM, how long open sessions may drain before the bridge stops (under the unit's TimeoutStopSec=60). */
    stopDrainSeconds: z.number().min(0).max(45).default(10),
    logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
    restart: z
      .object({
        initialDelayMs: z.number().int().min(0).default(500),
        maxDelayMs: z.number().int().positive().default(60_000),
        /** An instance that ran this long is considered healthy again; its backoff resets. */
        stableAfterMs: z.number().int().positive().default(60_000),
      })
      .strict()
      .default({}),
    balancer: balancerSchema.default({}),
    transport: transportSchema.optional(),
    /** Several transports, each its own process behind the one balancer (instead of `transport:`). */
    transports: z.array(transportSchema).min(1).optional(),
    /** tor's BridgeDistribution (docs/transports.md: which bridges are unlisted and why). */
    distribution: z.enum(DISTRIBUTIONS).default('none'),
    /** The one public ORPort of a distributed bridge, shared by the twins through kernel DNAT. */
    publicOrPort: hostPort.optional(),
    metrics: z
      .object({
        /** Prometheus endpoint (absent: no endpoint). */
        listen: hostPort.optional(),
        /** Port of each instance's tor MetricsPort, on 127.0.4.<i> (0: none). */
        torMetricsPort: z.number().int().min(0).max(65535).default(10300),
      })
      .strict()
      .default({}),
    /** The whole bridge's limits; each twin's tor gets RelayBandwidthRate/Burst = these / instances. */
    bandwidth: z
      .object({ rate: z.union([z.string(), z.number()]).optional(), burst: z.union([z.string(), z.number()]).optional() })
      .strict()
      .optional(),
    keys: z
      .object({
        /** Coordinated onion-key rotation period. */
        rotationDays: z.number().positive().default(28),
        /** How long the previous onion keys are kept as .old files after a rotation. */
        graceDays: z.number().min(0).default(7),
      })
      .strict()
      .default({}),
  })
  .strict()
  .superRefine((c, ctx) => {
    const bw = bandwidthProblem(c.bandwidth, c.instances);
    if (bw) ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['bandwidth', bw.key], message: bw.message });
    // `torrcLine`: which line of the torrc text, so that the error names the file's own line.
    for (const r of refusedTorrcLines(c.torrc)) {
      ctx.addIssue({ code: z.ZodIssueCode.custom, path: ['torrc'], params: { torrcLine: r.index }, message: `${r.option}: ${r.reason}` });
    }
    const longest = `${c.nickname}${c.instances}`;
    if (longest.length > 19) {
      ctx.addIssue({
        code: z.ZodIssueCode.custom,
        path: ['nickname'],
        message: `with ${c.instances} instances the nicknames reach ${longest.length} characters ("${longest}"); tor allows 19`,
      });
    }
    for (const i of relayRuleIssues(c)) ctx.addIssue({ code: z.ZodIssueCode.custom, path: i.path, message: i.message });
    checkTransports(c, ctx);
  });

type Parsed = z.infer<typeof transportSchema>;

function checkTransports(
  c: { transport?: Parsed; transports?: Parsed[]; distribution: string; publicOrPort?: string; torrc: string },
  ctx: z.RefinementCtx,
): void {
  const issue = (path: (string | number)[], message: string): void => ctx.addIssue({ code: z.ZodIssueCode.custom, path, message });
  if (c.transport && c.transports) issue(['transports'], 'give either "transport:" or "transports:", not both');
  const list: Array<[Parsed, (string | number)[]]> = c.transports
    ? c.transports.map((t, i) => [t, ['transports', i]])
    : c.transport
      ? [[c.transport, ['transport']]]
      : [];
  const seen = new Map<string, string>();
  for (const [t, path] of list) {
    for (const p of checkTransport({ ...t, stateDir: '' })) issue([...path, ...p.key.split('.')], p.message);
    if (seen.has(`name ${t.name}`)) issue([...path, 'name'], `transport ${t.name} is configured twice (each name once: tor's statistics count by name)`);
    if (seen.has(`listen ${t.listen}`)) issue([...path, 'listen'], `${t.listen} is already the listen address of ${seen.get(`listen ${t.listen}`)}`);
    seen.set(`name ${t.name}`, t.name);
    seen.set(`listen ${t.listen}`, t.name);
  }
  // These are bridgectl's: a second line in `torrc` would make every twin warn "used more than once".
  for (const [opt, instead] of [['BridgeDistribution', 'distribution:'], ['ORPort', 'orPort: or publicOrPort:']] as const) {
    if (new RegExp(`^\\s*${opt}\\s`, 'im').test(c.torrc)) issue(['torrc'], `${opt} is set by bridgectl in every twin's torrc; use ${instead} instead`);
  }
  if (c.distribution !== 'none') {
    if (!c.publicOrPort) {
      issue(['publicOrPort'], `distribution ${c.distribution} needs a reachable ORPort: the bridge authority tests it before rdsys hands the bridge out (see docs/transports.md)`);
    }
    const listed = list.filter(([t]) => !['snowflake', 'meek'].includes(t.name));
    if (list.length && !listed.length) {
      issue(['distribution'], 'snowflake and meek bridges are reached through a broker or a CDN, never handed out by rdsys: leave distribution at none');
    }
  }
}

export type Config = z.infer<typeof configSchema>;
export type BalancerConfig = z.infer<typeof balancerSchema>;
export type TransportConfig = z.infer<typeof transportSchema>;
export type RelayConfig = z.infer<typeof relaySchema>;

// Standalone commands on top of the balancer, for operators who run their tor instances themselves:
// `bridgectl balancer ...` and `bridgectl extor-static-cookie ...`.
import { parseArgs } from 'node:util';
import pino, { type Logger } from 'pino';
import { BALANCER_DEFAULTS } from '../config/index.js';
import { readCookieFile } from '../extorport/index.js';
import { createBalancer, engineMissingMessage, formatEndpoint, type Balancer } from '../balancer/index.js';
import { parsePtServerSetup } from '../pt/index.js';

export const BALANCER_USAGE = `usage: bridgectl balancer --cookie FILE --backend ADDR=COOKIEFILE [--backend ...]
                         [--listen ADDR] [--source-range CIDR] [--handshake-timeout MS] [--log-level LEVEL]
  --listen ADDR          where the transport connects as to an Extended ORPort (default ${BALANCER_DEFAULTS.listen})
  --cookie FILE          the static cookie file the transport authenticates with
  --backend ADDR=FILE    a tor's ExtORPort and the cookie file it writes (repeat for each tor)
  --source-range CIDR    source addresses for connections to the tors (default ${BALANCER_DEFAULTS.sourceRange})
  --handshake-timeout MS the transport's handshake plus finding a tor, at most (default ${BALANCER_DEFAULTS.handshakeTimeoutMs})`;

export const EXTOR_STATIC_COOKIE_USAGE = `usage: bridgectl extor-static-cookie COOKIEFILE
  A managed server transport (pt-spec) for tor's ServerTransportPlugin, replacing the old
  extor-static-cookie program: it listens as an Extended ORPort that authenticates with the static
  cookie in COOKIEFILE and forwards to tor's own ExtORPort with tor's current cookie. Like the Go
  program it serves every transport name tor asks for (the recipe names it after its transport).
  torrc: ServerTransportPlugin extor_static_cookie exec /usr/bin/bridgectl extor-static-cookie COOKIEFILE
         ServerTransportListenAddr extor_static_cookie 127.0.0.1:10001
         ExtORPort auto`;

/** How often twins that are down are given another chance (their cookie file re-read). */
const RECHECK_MS = BALANCER_DEFAULTS.healthCheckMs;

function stderrLogger(level: string): Logger {
  return pino({ level, base: null }, pino.destination({ fd: 2, sync: true }));
}

/** Keeps retrying markUp on down twins (standalone mode has no supervisor to say a tor is back). */
function recheckLoop(b: Balancer, logger: Logger): () => void {
  const t = setInterval(() => {
    for (const s of b.stats().twins) {
      if (s.up || s.draining) continue;
      b.markUp(s.name).catch((e: Error) => logger.debug({ twin: s.name, err: e.message }, 'still down'));
    }
  }, RECHECK_MS);
  t.unref();
  return () => clearInterval(t);
}

function untilSignal(extra?: (stop: () => void) => void): Promise<string> {
  return new Promise((resolve) => {
    const done = (why: string): void => {
      process.off('SIGINT', onInt);
      process.off('SIGTERM', onTerm);
      resolve(why);
    };
    const onInt = (): void => done('SIGINT');
    const onTerm = (): void => done('SIGTERM');
    process.on('SIGINT', onInt);
    process.on('SIGTERM', onTerm);
    extra?.(() => done('stdin closed'));
  });
}

/** `bridgectl balancer ...`: runs until SIGINT/SIGTERM; returns the exit code. */
export async function balancerCommand(argv: string[]): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string' },
        cookie: { type: 'string' },
        backend: { type: 'string', multiple: true },
        'source-range': { type: 'string' },
        'handshake-timeout': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${BALANCER_USAGE}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${BALANCER_USAGE}\n`);
    return 0;
  }
  if (!values.cookie || !values.backend?.length) {
    process.stderr.write(`--cookie and at least one --backend are required\n${BALANCER_USAGE}\n`);
    return 2;
  }
  const hsTimeout = values['handshake-timeout'];
  const handshakeTimeoutMs = hsTimeout === undefined ? undefined : Number(hsTimeout);
  if (handshakeTimeoutMs !== undefined && !(Number.isInteger(handshakeTimeoutMs) && handshakeTimeoutMs > 0)) {
    process.stderr.write(`--handshake-timeout: expected milliseconds > 0, got ${hsTimeout}\n${BALANCER_USAGE}\n`);
    return 2;
  }
  const missing = engineMissingMessage();
  if (missing) {
    process.stderr.write(`bridgectl: ${missing}\n`);
    return 1;
  }
  const logger = stderrLogger(values['log-level'] ?? 'info');
  let balancer: Balancer;
  try {
    const staticCookie = await readCookieFile(values.cookie);
    balancer = createBalancer({ listen: values.listen ?? BALANCER_DEFAULTS.listen, staticCookie, sourceRange: values['source-range'], handshakeTimeoutMs, logger });
    for (const spec of values.backend) {
      const eq = spec.lastIndexOf('=');
      if (eq <= 0) throw new Error(`--backend ${spec}: expected ADDR=COOKIEFILE`);
      const address = spec.slice(0, eq);
      balancer.addTwin({ name: address, address, cookieFile: spec.slice(eq + 1) });
    }
    await balancer.start();
  } catch (e) {
    logger.error((e as Error).message);
    return 1;
  }
  for (const s of balancer.stats().twins) {
    await balancer.markUp(s.name).catch((e: Error) => logger.warn({ twin: s.name, err: e.message }, 'tor down for now'));
  }
  const stopRecheck = recheckLoop(balancer, logger);
  const why = await untilSignal();
  logger.info({ why, stats: balancer.stats() }, 'balancer stopping');
  stopRecheck();
  await balancer.stop();
  return 0;
}

/** The name `*` (any transport) is served under. */
const PT_NAME = 'extor_static_cookie';

/**
 * `bridgectl extor-static-cookie COOKIEFILE`: a managed server transport per pt-spec, serving every
 * transport name in TOR_PT_SERVER_TRANSPORTS (the FOCI recipe names the shim after its transport:
 * `ServerTransportPlugin snowflake exec extor-static-cookie FILE`), each on its own listener. Prints
 * its VERSION/SMETHOD lines on stdout for tor, logs on stderr, and runs until tor closes its stdin
 * (with TOR_PT_EXIT_ON_STDIN_CLOSE=1) or it gets SIGINT/SIGTERM.
 */
export async function extorStaticCookieCommand(
  argv: string[],
  io: { env?: NodeJS.ProcessEnv; stdout?: NodeJS.WritableStream; stdin?: NodeJS.ReadableStream } = {},
): Promise<number> {
  const env = io.env ?? process.env;
  const out = io.stdout ?? process.stdout;
  const stdin = io.stdin ?? process.stdin;
  const say = (line: string): void => void out.write(`${line}\n`);
  if (argv.length !== 1 || argv[0] === '--help' || argv[0] === '-h') {
    process.stderr.write(`${EXTOR_STATIC_COOKIE_USAGE}\n`);
    return argv[0] === '--help' || argv[0] === '-h' ? 0 : 2;
  }
  const pt = parsePtServerSetup(env, PT_NAME);
  if ('lines' in pt) {
    pt.lines.forEach(say);
    return pt.code;
  }
  const logger = stderrLogger(env.BRIDGECTL_LOG_LEVEL ?? 'warn');
  say('VERSION 1');
  const balancers: Balancer[] = [];
  const stops: Array<() => void> = [];
  let staticCookie: Buffer;
  try {
    staticCookie = await readCookieFile(argv[0]!);
  } catch (e) {
    for (const m of pt.ok.methods) say(`SMETHOD-ERROR ${m.name} ${(e as Error).message.replace(/\n/g, ' ')}`);
    say('SMETHODS DONE');
    return 1;
  }
  let served = 0;
  for (const m of pt.ok.methods) {
    try {
      const balancer = createBalancer({ listen: formatEndpoint(m.bindAddr), staticCookie, logger });
      balancer.addTwin({ name: 'tor', address: formatEndpoint(pt.ok.extOrPort), cookieFile: pt.ok.authCookieFile });
      await balancer.markUp('tor');
      const addr = await balancer.start();
      balancers.push(balancer);
      stops.push(recheckLoop(balancer, logger));
      say(`SMETHOD ${m.name} ${formatEndpoint(addr)}`);
      served++;
    } catch (e) {
      say(`SMETHOD-ERROR ${m.name} ${(e as Error).message.replace(/\n/g, ' ')}`);
    }
  }
  say('SMETHODS DONE');
  if (!served) return 1;
  await untilSignal((stop) => {
    if (!pt.ok.exitOnStdinClose) return;
    stdin.on('end', stop);
    stdin.on('close', stop);
    stdin.on('error', stop);
    stdin.resume();
  });
  for (const s of stops) s();
  await Promise.all(balancers.map((b) => b.stop()));
  return 0;
}

// Standalone commands on top of the balancer, for operators who run their tor instances themselves.
// src/cli wires them in as `bridgectl balancer ...` and `bridgectl extor-static-cookie ...`.
import { parseArgs } from 'node:util';
import pino, { type Logger } from 'pino';
import { readCookieFile } from '../extor-cookie/index.js';
import { createBalancer, DEFAULT_LISTEN, DEFAULT_SOURCE_RANGE, type Balancer } from './balancer.js';
import { formatEndpoint } from './address.js';
import { parsePtServerEnv } from '../pt/index.js';

export const BALANCER_USAGE = `usage: bridgectl balancer --cookie FILE --backend ADDR=COOKIEFILE [--backend ...]
                         [--listen ADDR] [--source-range CIDR] [--handshake-timeout MS] [--log-level LEVEL]
  --listen ADDR          where the transport connects as to an Extended ORPort (default ${DEFAULT_LISTEN})
  --cookie FILE          the static cookie file the transport authenticates with
  --backend ADDR=FILE    a tor's ExtORPort and the cookie file it writes (repeat for each tor)
  --source-range CIDR    source addresses for connections to the tors (default ${DEFAULT_SOURCE_RANGE})
  --handshake-timeout MS the transport's handshake plus finding a tor, at most (default 30000)`;

export const EXTOR_STATIC_COOKIE_USAGE = `usage: bridgectl extor-static-cookie COOKIEFILE
  A managed server transport (pt-spec) for tor's ServerTransportPlugin, replacing the old
  extor-static-cookie program: it listens as an Extended ORPort that authenticates with the static
  cookie in COOKIEFILE and forwards to tor's own ExtORPort with tor's current cookie.
  torrc: ServerTransportPlugin extor_static_cookie exec /usr/bin/bridgectl extor-static-cookie COOKIEFILE
         ServerTransportListenAddr extor_static_cookie 127.0.0.1:10001
         ExtORPort auto`;

/** How often backends that are down are given another chance (their cookie file re-read). */
const RECHECK_MS = 5000;

function stderrLogger(level: string): Logger {
  return pino({ level, base: null }, pino.destination({ fd: 2, sync: true }));
}

/** Keeps retrying markUp on down backends (standalone mode has no supervisor to say a tor is back). */
function recheckLoop(b: Balancer, logger: Logger): () => void {
  const t = setInterval(() => {
    for (const s of b.stats().backends) {
      if (s.up || s.draining) continue;
      b.markUp(s.name).catch((e: Error) => logger.debug({ backend: s.name, err: e.message }, 'still down'));
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
  const logger = stderrLogger(values['log-level'] ?? 'info');
  let balancer: Balancer;
  try {
    const staticCookie = await readCookieFile(values.cookie);
    balancer = createBalancer({ listen: values.listen ?? DEFAULT_LISTEN, staticCookie, sourceRange: values['source-range'], handshakeTimeoutMs, logger });
    for (const spec of values.backend) {
      const eq = spec.lastIndexOf('=');
      if (eq <= 0) throw new Error(`--backend ${spec}: expected ADDR=COOKIEFILE`);
      const address = spec.slice(0, eq);
      balancer.addBackend({ name: address, address, cookieFile: spec.slice(eq + 1) });
    }
    await balancer.start();
  } catch (e) {
    logger.error((e as Error).message);
    return 1;
  }
  for (const s of balancer.stats().backends) {
    await balancer.markUp(s.name).catch((e: Error) => logger.warn({ backend: s.name, err: e.message }, 'backend down for now'));
  }
  const stopRecheck = recheckLoop(balancer, logger);
  const why = await untilSignal();
  logger.info({ why, stats: balancer.stats() }, 'balancer stopping');
  stopRecheck();
  await balancer.stop();
  return 0;
}

const PT_NAME = 'extor_static_cookie';

/**
 * `bridgectl extor-static-cookie COOKIEFILE`: a managed server transport per pt-spec. Prints its
 * VERSION/SMETHOD lines on stdout for tor, logs on stderr, and runs until tor closes its stdin (with
 * TOR_PT_EXIT_ON_STDIN_CLOSE=1) or it gets SIGINT/SIGTERM.
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
  const pt = parsePtServerEnv(env, PT_NAME);
  if ('lines' in pt) {
    pt.lines.forEach(say);
    return pt.code;
  }
  const logger = stderrLogger(env.BRIDGECTL_LOG_LEVEL ?? 'warn');
  say('VERSION 1');
  let balancer: Balancer;
  try {
    const staticCookie = await readCookieFile(argv[0]!);
    balancer = createBalancer({ listen: formatEndpoint(pt.ok.bindAddr), staticCookie, logger });
    balancer.addBackend({ name: 'tor', address: formatEndpoint(pt.ok.extOrPort), cookieFile: pt.ok.authCookieFile });
    await balancer.markUp('tor');
    const addr = await balancer.start();
    say(`SMETHOD ${PT_NAME} ${formatEndpoint(addr)}`);
    say('SMETHODS DONE');
  } catch (e) {
    say(`SMETHOD-ERROR ${PT_NAME} ${(e as Error).message.replace(/\n/g, ' ')}`);
    say('SMETHODS DONE');
    return 1;
  }
  const stopRecheck = recheckLoop(balancer, logger);
  await untilSignal((stop) => {
    if (!pt.ok.exitOnStdinClose) return;
    stdin.on('end', stop);
    stdin.on('close', stop);
    stdin.on('error', stop);
    stdin.resume();
  });
  stopRecheck();
  await balancer.stop();
  return 0;
}

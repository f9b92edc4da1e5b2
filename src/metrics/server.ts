// The Prometheus endpoint: bridgectl's own metrics (process, twins, balancer, transport) plus every
// twin's tor MetricsPort output, re-labelled with twin="<twin>", in one scrape.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import { Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { parseEndpoint } from '../balancer/index.js';
import type { BridgeView } from './view.js';
import { registerBridgeMetrics } from './bridge-metrics.js';
import { collected } from './collected.js';
import { mergeExpositions, parseExposition, type LabelledSource } from './exposition.js';

export interface MetricsTarget {
  /** The twin's name, the value of its `twin` label. */
  name: string;
  /** Its tor MetricsPort (HOST:PORT), or null when it has none. */
  metricsAddress: string | null;
}

export interface MetricsServerOptions {
  /** HOST:PORT to listen on (port 0: any free port). */
  listen: string;
  logger: Logger;
  /** The bridge's state, asked at each scrape (the composition root hands it over). */
  getStatus: () => BridgeView;
  /** The twins to scrape, asked at every scrape (so added and removed twins follow). */
  instances: () => MetricsTarget[];
  /** How long one twin's MetricsPort may take to answer (default 2,000 ms). */
  torTimeoutMs?: number;
  /** The label naming the twin (default `twin`). */
  label?: string;
}

export interface MetricsServer {
  address: { host: string; port: number };
  /** The whole exposition, as a scrape of /metrics returns it. */
  render(): Promise<string>;
  stop(): Promise<void>;
}

/** Most bytes read from one twin's MetricsPort (tor's output is some tens of kilobytes). */
const MAX_TOR_METRICS_BYTES = 8 * 1024 * 1024;

/** GET http://<address>/metrics with a deadline; resolves the body or rejects with why. */
export function fetchTorMetrics(address: string, timeoutMs: number): Promise<string> {
  const { host, port } = parseEndpoint(address, 'tor MetricsPort');
  return new Promise((resolve, reject) => {
    const req = http.get({ host, port, path: '/metrics', timeout: timeoutMs, agent: false }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`HTTP ${res.statusCode}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_TOR_METRICS_BYTES) {
          req.destroy(new Error(`more than ${MAX_TOR_METRICS_BYTES} bytes`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      res.on('error', reject);
    });
    // `timeout` is an idle timeout; bound the whole exchange too.
    const deadline = setTimeout(() => req.destroy(new Error(`no complete answer within ${timeoutMs} ms`)), timeoutMs);
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.on('close', () => clearTimeout(deadline));
  });
}

interface TwinScrape {
  name: string;
  ok: boolean;
  seconds: number;
  invalidLines: number;
  source: LabelledSource | null;
}

/**
 * Starts the Prometheus endpoint. GET /metrics answers with the text format (0.0.4):
 *  - `process_*` and `nodejs_*`: the supervisor process (prom-client's default metrics);
 *  - `bridgectl_*`: the twins, the balancer (per twin with `twin=`) and the transport;
 *  - `bridgectl_tor_metrics_scrape_ok{twin=}` and friends: how the scrape of each twin went;
 *  - `tor_*`: each twin's own MetricsPort output with `twin="<twin>"` on every sample.
 * A twin that has no MetricsPort, does not answer in time or answers garbage costs only its own
 * `tor_*` samples (its scrape_ok is 0); the scrape itself always succeeds.
 */
export async function startMetricsServer(o: MetricsServerOptions): Promise<MetricsServer> {
  const label = o.label ?? 'twin';
  const timeoutMs = o.torTimeoutMs ?? 2_000;
  const log = o.logger;
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  registerBridgeMetrics(registry, o.getStatus, label);

  // Results of the latest scrape of the twins, for the bridgectl_tor_metrics_* gauges.
  let latest: TwinScrape[] = [];
  const perTwin = (name: string, help: string, value: (s: TwinScrape) => number): void => {
    new Gauge(collected<Gauge<string>>(registry, name, help, [label], (g) => {
      for (const s of latest) g.set({ [label]: s.name }, value(s));
    }));
  };
  perTwin('bridgectl_tor_metrics_scrape_ok', "1 when the twin's tor MetricsPort answered this scrape with a valid exposition", (s) => (s.ok ? 1 : 0));
  perTwin('bridgectl_tor_metrics_scrape_duration_seconds', "How long the twin's tor MetricsPort took to answer this scrape", (s) => s.seconds);
  perTwin('bridgectl_tor_metrics_invalid_lines', "Lines of the twin's tor MetricsPort output that were not valid exposition lines (dropped)", (s) => s.invalidLines);

  const scrapeTwin = async (t: MetricsTarget): Promise<TwinScrape> => {
    const t0 = process.hrtime.bigint();
    const seconds = (): number => Number(process.hrtime.bigint() - t0) / 1e9;
    if (!t.metricsAddress) return { name: t.name, ok: false, seconds: 0, invalidLines: 0, source: null };
    try {
      const exposition = parseExposition(await fetchTorMetrics(t.metricsAddress, timeoutMs));
      if (exposition.invalid.length) {
        log.debug({ [label]: t.name, invalid: exposition.invalid.slice(0, 5) }, 'invalid lines in tor MetricsPort output');
      }
      return {
        name: t.name,
        // Some odd lines cost those lines only; an answer with nothing valid in it (an error page) is a failure.
        ok: exposition.invalid.length === 0 || exposition.families.some((f) => f.samples.length > 0),
        seconds: seconds(),
        invalidLines: exposition.invalid.length,
        source: { value: t.name, exposition },
      };
    } catch (e) {
      log.debug({ [label]: t.name, address: t.metricsAddress, err: (e as Error).message }, 'cannot scrape tor MetricsPort');
      return { name: t.name, ok: false, seconds: seconds(), invalidLines: 0, source: null };
    }
  };

  const render = async (): Promise<string> => {
    const twins = await Promise.all(o.instances().map(scrapeTwin));
    latest = twins;
    const own = await registry.metrics();
    const ownNames = new Set((await registry.getMetricsAsJSON()).map((m) => m.name));
    const tor = mergeExpositions(
      twins.flatMap((t) => (t.source ? [t.source] : [])),
      { label, exclude: ownNames },
    );
    return own.endsWith('\n') || !own ? own + tor : `${own}\n${tor}`;
  };

  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
      return;
    }
    if (path === '/') {
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end('bridgectl metrics: see /metrics\n');
      return;
    }
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found; try /metrics\n');
      return;
    }
    render().then(
      (body) => {
        res.writeHead(200, { 'content-type': registry.contentType });
        res.end(req.method === 'HEAD' ? undefined : body);
      },
      (e: Error) => {
        log.warn({ err: e.message }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`scrape failed: ${e.message}\n`);
      },
    );
  });
  const { host, port } = parseEndpoint(o.listen, 'metrics.listen', true);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address() as AddressInfo;
  log.info({ listen: `${a.address}:${a.port}` }, 'metrics endpoint listening');
  return {
    address: { host: a.address, port: a.port },
    render,
    async stop() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

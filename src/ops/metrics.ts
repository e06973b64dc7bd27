// --metrics: a small HTTP listener in the master. /metrics is the Prometheus text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/), written by hand; /health answers 200 only while
// at least one worker is ready and no stop has begun, else 503 (load balancers and orchestrators take a worker
// set out of rotation on it).
import http from 'node:http';
import type { Logger } from 'pino';
import type { AppMetrics } from './app-metrics.js';
import { formatSocketAddress, type SocketAddress } from '../address.js';
import { RESTART_CAUSES, type StatsCollector } from './collector.js';
import { LATENCY_BUCKETS, STATUS_CLASSES } from './counters.js';
import { listenLocal, startStatsServer, type OpsListener } from './stats-server.js';

export const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** The /metrics body. Counters include what exited workers had reported, so they never go down. */
export function renderMetrics(collector: StatsCollector): string {
  const totals = collector.totals();
  const out: string[] = [];
  const family = (name: string, type: 'counter' | 'gauge' | 'histogram', help: string): void => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
  };

  family('nodeuwsgi_requests_total', 'counter', 'Requests finished, by status class (none: the peer left before a response).');
  STATUS_CLASSES.forEach((cls, i) => {
    const n = totals.statuses[i]!;
    // The usual classes always, so that rate() has a series from the start; the rare ones once seen.
    if (n > 0 || (cls !== '1xx' && cls !== 'none')) out.push(`nodeuwsgi_requests_total{status="${cls}"} ${n}`);
  });

  family('nodeuwsgi_request_duration_seconds', 'histogram', 'Time from the request head to the end of the response, in seconds.');
  let cumulative = 0;
  LATENCY_BUCKETS.forEach((bound, i) => {
    cumulative += totals.buckets[i]!;
    out.push(`nodeuwsgi_request_duration_seconds_bucket{le="${bound}"} ${cumulative}`);
  });
  cumulative += totals.buckets[LATENCY_BUCKETS.length]!;
  out.push(`nodeuwsgi_request_duration_seconds_bucket{le="+Inf"} ${cumulative}`);
  out.push(`nodeuwsgi_request_duration_seconds_sum ${number(totals.latencySum)}`);
  out.push(`nodeuwsgi_request_duration_seconds_count ${cumulative}`);

  family('nodeuwsgi_exceptions_total', 'counter', 'App exceptions: 500 answers and uncaught exceptions or rejections in workers.');
  out.push(`nodeuwsgi_exceptions_total ${totals.exceptions}`);

  family('nodeuwsgi_tls_handshake_failures_total', 'counter', 'TLS handshakes on --ssl-socket listeners that failed (ERR_TLS_HANDSHAKE), over all workers.');
  out.push(`nodeuwsgi_tls_handshake_failures_total ${totals.tlsHandshakeFailures}`);

  family('nodeuwsgi_response_bytes_total', 'counter', 'Bytes written to the front server.');
  out.push(`nodeuwsgi_response_bytes_total ${totals.tx}`);

  family('nodeuwsgi_inflight', 'gauge', 'Requests in flight, as of the workers\' last heartbeats.');
  out.push(`nodeuwsgi_inflight ${collector.inflight()}`);

  family('nodeuwsgi_workers_ready', 'gauge', 'Workers ready to serve.');
  out.push(`nodeuwsgi_workers_ready ${collector.readyWorkers()}`);

  family('nodeuwsgi_worker_restarts_total', 'counter', 'Worker processes replaced, by cause.');
  const restarts = collector.restartCounts();
  for (const cause of RESTART_CAUSES) {
    const n = restarts.get(cause) ?? 0;
    if (n > 0 || cause !== 'boot-timeout') out.push(`nodeuwsgi_worker_restarts_total{cause="${cause}"} ${n}`);
  }

  family('nodeuwsgi_worker_rss_bytes', 'gauge', 'Resident memory of each worker (by its slot, as in --stats), in bytes.');
  for (const { slot, rss } of collector.rssBySlot()) out.push(`nodeuwsgi_worker_rss_bytes{worker="${slot}"} ${rss}`);

  const queues = collector.queueReadings().filter((r) => r.queue !== undefined);
  if (queues.length > 0) {
    family('nodeuwsgi_listen_queue', 'gauge', 'Connections waiting in a listening socket\'s accept queue (Unix sockets: sock_diag, through ss).');
    for (const r of queues) out.push(`nodeuwsgi_listen_queue{socket="${labelValue(r.address)}",proto="${r.proto}"} ${r.queue}`);
    family('nodeuwsgi_listen_queue_backlog', 'gauge', 'The accept queue\'s capacity (--backlog, capped at net.core.somaxconn); beyond it connections are refused.');
    for (const r of queues) out.push(`nodeuwsgi_listen_queue_backlog{socket="${labelValue(r.address)}",proto="${r.proto}"} ${r.backlog}`);
  }

  return `${out.join('\n')}\n`;
}

/** A label value in the text format: backslash, double quote and newline escaped. */
function labelValue(value: string): string {
  return value.replace(/[\\"\n]/g, (c) => (c === '\n' ? '\\n' : `\\${c}`));
}

/** Prometheus floats: plain decimal, no exponent surprises for the usual magnitudes. */
function number(value: number): string {
  return Number.isFinite(value) ? String(Math.round(value * 1e6) / 1e6) : 'NaN';
}

/** The app's aggregated prom-client metrics after node-uwsgi's own; only node-uwsgi's when they cannot be had. */
async function appMetricsText(app: AppMetrics | undefined, collector: StatsCollector, log: Logger, state: { warnedAt: number }): Promise<string> {
  if (app === undefined) return '';
  try {
    return await app.render(collector.loadedWorkers());
  } catch (err) {
    const now = Date.now();
    if (now - state.warnedAt >= 60_000) {
      state.warnedAt = now;
      log.warn({ code: 'ERR_APP_METRICS', err }, "cannot aggregate the app's metrics");
    }
    return '';
  }
}

export async function startMetricsServer(address: SocketAddress, collector: StatsCollector, log: Logger, app?: AppMetrics): Promise<OpsListener> {
  const warned = { warnedAt: -Infinity };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    const head = req.method === 'HEAD';
    if (req.method !== 'GET' && !head) {
      res.writeHead(405, { Allow: 'GET, HEAD', 'Content-Type': 'text/plain; charset=utf-8' }).end('method not allowed\n');
      return;
    }
    const reply = (status: number, type: string, body: string): void => {
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
      res.end(head ? undefined : body);
    };
    if (path === '/metrics') {
      void Promise.all([collector.freshQueues(), appMetricsText(app, collector, log, warned)]).then(([, appText]) =>
        reply(200, CONTENT_TYPE, renderMetrics(collector) + appText),
      );
    } else if (path === '/health') {
      const status = collector.healthy() ? 200 : 503;
      const state = status === 200 ? 'ok' : collector.stopping ? 'stopping' : 'unavailable';
      reply(status, 'application/json', `${JSON.stringify({ status: state, ready: collector.readyWorkers() })}\n`);
    } else {
      reply(404, 'text/plain; charset=utf-8', 'not found: /metrics or /health\n');
    }
  });
  server.on('clientError', (err, socket) => {
    log.debug({ err }, 'metrics client error');
    socket.destroy();
  });
  const listener = await listenLocal(server, address);
  return {
    close() {
      listener.close();
      server.closeAllConnections();
    },
  };
}

/** Starts --stats and --metrics where asked (neither listens otherwise); close() stops both. */
export async function startOpsListeners(
  addresses: { stats: SocketAddress | undefined; metrics: SocketAddress | undefined },
  collector: StatsCollector,
  log: Logger,
  app?: AppMetrics,
): Promise<OpsListener> {
  const open: OpsListener[] = [];
  const close = (): void => {
    for (const listener of open.splice(0)) listener.close();
  };
  try {
    if (addresses.stats) {
      open.push(await startStatsServer(addresses.stats, collector, log));
      log.info({ address: formatSocketAddress(addresses.stats) }, 'stats server listening');
    }
    if (addresses.metrics) {
      open.push(await startMetricsServer(addresses.metrics, collector, log, app));
      log.info({ address: formatSocketAddress(addresses.metrics) }, 'metrics and health listening');
    }
  } catch (err) {
    close();
    throw err;
  }
  return { close };
}

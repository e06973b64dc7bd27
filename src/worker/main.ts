// A worker process: loads the app, serves the master's listening sockets, sends heartbeats, drains on request.
// Started by the master through node:cluster with its configuration in NODE_UWSGI_WORKER; never run by hand.
import cluster from 'node:cluster';
import { hostname } from 'node:os';
import { Worker } from 'node:worker_threads';
import { loadApp } from '../app-loader/index.js';
import { startupTrace } from '../app-loader/trace.js';
import { isUwsgiError } from '../errors.js';
import { createHandler } from '../handler.js';
import { createLogger } from '../log.js';
import { WORKER_CONFIG_ENV, type InflightEntry, type MasterMessage, type WorkerConfig, type WorkerMessage } from '../master/messages.js';
import { buildAllowList } from '../server/allow.js';
import { createServer, type UwsgiServer } from '../server/server.js';
import type { TlsMaterial } from '../server/tls.js';
import { loadNative, type NativeAddon } from '../server/native.js';
import type { Logger } from 'pino';
import type { SocketAddress } from '../address.js';
import { createHttpListener, type HttpListener } from '../server/http.js';
import { InflightTable } from './inflight.js';
import { installListenGuard } from './listen-guard.js';
import { installOwnRequest } from '../interfaces/fetch-request.js';
import { Response as OwnResponse } from '../interfaces/fetch-response.js';
import { RssWatch, watchRss } from './rss.js';
import { FdPressure, MemoryReader, fileLimit } from './resources.js';
import { workerStats } from '../ops/counters.js';
import { createWorkerMetrics } from '../ops/worker-metrics.js';

const HEARTBEAT_INFLIGHT = 10;

function send(message: WorkerMessage): Promise<void> {
  return new Promise((resolve) => {
    if (!process.connected || !process.send) return resolve();
    process.send(message, undefined, {}, () => resolve());
  });
}

function nativeOrWarn(log: Logger): NativeAddon | undefined {
  const load = loadNative();
  if (load.addon === undefined) log.warn({ reason: load.reason }, 'accept: js');
  return load.addon;
}

/** The addon's acceptAll where a uwsgi socket is an inherited fd served in JavaScript (server.ts close). */
function acceptAllOf(sockets: readonly SocketAddress[]): ((fd: number) => number[]) | undefined {
  if (!sockets.some((address) => address.kind === 'fd')) return undefined;
  const addon = loadNative().addon;
  return addon?.acceptAll === undefined ? undefined : (fd) => addon.acceptAll!(fd);
}

async function main(): Promise<void> {
  const raw = process.env[WORKER_CONFIG_ENV];
  if (raw === undefined || !process.send) {
    process.stderr.write('node-uwsgi: the worker entry is started by the master (node-uwsgi <app>), not by hand\n');
    process.exit(2);
  }
  const config = JSON.parse(raw) as WorkerConfig;
  const { options } = config;
  const logging = createLogger(options, { pid: process.pid, worker: config.id });
  const { log } = logging;
  // The master passes logrotate's SIGUSR1 on as a message; a USR1 sent to this process itself (systemctl kill to
  // the whole cgroup) reopens too rather than open Node's inspector.
  const reopenLog = (): void => {
    logging.reopen();
    if (options.logFile !== undefined) log.info({ file: options.logFile }, 'log file reopened');
  };
  process.on('SIGUSR1', () => setImmediate(reopenLog));
  const started = process.hrtime.bigint();

  // The terminal sends INT (Ctrl-C) and others to the whole process group; the master decides what happens.
  for (const signal of ['SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGTTIN', 'SIGTTOU', 'SIGUSR2'] as const) process.on(signal, () => {});
  process.on('unhandledRejection', (err) => {
    table.counters.exceptions++;
    log.error({ err, code: 'ERR_APP_EXCEPTION' }, 'unhandled promise rejection in the app');
  });
  process.on('uncaughtException', (err) => {
    table.counters.exceptions++;
    log.error({ err, code: 'ERR_APP_EXCEPTION' }, 'uncaught exception in the app');
  });

  // --ssl-socket: the certificates come from the master (which read and checked the files), asked for once this
  // listener is in place; later ones (SIGHUP) replace the secure context for the connections that follow.
  let tlsMaterial: TlsMaterial[] | undefined;
  let tlsServer: UwsgiServer | undefined;
  const tlsReady =
    options.sslSocket.length === 0
      ? undefined
      : new Promise<TlsMaterial[]>((resolve) => {
          process.on('message', (message: MasterMessage) => {
            if (message?.t !== 'tls') return;
            tlsMaterial = message.material;
            resolve(message.material);
            if (tlsServer !== undefined) updateTls(tlsServer, message.material);
          });
          void send({ t: 'tls-get' });
        });
  const updateTls = (server: UwsgiServer, material: TlsMaterial[]): void => {
    material.forEach((m, i) => server.updateTls(i, m));
    log.debug({ serials: material.map((m) => m.serial) }, 'TLS certificates updated');
  };

  const table = new InflightTable(options.harakiri > 0);
  // Opened now, while descriptors are free: the heartbeat must not need one (src/worker/resources.ts).
  const memory = new MemoryReader();
  const fds = new FdPressure(log, fileLimit());
  let server: UwsgiServer;
  let httpListener: HttpListener | undefined;
  let loaded;
  // Before the app is imported: its own listen() opens nothing (src/worker/listen-guard.ts).
  const listenGuard = installListenGuard((asked) =>
    log.warn({ code: 'ERR_APP_LISTEN', address: asked.label }, 'the app called listen(): nothing was opened, node-uwsgi serves the app on its own sockets'),
  );
  // Before the app is imported, as @hono/node-server's default (a patch of the platform): the global Response is
  // node-uwsgi's own (unless --real-response), the global Request and fetch take the fetch adapter's light Request
  // (unless --real-request). Put back once the app is loaded, unless it is a fetch app.
  const platformResponse = globalThis.Response;
  if (!options.realResponse) globalThis.Response = OwnResponse;
  const restoreRequest = options.realRequest ? undefined : installOwnRequest();
  try {
    loaded = await loadApp(config.spec, { cwd: config.cwd, interface: options.interface, appListens: listenGuard.asked });
    if (loaded.interface !== 'fetch') {
      globalThis.Response = platformResponse;
      restoreRequest?.();
    }
    const handler = createHandler(loaded);
    // What the uwsgi sockets and the --http listeners share.
    const common = {
      handler,
      log,
      accessLog: options.accessLog,
      chmodSocket: options.chmodSocket,
      multiprocess: config.workers > 1,
      shared: true,
      requestTimeout: options.requestTimeout * 1000,
      headerTimeout: options.headerTimeout * 1000,
      bodyTimeout: options.bodyTimeout * 1000,
      sendTimeout: options.sendTimeout * 1000,
      tracker: table,
      allowList: buildAllowList(options.allowFrom ?? []),
      backlog: options.backlog,
      onAcceptError: (err: NodeJS.ErrnoException) => fds.acceptError(err),
    };
    server = createServer({
      ...common,
      // The master chose the accept path and bound the sockets (master.ts bindNative); a worker whose addon does
      // not load (it should: the same file) listens on the inherited fds in JavaScript.
      native: config.nativeFds.length > 0 ? nativeOrWarn(log) : undefined,
      nativeFds: config.nativeFds,
      acceptAll: acceptAllOf([...options.socket, ...options.sslSocket.map((ssl) => ssl.address)]),
      limits: { maxVarsSize: options.maxVarsSize, maxVars: options.maxVars, maxBodySize: options.maxBodySize },
    });
    await server.listen(options.socket);
    if (tlsReady !== undefined) {
      const material = await tlsReady;
      await server.listenTls(options.sslSocket.map((ssl, i) => ({ address: ssl.address, material: material[i]!, mutual: ssl.ca !== undefined })));
      tlsServer = server;
      if (tlsMaterial !== material) updateTls(server, tlsMaterial!);
    }
    httpListener = createHttpListener({ ...common, maxBodySize: options.maxBodySize });
    await httpListener.listen(options.http ?? []);
  } catch (err) {
    const code = isUwsgiError(err) ? err.code : undefined;
    log.debug({ err, code }, 'worker failed to start');
    await send({ t: 'boot-failed', code, message: err instanceof Error ? err.message : String(err), at: startupTrace(err) });
    process.exit(3);
  }

  if (options.harakiri > 0) startWatchdog(table, options.harakiri * 1000, config.id, options.logFile);
  // The watchdog's view of the event loop: this tick stops when the loop is blocked.
  setInterval(() => table.tick(), 50).unref();

  // --max-rss: an early heartbeat when over the limit (src/worker/rss.ts).
  const rssWatch = options.maxRss > 0 ? new RssWatch(options.maxRss * 1024 * 1024, () => memory.read().rss) : undefined;
  const beat = (): Promise<void> => {
    rssWatch?.reported(Date.now());
    const inflight: InflightEntry[] = table
      .list()
      .slice(0, HEARTBEAT_INFLIGHT)
      .map((r) => [r.method, r.uri, r.startedAt]);
    fds.check();
    const { rss, vsz } = memory.read();
    const stats = workerStats(table.counters, table.busy, vsz, server.tlsFailures);
    return send({ t: 'hb', requests: table.requests, rss, inflight, stats });
  };
  const heartbeat = setInterval(() => void beat(), config.heartbeatMs);
  // --metrics: the app's prom-client metrics, on the master's asking (src/ops/worker-metrics.ts).
  const appMetrics = options.metrics ? await createWorkerMetrics(loaded.file, options.metricsProcess) : undefined;
  const reportMetrics = async (n: number): Promise<void> => {
    if (appMetrics === undefined) return;
    try {
      await send({ t: 'metrics', n, ...(await appMetrics.collect()) });
    } catch (err) {
      // The master leaves this worker out of the scrape once its wait is over.
      log.debug({ err }, 'cannot collect the app\'s metrics');
    }
  };
  // Recycling starts the moment --max-requests is reached, not at the next heartbeat.
  table.threshold = config.maxRequests;
  table.onThreshold = () => void beat();
  const stopRssWatch = rssWatch ? watchRss(rssWatch, () => void beat()) : undefined;

  let draining = false;
  /** `serveQueue`: nobody else will accept on the sockets (a stop, the master gone): what is queued is served. */
  const drain = (why: string, serveQueue: boolean): void => {
    if (draining) return;
    draining = true;
    stopRssWatch?.();
    log.debug({ why }, 'worker draining: no new connections, finishing in-flight requests');
    void Promise.all([server.close(serveQueue), httpListener?.close()]).then(async () => {
      clearInterval(heartbeat);
      // The last counters, so that --stats and --metrics lose nothing of a worker that is replaced.
      await beat();
      await reportMetrics(0);
      // The log lines still on their way, but no longer than LOG_FLUSH_MS: a full disk does not hold the exit.
      await logging.flush();
      process.exit(0);
    });
  };
  process.on('message', (message: MasterMessage) => {
    if (message?.t === 'drain') drain('master', message.stop === true);
    else if (message?.t === 'reopen-log') reopenLog();
    else if (message?.t === 'metrics-get') void reportMetrics(message.n);
  });
  process.on('SIGTERM', () => drain('SIGTERM', true));
  // The master is gone (SIGKILL, the OOM killer): nothing will route or watch this worker any more. node:cluster
  // would exit it at once, cutting its requests in flight (502 through nginx): its own 'disconnect' listener,
  // added before any of ours, calls process.exit unless worker.exitedAfterDisconnect is set
  // (lib/internal/cluster/child.js, _setupWorker, in Node 20 and 24). Set, which says that this exit follows the
  // disconnect by design, the worker drains instead, and its own --graceful-timeout bounds it: no master will.
  // Set here, not at start: a worker that loses its master while booting has nothing to finish, and exits then.
  // Nothing else in the worker reads the flag, and the master never disconnects a worker (it sends 'drain').
  if (cluster.worker) cluster.worker.exitedAfterDisconnect = true;
  process.once('disconnect', () => {
    log.warn({ inflight: table.busy, gracefulTimeoutMs: options.gracefulTimeout * 1000 }, 'the master is gone: finishing the requests in flight, then exiting');
    // Every worker of this master stops now: no new handshakes on the sockets it bound (what its stop would have
    // done), so that the last worker's close finds the queue empty (README "Deploys that lose nothing").
    const addon = config.boundFds?.length ? loadNative().addon : undefined;
    for (const fd of config.boundFds ?? []) addon?.refuseNew?.(fd);
    drain('master gone', true);
    setTimeout(() => {
      log.warn({ inflight: table.busy, gracefulTimeoutMs: options.gracefulTimeout * 1000 }, 'the master is gone and --graceful-timeout has passed: exiting');
      process.exit(1);
    }, options.gracefulTimeout * 1000);
  });

  await send({
    t: 'ready',
    app: { file: loaded.file, exportName: loaded.exportName, interface: loaded.interface, detectedBy: loaded.detectedBy },
    bootMs: Number(process.hrtime.bigint() - started) / 1e6,
  });
}

function startWatchdog(table: InflightTable, harakiriMs: number, worker: number, logFile: string | undefined): void {
  const thread = new Worker(new URL('./watchdog.js', import.meta.url), {
    workerData: { buffer: table.buffer, harakiriMs, worker, pid: process.pid, hostname: hostname(), logFile },
    // Its own small heap: it only reads the table and writes a line.
    resourceLimits: { maxOldGenerationSizeMb: 16 },
  });
  thread.unref();
  thread.on('error', () => {});
}

void main();

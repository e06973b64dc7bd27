// The master process: binds the policy (policy.ts) to node:cluster, signals and timers. It owns the listening
// sockets and never runs app code: workers load the app (src/worker/main.ts).
//
// How connections reach workers: a shared listening handle (cluster.SCHED_NONE): each worker accepts on the
// same socket, so a worker whose event loop is blocked simply stops accepting and the others take its share;
// with round-robin (SCHED_RR) the master accepts every connection and hands it to the next worker in turn,
// blocked or not, through an IPC message per connection. uwsgi opens one connection per request, so round-robin
// pays a handle transfer per request: less than half the throughput at more than twice the CPU (bench/README.md,
// "Workers"). Under --harakiri the shared handle also keeps the loss small (the harakiri test counts it).
// NODE_UWSGI_SCHED=rr selects round-robin, for measuring.
import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import { closeSync, unlinkSync } from 'node:fs';
import { type Options } from '../options.js';
import { formatSocketAddress, type SocketAddress, type SslSocket } from '../address.js';
import { requireAllowList } from '../server/allow.js';
import { UwsgiError, codeOf } from '../errors.js';
import { effectiveBacklog, prepareAddress, setSocketMode } from '../server/listen.js';
import { adoptSocket, bindSocket, chooseAccept, loadNative, type NativeAddon } from '../server/native.js';
import { expiryWarning, loadTlsMaterial, type TlsMaterial } from '../server/tls.js';
import { WORKER_CONFIG_ENV, heartbeatInterval, isWorkerMessage, type MasterMessage, type ReadyInfo, type WorkerConfig } from './messages.js';
import { Policy, type Action, type PolicyEvent } from './policy.js';
import { MAX_DIRECTORIES, watchRoot, watchTree, type TreeWatcher } from './watch.js';
import { StatsCollector, restartCause } from '../ops/collector.js';
import { CHECK_MS, ListenQueues, type ReadUnixQueue } from '../ops/listen-queue.js';
import { AppMetrics } from '../ops/app-metrics.js';
import { startOpsListeners } from '../ops/metrics.js';
import { requireAllowListForFds, workerStdio } from '../ops/activation.js';
import { createSystemdNotifier } from '../ops/systemd.js';

const TICK_MS = 100;
const BOOT_TIMEOUT_MS = 60_000;
const RSS_SAMPLES = 3;
// Beyond one heartbeat interval, how much longer the master waits before a harakiri kill, so that the worker's
// watchdog thread (50 ms checks) has logged the requests in flight. Without any grace the kill came 1.55-1.99 s
// into a 2 s block (5 runs, --harakiri 2, heartbeats every 500 ms) and the watchdog's line never appeared.
const HARAKIRI_WATCHDOG_MARGIN_MS = 500;
const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT', 'SIGHUP', 'SIGTTIN', 'SIGTTOU'] as const;

export interface MasterConfig {
  spec: string;
  cwd: string;
  options: Options;
  log: Logger;
  /** Reopens --log-file (src/log.ts), on SIGUSR1; the workers get the signal passed on. */
  reopenLog?: () => void;
}

export function workerCount(option: Options['workers']): number {
  return option === 'auto' ? availableParallelism() : option;
}

/** Runs until the policy says exit; resolves with the exit code. */
export async function runMaster(config: MasterConfig): Promise<number> {
  const { options, log } = config;
  const started = process.hrtime.bigint();
  const workers = workerCount(options.workers);
  const sslAddresses = options.sslSocket.map((ssl) => ssl.address);
  /** Every uwsgi socket, plain ones first (the order of --stats and --metrics). */
  const uwsgiAddresses = [...options.socket, ...sslAddresses];
  requireAllowList([...uwsgiAddresses, ...options.http], options.allowFrom);
  requireAllowListForFds(uwsgiAddresses, options.allowFrom);
  // --ssl-socket: the files are read and checked here, once (an unreadable or mismatched one stops the start, naming
  // it); the workers get the same bytes over IPC, and new ones at each SIGHUP (reloadTls).
  const tlsMaterial = options.sslSocket.map((ssl) => loadTlsMaterial(ssl));
  tlsMaterial.forEach((material, i) => warnExpiry(log, options.sslSocket[i]!, material));
  for (const address of uwsgiAddresses) await prepareAddress(address);
  for (const address of options.http ?? []) await prepareAddress(address);
  // --accept: with the native addon the master binds the uwsgi Unix sockets itself (it accepts nothing) and every
  // worker inherits them and accepts on them natively (server/native.ts).
  const native = bindNative(options, log);
  /** What each worker inherits, plain then TLS. */
  const workerSockets = [...native.sockets, ...native.sslSockets.map((ssl) => ssl.address)];

  cluster.schedulingPolicy = process.env.NODE_UWSGI_SCHED === 'rr' ? cluster.SCHED_RR : cluster.SCHED_NONE;
  cluster.setupPrimary({
    exec: fileURLToPath(new URL('../worker/main.js', import.meta.url)),
    args: [],
    silent: false,
    execArgv: workerExecArgv(process.execArgv),
    // Inherited fds (socket activation, fd://N) go to each worker at their own numbers: ops/activation.ts.
    stdio: workerStdio(workerSockets),
  });

  const heartbeatMs = heartbeatInterval(options.harakiri * 1000);
  const policy = new Policy({
    workers,
    gracefulTimeout: options.gracefulTimeout * 1000,
    harakiri: options.harakiri * 1000,
    harakiriGrace: heartbeatMs + HARAKIRI_WATCHDOG_MARGIN_MS,
    bootTimeout: BOOT_TIMEOUT_MS,
    maxRequests: options.maxRequests,
    maxRequestsJitter: options.maxRequestsJitter,
    maxRss: options.maxRss * 1024 * 1024,
    rssSamples: RSS_SAMPLES,
    reloadBatch: options.reloadBatch,
    // Sockets the master bound (native accept) or inherited (socket activation) outlive any worker; --http
    // listeners are node:cluster's, closed with the last worker holding them.
    socketsOutliveWorkers:
      workerSockets.every((address) => address.kind === 'fd') && (options.http ?? []).length === 0,
    random: Math.random,
  });
  const handles = new Map<number, Worker>();
  // --stats and --metrics: listening before the first worker starts, so that /health says 503 until one is ready.
  // The listen queues, for --stats, --metrics and the "listen queue full" warning (ERR_LISTEN_QUEUE_FULL).
  const queues = new ListenQueues({ sockets: uwsgiAddresses, http: options.http, backlog: options.backlog, cwd: config.cwd, log, readUnix: native.unixQueue });
  const stats = new StatsCollector({ state: (id) => policy.workers.get(id)?.state, ready: () => policy.readyWorkers(), sockets: uwsgiAddresses, queues, cwd: config.cwd });
  // The app's prom-client metrics, asked of the workers at each scrape (src/ops/app-metrics.ts).
  const appMetrics = options.metrics
    ? new AppMetrics((id, n) => {
        const worker = handles.get(id);
        if (!worker?.isConnected()) return false;
        worker.send({ t: 'metrics-get', n } satisfies MasterMessage);
        return true;
      })
    : undefined;
  const opsListeners = await startOpsListeners({ stats: options.stats, metrics: options.metrics }, stats, log, appMetrics);
  // Started once nothing can fail any more before the exit path that clears it.
  const queueCheck = setInterval(() => void queues.fresh(CHECK_MS / 2), CHECK_MS);
  let app: ReadyInfo | undefined;
  let bootError: { message: string; at: string[] } | undefined;
  let resolveExit: (code: number) => void = () => {};
  const exited = new Promise<number>((resolve) => (resolveExit = resolve));

  // Type=notify: READY/RELOADING/STOPPING from the policy's actions, STATUS and WATCHDOG from the tick.
  const systemd = createSystemdNotifier(
    { readyWorkers: () => stats.readyWorkers(), requestsServed: () => stats.requestsServed(), get desiredWorkers() { return policy.desiredWorkers; } },
    log,
  );
  const dispatch = (event: PolicyEvent): void => {
    for (const action of policy.handle(event, Date.now())) {
      apply(action);
      systemd.action(action);
    }
  };

  const apply = (action: Action): void => {
    switch (action.type) {
      case 'spawn': {
        const workerConfig: WorkerConfig = {
          spec: config.spec,
          cwd: config.cwd,
          options: { ...options, socket: native.sockets, sslSocket: native.sslSockets },
          nativeFds: native.fds,
          boundFds: native.boundFds,
          id: action.id,
          generation: action.generation,
          workers,
          heartbeatMs,
          maxRequests: action.maxRequests,
        };
        const worker = cluster.fork({ [WORKER_CONFIG_ENV]: JSON.stringify(workerConfig) });
        handles.set(action.id, worker);
        stats.spawned(action.id, worker.process.pid ?? 0, policy.workers.get(action.id)?.replaces);
        const id = action.id;
        worker.on('message', (message: unknown) => {
          if (!isWorkerMessage(message)) return;
          switch (message.t) {
            case 'ready':
              app ??= message.app;
              stats.appReady(id, message.bootMs);
              dispatch({ type: 'ready', id });
              break;
            case 'boot-failed':
              bootError ??= { message: message.message, at: message.at ?? [] };
              log.debug({ worker: id, errorCode: message.code, error: message.message }, 'worker could not start the app');
              dispatch({ type: 'boot-failed', id, code: message.code, message: message.message, at: message.at });
              break;
            case 'tls-get':
              if (worker.isConnected()) worker.send({ t: 'tls', material: tlsMaterial } satisfies MasterMessage);
              break;
            case 'metrics':
              appMetrics?.answer(id, stats.slotOf(id), message.n, { app: message.app, process: message.process });
              break;
            case 'hb':
              stats.heartbeat(id, message.requests, message.rss, message.stats);
              dispatch({
                type: 'heartbeat',
                id,
                requests: message.requests,
                rss: message.rss,
                inflight: message.inflight.map(([method, uri, startedAt]) => ({ method, uri, startedAt })),
              });
              break;
          }
        });
        worker.on('exit', (code, signal) => {
          handles.delete(id);
          appMetrics?.exited(id);
          stats.exited(id, restartCause(policy.workers.get(id)));
          dispatch({ type: 'exit', id, code, signal });
        });
        worker.on('error', (err) => log.debug({ err, worker: id }, 'worker IPC error'));
        break;
      }
      case 'drain': {
        const worker = handles.get(action.id);
        if (worker?.isConnected()) worker.send({ t: 'drain', stop: action.cause === 'stop' } satisfies MasterMessage);
        else worker?.process.kill('SIGTERM');
        break;
      }
      case 'kill':
        handles.get(action.id)?.process.kill('SIGKILL');
        break;
      case 'ready':
        if (action.reason === 'boot') {
          native.announce();
          for (const address of options.socket) log.info({ address: formatSocketAddress(address) }, 'listening');
          tlsMaterial.forEach((material, i) =>
            log.info({ address: formatSocketAddress(sslAddresses[i]!), tls: true, mutual: options.sslSocket[i]!.ca !== undefined, serial: material.serial, notAfter: material.notAfter }, 'listening'),
          );
          for (const address of options.http ?? []) log.info({ address: formatSocketAddress(address), protocol: 'http' }, 'listening');
          log.info(
            {
              app: app?.file,
              export: app?.exportName,
              interface: app?.interface,
              detectedBy: app?.detectedBy,
              sockets: uwsgiAddresses.map(formatSocketAddress),
              workers: action.workers,
              bootMs: Number(process.hrtime.bigint() - started) / 1e6,
              node: process.version,
            },
            'ready',
          );
        }
        break;
      case 'stopping':
        stats.stopping = true;
        // New connections are refused at once (the draining workers still serve what they accepted).
        native.unlink();
        break;
      case 'exit':
        clearInterval(tick);
        clearInterval(queueCheck);
        opsListeners.close();
        for (const signal of SIGNALS) process.off(signal, onSignal);
        process.off('SIGUSR1', onReopen);
        changes?.close();
        native.unlink();
        if (action.code !== 0 && bootError !== undefined) {
          process.stderr.write(`node-uwsgi: ${bootError.message}\n${bootError.at.map((line) => `    ${line}\n`).join('')}`);
        }
        void systemd.flush().then(() => resolveExit(action.code));
        break;
      case 'log':
        log[action.level](action.fields, action.msg);
        break;
    }
  };

  // Unix sockets are created by the first worker's listen (through the master's shared handle): set their mode
  // (--chmod-socket, else no access for others) as soon as they exist.
  cluster.on('listening', () => {
    for (const address of [...uwsgiAddresses, ...(options.http ?? [])]) {
      if (address.kind !== 'unix') continue;
      try {
        setSocketMode(address.path, options.chmodSocket);
      } catch (err) {
        log.warn({ err, address: formatSocketAddress(address) }, 'cannot chmod the socket');
      }
    }
  });

  /** --ssl-socket: the files again, at SIGHUP (and --reload-on-change). A file that cannot be used keeps the
   * previous material (ERR_TLS_RELOAD); new material goes to every worker at once (connections from then on get
   * it) and to the workers the reload starts. */
  const reloadTls = (): void => {
    options.sslSocket.forEach((ssl, i) => {
      let material: TlsMaterial;
      try {
        material = loadTlsMaterial(ssl);
      } catch (err) {
        const failure = new UwsgiError('ERR_TLS_RELOAD', { address: formatSocketAddress(ssl.address), detail: (err as Error).message });
        log.warn({ code: failure.code, cause: codeOf(err), address: formatSocketAddress(ssl.address), serial: tlsMaterial[i]!.serial }, failure.message);
        return;
      }
      const previous = tlsMaterial[i]!.serial;
      tlsMaterial[i] = material;
      log.info({ address: formatSocketAddress(ssl.address), serial: material.serial, previous, notAfter: material.notAfter }, 'TLS certificates reloaded');
      warnExpiry(log, ssl, material);
    });
    if (options.sslSocket.length === 0) return;
    for (const worker of handles.values()) {
      if (worker.isConnected()) worker.send({ t: 'tls', material: tlsMaterial } satisfies MasterMessage);
    }
  };

  // Signal handlers only enqueue: the policy runs outside them.
  const onSignal = (signal: NodeJS.Signals): void => {
    setImmediate(() => {
      if (signal === 'SIGHUP') reloadTls();
      dispatch({ type: 'signal', signal: signal as (typeof SIGNALS)[number] });
    });
  };
  for (const signal of SIGNALS) process.on(signal, onSignal);
  // SIGUSR1 (logrotate's postrotate): reopen --log-file here and, over IPC, in every worker (a signal could reach
  // a worker still booting, before its listener, and open Node's inspector there). cli.ts has already replaced
  // USR1's default (the inspector) in the master.
  const onReopen = (): void => {
    setImmediate(() => {
      config.reopenLog?.();
      for (const worker of handles.values()) {
        if (worker.isConnected()) worker.send({ t: 'reopen-log' } satisfies MasterMessage);
      }
      if (options.logFile !== undefined) log.info({ file: options.logFile, workers: handles.size }, 'log file reopened');
    });
  };
  process.on('SIGUSR1', onReopen);
  // --reload-on-change: the same rolling reload as SIGHUP, for the files of the app's directory.
  let changes: TreeWatcher | undefined;
  if (options.reloadOnChange) {
    const root = watchRoot(config.spec, config.cwd);
    const ignore = [
      ...(options.logFile !== undefined ? [resolve(config.cwd, options.logFile)] : []),
      ...[...uwsgiAddresses, ...(options.http ?? [])].flatMap((address) => (address.kind === 'unix' ? [resolve(config.cwd, address.path)] : [])),
    ];
    changes = watchTree(root, (files) => {
      log.info({ file: files[0], files: files.length }, 'files changed: reloading');
      reloadTls();
      dispatch({ type: 'signal', signal: 'SIGHUP' });
    }, { ignore, onError: (err, directory) => log.warn({ err, directory }, 'cannot watch a directory for --reload-on-change') });
    log.info({ directory: root, directories: changes.directories }, 'watching for changes');
    if (changes.directories >= MAX_DIRECTORIES) log.warn({ directory: root, limit: MAX_DIRECTORIES }, 'too many directories to watch: only the first are');
  }
  const tick = setInterval(() => {
    dispatch({ type: 'tick' });
    systemd.tick();
  }, TICK_MS);

  log.debug({ workers, scheduling: cluster.schedulingPolicy === cluster.SCHED_RR ? 'round-robin' : 'shared handle' }, 'starting workers');
  dispatch({ type: 'start' });
  return exited;
}

/** The master's part of --accept: binds the uwsgi Unix and TCP sockets and checks the inherited ones (fd://N,
 * socket activation) for the native listeners, and says once which accept path runs. `sockets`: what the workers
 * listen on (a bound socket becomes its inherited fd); `fds`: the fds the workers serve natively. */
function bindNative(
  options: Options,
  log: Logger,
): {
  sockets: SocketAddress[];
  sslSockets: SslSocket[];
  fds: number[];
  boundFds: number[];
  unixQueue: ReadUnixQueue | undefined;
  unlink(): void;
  announce(): void;
} {
  const choice = chooseAccept(options.accept);
  // On the JavaScript path too the master binds with the addon where it loads (not under NODE_UWSGI_SCHED=rr,
  // whose master accepts): the master then holds the sockets, stops their handshakes at a stop (refuseNew) and
  // lets go first, and each worker serves the queue before its close (server.ts), as on the native path.
  const binder = choice.addon ?? (options.accept === 'js' && process.env.NODE_UWSGI_SCHED !== 'rr' ? loadNative().addon : undefined);
  const addon = choice.addon;
  const backlog = effectiveBacklog(options.backlog);
  const fds: number[] = [];
  /** The fds the master bound (an inherited one stays open: systemd holds the socket, not us). */
  const bound: number[] = [];
  const paths: string[] = [];
  /** The fd the master holds for each uwsgi socket it was given (bound here or inherited), while it holds them. */
  const fdOf = new Map<SocketAddress, number>();
  const sockets = options.socket.map((address): SocketAddress => {
    if (binder === undefined) return address;
    if (address.kind === 'fd') {
      fdOf.set(address, address.fd);
      if (addon === undefined) return address;
      adoptSocket(addon, address.fd, backlog);
      fds.push(address.fd);
      return address;
    }
    const fd = bindOwn(binder, address);
    fdOf.set(address, fd);
    if (addon !== undefined) fds.push(fd);
    return { kind: 'fd', fd };
  });
  // --ssl-socket: bound here like the plain sockets (the same lifetime, the same stop), but served in JavaScript
  // by every worker (TLS is not the addon's): their fds are not among `fds`.
  const sslSockets = options.sslSocket.map((ssl): SslSocket => {
    if (binder === undefined) return ssl;
    const fd = ssl.address.kind === 'fd' ? ssl.address.fd : bindOwn(binder, ssl.address);
    fdOf.set(ssl.address, fd);
    return ssl.address.kind === 'fd' ? ssl : { ...ssl, address: { kind: 'fd', fd } };
  });
  const unixQueue = binder?.unixQueue?.bind(binder);
  function bindOwn(with_: NativeAddon, address: Exclude<SocketAddress, { kind: 'fd' }>): number {
    const fd = bindSocket(with_, address, backlog);
    bound.push(fd);
    if (address.kind === 'unix') {
      setSocketMode(address.path, options.chmodSocket);
      paths.push(address.path);
    }
    return fd;
  }
  return {
    /** Said once, when the app is loaded. */
    announce() {
      if (addon === undefined) log.info({ reason: choice.reason }, 'accept: js');
      else if (fds.length === 0) log.info({ reason: 'no uwsgi socket' }, 'accept: js');
      else log.info({ sockets: fds.length, addon: choice.file }, 'accept: native');
    },
    sockets,
    sslSockets,
    fds: [...fds],
    boundFds: [...bound],
    /** A Unix socket's listen queue from sock_diag on the master's fd (ListenQueues), without running ss. */
    unixQueue:
      unixQueue === undefined
        ? undefined
        : (address: SocketAddress) => {
            const fd = fdOf.get(address);
            return fd === undefined ? undefined : unixQueue(fd);
          },
    /** Stops listening (the master's copies of the fds it bound) and removes the socket files. A TCP socket first
     * stops completing handshakes (the kernel offers no other way to stop new connections short of a close, which
     * would reset the queue): the workers serve what is queued before the last close. An inherited fd is left as
     * it is: its holder (systemd) keeps queueing for the next start. */
    unlink() {
      // The queues of the sockets closed here are read by ss from now on (the workers still hold them).
      for (const [address, fd] of fdOf) if (bound.includes(fd)) fdOf.delete(address);
      for (const fd of bound.splice(0)) {
        const refused = binder?.refuseNew?.(fd) ?? 0;
        if (refused < 0 && refused !== -22) log.debug({ fd, errno: refused }, 'cannot filter new connections on a stopping socket');
        closeSync(fd);
      }
      for (const path of paths.splice(0)) {
        try {
          unlinkSync(path);
        } catch {
          // Already gone.
        }
      }
    },
  };
}

/**
 * The Node flags of a worker: the master's own, and
 * - `--disable-sigusr1` where Node has it (22.14+, 24): SIGUSR1 opens Node's inspector by default; a worker hears of
 *   log reopening over IPC instead, so a stray USR1 (systemctl kill to the whole cgroup) during a worker's boot
 *   cannot open a debugger in a process that serves requests;
 * - `--no-allocation-site-pretenuring`, unless the master was given either spelling of the flag: V8 (Node 24) sees
 *   a request's objects alive at a scavenge (the requests in flight) and starts allocating them in the old
 *   generation, where they all die: the node interface and Express then cost a fifth more JavaScript a request
 *   (bench/README.md, "Figures the source cites"). Node 20 is not affected.
 */
export function workerExecArgv(master: readonly string[]): string[] {
  const argv = [...master];
  if (process.allowedNodeEnvironmentFlags.has('--disable-sigusr1')) argv.push('--disable-sigusr1');
  if (!master.some((flag) => /^--(no-?)?allocation[-_]site[-_]pretenuring$/.test(flag))) argv.push('--no-allocation-site-pretenuring');
  return argv;
}

/** ERR_TLS_CERT_EXPIRED / ERR_TLS_CERT_EXPIRING as a warning, with the certificate's notAfter. */
function warnExpiry(log: Logger, ssl: SslSocket, material: TlsMaterial): void {
  const warning = expiryWarning(ssl, material);
  if (warning !== undefined) log.warn({ code: warning.code, file: ssl.cert, notAfter: material.notAfter, serial: material.serial }, warning.message);
}

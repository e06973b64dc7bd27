// The master's decisions, apart from their effects: how many workers, whom to start, drain or kill, and when.
// A plain state machine fed events stamped with a clock reading; it returns actions. src/master/master.ts binds
// it to node:cluster, signals and timers; the tests drive it with a fake clock.
//
// Invariant: `counted` workers (starting or ready, not retiring) plus scheduled respawns equal the desired
// count. A worker being replaced (reload, recycling) is `retiring` and stops counting the moment its
// replacement is spawned, so the replacement does not look like a surplus and is not stopped; if the replacement
// fails, the old worker counts again and goes on serving.

export type WorkerState = 'starting' | 'ready' | 'draining' | 'killed';
export type Cause = 'reload' | 'max-requests' | 'max-rss' | 'scale-down' | 'stop' | 'harakiri' | 'boot-timeout' | 'graceful-timeout' | 'quit' | 'halt';

export interface PolicyConfig {
  workers: number;
  /** ms a draining worker may take before it is killed. */
  gracefulTimeout: number;
  /** ms without a heartbeat before a worker is killed; 0 disables. */
  harakiri: number;
  /**
   * ms added to `harakiri` before the kill. The last heartbeat can predate the block by up to one heartbeat
   * interval, and the worker's watchdog thread, which names the requests in flight, must have written its line
   * first. Default 0.
   */
  harakiriGrace?: number;
  /** ms a starting worker may take to become ready. */
  bootTimeout: number;
  maxRequests: number;
  maxRequestsJitter: number;
  /** Bytes; 0 disables. */
  maxRss: number;
  /**
   * Consecutive heartbeats over maxRss before a worker is recycled (hysteresis, for a small overshoot). Past
   * RSS_HARD_FACTOR times maxRss there is none: see recycleAtOnce.
   */
  rssSamples: number;
  reloadBatch: number;
  /**
   * The master holds every listening socket (the native accept path bound them; socket activation), so a worker
   * may stop accepting with no other accepting: connections wait in the socket's queue for its replacement, as
   * under uWSGI's reload-on-rss. Without it node:cluster closes a shared socket with the last worker holding it.
   */
  socketsOutliveWorkers?: boolean;
  /** In [0, 1): jitter for max-requests. Injected for tests. */
  random: () => number;
}

export interface InflightRequest {
  method: string;
  uri: string;
  /** Clock reading (ms) when the request started. */
  startedAt: number;
}

export type PolicyEvent =
  | { type: 'start' }
  | { type: 'ready'; id: number }
  | { type: 'boot-failed'; id: number; code: string | undefined; message: string; at?: string[] }
  | { type: 'exit'; id: number; code: number | null; signal: string | null }
  | { type: 'heartbeat'; id: number; requests: number; rss: number; inflight?: InflightRequest[] }
  | { type: 'signal'; signal: 'SIGTERM' | 'SIGINT' | 'SIGQUIT' | 'SIGHUP' | 'SIGTTIN' | 'SIGTTOU' }
  | { type: 'tick' };

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'fatal';

export type Action =
  | { type: 'spawn'; id: number; generation: number; maxRequests: number }
  | { type: 'drain'; id: number; cause: Cause }
  | { type: 'kill'; id: number; cause: Cause }
  /** All workers ready after boot or a reload; 'reload-aborted': the old workers go on serving. */
  | { type: 'ready'; reason: 'boot' | 'reload' | 'reload-aborted'; workers: number; ms: number }
  /** A SIGHUP reload starts (systemd: RELOADING=1). */
  | { type: 'reloading'; generation: number; workers: number }
  | { type: 'stopping'; graceful: boolean }
  | { type: 'exit'; code: number }
  | { type: 'log'; level: LogLevel; msg: string; fields: Record<string, unknown> };

export interface WorkerRecord {
  readonly id: number;
  readonly generation: number;
  state: WorkerState;
  readonly spawnedAt: number;
  readyAt: number | undefined;
  lastBeat: number;
  requests: number;
  readonly maxRequests: number;
  rssOver: number;
  rss: number;
  inflight: InflightRequest[];
  /** Set when a replacement was spawned for it: it no longer counts towards the desired number. */
  retiring: Cause | undefined;
  /** For a replacement: the worker it replaces, drained once this one is ready. */
  replaces: number | undefined;
  drainingSince: number | undefined;
  cause: Cause | undefined;
  bootError: { code: string | undefined; message: string; at?: string[] } | undefined;
}

type Phase = 'booting' | 'running' | 'stopping' | 'halting';

/** Backoff for respawning workers that keep dying: 0.1 s doubling to 10 s; reset after 10 s of good service. */
export const BACKOFF_MIN = 100;
export const BACKOFF_MAX = 10_000;
export const STABLE_AFTER = 10_000;
/** Past this multiple of --max-rss a worker is recycled at the first heartbeat that says so. */
export const RSS_HARD_FACTOR = 2;

export class Policy {
  readonly workers = new Map<number, WorkerRecord>();
  private phase: Phase = 'booting';
  private desired: number;
  private nextId = 1;
  private generation = 1;
  private startedAt = 0;
  private respawns: number[] = [];
  private failures = 0;
  private lastFailureAt = 0;
  private reload: { generation: number; pending: number[]; startedAt: number } | undefined;
  private exitCode = 0;
  private recycleNotBefore = 0;
  private exited = false;
  /** SIGQUIT (or a second SIGINT) has killed every worker: nothing is left to escalate to. */
  private quitting = false;

  constructor(private readonly config: PolicyConfig) {
    this.desired = config.workers;
  }

  get running(): boolean {
    return this.phase === 'running';
  }

  get desiredWorkers(): number {
    return this.desired;
  }

  handle(event: PolicyEvent, now: number): Action[] {
    const out: Action[] = [];
    switch (event.type) {
      case 'start':
        this.startedAt = now;
        for (let i = 0; i < this.desired; i++) this.spawn(out, now, undefined);
        break;
      case 'ready':
        this.onReady(event.id, now, out);
        break;
      case 'boot-failed': {
        const worker = this.workers.get(event.id);
        if (worker) worker.bootError = { code: event.code, message: event.message, at: event.at };
        break;
      }
      case 'exit':
        this.onExit(event, now, out);
        break;
      case 'heartbeat':
        this.onHeartbeat(event, now, out);
        break;
      case 'signal':
        this.onSignal(event.signal, now, out);
        break;
      case 'tick':
        this.onTick(now, out);
        break;
    }
    if (this.phase === 'stopping' || this.phase === 'halting') this.maybeExit(out);
    return out;
  }

  // --- events -------------------------------------------------------------------------------------------

  private onReady(id: number, now: number, out: Action[]): void {
    const worker = this.workers.get(id);
    if (!worker || worker.state !== 'starting') return;
    worker.state = 'ready';
    worker.readyAt = now;
    worker.lastBeat = now;
    log(out, 'debug', 'worker ready', { worker: id, generation: worker.generation, bootMs: now - worker.spawnedAt });
    // Good service, which forgets the failures, is counted from here: a backoff wait is not service.
    if (this.failures > 0) this.lastFailureAt = now;
    let old = worker.replaces === undefined ? undefined : this.workers.get(worker.replaces);
    worker.replaces = undefined;
    while (old && (old.state === 'ready' || old.state === 'starting')) {
      this.drain(old, old.retiring ?? 'reload', now, out);
      // A replacement replaced (by a reload) before it was ready: the worker it stood in for goes too.
      old = old.replaces === undefined ? undefined : this.workers.get(old.replaces);
    }
    if (this.phase === 'booting' && this.readyWorkers() >= this.desired) {
      this.phase = 'running';
      out.push({ type: 'ready', reason: 'boot', workers: this.readyWorkers(), ms: now - this.startedAt });
    }
    if (this.phase === 'running') {
      this.advanceReload(now, out);
      this.advanceRecycling(now, out);
    }
  }

  private onExit(event: Extract<PolicyEvent, { type: 'exit' }>, now: number, out: Action[]): void {
    const worker = this.workers.get(event.id);
    if (!worker) return;
    this.workers.delete(event.id);
    const fields = { worker: worker.id, code: event.code, signal: event.signal };
    // A worker killed for not starting in time failed to start, as if it had exited: same handling.
    const expected = (worker.state === 'draining' || worker.state === 'killed') && worker.cause !== 'boot-timeout';
    if (this.phase === 'stopping' || this.phase === 'halting') {
      log(out, 'debug', 'worker exited', { ...fields, cause: worker.cause });
      return;
    }
    if (expected) {
      log(out, worker.cause === 'harakiri' || worker.cause === 'graceful-timeout' ? 'warn' : 'info', 'worker exited', { ...fields, cause: worker.cause });
      if (worker.cause === 'harakiri') this.lostCounted(worker, now, out);
      this.advanceReload(now, out);
      this.advanceRecycling(now, out);
      return;
    }
    const neverReady = worker.readyAt === undefined;
    if (neverReady && this.phase === 'booting' && worker.replaces === undefined) {
      // The app cannot start: halting beats a respawn storm. Each worker had at most one attempt.
      this.halt(worker, fields, out);
      return;
    }
    if (neverReady && worker.generation === this.reload?.generation) {
      log(out, 'error', 'reload aborted: a new worker failed to start; the old workers go on serving', {
        ...fields,
        ...bootErrorFields(worker),
      });
      out.push({ type: 'ready', reason: 'reload-aborted', workers: this.readyWorkers(), ms: now - this.reload.startedAt });
      this.reload = undefined;
      this.noteFailure(now);
      this.lostReplacement(worker, now, out);
      return;
    }
    if (neverReady && worker.replaces !== undefined) {
      this.noteFailure(now);
      // The next recycling waits as a respawn would: a broken app on disk must not restart at heartbeat rate.
      this.recycleNotBefore = now + backoffDelay(this.failures);
      const old = this.workers.get(worker.replaces);
      const oldServes = old !== undefined && old.state !== 'draining' && old.state !== 'killed';
      log(out, 'error', oldServes ? 'replacement worker failed to start; the worker it was to replace goes on serving' : 'replacement worker failed to start; another is started after a delay', {
        ...fields,
        ...bootErrorFields(worker),
        retryInMs: this.recycleNotBefore - now,
      });
      this.lostReplacement(worker, now, out);
      return;
    }
    log(out, 'error', 'worker died', { ...fields, requests: worker.requests, ...bootErrorFields(worker) });
    if (neverReady || (worker.readyAt !== undefined && now - worker.readyAt < STABLE_AFTER)) this.noteFailure(now);
    this.lostCounted(worker, now, out);
  }

  private onHeartbeat(event: Extract<PolicyEvent, { type: 'heartbeat' }>, now: number, out: Action[]): void {
    const worker = this.workers.get(event.id);
    if (!worker) return;
    worker.lastBeat = now;
    worker.requests = event.requests;
    worker.rss = event.rss;
    if (event.inflight) worker.inflight = event.inflight;
    if (worker.state !== 'ready') return;
    if (this.config.maxRss > 0 && event.rss > RSS_HARD_FACTOR * this.config.maxRss) {
      this.recycleAtOnce(worker, now, out);
      return;
    }
    if (worker.retiring !== undefined) return;
    if (this.config.maxRss > 0) worker.rssOver = event.rss > this.config.maxRss ? worker.rssOver + 1 : 0;
    this.advanceRecycling(now, out);
  }

  private onSignal(signal: Extract<PolicyEvent, { type: 'signal' }>['signal'], now: number, out: Action[]): void {
    if (this.phase === 'stopping' || this.phase === 'halting') {
      const atOnce = this.phase === 'halting' || this.quitting;
      // A second stop signal while stopping: QUIT (or a second INT, as a user pressing Ctrl-C twice) is at once.
      if (!atOnce && (signal === 'SIGQUIT' || signal === 'SIGINT')) {
        this.quit(out, signal);
        return;
      }
      // Said in the log: a HUP or TTIN that seems to do nothing, or a TERM repeated in vain, is otherwise a mystery.
      const repeated = signal === 'SIGTERM' || signal === 'SIGINT' || signal === 'SIGQUIT';
      log(out, repeated ? 'info' : 'warn', 'signal ignored: the server is stopping', {
        signal,
        stopping: atOnce ? 'at once' : 'gracefully',
        ...(atOnce ? {} : { hint: 'SIGQUIT or SIGINT stops at once' }),
      });
      return;
    }
    switch (signal) {
      case 'SIGTERM':
      case 'SIGINT':
        log(out, 'info', 'stopping: listening sockets closed, finishing in-flight requests', { signal, gracefulTimeoutMs: this.config.gracefulTimeout });
        this.phase = 'stopping';
        this.respawns = [];
        this.reload = undefined;
        out.push({ type: 'stopping', graceful: true });
        for (const worker of this.workers.values()) {
          if (worker.state === 'starting') this.kill(worker, 'stop', out);
          else if (worker.state === 'ready') this.drain(worker, 'stop', now, out);
        }
        break;
      case 'SIGQUIT':
        this.phase = 'stopping';
        out.push({ type: 'stopping', graceful: false });
        this.quit(out, signal);
        break;
      case 'SIGHUP':
        this.startReload(now, out);
        break;
      case 'SIGTTIN':
        this.desired++;
        log(out, 'info', 'adding a worker', { signal, workers: this.desired });
        this.spawn(out, now, undefined);
        break;
      case 'SIGTTOU': {
        if (this.desired <= 1) {
          log(out, 'warn', 'not removing the last worker', { signal, workers: this.desired });
          break;
        }
        this.desired--;
        log(out, 'info', 'removing a worker', { signal, workers: this.desired });
        this.reconcile(now, out);
        break;
      }
    }
  }

  private onTick(now: number, out: Action[]): void {
    for (const worker of this.workers.values()) {
      if (worker.state === 'starting' && now - worker.spawnedAt > this.config.bootTimeout) {
        log(out, 'error', 'worker did not become ready in time: killed', { worker: worker.id, bootTimeoutMs: this.config.bootTimeout });
        this.kill(worker, 'boot-timeout', out);
      } else if (worker.state === 'draining' && worker.drainingSince !== undefined && now - worker.drainingSince > this.config.gracefulTimeout) {
        log(out, 'warn', 'worker still busy after --graceful-timeout: killed', {
          worker: worker.id,
          gracefulTimeoutMs: this.config.gracefulTimeout,
          inflight: inflightFields(worker, now),
        });
        this.kill(worker, 'graceful-timeout', out);
      } else if (
        this.config.harakiri > 0 &&
        (worker.state === 'ready' || worker.state === 'draining') &&
        now - worker.lastBeat > this.config.harakiri + (this.config.harakiriGrace ?? 0)
      ) {
        log(out, 'error', 'worker event loop blocked longer than --harakiri: killed', {
          code: 'ERR_WORKER_BLOCKED',
          worker: worker.id,
          blockedMs: now - worker.lastBeat,
          harakiriMs: this.config.harakiri,
          inflight: inflightFields(worker, now),
        });
        this.kill(worker, 'harakiri', out);
      }
    }
    if (this.phase === 'running' || this.phase === 'booting') {
      const due = this.respawns.filter((at) => at <= now).length;
      if (due > 0) {
        this.respawns = this.respawns.filter((at) => at > now);
        for (let i = 0; i < due; i++) this.spawn(out, now, undefined);
      }
      const settled = this.respawns.length === 0 && ![...this.workers.values()].some((w) => w.state === 'starting');
      if (this.failures > 0 && settled && now - this.lastFailureAt > STABLE_AFTER) this.failures = 0;
      this.reconcile(now, out);
    }
  }

  // --- effects as actions ---------------------------------------------------------------------------------

  private spawn(out: Action[], now: number, replaces: number | undefined, generation = this.generation): WorkerRecord {
    const id = this.nextId++;
    const { maxRequests, maxRequestsJitter } = this.config;
    const worker: WorkerRecord = {
      id,
      generation,
      state: 'starting',
      spawnedAt: now,
      readyAt: undefined,
      lastBeat: now,
      requests: 0,
      maxRequests: maxRequests > 0 ? maxRequests + Math.floor(this.config.random() * (maxRequestsJitter + 1)) : 0,
      rssOver: 0,
      rss: 0,
      inflight: [],
      retiring: undefined,
      replaces,
      drainingSince: undefined,
      cause: undefined,
      bootError: undefined,
    };
    this.workers.set(id, worker);
    out.push({ type: 'spawn', id, generation, maxRequests: worker.maxRequests });
    return worker;
  }

  private drain(worker: WorkerRecord, cause: Cause, now: number, out: Action[]): void {
    // A draining worker no longer counts: its exit must not be taken for a loss to make up.
    worker.retiring ??= cause;
    worker.state = 'draining';
    worker.cause = cause;
    worker.drainingSince = now;
    out.push({ type: 'drain', id: worker.id, cause });
  }

  private kill(worker: WorkerRecord, cause: Cause, out: Action[]): void {
    worker.state = 'killed';
    worker.cause = cause;
    out.push({ type: 'kill', id: worker.id, cause });
  }

  private quit(out: Action[], signal: string): void {
    log(out, 'info', 'stopping at once: killing the workers', { signal });
    this.quitting = true;
    this.respawns = [];
    this.reload = undefined;
    for (const worker of this.workers.values()) if (worker.state !== 'killed') this.kill(worker, 'quit', out);
  }

  private halt(worker: WorkerRecord, fields: Record<string, unknown>, out: Action[]): void {
    log(out, 'fatal', 'a worker failed to start the app: stopping', { ...fields, ...bootErrorFields(worker) });
    this.phase = 'halting';
    this.exitCode = 1;
    this.respawns = [];
    for (const other of this.workers.values()) if (other.state !== 'killed') this.kill(other, 'halt', out);
  }

  private maybeExit(out: Action[]): void {
    if (this.exited || this.workers.size > 0) return;
    this.exited = true;
    if (this.phase === 'stopping') log(out, 'info', 'stopped', {});
    out.push({ type: 'exit', code: this.exitCode });
  }

  /** A counted worker is gone: schedule its replacement, with backoff when workers keep dying. */
  private lostCounted(worker: WorkerRecord, now: number, out: Action[]): void {
    if (worker.retiring !== undefined) return;
    // A killed worker no longer counts, so a scale-down while it was dying may already have taken it off.
    if (this.counted().length + this.respawns.length >= this.desired) return;
    const delay = backoffDelay(this.failures);
    if (delay === 0) this.spawn(out, now, undefined);
    else {
      log(out, 'warn', 'respawning after a delay: workers keep dying', { delayMs: delay, failures: this.failures });
      this.respawns.push(now + delay);
    }
  }

  /**
   * A new worker died before it was ready: the worker it was to replace counts again. If that one has gone too,
   * or it replaced none (a respawn or TTIN during a reload), it was counted, and its loss is made up.
   */
  private lostReplacement(worker: WorkerRecord, now: number, out: Action[]): void {
    const old = worker.replaces === undefined ? undefined : this.workers.get(worker.replaces);
    if (old && old.state !== 'draining' && old.state !== 'killed') old.retiring = undefined;
    else this.lostCounted(worker, now, out);
  }

  private noteFailure(now: number): void {
    this.failures++;
    this.lastFailureAt = now;
  }

  /** Scale down after TTOU: drain the newest counted workers beyond the desired number. */
  private reconcile(now: number, out: Action[]): void {
    const counted = this.counted();
    let surplus = counted.length + this.respawns.length - this.desired;
    if (surplus <= 0) return;
    while (surplus > 0 && this.respawns.length > 0) {
      this.respawns.pop();
      surplus--;
    }
    const newestFirst = counted.sort((a, b) => b.id - a.id);
    for (const worker of newestFirst) {
      if (surplus <= 0) break;
      // A replacement stands in for a worker that no longer counts; removing it would strand that one.
      if (worker.replaces !== undefined) continue;
      // Never the last ready worker.
      if (worker.state === 'ready' && this.readyWorkers() <= 1) break;
      if (worker.state === 'starting') this.kill(worker, 'scale-down', out);
      else this.drain(worker, 'scale-down', now, out);
      surplus--;
    }
  }

  private startReload(now: number, out: Action[]): void {
    if (this.phase !== 'running') {
      log(out, 'warn', 'reload ignored: the workers are not all ready yet', { signal: 'SIGHUP' });
      return;
    }
    this.generation++;
    const pending = [...this.workers.values()]
      .filter((w) => (w.state === 'ready' || w.state === 'starting') && w.generation < this.generation)
      .map((w) => w.id);
    log(out, 'info', 'reloading: new workers with fresh app code replace the old ones one batch at a time', {
      signal: 'SIGHUP',
      generation: this.generation,
      workers: pending.length,
      batch: this.config.reloadBatch,
    });
    // Recycling waits: a replacement already under way finishes first, then the reload takes over.
    this.reload = { generation: this.generation, pending, startedAt: now };
    out.push({ type: 'reloading', generation: this.generation, workers: pending.length });
    this.advanceReload(now, out);
  }

  private advanceReload(now: number, out: Action[]): void {
    const reload = this.reload;
    if (reload === undefined || this.phase !== 'running') return;
    const starting = [...this.workers.values()].filter((w) => w.state === 'starting' && w.generation === reload.generation).length;
    let room = this.config.reloadBatch - starting;
    while (room > 0 && reload.pending.length > 0) {
      const oldId = reload.pending.shift()!;
      const old = this.workers.get(oldId);
      if (!old || (old.state !== 'ready' && old.state !== 'starting') || old.retiring !== undefined) continue;
      old.retiring = 'reload';
      this.spawn(out, now, oldId, reload.generation);
      room--;
    }
    if (reload.pending.length === 0 && starting === 0 && room === this.config.reloadBatch) {
      const stillOld = [...this.workers.values()].some((w) => w.generation < reload.generation && (w.state === 'ready' || w.state === 'starting'));
      if (!stillOld) {
        this.reload = undefined;
        log(out, 'info', 'reload complete', { generation: reload.generation, ms: now - reload.startedAt });
        out.push({ type: 'ready', reason: 'reload', workers: this.readyWorkers(), ms: now - reload.startedAt });
      }
    }
  }

  /**
   * Replacement first, drain after. --max-requests replaces one worker at a time, after any recycling under way.
   * --max-rss does not queue: a leak grows in every worker at once, and memory is what the limit protects.
   * Measured (2 workers, --max-rss 200, 10 MB per request, ~140 MB/s each): the second worker waited 0.7 s for
   * the first one's replacement to boot and the first to drain, and peaked at 346 MiB.
   */
  private advanceRecycling(now: number, out: Action[]): void {
    if (this.phase !== 'running' || this.reload !== undefined || now < this.recycleNotBefore) return;
    let busy = [...this.workers.values()].some((w) => w.retiring === 'max-requests' || w.retiring === 'max-rss');
    // A worker over --max-rss that was the last one accepting stops as soon as another accepts (a replacement
    // ready), not only when its own replacement is.
    for (const worker of this.workers.values()) {
      if (worker.state === 'ready' && worker.retiring === 'max-rss') this.drainIfCovered(worker, now, out);
    }
    for (const worker of this.workers.values()) {
      if (worker.state !== 'ready' || worker.retiring !== undefined) continue;
      let cause: Cause | undefined;
      if (this.config.maxRss > 0 && worker.rssOver >= this.config.rssSamples) cause = 'max-rss';
      else if (!busy && worker.maxRequests > 0 && worker.requests >= worker.maxRequests) cause = 'max-requests';
      if (cause === undefined) continue;
      log(out, 'info', 'recycling a worker: its replacement starts first', {
        worker: worker.id,
        cause,
        requests: worker.requests,
        rss: worker.rss,
      });
      worker.retiring = cause;
      this.spawn(out, now, worker.id);
      busy = true;
      // Memory is what --max-rss protects: the worker stops taking requests now where other workers take them
      // meanwhile, as uWSGI's reload-on-rss does, instead of growing until its replacement is ready (measured: 10
      // MB per request, 2 workers, --max-rss 200: peaks of 278-345 MiB waiting, on a busy machine). Where the
      // sockets close with the last worker holding them (node:cluster's), the last one accepting waits.
      if (cause === 'max-rss') this.drainIfCovered(worker, now, out);
    }
  }

  /** Drains a worker now if another worker accepts meanwhile, or the master holds the sockets. */
  private drainIfCovered(worker: WorkerRecord, now: number, out: Action[]): void {
    let covered = this.config.socketsOutliveWorkers === true;
    for (const other of this.workers.values()) if (other !== worker && other.state === 'ready') covered = true;
    if (covered) this.drain(worker, 'max-rss', now, out);
  }

  /**
   * Past RSS_HARD_FACTOR x --max-rss, a fast leak: no hysteresis, and no waiting for the replacement to be
   * ready. It starts, and the worker stops accepting at once, unless no other worker is accepting: node:cluster
   * closes the shared listening socket with the last worker that holds it (a replacement not yet listening does
   * not count), so that one drains when its replacement is ready, as in any recycling. Before (3 heartbeats of
   * 1 s over the limit, one recycling at a time), a leak of 10 MB per request peaked at 491-696 MiB under
   * --max-rss 200.
   */
  private recycleAtOnce(worker: WorkerRecord, now: number, out: Action[]): void {
    if (this.phase !== 'running') return;
    if (worker.retiring === undefined) {
      // A replacement that keeps failing to start backs off here too, not at heartbeat rate.
      if (now < this.recycleNotBefore) return;
      log(out, 'warn', 'recycling a worker at once: its resident memory is past twice --max-rss', {
        worker: worker.id,
        cause: 'max-rss',
        requests: worker.requests,
        rss: worker.rss,
        maxRss: this.config.maxRss,
      });
      worker.retiring = 'max-rss';
      this.spawn(out, now, worker.id);
    }
    if (worker.state === 'ready') this.drainIfCovered(worker, now, out);
  }

  private counted(): WorkerRecord[] {
    return [...this.workers.values()].filter((w) => (w.state === 'starting' || w.state === 'ready') && w.retiring === undefined);
  }

  /** Workers ready to serve: the master's collector (src/ops/collector.ts) reads this count. */
  readyWorkers(): number {
    let n = 0;
    for (const worker of this.workers.values()) if (worker.state === 'ready') n++;
    return n;
  }
}

/** 0 for no failures, then 0.1 s doubling to 10 s. */
export function backoffDelay(failures: number): number {
  return failures === 0 ? 0 : Math.min(BACKOFF_MAX, BACKOFF_MIN * 2 ** (failures - 1));
}

function log(out: Action[], level: LogLevel, msg: string, fields: Record<string, unknown>): void {
  out.push({ type: 'log', level, msg, fields });
}

function bootErrorFields(worker: WorkerRecord): Record<string, unknown> {
  if (!worker.bootError) return {};
  const { code, message, at } = worker.bootError;
  // Where the app's error was raised (file:line, or its first frames): seen at error level, not only at debug.
  return at !== undefined && at.length > 0 ? { errorCode: code, error: message, errorAt: at } : { errorCode: code, error: message };
}

function inflightFields(worker: WorkerRecord, now: number): Array<{ method: string; uri: string; ageMs: number }> {
  return worker.inflight.map((r) => ({ method: r.method, uri: r.uri, ageMs: now - r.startedAt }));
}

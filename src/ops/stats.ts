// What the workers did, as the master sees it, and uWSGI's stats server: each connection to --stats gets one JSON
// document, then the connection is closed, with every field that uwsgitop reads, named and typed as uWSGI's
// uwsgi_master_generate_stats (core/master_utils.c) writes them: times in microseconds, last_spawn in epoch
// seconds, memory in bytes. Workers are uWSGI-style slots: a replacement takes the slot of the worker it
// replaces, `requests`, `exceptions`, `tx` and `running_time` add up over a slot's processes, `respawn_count` is 1
// for a slot's first process, and a slot with no process (after TTOU, or while a respawn waits) is 'cheap'.
import { readFileSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import type { WorkerStats } from '../master/messages.js';
import type { WorkerState } from '../master/policy.js';
import { formatSocketAddress, type SocketAddress } from '../options.js';
import { listenOn } from '../server/listen.js';
import { tcpListenQueue, type ListenQueues, type QueueReading } from './listen-queue.js';

/** Prometheus' default buckets (client_golang DefBuckets), in seconds. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
/** Requests by the class of their status; 'none' ended without a status (the peer left before the response). */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'none'] as const;
export type StatusClass = (typeof STATUS_CLASSES)[number];

export function statusClassIndex(status: number): number {
  return status >= 100 && status < 600 ? Math.floor(status / 100) - 1 : STATUS_CLASSES.length - 1;
}

/** A worker's own counters, kept on the request path: a few additions per request, reported on the heartbeat. */
export class RequestCounters {
  /** App exceptions: 500 answers (an app error maps to 500) and uncaught exceptions or rejections. */
  exceptions = 0;
  tx = 0;
  /** µs, uWSGI's running average: (previous + latest) / 2. */
  avgRt = 0;
  /** µs spent in requests since the worker started. */
  runningTime = 0;
  readonly statuses: number[] = new Array<number>(STATUS_CLASSES.length).fill(0);
  /** Non-cumulative counts per LATENCY_BUCKETS bound, the last one for +Inf. */
  readonly buckets: number[] = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
  /** Seconds. */
  latencySum = 0;

  record(status: number, bytes: number, micros: number): void {
    this.statuses[statusClassIndex(status)]!++;
    if (status === 500) this.exceptions++;
    this.tx += bytes;
    // A tunnel (101: WebSocket) lasts as long as the socket is open: its length says nothing of response times.
    if (status === 101) return;
    this.runningTime += micros;
    this.avgRt = (this.avgRt + micros) / 2;
    const seconds = micros / 1e6;
    this.latencySum += seconds;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.buckets[i]!++;
  }
}

/** The counters that add up over a slot's processes and over all workers. */
export interface Totals {
  requests: number;
  exceptions: number;
  tx: number;
  runningTime: number;
  statuses: number[];
  buckets: number[];
  latencySum: number;
  /** --ssl-socket handshakes that failed (ERR_TLS_HANDSHAKE). */
  tlsHandshakeFailures: number;
}

function emptyTotals(): Totals {
  return {
    requests: 0,
    exceptions: 0,
    tx: 0,
    runningTime: 0,
    statuses: new Array<number>(STATUS_CLASSES.length).fill(0),
    buckets: new Array<number>(LATENCY_BUCKETS.length + 1).fill(0),
    latencySum: 0,
    tlsHandshakeFailures: 0,
  };
}

function mergeTotals(into: Totals, from: Totals): void {
  addTotals(into, from.requests, from);
}

function addTotals(into: Totals, requests: number, s: (Omit<Totals, 'requests' | 'tlsHandshakeFailures'> & { tlsHandshakeFailures?: number | undefined }) | undefined): void {
  into.requests += requests;
  if (s === undefined) return;
  into.exceptions += s.exceptions;
  into.tx += s.tx;
  into.runningTime += s.runningTime;
  into.latencySum += s.latencySum;
  into.tlsHandshakeFailures += s.tlsHandshakeFailures ?? 0;
  for (let i = 0; i < into.statuses.length; i++) into.statuses[i]! += s.statuses[i] ?? 0;
  for (let i = 0; i < into.buckets.length; i++) into.buckets[i]! += s.buckets[i] ?? 0;
}

/** Why a worker process ended and was replaced; stops, QUIT and scale-downs are not restarts. */
export const RESTART_CAUSES = ['crash', 'harakiri', 'max-requests', 'max-rss', 'reload', 'boot-timeout'] as const;
export type RestartCause = (typeof RESTART_CAUSES)[number];

/** The restart cause for a worker that exited, from the policy's record of it (undefined: not a restart). */
export function restartCause(record: { retiring?: string | undefined; cause?: string | undefined } | undefined): RestartCause | undefined {
  if (record === undefined) return undefined;
  const cause = record.retiring ?? record.cause ?? 'crash';
  return (RESTART_CAUSES as readonly string[]).includes(cause) ? (cause as RestartCause) : undefined;
}

interface Member {
  readonly id: number;
  readonly slot: Slot;
  readonly pid: number;
  /** Epoch ms. */
  readonly spawnedAt: number;
  requests: number;
  rss: number;
  stats: WorkerStats | undefined;
  /** ms the app took to load, once ready. */
  bootMs: number | undefined;
}

interface Slot {
  readonly id: number;
  /** Live processes, oldest first: a replacement and the worker it replaces share the slot while both run. */
  readonly members: Member[];
  /** What the slot's exited processes had done. */
  readonly base: Totals;
  respawnCount: number;
  harakiriCount: number;
  /** Epoch ms. */
  lastSpawn: number;
  avgRt: number;
}

export interface CollectorConfig {
  /** The policy's state of a worker (undefined once it is gone). */
  state(id: number): WorkerState | undefined;
  /** The master's listening sockets (the `sockets` list and listen_queue). */
  sockets: readonly SocketAddress[];
  /** The master's reader of the listen queues (listen-queue.ts); without it, TCP queues are read per document. */
  queues?: ListenQueues;
  cwd: string;
  now?: () => number;
}

/** The master's view of every worker, fed by spawns, heartbeats and exits. */
export class StatsCollector {
  private readonly slots: Slot[] = [];
  private readonly members = new Map<number, Member>();
  private readonly restarts = new Map<RestartCause, number>(RESTART_CAUSES.map((c) => [c, 0]));
  private readonly now: () => number;
  /** Set once a stop begins: /health answers 503 from then on. */
  stopping = false;

  constructor(private readonly config: CollectorConfig) {
    this.now = config.now ?? Date.now;
  }

  /** A worker process was forked; `replaces` is the worker it stands in for (reload, recycling). */
  spawned(id: number, pid: number, replaces?: number): void {
    let slot = replaces === undefined ? undefined : this.members.get(replaces)?.slot;
    slot ??= this.slots.find((s) => s.members.length === 0);
    if (slot === undefined) {
      slot = { id: this.slots.length + 1, members: [], base: emptyTotals(), respawnCount: 0, harakiriCount: 0, lastSpawn: 0, avgRt: 0 };
      this.slots.push(slot);
    }
    const at = this.now();
    slot.respawnCount++;
    slot.lastSpawn = at;
    const member: Member = { id, slot, pid, spawnedAt: at, requests: 0, rss: 0, stats: undefined, bootMs: undefined };
    slot.members.push(member);
    this.members.set(id, member);
  }

  appReady(id: number, bootMs: number): void {
    const member = this.members.get(id);
    if (member !== undefined) member.bootMs = bootMs;
  }

  heartbeat(id: number, requests: number, rss: number, stats: WorkerStats | undefined): void {
    const member = this.members.get(id);
    if (member === undefined) return;
    member.requests = requests;
    member.rss = rss;
    member.stats = stats;
    if (stats !== undefined && requests > 0) member.slot.avgRt = stats.avgRt;
  }

  /** A worker process ended: its last report joins its slot's totals. */
  exited(id: number, cause: RestartCause | undefined): void {
    const member = this.members.get(id);
    if (member === undefined) return;
    this.members.delete(id);
    const slot = member.slot;
    slot.members.splice(slot.members.indexOf(member), 1);
    addTotals(slot.base, member.requests, member.stats);
    if (cause === 'harakiri') slot.harakiriCount++;
    if (cause !== undefined && !this.stopping) this.restarts.set(cause, this.restarts.get(cause)! + 1);
  }

  /** Workers ready to serve (not starting, not draining). */
  readyWorkers(): number {
    let n = 0;
    for (const id of this.members.keys()) if (this.config.state(id) === 'ready') n++;
    return n;
  }

  healthy(): boolean {
    return !this.stopping && this.readyWorkers() > 0;
  }

  /** Everything done since the master started, exited workers included. */
  totals(): Totals {
    const out = emptyTotals();
    for (const slot of this.slots) {
      mergeTotals(out, slot.base);
      for (const member of slot.members) addTotals(out, member.requests, member.stats);
    }
    return out;
  }

  inflight(): number {
    let n = 0;
    for (const member of this.members.values()) n += member.stats?.busy ?? 0;
    return n;
  }

  restartCounts(): ReadonlyMap<RestartCause, number> {
    return this.restarts;
  }

  /** Per slot: the newest process's resident memory (0 for an empty slot). */
  rssBySlot(): Array<{ slot: number; pid: number; rss: number }> {
    return this.slots
      .filter((slot) => slot.members.length > 0)
      .map((slot) => {
        const newest = slot.members[slot.members.length - 1]!;
        return { slot: slot.id, pid: newest.pid, rss: newest.rss };
      });
  }

  /** Brings the listen queues up to date (at most one read a second); never rejects. */
  freshQueues(): Promise<void> {
    return this.config.queues?.fresh() ?? Promise.resolve();
  }

  /** The listen queue readings, --socket ones first (none without a reader). */
  queueReadings(): readonly QueueReading[] {
    return this.config.queues?.readings ?? [];
  }

  /** The document uWSGI's stats server sends. */
  document(): UwsgiStats {
    const readings = this.config.queues?.readings;
    const queues = this.config.sockets.map((address, i) => {
      const reading = readings?.[i];
      return reading === undefined ? { address, queue: listenQueue(address), max: 0 } : { address, queue: reading.queue ?? 0, max: reading.backlog };
    });
    const listenQueueMax = Math.max(0, ...queues.map((q) => q.queue));
    return {
      version: packageVersion(),
      listen_queue: listenQueueMax,
      listen_queue_errors: this.config.queues?.errors ?? 0,
      signal_queue: 0,
      load: listenQueueMax,
      pid: process.pid,
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      cwd: this.config.cwd,
      locks: [],
      sockets: queues.map(({ address, queue, max }) => ({
        name: socketName(address),
        proto: 'uwsgi',
        queue,
        max_queue: max,
        shared: 0,
        can_offload: 0,
      })),
      workers: this.slots.map((slot) => this.workerDocument(slot)),
    };
  }

  private workerDocument(slot: Slot): UwsgiWorkerStats {
    const sum = emptyTotals();
    mergeTotals(sum, slot.base);
    let busy = 0;
    for (const member of slot.members) {
      addTotals(sum, member.requests, member.stats);
      busy += member.stats?.busy ?? 0;
    }
    const newest = slot.members[slot.members.length - 1];
    const state = newest === undefined ? undefined : this.config.state(newest.id);
    const status = newest === undefined ? 'cheap' : busy > 0 ? 'busy' : 'idle';
    const app = newest !== undefined && state === 'ready' && newest.stats !== undefined;
    return {
      id: slot.id,
      pid: newest?.pid ?? 0,
      accepting: state === 'ready' ? 1 : 0,
      requests: sum.requests,
      delta_requests: newest?.requests ?? 0,
      exceptions: sum.exceptions,
      harakiri_count: slot.harakiriCount,
      signals: 0,
      signal_queue: 0,
      status,
      rss: newest?.rss ?? 0,
      vsz: newest?.stats?.vsz ?? 0,
      uss: 0,
      pss: 0,
      running_time: Math.round(sum.runningTime),
      last_spawn: Math.floor(slot.lastSpawn / 1000),
      respawn_count: slot.respawnCount,
      tx: sum.tx,
      avg_rt: Math.round(slot.avgRt),
      apps: app
        ? [
            {
              id: 0,
              modifier1: 0,
              mountpoint: '',
              startup_time: Math.round((newest.bootMs ?? 0) / 1000),
              requests: newest.requests,
              exceptions: newest.stats!.exceptions,
              chdir: this.config.cwd,
            },
          ]
        : [],
      cores: [
        {
          id: 0,
          requests: sum.requests,
          static_requests: 0,
          routed_requests: 0,
          offloaded_requests: 0,
          write_errors: 0,
          read_errors: 0,
          in_request: busy > 0 ? 1 : 0,
          vars: [],
          req_info: {},
        },
      ],
    };
  }
}

export interface UwsgiWorkerStats {
  id: number;
  pid: number;
  accepting: number;
  requests: number;
  delta_requests: number;
  exceptions: number;
  harakiri_count: number;
  signals: number;
  signal_queue: number;
  status: 'idle' | 'busy' | 'cheap';
  rss: number;
  vsz: number;
  uss: number;
  pss: number;
  running_time: number;
  last_spawn: number;
  respawn_count: number;
  tx: number;
  avg_rt: number;
  apps: Array<{ id: number; modifier1: number; mountpoint: string; startup_time: number; requests: number; exceptions: number; chdir: string }>;
  cores: Array<{
    id: number;
    requests: number;
    static_requests: number;
    routed_requests: number;
    offloaded_requests: number;
    write_errors: number;
    read_errors: number;
    in_request: number;
    vars: string[];
    req_info: Record<string, never>;
  }>;
}

export interface UwsgiStats {
  version: string;
  listen_queue: number;
  listen_queue_errors: number;
  signal_queue: number;
  load: number;
  pid: number;
  uid: number;
  gid: number;
  cwd: string;
  locks: never[];
  sockets: Array<{ name: string; proto: string; queue: number; max_queue: number; shared: number; can_offload: number }>;
  workers: UwsgiWorkerStats[];
}

let version: string | undefined;
function packageVersion(): string {
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      version = 'unknown';
    }
  }
  return version;
}

/** As uWSGI names its sockets: the path, or host:port. */
function socketName(address: SocketAddress): string {
  return address.kind === 'unix' ? address.path : formatSocketAddress(address);
}

/** Connections waiting in a TCP listening socket's accept queue (/proc/net/tcp, listen-queue.ts); 0 for others:
 * the master's ListenQueues reads Unix sockets' queues. */
export function listenQueue(address: SocketAddress): number {
  return address.kind === 'tcp' ? tcpListenQueue(address.port) : 0;
}

export interface OpsListener {
  /** Stops listening and removes a Unix socket file; synchronous, for the master's last moments. */
  close(): void;
}

/** Listens on `address` (a stale Unix socket file is replaced, a live one is an error). */
export async function listenLocal(server: net.Server, address: SocketAddress): Promise<OpsListener> {
  await listenOn(server, address);
  return {
    close() {
      server.close();
      if (address.kind !== 'unix') return;
      try {
        unlinkSync(address.path);
      } catch {
        // Already gone: libuv unlinks a Unix socket it bound when the handle closes.
      }
    },
  };
}

/** --stats: one JSON document per connection, then the connection is closed (what uwsgitop expects). */
export async function startStatsServer(address: SocketAddress, collector: StatsCollector, log: Logger): Promise<OpsListener> {
  const server = net.createServer((socket) => {
    socket.on('error', (err) => log.debug({ err }, 'stats connection error'));
    void collector.freshQueues().then(() => {
      let body: string;
      try {
        body = JSON.stringify(collector.document());
      } catch (err) {
        log.error({ err }, 'cannot build the stats document');
        socket.destroy();
        return;
      }
      socket.end(body);
    });
  });
  return listenLocal(server, address);
}

/** A worker's heartbeat report; `vsz` in bytes (the worker's MemoryReader, src/worker/resources.ts). */
export function workerStats(counters: RequestCounters, busy: number, vsz: number, tlsHandshakeFailures = 0): WorkerStats {
  return {
    exceptions: counters.exceptions,
    tx: counters.tx,
    avgRt: counters.avgRt,
    runningTime: counters.runningTime,
    vsz,
    busy,
    statuses: counters.statuses,
    buckets: counters.buckets,
    latencySum: counters.latencySum,
    tlsHandshakeFailures,
  };
}


// The master's collector: what the workers did, as the master sees it, fed by spawns, heartbeats and exits. It is
// the one place that knows how many workers are ready and how many requests were served: /metrics, /health, the
// --stats document and systemd's STATUS= read it. Workers are uWSGI-style slots: a replacement takes the slot of
// the worker it replaces, `requests`, `exceptions`, `tx` and `running_time` add up over a slot's processes,
// `respawn_count` is 1 for a slot's first process, and a slot with no process (after TTOU, or while a respawn
// waits) is 'cheap'.
import type { WorkerStats } from './counters.js';
import type { SocketAddress } from '../address.js';
import { LATENCY_BUCKETS, STATUS_CLASSES } from './counters.js';
import type { ListenQueues, QueueReading } from './listen-queue.js';

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

export function emptyTotals(): Totals {
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

export function mergeTotals(into: Totals, from: Totals): void {
  addTotals(into, from.requests, from);
}

export function addTotals(into: Totals, requests: number, s: (Omit<Totals, 'requests' | 'tlsHandshakeFailures'> & { tlsHandshakeFailures?: number | undefined }) | undefined): void {
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

export interface Member {
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

export interface Slot {
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
  /** The policy's state of a worker (undefined once it is gone): 'ready' is accepting. */
  state(id: number): string | undefined;
  /** Workers ready to serve, as the policy counts them (Policy.readyWorkers); without it, the members whose state
   * is 'ready'. */
  ready?: () => number;
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

  constructor(readonly config: CollectorConfig) {
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

  /** The slot of a live worker (as in --stats and the `worker` label of /metrics); 0 once it is gone. */
  slotOf(id: number): number {
    return this.members.get(id)?.slot.id ?? 0;
  }

  /** The live workers whose app is loaded (ready or draining): those that can answer for the app's metrics. */
  loadedWorkers(): number[] {
    const ids: number[] = [];
    for (const id of this.members.keys()) {
      const state = this.config.state(id);
      if (state === 'ready' || state === 'draining') ids.push(id);
    }
    return ids;
  }

  /** Workers ready to serve (not starting, not draining). */
  readyWorkers(): number {
    if (this.config.ready !== undefined) return this.config.ready();
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

  /** Requests served since the master started, exited workers included (systemd's STATUS=). */
  requestsServed(): number {
    let n = 0;
    for (const slot of this.slots) {
      n += slot.base.requests;
      for (const member of slot.members) n += member.requests;
    }
    return n;
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

  /** The slots, in id order, as the uWSGI stats document shows them (stats.ts). */
  slotList(): readonly Slot[] {
    return this.slots;
  }
}

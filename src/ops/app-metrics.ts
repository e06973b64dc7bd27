// --metrics, in the master: the app's own prom-client metrics, aggregated over the workers with prom-client's
// AggregatorRegistry.aggregate, over node-uwsgi's IPC rather than prom-client's cluster requests (those wait for
// every cluster worker, so a worker still booting or exiting holds a scrape for their 5 s timeout and fails it).
// Counters and histograms are summed; gauges carry a `worker` label (the slot, as in --stats), since a sum of
// gauges misleads; Node's process metrics (--metrics-process) are per worker. A worker that exits leaves its
// counters and histograms in a retired total, from its last report (its drain sends one), so that sums never go
// down when workers are replaced.
import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';
import type { MetricsJson, WorkerMetricsSnapshot } from './worker-metrics.js';

/** How long a scrape waits for the workers' answers; a worker that is late is left out of this scrape. */
export const ANSWER_TIMEOUT_MS = 1000;

interface MetricJson {
  name: string;
  type: string;
  values: Array<{ labels: Record<string, string | number> }>;
}

interface Pending {
  waiting: Set<number>;
  done: () => void;
}

type Aggregate = (metrics: MetricsJson[]) => Registry;

export class AppMetrics {
  private next = 1;
  private readonly pending = new Map<number, Pending>();
  /** Each live worker's last report, with its slot. */
  private readonly last = new Map<number, { slot: number; snapshot: WorkerMetricsSnapshot }>();
  /** Counters and histograms of the workers that have exited, aggregated. */
  private retired: MetricsJson = [];
  /** The exits being folded into `retired`, one after the other. */
  private retiring: Promise<void> = Promise.resolve();
  private aggregateFn: Aggregate | undefined;

  /** `ask(id, n)` sends request n to worker `id` (false: it cannot be reached). */
  constructor(private readonly ask: (id: number, n: number) => boolean) {}

  /** A worker's answer (or its last report, n = 0). */
  answer(id: number, slot: number, n: number, snapshot: WorkerMetricsSnapshot): void {
    this.last.set(id, { slot, snapshot });
    const pending = this.pending.get(n);
    if (pending?.waiting.delete(id) && pending.waiting.size === 0) pending.done();
  }

  /** A worker process ended: its counters join the retired total, and no scrape waits for it. */
  exited(id: number): void {
    const last = this.last.get(id);
    this.last.delete(id);
    for (const pending of this.pending.values()) if (pending.waiting.delete(id) && pending.waiting.size === 0) pending.done();
    if (last === undefined) return;
    const cumulative = (last.snapshot.app as MetricJson[]).filter((m) => m.type === 'counter' || m.type === 'histogram');
    if (cumulative.length === 0) return;
    this.retiring = this.retiring.then(async () => {
      this.retired = await this.aggregate([this.retired, cumulative]).getMetricsAsJSON();
    });
  }

  /** The text for /metrics: asks the `workers` (ids), waits for them (at most ANSWER_TIMEOUT_MS), aggregates. */
  async render(workers: readonly number[]): Promise<string> {
    const n = this.next++;
    const waiting = new Set(workers.filter((id) => this.ask(id, n)));
    if (waiting.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, ANSWER_TIMEOUT_MS);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.pending.set(n, { waiting, done });
      });
      this.pending.delete(n);
    }
    await this.retiring;
    const sets: MetricsJson[] = [this.retired];
    for (const { slot, snapshot } of this.last.values()) {
      sets.push(labelled(snapshot.app as MetricJson[], slot, (m) => m.type === 'gauge'));
      sets.push(labelled(snapshot.process as MetricJson[], slot, () => true));
    }
    if (sets.every((set) => set.length === 0)) return '';
    return this.aggregate(sets).metrics();
  }

  private aggregate(sets: MetricsJson[]): Registry {
    if (this.aggregateFn === undefined) {
      const prom = createRequire(import.meta.url)('prom-client') as typeof import('prom-client');
      this.aggregateFn = (metrics) => prom.AggregatorRegistry.aggregate(metrics as Parameters<typeof prom.AggregatorRegistry.aggregate>[0]);
    }
    return this.aggregateFn(sets);
  }
}

/** A copy of `metrics` where those `which` selects have worker="slot" on each value (kept apart by the sum). */
function labelled(metrics: MetricJson[], slot: number, which: (m: MetricJson) => boolean): MetricJson[] {
  const worker = String(slot);
  return metrics.map((m) => (which(m) ? { ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels, worker } })) } : m));
}

// The master's side of the app's metrics (src/ops/app-metrics.ts), with real prom-client registries standing for
// the workers' and the requests answered by the test: sums, the worker label on gauges, a late worker left out
// after the wait, and a worker's exit that keeps its counters in the sums.
import { Counter, Gauge, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ANSWER_TIMEOUT_MS, AppMetrics } from '../../src/ops/app-metrics.js';

async function workerRegistry(requests: number, pid: number): Promise<unknown[]> {
  const registry = new Registry();
  new Counter({ name: 'app_requests_total', help: 'h', registers: [registry] }).inc(requests);
  new Gauge({ name: 'app_pid', help: 'h', registers: [registry] }).set(pid);
  return registry.getMetricsAsJSON();
}

function lines(text: string): string[] {
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

describe('AppMetrics', () => {
  it('sums counters, labels gauges by worker slot, and keeps an exited worker\'s counters', async () => {
    const asked: Array<[number, number]> = [];
    const metrics = new AppMetrics((id, n) => {
      asked.push([id, n]);
      return true;
    });
    const answers = { 7: await workerRegistry(3, 700), 8: await workerRegistry(4, 800) };
    const text = metrics.render([7, 8]);
    for (const [id, n] of asked) metrics.answer(id, id - 6, n, { app: answers[id as 7 | 8], process: [] });
    expect(lines(await text).sort()).toEqual(['app_pid{worker="1"} 700', 'app_pid{worker="2"} 800', 'app_requests_total 7']);

    metrics.exited(7);
    expect(lines(await metrics.render([])).sort()).toEqual(['app_pid{worker="2"} 800', 'app_requests_total 7']);
  });

  it('leaves out a worker that does not answer in time, and one that cannot be reached', async () => {
    const metrics = new AppMetrics((id) => id !== 3);
    const started = Date.now();
    const text = metrics.render([1, 2, 3]);
    metrics.answer(1, 1, 1, { app: await workerRegistry(5, 100), process: [] });
    const out = lines(await text);
    expect(Date.now() - started).toBeGreaterThanOrEqual(ANSWER_TIMEOUT_MS - 50);
    expect(out.sort()).toEqual(['app_pid{worker="1"} 100', 'app_requests_total 5']);
  });

  it('stops waiting for a worker that exits during a scrape', async () => {
    const metrics = new AppMetrics(() => true);
    const started = Date.now();
    const text = metrics.render([4]);
    metrics.exited(4);
    expect(await text).toBe('');
    expect(Date.now() - started).toBeLessThan(ANSWER_TIMEOUT_MS / 2);
  });
});

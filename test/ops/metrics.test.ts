// /metrics and /health (src/ops/metrics.ts): the exposition format checked line by line, and the listener on a
// real Unix socket (a stale file from a killed process replaced, the file removed on close).
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { WorkerState } from '../../src/master/policy.js';
import { CONTENT_TYPE, renderMetrics, startMetricsServer } from '../../src/ops/metrics.js';
import { StatsCollector } from '../../src/ops/collector.js';
import { LATENCY_BUCKETS, RequestCounters, workerStats } from '../../src/ops/counters.js';
import { statsDocument } from '../../src/ops/stats.js';
import { ListenQueues } from '../../src/ops/listen-queue.js';

const log = pino({ level: 'silent' });

function collectorWith(states: Map<number, WorkerState>): StatsCollector {
  return new StatsCollector({ state: (id) => states.get(id), sockets: [], cwd: '/' });
}

/** Sample lines as { name, labels, value }; throws on any line that is not valid text format 0.0.4. */
function parseExposition(text: string): Array<{ name: string; labels: Record<string, string>; value: number }> {
  expect(text.endsWith('\n')).toBe(true);
  const typed = new Map<string, string>();
  const samples: Array<{ name: string; labels: Record<string, string>; value: number }> = [];
  for (const line of text.slice(0, -1).split('\n')) {
    const meta = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') {
        expect(['counter', 'gauge', 'histogram']).toContain(meta[3]);
        expect(typed.has(meta[2]!), `TYPE twice for ${meta[2]}`).toBe(false);
        typed.set(meta[2]!, meta[3]!);
      }
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{((?:[a-zA-Z_][a-zA-Z0-9_]*="[^"\\\n]*",?)*)\})? (\S+)$/.exec(line);
    expect(sample, `not a sample line: ${JSON.stringify(line)}`).not.toBeNull();
    const [, name, labelText, raw] = sample!;
    const family = [...typed.keys()].find((f) => name === f || (typed.get(f) === 'histogram' && /^(_bucket|_sum|_count)$/.test(name!.slice(f.length)) && name!.startsWith(f)));
    expect(family, `sample ${name} before its TYPE line`).toBeDefined();
    const labels: Record<string, string> = {};
    for (const m of (labelText ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"/g)) labels[m[1]!] = m[2]!;
    const value = Number(raw);
    expect(Number.isNaN(value), line).toBe(false);
    samples.push({ name: name!, labels, value });
  }
  return samples;
}

describe('renderMetrics', () => {
  it('writes valid exposition text with cumulative buckets, counts by status class, restarts and RSS per worker', () => {
    const states = new Map<number, WorkerState>([[1, 'ready'], [2, 'ready']]);
    const stats = collectorWith(states);
    stats.spawned(1, 101);
    stats.spawned(2, 102);
    const a = new RequestCounters();
    a.record(200, 10, 2_000);
    a.record(200, 10, 30_000);
    a.record(503, 10, 3_000_000);
    const b = new RequestCounters();
    b.record(404, 5, 40_000_000);
    stats.heartbeat(1, 3, 30_000_000, workerStats(a, 2, 0));
    stats.heartbeat(2, 1, 20_000_000, workerStats(b, 0, 0));
    stats.exited(2, 'max-rss');

    const samples = parseExposition(renderMetrics(stats));
    const value = (name: string, labels: Record<string, string> = {}): number | undefined =>
      samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

    expect(value('nodeuwsgi_requests_total', { status: '2xx' })).toBe(2);
    expect(value('nodeuwsgi_requests_total', { status: '3xx' })).toBe(0);
    expect(value('nodeuwsgi_requests_total', { status: '4xx' })).toBe(1);
    expect(value('nodeuwsgi_requests_total', { status: '5xx' })).toBe(1);
    const buckets = samples.filter((s) => s.name === 'nodeuwsgi_request_duration_seconds_bucket');
    expect(buckets.map((s) => s.labels.le)).toEqual([...LATENCY_BUCKETS.map(String), '+Inf']);
    expect(buckets.map((s) => s.value)).toEqual([1, 1, 1, 2, 2, 2, 2, 2, 2, 3, 3, 4]);
    expect(value('nodeuwsgi_request_duration_seconds_count')).toBe(4);
    expect(value('nodeuwsgi_request_duration_seconds_sum')).toBeCloseTo(43.032, 6);
    expect(value('nodeuwsgi_inflight')).toBe(2);
    expect(value('nodeuwsgi_workers_ready')).toBe(1);
    expect(value('nodeuwsgi_worker_restarts_total', { cause: 'max-rss' })).toBe(1);
    for (const cause of ['crash', 'harakiri', 'max-requests', 'reload']) expect(value('nodeuwsgi_worker_restarts_total', { cause })).toBe(0);
    expect(value('nodeuwsgi_worker_rss_bytes', { worker: '1' })).toBe(30_000_000);
    expect(value('nodeuwsgi_worker_rss_bytes', { worker: '2' })).toBeUndefined();
  });
});

function get(socketPath: string, path: string): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], body }));
      })
      .on('error', reject);
  });
}

let dir: string | undefined;
afterEach(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('the listen queues', () => {
  it('are gauges per socket where known, and the stats document\'s queue and max_queue', async () => {
    const queues = new ListenQueues({
      sockets: [{ kind: 'unix', path: '/run/a "b".sock' }, { kind: 'unix', path: '/run/gone.sock' }],
      http: [{ kind: 'unix', path: '/run/http.sock' }],
      backlog: 16,
      cwd: '/',
      log,
      ss: async () => 'u_str LISTEN 5 16 /run/a "b".sock 1 * 0\nu_str LISTEN 0 64 /run/http.sock 2 * 0\n',
    });
    const stats = new StatsCollector({ state: () => undefined, sockets: [{ kind: 'unix', path: '/run/a "b".sock' }, { kind: 'unix', path: '/run/gone.sock' }], queues, cwd: '/' });
    expect(parseExposition(renderMetrics(stats)).filter((s) => s.name.startsWith('nodeuwsgi_listen'))).toEqual([]);
    await stats.freshQueues();
    const text = renderMetrics(stats);
    expect(text).toContain('nodeuwsgi_listen_queue{socket="unix:/run/a \\"b\\".sock",proto="uwsgi"} 5\n');
    expect(text).toContain('nodeuwsgi_listen_queue_backlog{socket="unix:/run/http.sock",proto="http"} 64\n');
    expect(text).not.toContain('gone.sock');
    const doc = statsDocument(stats);
    expect(doc.listen_queue).toBe(5);
    expect(doc.sockets.map((s) => [s.name, s.queue, s.max_queue])).toEqual([['/run/a "b".sock', 5, 16], ['/run/gone.sock', 0, 16]]);
  });
});

describe('startMetricsServer', () => {
  it('replaces a stale socket file, answers /health by the workers\' states, 404 elsewhere, and removes its file on close', async () => {
    dir = mkdtempSync(join(tmpdir(), 'nu-metrics-'));
    const path = join(dir, 'metrics.sock');
    // A stale socket file: its process was killed without closing it.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    await new Promise((resolve) => child.once('exit', resolve));
    expect(statSync(path).isSocket()).toBe(true);

    const states = new Map<number, WorkerState>();
    const stats = collectorWith(states);
    const listener = await startMetricsServer({ kind: 'unix', path }, stats, log);
    try {
      expect(await get(path, '/health')).toMatchObject({ status: 503 });
      stats.spawned(1, 101);
      states.set(1, 'starting');
      expect((await get(path, '/health')).status).toBe(503);
      states.set(1, 'ready');
      const healthy = await get(path, '/health');
      expect(healthy.status).toBe(200);
      expect(JSON.parse(healthy.body)).toEqual({ status: 'ok', ready: 1 });
      const metrics = await get(path, '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.type).toBe(CONTENT_TYPE);
      expect(parseExposition(metrics.body).length).toBeGreaterThan(10);
      expect((await get(path, '/other')).status).toBe(404);
      stats.stopping = true;
      expect(JSON.parse((await get(path, '/health')).body)).toEqual({ status: 'stopping', ready: 1 });
    } finally {
      listener.close();
    }
    expect(existsSync(path)).toBe(false);
  });
});

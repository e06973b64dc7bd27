// The stats model (src/ops/counters.ts, collector.ts, stats.ts): a worker's counters, the master's slots as uWSGI keeps them, the document
// uwsgitop reads, and the listen queue read from /proc with a real listener whose process does not accept.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { WorkerStats } from '../../src/ops/counters.js';
import type { WorkerState } from '../../src/master/policy.js';
import { StatsCollector, restartCause } from '../../src/ops/collector.js';
import { LATENCY_BUCKETS, RequestCounters, workerStats } from '../../src/ops/counters.js';
import { listenQueue } from '../../src/ops/listen-queue.js';
import { statsDocument } from '../../src/ops/stats.js';

function collector(states: Map<number, WorkerState>, now = () => 1_700_000_000_000): StatsCollector {
  return new StatsCollector({ state: (id) => states.get(id), sockets: [{ kind: 'unix', path: '/run/app.sock' }], cwd: '/srv/app', now });
}

function report(overrides: Partial<WorkerStats> = {}): WorkerStats {
  const counters = new RequestCounters();
  return { ...workerStats(counters, 0, 0), ...overrides };
}

describe('RequestCounters', () => {
  it('counts statuses by class, 500s as exceptions, bytes, and latencies into Prometheus buckets', () => {
    const c = new RequestCounters();
    c.record(200, 100, 1_000); // 1 ms
    c.record(204, 0, 5_000); // exactly 5 ms: le="0.005" holds it
    c.record(404, 50, 7_000_000); // 7 s
    c.record(500, 30, 20_000_000); // 20 s: only +Inf
    c.record(0, 0, 2_000); // the peer left
    expect(c.statuses).toEqual([0, 2, 0, 1, 1, 1]);
    expect(c.exceptions).toBe(1);
    expect(c.tx).toBe(180);
    expect(c.buckets[0]).toBe(3);
    expect(c.buckets[LATENCY_BUCKETS.indexOf(10)]).toBe(1);
    expect(c.buckets[LATENCY_BUCKETS.length]).toBe(1);
    expect(c.buckets.reduce((a, b) => a + b)).toBe(5);
    expect(c.latencySum).toBeCloseTo(27.008, 6);
    expect(c.runningTime).toBe(27_008_000);
  });

  it('keeps uWSGI\'s running average of response times: (previous + latest) / 2', () => {
    const c = new RequestCounters();
    c.record(200, 0, 1000);
    c.record(200, 0, 3000);
    expect(c.avgRt).toBe(1750);
  });
});

describe('restartCause', () => {
  it('names why a worker was replaced, and nothing for stops and scale-downs', () => {
    expect(restartCause({})).toBe('crash');
    expect(restartCause({ cause: 'harakiri' })).toBe('harakiri');
    // Killed after --graceful-timeout while being replaced by a reload: the restart was the reload.
    expect(restartCause({ retiring: 'reload', cause: 'graceful-timeout' })).toBe('reload');
    expect(restartCause({ retiring: 'max-requests', cause: 'max-requests' })).toBe('max-requests');
    expect(restartCause({ retiring: 'stop', cause: 'stop' })).toBeUndefined();
    expect(restartCause({ retiring: 'scale-down', cause: 'scale-down' })).toBeUndefined();
    expect(restartCause({ cause: 'quit' })).toBeUndefined();
    expect(restartCause(undefined)).toBeUndefined();
  });
});

describe('StatsCollector', () => {
  it('keeps workers in uWSGI slots: a respawn takes the free slot, requests add up, respawn_count counts', () => {
    const states = new Map<number, WorkerState>();
    const stats = collector(states);
    stats.spawned(1, 101);
    stats.spawned(2, 102);
    states.set(1, 'ready').set(2, 'ready');
    stats.heartbeat(1, 10, 50_000_000, report({ tx: 1000, exceptions: 1, busy: 1, avgRt: 1500, runningTime: 20_000 }));
    stats.heartbeat(2, 5, 40_000_000, report({ tx: 500 }));

    let doc = statsDocument(stats);
    expect(doc.workers.map((w) => [w.id, w.pid, w.requests, w.status, w.respawn_count, w.accepting])).toEqual([
      [1, 101, 10, 'busy', 1, 1],
      [2, 102, 5, 'idle', 1, 1],
    ]);
    expect(doc.workers[0]).toMatchObject({ tx: 1000, exceptions: 1, avg_rt: 1500, running_time: 20_000, rss: 50_000_000, last_spawn: 1_700_000_000 });

    // Worker 1 dies; its replacement takes slot 1 and inherits its totals.
    states.delete(1);
    stats.exited(1, 'crash');
    stats.spawned(3, 103);
    states.set(3, 'starting');
    doc = statsDocument(stats);
    expect(doc.workers[0]).toMatchObject({ id: 1, pid: 103, requests: 10, delta_requests: 0, respawn_count: 2, tx: 1000, accepting: 0, status: 'idle' });
    stats.heartbeat(3, 2, 1, report({ tx: 10 }));
    expect(statsDocument(stats).workers[0]).toMatchObject({ requests: 12, delta_requests: 2, tx: 1010 });
    expect(stats.restartCounts().get('crash')).toBe(1);
    expect(stats.totals().requests).toBe(17);
  });

  it('puts a replacement in the slot of the worker it replaces; both count while both run', () => {
    const states = new Map<number, WorkerState>([[1, 'ready']]);
    const stats = collector(states);
    stats.spawned(1, 101);
    stats.heartbeat(1, 7, 1, report({ busy: 1 }));
    stats.spawned(2, 102, 1);
    states.set(2, 'ready').set(1, 'draining');
    stats.heartbeat(2, 3, 1, report());
    let doc = statsDocument(stats);
    expect(doc.workers).toHaveLength(1);
    expect(doc.workers[0]).toMatchObject({ id: 1, pid: 102, requests: 10, delta_requests: 3, status: 'busy', respawn_count: 2 });
    stats.heartbeat(1, 8, 1, report());
    stats.exited(1, 'reload');
    doc = statsDocument(stats);
    expect(doc.workers[0]).toMatchObject({ requests: 11, status: 'idle' });
    expect(stats.restartCounts().get('reload')).toBe(1);
  });

  it('counts harakiri kills per slot, shows an empty slot as cheap, and stops counting restarts once stopping', () => {
    const states = new Map<number, WorkerState>([[1, 'ready'], [2, 'ready']]);
    const stats = collector(states);
    stats.spawned(1, 101);
    stats.spawned(2, 102);
    expect(stats.healthy()).toBe(true);
    stats.exited(2, 'harakiri');
    states.delete(2);
    const doc = statsDocument(stats);
    expect(doc.workers[1]).toMatchObject({ id: 2, pid: 0, status: 'cheap', harakiri_count: 1, accepting: 0 });
    expect(stats.restartCounts().get('harakiri')).toBe(1);
    stats.stopping = true;
    expect(stats.healthy()).toBe(false);
    stats.exited(1, 'crash');
    expect(stats.restartCounts().get('crash')).toBe(0);
  });

  it('writes every field uwsgitop reads, with its type', () => {
    const states = new Map<number, WorkerState>([[1, 'ready']]);
    const stats = collector(states);
    stats.spawned(1, 101);
    stats.appReady(1, 2500);
    stats.heartbeat(1, 3, 1, report());
    const doc = JSON.parse(JSON.stringify(statsDocument(stats))) as Record<string, unknown>;
    for (const key of ['listen_queue', 'load', 'pid', 'uid', 'gid', 'signal_queue']) expect(typeof doc[key], key).toBe('number');
    expect(typeof doc.version).toBe('string');
    expect(doc.cwd).toBe('/srv/app');
    expect(doc.sockets).toEqual([{ name: '/run/app.sock', proto: 'uwsgi', queue: 0, max_queue: 0, shared: 0, can_offload: 0 }]);
    const worker = (doc.workers as Array<Record<string, unknown>>)[0]!;
    for (const key of ['id', 'pid', 'accepting', 'requests', 'delta_requests', 'exceptions', 'harakiri_count', 'signals', 'signal_queue', 'rss', 'vsz', 'running_time', 'last_spawn', 'respawn_count', 'tx', 'avg_rt']) {
      expect(Number.isInteger(worker[key]), key).toBe(true);
    }
    expect(typeof worker.status).toBe('string');
    expect(worker.apps).toEqual([{ id: 0, modifier1: 0, mountpoint: '', startup_time: 3, requests: 3, exceptions: 0, chdir: '/srv/app' }]);
    expect((worker.cores as Array<Record<string, unknown>>)[0]).toMatchObject({ id: 0, requests: 3, in_request: 0 });
  });
});

describe('listenQueue', () => {
  it('reads the accept backlog of a TCP listener from /proc/net/tcp', async () => {
    // A listener in a process whose event loop is blocked: connections complete the handshake and wait in the
    // kernel's accept queue, which is what the master's listening socket holds when every worker is busy.
    const child = spawn(
      process.execPath,
      [
        '-e',
        `const s = require('net').createServer().listen(0, '127.0.0.1', () => {
           process.stdout.write(String(s.address().port) + '\\n'); // synchronous on a pipe (Linux)
           Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 30000);
         });`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      const port = await new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(Number(String(d).trim()))));
      const clients = await Promise.all(
        [1, 2, 3].map(
          () =>
            new Promise<net.Socket>((resolve, reject) => {
              const socket = net.connect({ host: '127.0.0.1', port }, () => resolve(socket));
              socket.once('error', reject);
            }),
        ),
      );
      expect(listenQueue({ kind: 'tcp', host: '127.0.0.1', port })).toBe(3);
      for (const socket of clients) socket.destroy();
      expect(listenQueue({ kind: 'unix', path: '/nonexistent.sock' })).toBe(0);
    } finally {
      child.kill('SIGKILL');
    }
  }, 20_000);
});

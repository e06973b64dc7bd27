// The worker's in-flight table (src/worker/inflight.ts): slots taken and given back, the overflow beyond 64
// requests, the counters and the --max-requests threshold, and the shared buffer as the watchdog thread reads it,
// from another thread while this one is busy.
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { InflightTable, SLOTS, TABLE_BYTES, readTable } from '../../src/worker/inflight.js';

describe('InflightTable', () => {
  it('lists the requests in flight oldest first, and forgets each one at its end', () => {
    const table = new InflightTable();
    const a = table.start('GET', '/a');
    const b = table.start('POST', '/b?x=1');
    expect(table.busy).toBe(2);
    expect(table.list().map((r) => `${r.method} ${r.uri}`)).toEqual(['GET /a', 'POST /b?x=1']);
    expect(readTable(table.buffer).inflight.map((r) => `${r.method} ${r.uri}`)).toEqual(['GET /a', 'POST /b?x=1']);
    table.end(a, 200, 5);
    expect(table.list().map((r) => r.uri)).toEqual(['/b?x=1']);
    expect(readTable(table.buffer).inflight.map((r) => r.uri)).toEqual(['/b?x=1']);
    table.end(b, 201, 7);
    expect(table.list()).toEqual([]);
    expect(readTable(table.buffer).inflight).toEqual([]);
    expect({ busy: table.busy, requests: table.requests }).toEqual({ busy: 0, requests: 2 });
  });

  it('gives a freed slot to the next request, and keeps a slot reused by a later request apart from older ones', () => {
    const table = new InflightTable();
    const first = table.start('GET', '/first');
    table.end(first, 200);
    const again = table.start('GET', '/again');
    expect(again).toBe(first);
    const other = table.start('GET', '/other');
    expect(other).not.toBe(again);
    expect(readTable(table.buffer).inflight.map((r) => r.uri)).toEqual(['/again', '/other']);
  });

  it('counts the requests beyond the 64 slots as untracked, times them all the same, and gives the slots back', () => {
    const table = new InflightTable();
    const tokens = Array.from({ length: SLOTS + 3 }, (_, i) => table.start('GET', `/${i}`));
    expect(new Set(tokens).size).toBe(SLOTS + 3);
    expect(tokens.filter((t) => t >= SLOTS)).toHaveLength(3);
    const view = readTable(table.buffer);
    expect(view.inflight).toHaveLength(SLOTS);
    expect(view.untracked).toBe(3);
    expect(table.busy).toBe(SLOTS + 3);
    for (const token of tokens.slice(SLOTS)) table.end(token, 200, 1);
    expect(readTable(table.buffer).untracked).toBe(0);
    // The overflow's three were timed and counted as the slots' requests are.
    expect(table.counters.statuses.reduce((a, b) => a + b, 0)).toBe(3);
    expect(table.counters.tx).toBe(3);
    for (const token of tokens.slice(0, SLOTS)) table.end(token, 200, 1);
    expect({ busy: table.busy, requests: table.requests, inflight: readTable(table.buffer).inflight.length }).toEqual({
      busy: 0,
      requests: SLOTS + 3,
      inflight: 0,
    });
    // Every slot is free again: 64 more requests are tracked, none untracked.
    for (let i = 0; i < SLOTS; i++) table.start('GET', '/again');
    expect(readTable(table.buffer)).toMatchObject({ untracked: 0 });
    expect(readTable(table.buffer).inflight).toHaveLength(SLOTS);
  });

  it('records status, bytes and a latency per finished request, and exceptions for 500', () => {
    const table = new InflightTable(false);
    table.end(table.start('GET', '/ok'), 200, 100);
    table.end(table.start('GET', '/boom'), 500, 20);
    table.end(table.start('GET', '/gone'), 0, 0);
    expect(table.counters.tx).toBe(120);
    expect(table.counters.exceptions).toBe(1);
    expect(table.counters.statuses.reduce((a, b) => a + b, 0)).toBe(3);
    expect(table.counters.buckets.reduce((a, b) => a + b, 0)).toBe(3);
    expect(table.counters.latencySum).toBeGreaterThan(0);
    expect(table.requests).toBe(3);
  });

  it('calls onThreshold once, when the count of finished requests reaches the threshold', () => {
    const table = new InflightTable(false);
    let calls = 0;
    table.threshold = 3;
    table.onThreshold = () => calls++;
    for (let i = 0; i < 2; i++) table.end(table.start('GET', '/'), 200);
    expect(calls).toBe(0);
    table.end(table.start('GET', '/'), 200);
    expect(calls).toBe(1);
    for (let i = 0; i < 5; i++) table.end(table.start('GET', '/'), 200);
    expect(calls).toBe(1);
  });

  it('without --harakiri (shared false) lists from its own copy and writes no request text to the buffer', () => {
    const table = new InflightTable(false);
    table.start('DELETE', '/secret');
    expect(table.list().map((r) => `${r.method} ${r.uri}`)).toEqual(['DELETE /secret']);
    expect(Buffer.from(table.buffer).includes('/secret')).toBe(false);
  });

  it('cuts a long request line to its slot (240 bytes) and keeps the method whole', () => {
    const table = new InflightTable();
    const uri = `/${'x'.repeat(1000)}`;
    table.start('GET', uri);
    const [view] = readTable(table.buffer).inflight;
    expect(view!.method).toBe('GET');
    expect(`${view!.method} ${view!.uri}`).toHaveLength(240);
    expect(uri.startsWith(view!.uri)).toBe(true);
    // The main thread's own copy is whole.
    expect(table.list()[0]!.uri).toBe(uri);
  });

  it('is read whole by another thread (the watchdog, with dist/worker/inflight.js) while this thread is blocked', async () => {
    const table = new InflightTable();
    table.tick();
    table.tick();
    table.start('GET', '/blocked?id=7');
    expect(readTable(table.buffer).tick).toBe(2);
    // sync[0]: this thread has ticked; sync[1]: the reader has read again.
    const sync = new Int32Array(new SharedArrayBuffer(8));
    const worker = new Worker(
      `const { parentPort, workerData } = require('node:worker_threads');
       import(workerData.module).then(({ readTable }) => {
         const first = readTable(workerData.buffer);
         parentPort.postMessage(first);
         Atomics.wait(workerData.sync, 0, 0, 10000);
         const second = readTable(workerData.buffer);
         Atomics.store(workerData.sync, 1, 1);
         Atomics.notify(workerData.sync, 1);
         parentPort.postMessage(second);
       });`,
      { eval: true, workerData: { buffer: table.buffer, sync, module: new URL('../../dist/worker/inflight.js', import.meta.url).href } },
    );
    try {
      const views: Array<ReturnType<typeof readTable>> = [];
      const second = new Promise<void>((resolve, reject) => {
        worker.on('message', (view: ReturnType<typeof readTable>) => {
          views.push(view);
          if (views.length === 2) resolve();
        });
        worker.on('error', reject);
      });
      await new Promise<void>((resolve) => worker.once('message', () => resolve()));
      table.tick();
      Atomics.store(sync, 0, 1);
      Atomics.notify(sync, 0);
      // Blocked here, as a worker whose app spins is: the other thread still reads the table, tick included.
      expect(Atomics.wait(sync, 1, 0, 10_000)).not.toBe('timed-out');
      await second;
      expect(views.map((v) => v.tick)).toEqual([2, 3]);
      expect(views[1]!.inflight).toMatchObject([{ method: 'GET', uri: '/blocked?id=7' }]);
      expect(views[1]!.untracked).toBe(0);
      expect(table.buffer.byteLength).toBe(TABLE_BYTES);
    } finally {
      await worker.terminate();
    }
  });
});

// --send-timeout's one timer (src/server/send-watch.ts) over real Unix sockets, on a fake clock: a peer that takes
// nothing of a big response for the timeout is reported once; one that keeps reading, slowly, never is; nor is a
// socket with nothing left to send, or one unwatched; the timer stops once nothing is watched.
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SendWatch, type StallListener } from '../../src/server/send-watch.js';
import { useCleanups } from '../helpers/cleanup.js';

const { defer, tempDir } = useCleanups('nu-send-watch-');
const TIMEOUT = 2_000;
/** The scan interval for TIMEOUT: a quarter of it. */
const TICK = 500;
/** Far more than the kernel's buffers on both ends hold (some hundreds of KiB for a Unix socket). */
const BIG = Buffer.alloc(16 * 1024 * 1024, 'x');

/** A connected pair: `server` is the side a response is written to, `client` the peer, paused (reads nothing). */
async function pair(): Promise<{ server: net.Socket; client: net.Socket }> {
  const path = join(tempDir(), 's.sock');
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(path, resolve));
  const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
  const client = net.connect({ path });
  client.pause();
  const server = await accepted;
  defer(() => {
    server.destroy();
    client.destroy();
    listener.close();
  });
  return { server, client };
}

function recorder(): StallListener & { calls: Array<{ socket: net.Socket; pending: number }> } {
  const calls: Array<{ socket: net.Socket; pending: number }> = [];
  return { calls, sendStalled: (socket, pending) => calls.push({ socket, pending }) };
}

/** Lets real I/O run a few turns of the event loop (setImmediate is not faked): libuv writes what the peer's
 * buffer has room for. */
async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) await new Promise((resolve) => setImmediate(resolve));
}

/** Writes BIG, one write, which the paused peer cannot take: most of it stays queued in libuv. */
async function fillUp(server: net.Socket): Promise<void> {
  server.write(BIG);
  await settle();
  expect(server.writableLength).toBe(BIG.length);
}

/** Lets the client take what is waiting for it, then pauses it again. */
async function readSome(client: net.Socket): Promise<number> {
  const got = new Promise<number>((resolve) => client.once('data', (chunk: Buffer) => resolve(chunk.length)));
  client.resume();
  const n = await got;
  client.pause();
  return n;
}

beforeEach(() => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval', 'Date'] });
});
afterEach(() => {
  vi.useRealTimers();
});

describe('SendWatch', () => {
  it('tells the listener once, with the bytes still waiting, when the peer takes nothing for the timeout', async () => {
    const { server } = await pair();
    await fillUp(server);
    const watch = new SendWatch(TIMEOUT);
    expect(watch.seconds).toBe(2);
    const listener = recorder();
    watch.watch(server, listener);
    // Watched from now: the scans at 500, 1000 and 1500 ms see the same bytes waiting, the one at 2000 reports.
    vi.advanceTimersByTime(TIMEOUT - 1);
    expect(listener.calls).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(listener.calls).toHaveLength(1);
    expect(listener.calls[0]!.socket).toBe(server);
    expect(listener.calls[0]!.pending).toBe(server.writableLength);
    expect(listener.calls[0]!.pending).toBeGreaterThan(0);
    // Once: the socket is no longer watched.
    vi.advanceTimersByTime(TIMEOUT * 3);
    expect(listener.calls).toHaveLength(1);
  });

  it('never tells of a peer that keeps taking bytes, however slowly, and does once it stops', async () => {
    const { server, client } = await pair();
    await fillUp(server);
    const watch = new SendWatch(TIMEOUT);
    const listener = recorder();
    watch.watch(server, listener);
    let taken = 0;
    // Four timeouts long, a read between every two scans.
    for (let i = 0; i < 16; i++) {
      vi.advanceTimersByTime(TICK);
      taken += await readSome(client);
      await settle();
    }
    expect(taken).toBeGreaterThan(0);
    expect(server.writableLength).toBeGreaterThan(0);
    expect(listener.calls).toEqual([]);
    vi.advanceTimersByTime(TIMEOUT + TICK);
    expect(listener.calls).toHaveLength(1);
  });

  it('leaves alone a socket with nothing left to send, and a socket unwatched before its timeout', async () => {
    const idle = await pair();
    const stuck = await pair();
    await fillUp(stuck.server);
    const watch = new SendWatch(TIMEOUT);
    const listener = recorder();
    watch.watch(idle.server, listener);
    watch.watch(stuck.server, listener);
    vi.advanceTimersByTime(TIMEOUT - TICK);
    watch.unwatch(stuck.server);
    vi.advanceTimersByTime(TIMEOUT * 4);
    expect(listener.calls).toEqual([]);
  });

  it('runs one timer for all its sockets, and stops it at the first scan that finds none watched', async () => {
    const a = await pair();
    const b = await pair();
    const before = vi.getTimerCount();
    const watch = new SendWatch(TIMEOUT);
    const listener = recorder();
    watch.watch(a.server, listener);
    watch.watch(b.server, listener);
    expect(vi.getTimerCount() - before).toBe(1);
    watch.unwatch(a.server);
    watch.unwatch(b.server);
    expect(vi.getTimerCount() - before).toBe(1);
    vi.advanceTimersByTime(TICK);
    expect(vi.getTimerCount() - before).toBe(0);
    watch.watch(a.server, listener);
    expect(vi.getTimerCount() - before).toBe(1);
  });

  it('scans every quarter of the timeout, at least every 10 ms and at most every second', async () => {
    const { server } = await pair();
    await fillUp(server);
    for (const [timeout, tick] of [
      [20, 10],
      [400, 100],
      [60_000, 1_000],
    ] as const) {
      const watch = new SendWatch(timeout);
      const listener = recorder();
      watch.watch(server, listener);
      // Reported by the scan at the timeout (a multiple of the tick here), not by the one before it.
      vi.advanceTimersByTime(timeout - 1);
      expect(listener.calls, `timeout ${timeout}`).toEqual([]);
      vi.advanceTimersByTime(1);
      expect(listener.calls, `timeout ${timeout}`).toHaveLength(1);
      // The next scan finds nothing watched and stops the timer.
      vi.advanceTimersByTime(tick);
      expect(vi.getTimerCount(), `timeout ${timeout}`).toBe(0);
    }
  });
});

// The systemd notifier (src/ops/systemd.ts) through its injected inputs: the environment (NOTIFY_SOCKET, the
// watchdog's variables, and the PATH its systemd-notify runs are looked up on), the policy's view and the clock.
// The systemd-notify here is a recorder on that PATH: one line per run with the NOTIFY_SOCKET it was given and its
// arguments, failing on demand. Node alone cannot receive a Unix datagram; the real systemd-notify to a real
// NOTIFY_SOCKET is test/integration/systemd-notify.test.ts.
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Action } from '../../src/master/policy.js';
import { StatsCollector } from '../../src/ops/collector.js';
import { STATUS_INTERVAL_MS, createSystemdNotifier, type StatusView } from '../../src/ops/systemd.js';
import { useCleanups } from '../helpers/cleanup.js';
import { memoryLogger } from '../helpers/serve.js';

const { tempDir } = useCleanups('nu-systemd-');
const PID = 4242;

afterEach(() => {
  vi.restoreAllMocks();
});

/** A folder with a systemd-notify that records its runs in `runs` and fails while `fail` exists. */
function recorder(): { env: NodeJS.ProcessEnv; runs: () => string[][]; failing: (on: boolean) => void; socket: string } {
  const dir = tempDir();
  const socket = join(dir, 'notify.sock');
  const runs = join(dir, 'runs');
  const fail = join(dir, 'fail');
  writeFileSync(
    join(dir, 'systemd-notify'),
    `#!/bin/sh
{ printf '%s' "$NOTIFY_SOCKET"; for arg in "$@"; do printf '\\t%s' "$arg"; done; printf '\\n'; } >> '${runs}'
if [ -e '${fail}' ]; then echo 'Failed to notify init system: Connection refused' >&2; exit 1; fi
`,
    { mode: 0o755 },
  );
  return {
    env: { NOTIFY_SOCKET: socket, PATH: dir, HOME: '/home/app' },
    runs: () => (existsSync(runs) ? readFileSync(runs, 'utf8').split('\n').slice(0, -1).map((line) => line.split('\t')) : []),
    failing: (on) => (on ? writeFileSync(fail, '') : rmSync(fail, { force: true })),
    socket,
  };
}

/** The master's view (a real collector and the policy's desired count), from plain data the test changes between
 * calls: a worker gone from the list has exited, its requests stay served. */
function policy(workers: Array<[number, 'starting' | 'ready' | 'retiring', number]>, desiredWorkers = 2): StatusView & { set(w: typeof workers): void } {
  const states = new Map<number, string>();
  const stats = new StatsCollector({ state: (id) => states.get(id), sockets: [], cwd: '/' });
  const view = {
    readyWorkers: () => stats.readyWorkers(),
    requestsServed: () => stats.requestsServed(),
    desiredWorkers,
    set(list: typeof workers) {
      for (const id of [...states.keys()]) {
        if (list.some(([other]) => other === id)) continue;
        stats.exited(id, undefined);
        states.delete(id);
      }
      for (const [id, state, requests] of list) {
        if (!states.has(id)) stats.spawned(id, 1000 + id);
        states.set(id, state);
        stats.heartbeat(id, requests, 0, undefined);
      }
    },
  };
  view.set(workers);
  return view;
}

/** The notifier's clock (performance.now), moved by the test. */
function clock(): { advance(ms: number): void } {
  let now = 1_000_000;
  vi.spyOn(performance, 'now').mockImplementation(() => now);
  return { advance: (ms) => (now += ms) };
}

const ready: Action = { type: 'ready', reason: 'boot', workers: 2, ms: 12 };

describe('the systemd notifier', () => {
  it('is off without NOTIFY_SOCKET, and takes NOTIFY_SOCKET and the watchdog variables out of the environment either way', async () => {
    const rec = recorder();
    for (const socket of [undefined, '']) {
      const env: NodeJS.ProcessEnv = { ...rec.env, NOTIFY_SOCKET: socket, WATCHDOG_USEC: '1000000', WATCHDOG_PID: String(PID) };
      const { log, records } = memoryLogger();
      const notifier = createSystemdNotifier(policy([[1, 'ready', 0]]), log, env, PID);
      notifier.action(ready);
      notifier.tick();
      await notifier.flush();
      expect(env).toEqual({ PATH: rec.env.PATH, HOME: '/home/app' });
      expect(records).toEqual([]);
    }
    const env = { ...rec.env, WATCHDOG_USEC: '1000000', WATCHDOG_PID: String(PID) };
    createSystemdNotifier(policy([]), memoryLogger().log, env, PID);
    expect(env).toEqual({ PATH: rec.env.PATH, HOME: '/home/app' });
    expect(rec.runs()).toEqual([]);
  });

  it('sends READY=1, RELOADING=1 with MONOTONIC_USEC and STOPPING=1 in the order decided, each with its status line', async () => {
    const rec = recorder();
    const view = policy([
      [1, 'ready', 3],
      [2, 'starting', 0],
    ]);
    const notifier = createSystemdNotifier(view, memoryLogger().log, { ...rec.env }, PID);
    notifier.action({ type: 'spawn', id: 3, generation: 1, maxRequests: 0 });
    notifier.action(ready);
    view.set([
      [1, 'ready', 3],
      [2, 'ready', 1],
    ]);
    const before = process.hrtime.bigint() / 1000n;
    notifier.action({ type: 'reloading', generation: 2, workers: 2 });
    const after = process.hrtime.bigint() / 1000n;
    notifier.action({ type: 'drain', id: 1, cause: 'reload' });
    view.set([[2, 'ready', 1]]);
    notifier.action({ type: 'stopping', graceful: true });
    await notifier.flush();
    const runs = rec.runs();
    expect(runs.map((r) => r[0])).toEqual([rec.socket, rec.socket, rec.socket]);
    expect(runs[0]!.slice(1)).toEqual(['READY=1', 'STATUS=1 of 2 workers ready, 3 requests served']);
    expect(runs[1]![1]).toBe('RELOADING=1');
    const usec = BigInt(/^MONOTONIC_USEC=(\d+)$/.exec(runs[1]![2]!)![1]!);
    expect(usec >= before && usec <= after, `${before} <= ${usec} <= ${after}`).toBe(true);
    expect(runs[1]![3]).toBe('STATUS=reloading: 2 of 2 workers ready, 4 requests served');
    // Worker 1 is gone; its 3 requests still count.
    expect(runs[2]!.slice(1)).toEqual(['STOPPING=1', 'STATUS=stopping: 1 of 2 workers ready, 4 requests served']);
  });

  it('sends STATUS= on a tick only when it changed, and at most every 2 s', async () => {
    const rec = recorder();
    const time = clock();
    const view = policy([[1, 'starting', 0]], 1);
    const notifier = createSystemdNotifier(view, memoryLogger().log, { ...rec.env }, PID);
    notifier.tick();
    notifier.tick();
    await notifier.flush();
    expect(rec.runs().map((r) => r.slice(1))).toEqual([['STATUS=starting: 0 of 1 workers ready, 0 requests served']]);
    notifier.action(ready);
    view.set([[1, 'ready', 1]]);
    // Changed, but not due: the ready message went 0 ms ago with the old count.
    time.advance(STATUS_INTERVAL_MS - 1);
    notifier.tick();
    await notifier.flush();
    expect(rec.runs()).toHaveLength(2);
    time.advance(1);
    notifier.tick();
    await notifier.flush();
    expect(rec.runs()[2]!.slice(1)).toEqual(['STATUS=1 of 1 workers ready, 1 request served']);
    // Due, unchanged: nothing.
    time.advance(STATUS_INTERVAL_MS * 5);
    notifier.tick();
    await notifier.flush();
    expect(rec.runs()).toHaveLength(3);
    // A replacement: the old worker's requests stay counted.
    view.set([[2, 'ready', 2]]);
    time.advance(STATUS_INTERVAL_MS);
    notifier.tick();
    await notifier.flush();
    expect(rec.runs()[3]!.slice(1)).toEqual(['STATUS=1 of 1 workers ready, 3 requests served']);
  });

  it('pings WATCHDOG=1 every half WATCHDOG_USEC while a worker is ready, and never without one', async () => {
    const rec = recorder();
    const time = clock();
    const view = policy([[1, 'starting', 0]], 1);
    const notifier = createSystemdNotifier(view, memoryLogger().log, { ...rec.env, WATCHDOG_USEC: '4000000', WATCHDOG_PID: String(PID) }, PID);
    const pings = (): number => rec.runs().filter((r) => r[1] === 'WATCHDOG=1').length;
    notifier.tick();
    time.advance(10_000);
    notifier.tick();
    await notifier.flush();
    expect(pings()).toBe(0);
    view.set([[1, 'ready', 0]]);
    notifier.tick();
    await notifier.flush();
    expect(pings()).toBe(1);
    time.advance(1_999);
    notifier.tick();
    await notifier.flush();
    expect(pings()).toBe(1);
    time.advance(1);
    notifier.tick();
    await notifier.flush();
    expect(pings()).toBe(2);
    // Every WATCHDOG=1 went out alone, without a status line.
    expect(rec.runs().filter((r) => r.includes('WATCHDOG=1')).every((r) => r.length === 2)).toBe(true);
  });

  it('keeps at most one WATCHDOG=1 waiting behind a slow systemd-notify', () => {
    const rec = recorder();
    const time = clock();
    const notifier = createSystemdNotifier(policy([[1, 'ready', 0]], 1), memoryLogger().log, { ...rec.env, WATCHDOG_USEC: '2000000' }, PID);
    // Synchronously, before any run has finished: the first message is being sent, the rest wait in the queue.
    notifier.action(ready);
    for (let i = 0; i < 10; i++) {
      notifier.tick();
      time.advance(1_000);
    }
    return notifier.flush().then(() => {
      expect(rec.runs().filter((r) => r[1] === 'WATCHDOG=1')).toHaveLength(1);
    });
  });

  it('has no watchdog when WATCHDOG_PID names another process, and warns once of a WATCHDOG_USEC that is not a number', async () => {
    const rec = recorder();
    const time = clock();
    const other = createSystemdNotifier(policy([[1, 'ready', 0]], 1), memoryLogger().log, { ...rec.env, WATCHDOG_USEC: '2000000', WATCHDOG_PID: '1' }, PID);
    const { log, records } = memoryLogger();
    const bad = createSystemdNotifier(policy([[1, 'ready', 0]], 1), log, { ...rec.env, WATCHDOG_USEC: '2s' }, PID);
    for (let i = 0; i < 3; i++) {
      other.tick();
      bad.tick();
      time.advance(5_000);
    }
    await Promise.all([other.flush(), bad.flush()]);
    expect(rec.runs().filter((r) => r[1] === 'WATCHDOG=1')).toEqual([]);
    expect(records.filter((r) => r.code === 'ERR_SYSTEMD_NOTIFY')).toMatchObject([{ level: 40, watchdogUsec: '2s' }]);
  });

  it('logs a failing systemd-notify once as an error with its stderr, then at debug, and says when it works again', async () => {
    const rec = recorder();
    rec.failing(true);
    const { log, records } = memoryLogger();
    const view = policy([[1, 'ready', 0]], 1);
    const notifier = createSystemdNotifier(view, log, { ...rec.env }, PID);
    notifier.action(ready);
    notifier.action({ type: 'reloading', generation: 2, workers: 1 });
    await notifier.flush();
    expect(rec.runs()).toHaveLength(2);
    const errors = records.filter((r) => r.level === 50);
    expect(errors).toMatchObject([
      {
        code: 'ERR_SYSTEMD_NOTIFY',
        msg: 'cannot notify systemd: systemd-notify failed',
        stderr: 'Failed to notify init system: Connection refused',
        message: ['READY=1', 'STATUS=1 of 1 workers ready, 0 requests served'],
      },
    ]);
    expect(records.filter((r) => r.msg === 'systemd-notify failed again')).toHaveLength(1);
    rec.failing(false);
    notifier.action({ type: 'stopping', graceful: true });
    await notifier.flush();
    expect(records.filter((r) => r.msg === 'systemd-notify works again')).toMatchObject([{ level: 30 }]);
    expect(rec.runs().at(-1)!.slice(1, 2)).toEqual(['STOPPING=1']);
  });

  it('logs an error, and keeps going, where systemd-notify is not installed', async () => {
    const { log, records } = memoryLogger();
    const notifier = createSystemdNotifier(policy([[1, 'ready', 0]], 1), log, { NOTIFY_SOCKET: join(tempDir(), 'n.sock'), PATH: tempDir() }, PID);
    notifier.action(ready);
    notifier.action({ type: 'stopping', graceful: false });
    await notifier.flush();
    expect(records.filter((r) => r.level === 50)).toMatchObject([{ code: 'ERR_SYSTEMD_NOTIFY', err: { code: 'ENOENT' } }]);
  });
});

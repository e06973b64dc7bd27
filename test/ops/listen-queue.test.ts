// The listen queue reader (src/ops/listen-queue.ts): ss's listener rows, the warning once per episode, the
// once-a-second bound on running ss, and what happens without ss; a fake ss and clock, the real kernel where
// the backlog's cap is concerned.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { FRESH_MS, ListenQueues, SS_RETRY_MS, parseUnixListeners } from '../../src/ops/listen-queue.js';
import { effectiveBacklog, kernelMaxBacklog } from '../../src/server/listen.js';
import { memoryLogger } from '../helpers/serve.js';

/** What `ss -xlnH` printed for two listeners on Debian 12 (iproute2 6.1), one path with a space. */
function ssOutput(queue: number, backlog = 16): string {
  return [
    `u_str LISTEN 0      4096   /run/other.sock 22930 * 0`,
    `u_str LISTEN ${queue}      ${backlog}       /srv/my app/app.sock 23099 * 0`,
    '',
  ].join('\n');
}

function setup(outputs: Array<string | Error>) {
  let now = 0;
  const { log, records } = memoryLogger();
  let runs = 0;
  const queues = new ListenQueues({
    sockets: [{ kind: 'unix', path: 'app.sock' }],
    backlog: 16,
    cwd: '/srv/my app',
    log,
    now: () => now,
    ss: async () => {
      const next = outputs[Math.min(runs++, outputs.length - 1)]!;
      if (next instanceof Error) throw next;
      return next;
    },
  });
  return {
    queues,
    records,
    runs: () => runs,
    tick: async (ms = FRESH_MS) => {
      now += ms;
      await queues.fresh();
    },
  };
}

describe('parseUnixListeners', () => {
  it('reads the queue (Recv-Q), the backlog (Send-Q), the path, spaces and all, and the inode', () => {
    expect(parseUnixListeners(ssOutput(3))).toEqual([
      { path: '/run/other.sock', inode: '22930', queue: 0, backlog: 4096 },
      { path: '/srv/my app/app.sock', inode: '23099', queue: 3, backlog: 16 },
    ]);
    expect(parseUnixListeners('u_str ESTAB 0 0 /x.sock 1 * 2\nnonsense\n')).toEqual([]);
  });
});

describe('ListenQueues', () => {
  it('warns once per episode at 90% of the backlog, ends it under half, and counts full readings', async () => {
    const t = setup([ssOutput(0), ssOutput(15), ssOutput(17), ssOutput(16), ssOutput(9), ssOutput(7), ssOutput(16)]);
    await t.tick();
    expect(t.queues.readings).toEqual([{ address: 'unix:app.sock', proto: 'uwsgi', queue: 0, backlog: 16 }]);
    await t.tick(); // 15 of 16: over 90%
    await t.tick(); // 17: full (Unix sockets hold one more than the backlog)
    await t.tick(); // 16: full
    const warnings = t.records.filter((r) => r.code === 'ERR_LISTEN_QUEUE_FULL');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, address: 'unix:app.sock', queue: 15, backlog: 16 });
    expect(t.queues.errors).toBe(2);
    await t.tick(); // 9: still over half, same episode
    expect(t.records.filter((r) => r.msg.startsWith('listen queue of a socket back'))).toHaveLength(0);
    await t.tick(); // 7: under half, the episode ends
    expect(t.records.find((r) => r.msg.startsWith('listen queue of a socket back'))).toMatchObject({ level: 30, peak: 17, queue: 7 });
    await t.tick(); // a new episode, a new warning
    expect(t.records.filter((r) => r.code === 'ERR_LISTEN_QUEUE_FULL')).toHaveLength(2);
  });

  it('runs ss at most once per FRESH_MS, and once for concurrent readers', async () => {
    const t = setup([ssOutput(1)]);
    await Promise.all([t.queues.fresh(), t.queues.fresh(), t.queues.fresh()]);
    expect(t.runs()).toBe(1);
    await t.tick(FRESH_MS - 1);
    expect(t.runs()).toBe(1);
    await t.tick(1);
    expect(t.runs()).toBe(2);
  });

  it('after ss fails for another reason (a fork refused), says so once and tries again SS_RETRY_MS later', async () => {
    const t = setup([ssOutput(3), Object.assign(new Error('spawn ss EAGAIN'), { code: 'EAGAIN' }), Object.assign(new Error('spawn ss EAGAIN'), { code: 'EAGAIN' }), ssOutput(5)]);
    await t.tick();
    expect(t.queues.readings[0]!.queue).toBe(3);
    await t.tick();
    expect(t.runs()).toBe(2);
    expect(t.queues.readings[0]!.queue, 'unknown while ss fails').toBeUndefined();
    await t.tick(SS_RETRY_MS - FRESH_MS);
    expect(t.runs(), 'no run before the retry time').toBe(2);
    await t.tick(FRESH_MS);
    expect(t.runs()).toBe(3);
    await t.tick(SS_RETRY_MS);
    expect(t.runs()).toBe(4);
    expect(t.queues.readings[0]!.queue).toBe(5);
    expect(t.records.filter((r) => r.msg.startsWith('ss failed'))).toHaveLength(1);
  });

  it('without ss says so once and leaves Unix queues unknown; TCP queues are still read', async () => {
    const t = setup([Object.assign(new Error('spawn ss ENOENT'), { code: 'ENOENT' })]);
    await t.tick();
    await t.tick();
    expect(t.runs()).toBe(1);
    expect(t.queues.readings[0]!.queue).toBeUndefined();
    expect(t.records.filter((r) => r.msg.startsWith('ss (iproute2) is not installed'))).toHaveLength(1);

    const { log } = memoryLogger();
    let ran = false;
    const tcp = new ListenQueues({ sockets: [{ kind: 'tcp', host: '127.0.0.1', port: 1 }], backlog: undefined, cwd: '/', log, ss: async () => ((ran = true), '') });
    await tcp.fresh();
    expect(ran, 'no Unix listener, no ss').toBe(false);
    expect(tcp.readings[0]).toEqual({ address: '127.0.0.1:1', proto: 'uwsgi', queue: 0, backlog: kernelMaxBacklog() });
  });
});

describe('ListenQueues with sock_diag (the addon on the master\'s fd)', () => {
  it('reads Unix queues with readUnix and runs no ss; a socket it cannot read (no fd, an error at start) goes to ss', async () => {
    const { log } = memoryLogger();
    let ssRuns = 0;
    let queue = 3;
    let held = true;
    const own = { kind: 'unix', path: 'app.sock' } as const;
    const other = { kind: 'unix', path: '/srv/my app/other.sock' } as const;
    const make = (sockets: Array<typeof own | typeof other>) =>
      new ListenQueues({
        sockets,
        backlog: 16,
        cwd: '/srv/my app',
        log,
        ss: async () => (ssRuns++, ssOutput(5).replace('/srv/my app/app.sock', '/srv/my app/other.sock')),
        readUnix: (address) => (address === own ? (held ? [queue, 16] : undefined) : address === other ? -2 : undefined),
      });
    const queues = make([own]);
    await queues.fresh(0);
    expect(queues.readings).toEqual([{ address: 'unix:app.sock', proto: 'uwsgi', queue: 3, backlog: 16 }]);
    queue = 15;
    await queues.fresh(0);
    expect(queues.readings[0]!.queue).toBe(15);
    expect(ssRuns, 'every Unix socket read by sock_diag: no ss').toBe(0);

    const mixed = make([own, other]);
    await mixed.fresh(0);
    expect(ssRuns).toBe(1);
    expect(mixed.readings.map((r) => r.queue)).toEqual([15, 5]);

    // At a stop the master closes its copy: ss reads the socket from then on (the workers still hold it).
    held = false;
    await queues.fresh(0);
    expect(ssRuns).toBe(2);
    expect(queues.readings[0]!.queue, 'app.sock is not among the fake ss rows').toBeUndefined();
  });
});

describe('the backlog', () => {
  it('defaults to the kernel somaxconn, which also caps a larger --backlog', () => {
    const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'latin1'));
    expect(kernelMaxBacklog()).toBe(somaxconn);
    expect(effectiveBacklog(undefined)).toBe(somaxconn);
    expect(effectiveBacklog(16)).toBe(16);
    expect(effectiveBacklog(somaxconn + 1)).toBe(somaxconn);
  });
});

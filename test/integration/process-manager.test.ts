// The process manager (src/master/, src/worker/) with real processes under real load through a real nginx:
// rolling reloads, graceful stop, a killed worker, harakiri, recycling (--max-requests, --max-rss), an app that
// cannot load, request timeout, a master killed with requests in flight.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { httpRequest, launchServer, startLoad, startStack, type Load, type LoadResponse, type LogLine, type ServerProcess, type Stack } from './nginx.js';

const APP = 'pm-app.mjs';

/** What pm-app.mjs answers on /. */
interface Served {
  pid: number;
  version: string;
}

function served(response: LoadResponse): Served | undefined {
  if (response.status !== 200) return undefined;
  return JSON.parse(response.body) as Served;
}

// Every test starts its own stack and load; whatever is left running when a test fails is stopped here.
let cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  const pending = cleanups.reverse();
  cleanups = [];
  for (const cleanup of pending) await cleanup();
});

/** A state directory for pm-app.mjs (PM_DIR) holding `version`. */
function stateDir(version: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'nu-pm-'));
  writeFileSync(join(dir, 'version'), version);
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Pids of the processes that imported the app, in order. */
function boots(dir: string): number[] {
  return readFileSync(join(dir, 'boots'), 'utf8').split('\n').filter(Boolean).map(Number);
}

async function pmStack(dir: string, args: string[]): Promise<Stack> {
  const stack = await startStack({ app: APP, args, env: { PM_DIR: dir } });
  cleanups.push(() => stack.stop());
  // The socket accepts as soon as the first worker listens; the master's 'ready' line means all of them are.
  await stack.server.waitForLog((line) => line.msg === 'ready');
  return stack;
}

function load(stack: Stack, path: string, connections: number, onResponse?: (r: LoadResponse) => void): Load {
  const running = startLoad(stack.url(path), { connections, onResponse });
  cleanups.push(async () => {
    await running.stop();
  });
  return running;
}

/** Resolves once `count` log lines (past or future) match. */
function waitForLogs(server: ServerProcess, match: (line: LogLine) => boolean, count: number, timeout?: number): Promise<LogLine[]> {
  return server
    .waitForLog(() => server.logs.filter(match).length >= count, timeout)
    .then(() => server.logs.filter(match).slice(0, count));
}

const master = (line: LogLine): boolean => line.role === 'master';

/** A field of /proc/PID/status in bytes (VmRSS, VmHWM: kB there), or undefined once the process has gone. */
function procStatusBytes(pid: number, field: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(text);
  return match ? Number(match[1]) * 1024 : undefined;
}

/** Whether the process runs: not gone, and not a zombie waiting for a reaper (an orphan's parent is init). */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** How a direct connection to the Unix socket ends: 'connected' or the error code. */
function connectOutcome(path: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ path });
    socket.once('connect', () => {
      socket.destroy();
      resolve('connected');
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

describe('the process manager under load, through nginx', () => {
  it('serves through 10 SIGHUP reloads without a failed request, then serves the new code from new workers', async () => {
    const dir = stateDir('v1');
    const stack = await pmStack(dir, ['--workers', '2']);
    const responses: Array<{ at: number; pid: number; version: string }> = [];
    const running = load(stack, '/', 8, (r) => {
      const body = served(r);
      if (body) responses.push({ at: r.startedAt, ...body });
    });
    await running.waitFor((r) => served(r)?.version === 'v1');
    const firstWorkers = boots(dir);
    expect(firstWorkers).toHaveLength(2);

    // Fresh app code for the workers the reloads start; the running ones read their version at import.
    writeFileSync(join(dir, 'version'), 'v2');
    const reloadsStarted = Date.now();
    const requestsBefore = running.stats.requests;
    const reloads: Array<{ ms: number; requests: number }> = [];
    for (let i = 0; i < 10; i++) {
      const generation = i + 2;
      const requestsAtHup = running.stats.requests;
      stack.server.child.kill('SIGHUP');
      const done = await stack.server.waitForLog((line) => master(line) && line.msg === 'reload complete' && line.generation === generation, 30_000);
      reloads.push({ ms: done.ms as number, requests: running.stats.requests - requestsAtHup });
    }
    // Every old worker drained and gone: from here on only the last generation serves.
    await waitForLogs(stack.server, (line) => master(line) && line.msg === 'worker exited' && line.cause === 'reload', 20, 30_000);
    const settled = Date.now();
    const requestsDuringReloads = running.stats.requests - requestsBefore;
    await running.waitFor(() => responses.filter((r) => r.at >= settled).length >= 200);
    const stats = await running.stop();

    console.log(
      `reload: 10 SIGHUP reloads in ${settled - reloadsStarted} ms under load (8 connections): ${requestsDuringReloads} requests meanwhile; ` +
        `per reload ms ${reloads.map((r) => r.ms).join(',')}; requests per reload ${reloads.map((r) => r.requests).join(',')}; ` +
        `overall ${stats.requests} requests, ${stats.failed} failed, statuses ${JSON.stringify(stats.statuses)}`,
    );
    expect(stats.failed, JSON.stringify(running.failures.slice(0, 5))).toBe(0);
    expect(Object.keys(stats.statuses)).toEqual(['200']);
    // Load went on through every reload, not just between them.
    for (const reload of reloads) expect(reload.requests).toBeGreaterThan(0);

    // One boot per worker per generation: no worker died and was respawned on the way.
    const all = boots(dir);
    expect(all).toHaveLength(22);
    const lastWorkers = all.slice(-2);
    const after = responses.filter((r) => r.at >= settled);
    expect(new Set(after.map((r) => r.version))).toEqual(new Set(['v2']));
    expect(new Set(after.map((r) => r.pid))).toEqual(new Set(lastWorkers));
    for (const pid of lastWorkers) expect(firstWorkers).not.toContain(pid);
    // v1 only ever came from the first workers.
    for (const r of responses.filter((r) => r.version === 'v1')) expect(firstWorkers).toContain(r.pid);
  }, 90_000);

  it('on SIGTERM finishes slow in-flight requests, refuses new connections at once, and exits 0', async () => {
    const dir = stateDir('v1');
    const stack = await pmStack(dir, ['--workers', '2']);
    const slowStarted = (line: LogLine): boolean => line.msg === 'pm-app: slow request started';
    const slow = Array.from({ length: 4 }, () => httpRequest(stack.url('/slow')));
    await waitForLogs(stack.server, slowStarted, 4);
    let slowDone = 0;
    for (const request of slow) void request.then(() => slowDone++, () => slowDone++);

    const exitCode = new Promise<number | null>((resolve) => stack.server.child.once('exit', (code) => resolve(code)));
    stack.server.child.kill('SIGTERM');
    await stack.server.waitForLog((line) => master(line) && line.msg?.startsWith('stopping') === true);

    // The workers close their copies of the listening socket on the drain message and the master closes its own
    // when the last worker has (node:cluster's shared handle): nothing logs that moment, so probe until refused.
    // Meanwhile a connection is either accepted by a worker that has not yet read its drain message, or caught in
    // the backlog when the last copy closes (reset): a few milliseconds.
    const refused = (outcome: string): boolean => outcome === 'ECONNREFUSED' || outcome === 'ENOENT';
    const stopping = Date.now();
    const probes: string[] = [];
    do probes.push(await connectOutcome(stack.backend));
    while (!refused(probes.at(-1)!) && Date.now() - stopping < 1000);
    const refusedAfter = Date.now() - stopping;
    console.log(`stop: direct connections to the socket after the 'stopping' line: ${probes.join(', ')} (refused after ${refusedAfter} ms)`);
    expect(refused(probes.at(-1)!)).toBe(true);
    for (const outcome of probes.slice(0, -1)) expect(['connected', 'ECONNRESET']).toContain(outcome);
    // Refused while the slow requests (1.5 s each) were still being served, not after.
    expect(slowDone).toBe(0);

    const mark = stack.nginx.errorLogMark();
    const before = Date.now();
    const viaNginx = await httpRequest(stack.url('/'));
    const refusedMs = Date.now() - before;
    expect(viaNginx.status).toBe(502);
    expect(refusedMs).toBeLessThan(1000);
    expect(stack.nginx.errorLog(mark)).toMatch(/connect\(\) to unix:\S+ failed \((111: Connection refused|2: No such file or directory)\)/);
    expect(slowDone).toBe(0);

    const results = await Promise.all(slow);
    for (const result of results) {
      expect(result.status).toBe(200);
      expect(JSON.parse(result.body.toString('utf8'))).toMatchObject({ slow: true });
    }
    expect(await exitCode).toBe(0);
    await stack.server.waitForLog((line) => master(line) && line.msg === 'stopped');
  }, 60_000);

  it('replaces a worker killed with SIGKILL under load; only requests in flight on it fail', async () => {
    const dir = stateDir('v1');
    const stack = await pmStack(dir, ['--workers', '2']);
    const connections = 8;
    const servedBy = new Set<number>();
    const running = load(stack, '/', connections, (r) => {
      const body = served(r);
      if (body) servedBy.add(body.pid);
    });
    const first = boots(dir);
    await running.waitFor(() => first.every((pid) => servedBy.has(pid)));
    const victim = first[0]!;

    const failedBefore = running.stats.failed;
    const inFlight = running.stats.inFlight;
    process.kill(victim, 'SIGKILL');
    const died = await stack.server.waitForLog((line) => master(line) && line.msg === 'worker died');
    expect(died).toMatchObject({ signal: 'SIGKILL', level: 50 });
    const replacement = await running.waitFor((r) => {
      const pid = served(r)?.pid;
      return pid !== undefined && !first.includes(pid);
    });
    // And a while after: the replacement and the survivor both serve, nothing else fails.
    const settled = running.stats.requests;
    await running.waitFor(() => running.stats.requests >= settled + 300);
    const stats = await running.stop();
    const failed = stats.failed - failedBefore;

    console.log(
      `kill: SIGKILL to worker ${victim} with ${inFlight} requests in flight from the client (${connections} connections): ` +
        `${failed} failed (${JSON.stringify(running.failures.map((f) => f.status ?? f.error))}); ` +
        `replacement ${served(replacement)!.pid} serving ${replacement.endedAt - (died.time as number)} ms after 'worker died'; ${stats.requests} requests in all`,
    );
    expect(failed).toBeLessThanOrEqual(inFlight);
    for (const failure of running.failures) {
      // nginx's answer when the worker's connection was cut: the client never sees a reset.
      expect(failure.status).toBe(502);
      // Only requests sent before the master saw the worker die.
      expect(failure.startedAt).toBeLessThanOrEqual(died.time as number);
    }
    expect(boots(dir)).toHaveLength(3);
  }, 60_000);

  it('kills a worker blocked longer than --harakiri, logs the request it was running, and the other serves meanwhile', async () => {
    const dir = stateDir('v1');
    const stack = await pmStack(dir, ['--workers', '2', '--harakiri', '2']);
    const connections = 4;
    const responses: Array<{ start: number; end: number; pid: number }> = [];
    const running = load(stack, '/', connections, (r) => {
      const body = served(r);
      if (body) responses.push({ start: r.startedAt, end: r.endedAt, pid: body.pid });
    });
    await running.waitFor((r) => r.status === 200);
    const first = boots(dir);

    const failedBefore = running.stats.failed;
    const spinAt = Date.now();
    const spin = httpRequest(stack.url('/spin'));
    const watchdog = await stack.server.waitForLog((line) => line.code === 'ERR_WORKER_BLOCKED' && !master(line), 10_000);
    const kill = await stack.server.waitForLog((line) => master(line) && line.code === 'ERR_WORKER_BLOCKED', 10_000);
    const spinResult = await spin;
    const spinMs = Date.now() - spinAt;
    const blocked = watchdog.pid as number;
    expect(first).toContain(blocked);

    // The watchdog thread names the request; the master kills on its own clock (missed heartbeats).
    expect(watchdog.inflight).toEqual(expect.arrayContaining([expect.objectContaining({ method: 'GET', uri: '/spin' })]));
    const spinning = (watchdog.inflight as Array<{ method: string; uri: string; ageMs: number }>).find((r) => r.uri === '/spin')!;
    expect(spinning.ageMs).toBeGreaterThanOrEqual(2000);
    expect(kill).toMatchObject({ worker: watchdog.worker, harakiriMs: 2000 });
    expect(kill.blockedMs as number).toBeGreaterThan(2000);
    // The request was cut by the kill, not by a timeout in nginx.
    expect(spinResult.status).toBe(502);
    expect(spinMs).toBeGreaterThanOrEqual(2000);
    expect(spinMs).toBeLessThanOrEqual(5000);
    expect((kill.time as number) - spinAt).toBeGreaterThanOrEqual(2000);
    expect((kill.time as number) - spinAt).toBeLessThanOrEqual(5000);

    await stack.server.waitForLog((line) => master(line) && line.msg === 'worker exited' && line.cause === 'harakiri');
    await running.waitFor(() => {
      const last = responses.at(-1)!;
      return !first.includes(last.pid);
    });
    const settled = running.stats.requests;
    await running.waitFor(() => running.stats.requests >= settled + 200);
    const stats = await running.stop();
    const failed = stats.failed - failedBefore;

    const other = first.find((pid) => pid !== blocked)!;
    const meanwhile = responses.filter((r) => r.start >= spinAt && r.end <= (kill.time as number) && r.pid === other).length;
    console.log(
      `harakiri: worker ${blocked} blocked on GET /spin, watchdog line at ageMs ${spinning.ageMs}, killed ${(kill.time as number) - spinAt} ms ` +
        `after the request (blockedMs ${kill.blockedMs}); /spin answered ${spinResult.status} after ${spinMs} ms; ` +
        `${meanwhile} requests served by worker ${other} meanwhile; ${failed} load requests failed ` +
        `(${JSON.stringify(running.failures.map((f) => f.status ?? f.error))}) of ${stats.requests}`,
    );
    expect(meanwhile).toBeGreaterThan(0);
    // Only load requests that the blocked worker had accepted can fail: at most the client's connections.
    expect(failed).toBeLessThanOrEqual(connections);
    for (const failure of running.failures) expect(failure.status).toBe(502);
    expect(boots(dir)).toHaveLength(3);
  }, 60_000);

  it('recycles workers after --max-requests 100 --max-requests-jitter 20 under load without a failed request', async () => {
    const dir = stateDir('v1');
    const stack = await pmStack(dir, ['--workers', '2', '--max-requests', '100', '--max-requests-jitter', '20']);
    const pids = new Set<number>();
    const running = load(stack, '/', 8, (r) => {
      const body = served(r);
      if (body) pids.add(body.pid);
    });
    // The master learns request counts from heartbeats (one a second): a recycle takes a beat to be decided.
    const recycled = (line: LogLine): boolean => master(line) && line.msg?.startsWith('recycling a worker') === true;
    const recycles = await waitForLogs(stack.server, recycled, 3, 30_000);
    await waitForLogs(stack.server, (line) => master(line) && line.msg === 'worker exited' && line.cause === 'max-requests', 3, 30_000);
    await running.waitFor(() => running.stats.requests >= 1500);
    const stats = await running.stop();

    const recycleCount = stack.server.logs.filter(recycled).length;
    console.log(
      `recycling: ${stats.requests} requests, ${stats.failed} failed, ${recycleCount} recycles, ${pids.size} worker pids served, ` +
        `requests at recycling ${recycles.map((l) => l.requests).join(',')}`,
    );
    expect(stats.failed, JSON.stringify(running.failures.slice(0, 5))).toBe(0);
    for (const line of recycles) {
      expect(line.cause).toBe('max-requests');
      expect(line.requests as number).toBeGreaterThanOrEqual(100);
    }
    // A worker reports the moment it reaches its threshold (100 + 0..20), not at its next heartbeat, so the first
    // recycling starts within it. Later ones may start past it: one worker recycles at a time, the others wait.
    expect(recycles[0]!.requests as number).toBeLessThanOrEqual(120);
    expect(pids.size).toBeGreaterThanOrEqual(4);
    expect(boots(dir).length).toBeGreaterThanOrEqual(5);
  }, 60_000);

  it('holds --max-rss 200 against a leak of 10 MB per request: every worker stays under 1.5x, no request fails', async () => {
    const dir = stateDir('v1');
    const stack = await pmStack(dir, ['--workers', '2', '--max-rss', '200']);
    const MiB = 1024 * 1024;
    const cap = 200 * MiB;
    // Every worker's peak resident size: VmHWM (the kernel's own high-water mark, so nothing between two polls is
    // missed) read every 20 ms until the process has gone; a worker stops leaking once it drains.
    const peaks = new Map<number, number>();
    const poll = setInterval(() => {
      for (const pid of boots(dir)) {
        const hwm = procStatusBytes(pid, 'VmHWM');
        if (hwm !== undefined) peaks.set(pid, Math.max(peaks.get(pid) ?? 0, hwm));
      }
    }, 20);
    cleanups.push(() => clearInterval(poll));

    // A steady client: 2 connections, a request every 200 ms each: 10 requests, 100 MB a second, 50 MB a second
    // per worker. What a worker holds past the limit is that rate times the time to notice (three samples 50 ms
    // apart, was three heartbeats 1 s apart: 150 MB) plus the time its replacement takes to boot.
    const PACE_MS = 200;
    const statuses: Record<string, number> = {};
    const failures: string[] = [];
    let sent = 0;
    let stopped = false;
    const client = async (): Promise<void> => {
      while (!stopped) {
        const started = Date.now();
        sent++;
        try {
          const res = await httpRequest(stack.url('/leak'));
          statuses[res.status] = (statuses[res.status] ?? 0) + 1;
          if (res.status !== 200) failures.push(`${res.status} ${res.body.toString('utf8').slice(0, 200)}`);
        } catch (err) {
          failures.push((err as Error).message);
        }
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, PACE_MS - (Date.now() - started))));
      }
    };
    const clients = Promise.all([client(), client()]);
    cleanups.push(async () => {
      stopped = true;
      await clients;
    });

    const started = Date.now();
    const exited = (line: LogLine): boolean => master(line) && line.msg === 'worker exited' && line.cause === 'max-rss';
    await waitForLogs(stack.server, exited, 6, 60_000);
    stopped = true;
    await clients;
    clearInterval(poll);
    const elapsed = Date.now() - started;

    const recycles = stack.server.logs.filter((line) => master(line) && line.msg?.startsWith('recycling a worker') === true);
    const atOnce = recycles.filter((line) => line.level === 40).length;
    const mib = (bytes: number): number => Math.round(bytes / MiB);
    const peakList = [...peaks.values()];
    console.log(
      `max-rss: --max-rss 200, 10 MB per request, ${sent} requests in ${elapsed} ms (statuses ${JSON.stringify(statuses)}); ` +
        `${recycles.length} recycles (${atOnce} at once past twice); peak VmHWM per worker MiB ${[...peaks].map(([pid, b]) => `${pid}:${mib(b)}`).join(', ')}; ` +
        `recycled at rss MiB ${recycles.map((line) => mib(line.rss as number)).join(',')}`,
    );
    expect(failures, failures.slice(0, 5).join('\n')).toEqual([]);
    expect(Object.keys(statuses)).toEqual(['200']);
    expect(recycles.length).toBeGreaterThanOrEqual(6);
    for (const line of recycles) expect(line.cause).toBe('max-rss');
    // Every worker that served: the first two, and the replacements, some of them recycled in turn.
    expect(peakList.length).toBeGreaterThanOrEqual(6);
    for (const peak of peakList) expect(peak).toBeLessThan(1.5 * cap);
  }, 120_000);

  it('when the master is killed with SIGKILL, the workers finish their requests in flight, accept no more, and exit', async () => {
    const dir = stateDir('v1');
    const stack = await pmStack(dir, ['--workers', '2', '--graceful-timeout', '5']);
    const workers = boots(dir);
    expect(workers).toHaveLength(2);
    cleanups.push(() => {
      for (const pid of workers) if (running(pid)) process.kill(pid, 'SIGKILL');
    });
    const slowStarted = (line: LogLine): boolean => line.msg === 'pm-app: slow request started';
    // 3 s each: the probes and the request through nginx below all happen before the first one ends, even on a
    // busy machine.
    const slow = Array.from({ length: 4 }, () => httpRequest(stack.url('/slow?ms=3000')));
    await waitForLogs(stack.server, slowStarted, 4);
    let slowDone = 0;
    const slowEnds: number[] = [];
    for (const request of slow) void request.then(() => (slowDone++, slowEnds.push(Date.now())), () => slowDone++);

    const killedAt = Date.now();
    stack.server.child.kill('SIGKILL');
    const gone = await waitForLogs(stack.server, (line) => line.msg === 'the master is gone: finishing the requests in flight, then exiting', 2);
    expect(new Set(gone.map((line) => line.pid))).toEqual(new Set(workers));
    expect(gone.reduce((n, line) => n + (line.inflight as number), 0)).toBe(4);

    // No new connection is accepted while the slow requests are still running.
    const refused = (outcome: string): boolean => outcome === 'ECONNREFUSED' || outcome === 'ENOENT';
    const probes: string[] = [];
    do probes.push(await connectOutcome(stack.backend));
    while (!refused(probes.at(-1)!) && Date.now() - killedAt < 1000);
    const refusedAfter = Date.now() - killedAt;
    expect(refused(probes.at(-1)!), probes.join(', ')).toBe(true);
    expect(slowDone).toBe(0);
    const viaNginx = await httpRequest(stack.url('/'));
    expect(viaNginx.status).toBe(502);
    expect(slowDone).toBe(0);

    const results = await Promise.all(slow);
    for (const result of results) {
      expect(result.status).toBe(200);
      expect(JSON.parse(result.body.toString('utf8'))).toMatchObject({ slow: true });
    }
    // Then they exit on their own: well within --graceful-timeout, as soon as their requests are done.
    while (workers.some(running) && Date.now() - killedAt < 10_000) await new Promise((resolve) => setTimeout(resolve, 20));
    const exitedAfter = Date.now() - killedAt;
    console.log(
      `master SIGKILL: 4 slow requests in flight on workers ${workers.join(',')}; new connections refused ${refusedAfter} ms after the kill ` +
        `(probes ${probes.join(', ')}); slow requests answered ${results.map((r) => r.status).join(',')} at ${slowEnds.map((t) => t - killedAt).join(',')} ms; ` +
        `workers gone ${exitedAfter} ms after the kill`,
    );
    expect(workers.filter(running)).toEqual([]);
    expect(exitedAfter).toBeLessThan(5000);
  }, 60_000);

  it('a worker orphaned by its master exits after --graceful-timeout even with a request that never ends', async () => {
    const dir = stateDir('v1');
    const stack = await pmStack(dir, ['--workers', '1', '--graceful-timeout', '2']);
    const [worker] = boots(dir);
    cleanups.push(() => {
      if (running(worker!)) process.kill(worker!, 'SIGKILL');
    });
    const hang = httpRequest(stack.url('/hang'));
    await stack.server.waitForLog((line) => line.msg === 'pm-app: hanging request started');
    const killedAt = Date.now();
    stack.server.child.kill('SIGKILL');
    const timedOut = await stack.server.waitForLog((line) => line.msg === 'the master is gone and --graceful-timeout has passed: exiting', 10_000);
    const hangResult = await hang;
    while (running(worker!) && Date.now() - killedAt < 10_000) await new Promise((resolve) => setTimeout(resolve, 20));
    const exitedAfter = Date.now() - killedAt;
    console.log(`orphan: worker ${worker} with GET /hang in flight exited ${exitedAfter} ms after the master's SIGKILL (--graceful-timeout 2); /hang got ${hangResult.status}`);
    expect(timedOut).toMatchObject({ pid: worker, inflight: 1, gracefulTimeoutMs: 2000 });
    expect(running(worker!)).toBe(false);
    expect(exitedAfter).toBeGreaterThanOrEqual(2000);
    expect(exitedAfter).toBeLessThan(4000);
    expect(hangResult.status).toBe(502);
  }, 30_000);

  it('halts with the loader\'s error, non-zero, after at most one attempt per worker, when the app throws on import', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nu-pm-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const started = Date.now();
    const server = launchServer({ app: 'pm-throw.mjs', socket: `unix:${join(dir, 'app.sock')}`, args: ['--workers', '2'], env: { PM_DIR: dir } });
    cleanups.push(async () => {
      await server.stop();
    });
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      server.exited,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`still running after 15 s\n${server.describe()}`)), 15_000);
      }),
    ]).finally(() => clearTimeout(timer));
    const elapsed = Date.now() - started;

    expect(code, server.describe()).not.toBe(0);
    expect(code).not.toBeNull();
    expect(server.stderr()).toContain('pm-throw: this app refuses to load (on purpose)');
    const fatal = server.logs.find((line) => master(line) && line.level === 60);
    expect(fatal, server.describe()).toMatchObject({ errorCode: 'ERR_APP_IMPORT_FAILED' });
    expect(String(fatal!.error)).toContain('pm-throw: this app refuses to load (on purpose)');
    expect(server.stdout()).toContain('ERR_APP_IMPORT_FAILED');
    const attempts = boots(dir);
    expect(attempts.length).toBeGreaterThanOrEqual(1);
    expect(attempts.length).toBeLessThanOrEqual(2);
    expect(elapsed).toBeLessThan(10_000);
  }, 30_000);

  it('answers 504 through nginx to a request the app never answers, after --request-timeout 1', async () => {
    const dir = stateDir('v1');
    const stack = await pmStack(dir, ['--request-timeout', '1']);
    const before = Date.now();
    const res = await httpRequest(stack.url('/hang'));
    const ms = Date.now() - before;
    expect(res.status).toBe(504);
    // node-uwsgi's own 504, passed on by nginx (whose own would come after uwsgi_read_timeout, 60 s).
    expect(res.body.toString('utf8')).toContain('the app did not answer in time');
    expect(ms).toBeGreaterThanOrEqual(1000);
    expect(ms).toBeLessThan(3000);
    const line = await stack.server.waitForLog((l) => l.code === 'ERR_REQUEST_TIMEOUT');
    expect(line).toMatchObject({ method: 'GET', uri: '/hang', timeoutMs: 1000 });
    const next = await httpRequest(stack.url('/'));
    expect(next.status).toBe(200);
  });
});

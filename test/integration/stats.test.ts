// --stats, --metrics and `node-uwsgi top` on the real CLI (dist/cli.js) with real traffic through nginx: curl
// against /metrics and /health, the stats socket's JSON as uwsgitop reads it, and a worker killed with SIGKILL.
import { execFile, spawn } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CLI, freePort, httpRequest, launchServer, startNginx, startStack, type LogLine } from './nginx.js';
import { toolEnv } from '../helpers/ci.js';
import { useCleanups } from '../helpers/cleanup.js';
import { samples } from '../helpers/metrics.js';

const APP = 'stats-app.mjs';
const WAIT_MS = 20_000;

const { defer, tempDir } = useCleanups('nu-stats-');

function run(file: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: WAIT_MS, env: toolEnv() }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** GET with curl: `target` is http://127.0.0.1:port/path, or [socketPath, path] for --unix-socket. */
async function curl(target: string | [string, string]): Promise<{ status: number; body: string }> {
  const args = ['-sS', '-o', '-', '-w', '\n%{http_code}'];
  if (typeof target === 'string') args.push(target);
  else args.push('--unix-socket', target[0], `http://localhost${target[1]}`);
  const { code, stdout, stderr } = await run('curl', args);
  expect(code, stderr).toBe(0);
  const nl = stdout.lastIndexOf('\n');
  return { status: Number(stdout.slice(nl + 1)), body: stdout.slice(0, nl) };
}

/** What a stats connection sends before the server closes it (raw, as uwsgitop reads it). */
function readStatsRaw(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path });
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => resolve(text));
    socket.on('error', reject);
  });
}

interface Doc {
  [key: string]: unknown;
  workers: Array<Record<string, unknown>>;
}

/** Checks `condition` until it holds: the workers report on their heartbeat, once a second. */
async function until<T>(what: string, probe: () => Promise<T>, condition: (value: T) => boolean): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  let last: T;
  for (;;) {
    last = await probe();
    if (condition(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${WAIT_MS} ms; last: ${JSON.stringify(last)}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

// Every field uwsgitop (github.com/xrmx/uwsgitop) reads, with the type it formats it as (%d is an integer).
const TOP_FIELDS = { version: 'string', listen_queue: 'int', cwd: 'string', uid: 'int', gid: 'int', pid: 'int' } as const;
const WORKER_FIELDS = {
  id: 'int',
  pid: 'int',
  requests: 'int',
  exceptions: 'int',
  signals: 'int',
  status: 'string',
  avg_rt: 'int',
  rss: 'int',
  vsz: 'int',
  tx: 'int',
  respawn_count: 'int',
  harakiri_count: 'int',
  running_time: 'int',
  last_spawn: 'int',
  // uWSGI writes these too; uwsgitop's async view reads cores[].id, requests and in_request.
  accepting: 'int',
  delta_requests: 'int',
  signal_queue: 'int',
} as const;

function expectTyped(object: Record<string, unknown>, fields: Record<string, 'int' | 'string'>): void {
  for (const [key, type] of Object.entries(fields)) {
    if (type === 'int') expect(Number.isInteger(object[key]), `${key}: ${JSON.stringify(object[key])}`).toBe(true);
    else expect(typeof object[key], key).toBe('string');
  }
}

describe('stats, metrics and health through nginx', () => {
  it('counts requests by status class and latency, serves uwsgitop\'s document and top, and counts a killed worker\'s restart', async () => {
    const dir = tempDir();
    const statsPath = join(dir, 'stats.sock');
    const metricsPort = await freePort();
    const stack = await startStack({
      app: APP,
      args: ['--workers', '2', '--stats', `unix:${statsPath}`, '--metrics', `127.0.0.1:${metricsPort}`],
    });
    defer(() => stack.stop());
    await stack.server.waitForLog((line) => line.msg === 'ready');
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;

    const health = await curl(`http://127.0.0.1:${metricsPort}/health`);
    expect(health.status).toBe(200);
    expect(JSON.parse(health.body)).toEqual({ status: 'ok', ready: 2 });
    expect((await curl(`http://127.0.0.1:${metricsPort}/nothing`)).status).toBe(404);

    const plan: Array<[string, number, number]> = [
      ['/', 200, 30],
      ['/missing', 404, 5],
      ['/boom', 500, 5],
    ];
    for (const [path, status, count] of plan) {
      const results = await Promise.all(Array.from({ length: count }, () => httpRequest(stack.url(path))));
      expect(results.map((r) => r.status)).toEqual(new Array<number>(count).fill(status));
    }

    const metrics = await until(
      'all 40 requests reported',
      async () => samples((await curl(metricsUrl)).body),
      (m) => m.get('nodeuwsgi_request_duration_seconds_count') === 40,
    );
    expect(metrics.get('nodeuwsgi_requests_total{status="2xx"}')).toBe(30);
    expect(metrics.get('nodeuwsgi_requests_total{status="4xx"}')).toBe(5);
    expect(metrics.get('nodeuwsgi_requests_total{status="5xx"}')).toBe(5);
    expect(metrics.get('nodeuwsgi_exceptions_total')).toBe(5);
    expect(metrics.get('nodeuwsgi_request_duration_seconds_bucket{le="+Inf"}')).toBe(40);
    expect(metrics.get('nodeuwsgi_request_duration_seconds_sum')).toBeGreaterThan(0);
    expect(metrics.get('nodeuwsgi_response_bytes_total')).toBeGreaterThan(0);
    expect(metrics.get('nodeuwsgi_workers_ready')).toBe(2);
    expect(metrics.get('nodeuwsgi_inflight')).toBe(0);
    expect(metrics.get('nodeuwsgi_worker_restarts_total{cause="crash"}')).toBe(0);
    expect(metrics.get('nodeuwsgi_worker_rss_bytes{worker="1"}')).toBeGreaterThan(1024 * 1024);
    expect(metrics.get('nodeuwsgi_worker_rss_bytes{worker="2"}')).toBeGreaterThan(1024 * 1024);

    const raw = await readStatsRaw(statsPath);
    const doc = JSON.parse(raw) as Doc;
    expectTyped(doc, TOP_FIELDS);
    expect(doc.pid).toBe(stack.server.child.pid);
    expect(doc.workers.map((w) => w.id)).toEqual([1, 2]);
    for (const worker of doc.workers) {
      expectTyped(worker, WORKER_FIELDS);
      expect(worker).toMatchObject({ status: 'idle', accepting: 1, respawn_count: 1, harakiri_count: 0 });
      expect(worker.rss as number).toBeGreaterThan(1024 * 1024);
      expect(worker.vsz as number).toBeGreaterThan(worker.rss as number);
      expect(Math.abs((worker.last_spawn as number) - Date.now() / 1000)).toBeLessThan(600);
      const cores = worker.cores as Array<Record<string, unknown>>;
      expectTyped(cores[0]!, { id: 'int', requests: 'int', in_request: 'int' });
    }
    const sum = (key: string): number => doc.workers.reduce((n, w) => n + (w[key] as number), 0);
    expect(sum('requests')).toBe(40);
    expect(sum('exceptions')).toBe(5);
    expect(sum('tx')).toBe(metrics.get('nodeuwsgi_response_bytes_total'));
    expect(sum('running_time')).toBeGreaterThan(0);

    const top = await run(process.execPath, [CLI, 'top', '--once', statsPath]);
    expect(top.code, top.stderr).toBe(0);
    console.log(`node-uwsgi top --once:\n${top.stdout}`);
    expect(top.stdout).toMatch(/req: 40 /);
    expect(top.stdout).toMatch(/^WID\s+%\s+PID\s+REQ\s+DELTA\s+RPS\s+EXC\s+STATUS\s+AVG\s+RSS\s+VSZ\s+TX\s+RESPAWN\s+HARAKIRI/m);
    for (const worker of doc.workers) expect(top.stdout).toMatch(new RegExp(`^${worker.id as number}\\s+\\S+\\s+${worker.pid as number}\\s+${worker.requests as number}\\s`, 'm'));

    // A worker killed with SIGKILL: the restart is counted as a crash, its replacement takes its slot, and
    // what it had reported stays counted.
    const victim = doc.workers[0]!;
    process.kill(victim.pid as number, 'SIGKILL');
    await stack.server.waitForLog((line: LogLine) => line.role === 'master' && line.msg === 'worker died');
    const after = await until(
      'the restart counted and the replacement ready',
      async () => samples((await curl(metricsUrl)).body),
      (m) => m.get('nodeuwsgi_worker_restarts_total{cause="crash"}') === 1 && m.get('nodeuwsgi_workers_ready') === 2,
    );
    expect(after.get('nodeuwsgi_request_duration_seconds_count')).toBe(40);
    expect(after.get('nodeuwsgi_worker_restarts_total{cause="harakiri"}')).toBe(0);
    const respawned = (JSON.parse(await readStatsRaw(statsPath)) as Doc).workers.find((w) => w.id === victim.id)!;
    expect(respawned.pid).not.toBe(victim.pid);
    expect(respawned).toMatchObject({ respawn_count: 2, requests: victim.requests, delta_requests: 0 });
    expect((await curl(`http://127.0.0.1:${metricsPort}/health`)).status).toBe(200);
  }, 90_000);

  it('says 503 on /health until a worker is ready and once a stop begins; the Unix socket is replaced when stale and removed on exit', async () => {
    const dir = tempDir();
    const metricsPath = join(dir, 'metrics.sock');
    const gate = join(dir, 'go');
    const release = join(dir, 'release');
    // A stale socket file left by a process killed without closing it.
    const stale = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(metricsPath)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    await new Promise((resolve) => stale.once('exit', resolve));
    expect(statSync(metricsPath).isSocket()).toBe(true);

    const socket = join(dir, 'app.sock');
    const server = launchServer({ app: APP, socket: `unix:${socket}`, args: ['--metrics', `unix:${metricsPath}`], env: { STATS_GATE: gate } });
    defer(async () => {
      await server.stop();
    });
    await server.waitForLog((line) => line.msg === 'metrics and health listening', WAIT_MS);
    // The worker's app import waits for the gate file: no worker can be ready.
    const starting = await curl([metricsPath, '/health']);
    expect(starting.status).toBe(503);
    expect(JSON.parse(starting.body)).toEqual({ status: 'unavailable', ready: 0 });

    writeFileSync(gate, '');
    await server.waitForLog((line) => line.msg === 'ready', WAIT_MS);
    expect((await curl([metricsPath, '/health'])).status).toBe(200);
    const metrics = await curl([metricsPath, '/metrics']);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^# TYPE nodeuwsgi_requests_total counter$/m);

    // A request held in flight keeps the stop going while /health is asked.
    const nginx = await startNginx({ prefix: dir, transport: 'unix', upstream: socket });
    defer(() => nginx.stop());
    const held = httpRequest(`http://127.0.0.1:${nginx.port}/hold?until=${encodeURIComponent(release)}`);
    await server.waitForLog((line) => line.msg === 'stats-app: hold started', WAIT_MS);
    server.child.kill('SIGTERM');
    await server.waitForLog((line) => line.msg === 'stopping: listening sockets closed, finishing in-flight requests', WAIT_MS);
    const stopping = await curl([metricsPath, '/health']);
    expect(stopping.status).toBe(503);
    expect(JSON.parse(stopping.body)).toMatchObject({ status: 'stopping' });

    writeFileSync(release, '');
    expect((await held).status).toBe(200);
    expect(await server.exited).toBe(0);
    expect(existsSync(metricsPath)).toBe(false);
  }, 90_000);

  it('top names the address and the cause when nothing serves stats there', async () => {
    const dir = tempDir();
    const result = await run(process.execPath, [CLI, 'top', '--once', `unix:${join(dir, 'none.sock')}`]);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/cannot read stats from unix:.*none\.sock: ENOENT/);
  });
});

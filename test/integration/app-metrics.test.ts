// The app's own prom-client metrics at the master's /metrics (src/ops/app-metrics.ts, worker-metrics.ts): an
// Express app counting its requests with a Counter, 2 workers, requests through nginx; the Counter summed over
// the workers, a Gauge per worker, Node's process metrics per worker (--metrics-process), and the sum kept when
// a worker is killed and replaced.
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { freePort, httpRequest, startStack } from './nginx.js';
import { useCleanups } from '../helpers/cleanup.js';
import { samples } from '../helpers/metrics.js';
import { toolEnv } from '../helpers/ci.js';

const WAIT_MS = 20_000;
const N = 40;

const { defer, tempDir } = useCleanups('nu-app-metrics-');

function curl(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('curl', ['-sS', '--fail', url], { timeout: WAIT_MS, env: toolEnv() }, (err, stdout, stderr) => (err ? reject(new Error(`${err.message} ${stderr}`)) : resolve(stdout)));
  });
}

async function until(what: string, probe: () => Promise<Map<string, number>>, condition: (m: Map<string, number>) => boolean): Promise<Map<string, number>> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const last = await probe();
    if (condition(last)) return last;
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${WAIT_MS} ms; last: ${JSON.stringify([...last])}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

describe("the app's prom-client metrics at /metrics", () => {
  it('sums an Express app\'s Counter over 2 workers, keeps gauges and process metrics per worker, and keeps the sum across a worker\'s replacement', async () => {
    const metricsPort = await freePort();
    const stack = await startStack({ app: 'prom-app.mjs', args: ['--workers', '2', '--metrics', `127.0.0.1:${metricsPort}`, '--metrics-process'] });
    defer(() => stack.stop());
    await stack.server.waitForLog((line) => line.msg === 'ready');
    const url = `http://127.0.0.1:${metricsPort}/metrics`;
    const scrape = async (): Promise<Map<string, number>> => samples(await curl(url));

    const results = await Promise.all(Array.from({ length: N }, () => httpRequest(stack.url('/hello'))));
    expect(results.map((r) => r.status)).toEqual(new Array<number>(N).fill(200));
    // The workers that served them (each answer names its pid).
    const pids = new Set(results.map((r) => r.body.toString()));

    const first = await scrape();
    expect(first.get('app_requests_total{route="/hello"}')).toBe(N);
    // node-uwsgi's own families are still there, unchanged.
    expect(first.get('nodeuwsgi_workers_ready')).toBe(2);
    // A gauge is per worker: a sum of two pids means nothing.
    const gauges = [...first].filter(([name]) => name.startsWith('app_worker_pid{'));
    expect(gauges.map(([name]) => name).sort()).toEqual(['app_worker_pid{worker="1"}', 'app_worker_pid{worker="2"}']);
    // --metrics-process: Node's default metrics of each worker.
    expect(first.has('nodejs_heap_size_used_bytes{worker="1"}')).toBe(true);
    expect(first.has('nodejs_heap_size_used_bytes{worker="2"}')).toBe(true);
    expect([...first.keys()].some((k) => k.startsWith('nodejs_eventloop_lag_seconds{') && k.includes('worker="2"'))).toBe(true);

    // A worker killed: its replacement starts from 0, the sum keeps what the killed one had reported.
    // One that served some: without its counts kept, the sum would fall short.
    const victim = Number([...pids][0]);
    process.kill(victim, 'SIGKILL');
    await until('the replacement ready', scrape, (m) => m.get('nodeuwsgi_workers_ready') === 2 && m.get('nodeuwsgi_worker_restarts_total{cause="crash"}') === 1);
    await Promise.all(Array.from({ length: 10 }, () => httpRequest(stack.url('/hello'))));
    const after = await until('all requests counted', scrape, (m) => m.get('app_requests_total{route="/hello"}') === N + 10);
    expect(after.get('app_requests_total{route="/hello"}')).toBe(N + 10);
  });

  it('reads the registry of the app\'s own copy of prom-client, not node-uwsgi\'s', async () => {
    // The app's directory has its own node_modules/prom-client (a copy, with its dependencies): its import
    // resolves there, to another module instance than node-uwsgi's.
    const dir = tempDir();
    const packageDir = (name: string): string => realpathSync(join(process.cwd(), 'node_modules', name));
    for (const name of ['prom-client', 'tdigest', 'bintrees', '@opentelemetry/api']) {
      mkdirSync(dirname(join(dir, 'node_modules', name)), { recursive: true });
      cpSync(packageDir(name), join(dir, 'node_modules', name), { recursive: true });
    }
    const app = join(dir, 'app.mjs');
    writeFileSync(
      app,
      [
        "import { createRequire } from 'node:module';",
        "import { Counter } from 'prom-client';",
        "const where = createRequire(import.meta.url).resolve('prom-client');",
        "const served = new Counter({ name: 'own_requests_total', help: 'Requests.' });",
        'export default (req, res) => { served.inc(); res.end(where); };',
        '',
      ].join('\n'),
    );
    const metricsPort = await freePort();
    const stack = await startStack({ app, args: ['--workers', '2', '--metrics', `127.0.0.1:${metricsPort}`] });
    defer(() => stack.stop());
    await stack.server.waitForLog((line) => line.msg === 'ready');
    const results = await Promise.all(Array.from({ length: N }, () => httpRequest(stack.url('/'))));
    expect(results.map((r) => r.status)).toEqual(new Array<number>(N).fill(200));
    expect(results[0]!.body.toString()).toBe(join(realpathSync(dir), 'node_modules', 'prom-client', 'index.js'));
    const metrics = samples(await curl(`http://127.0.0.1:${metricsPort}/metrics`));
    expect(metrics.get('own_requests_total')).toBe(N);
  });
});

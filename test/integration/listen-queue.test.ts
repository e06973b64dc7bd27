// --backlog and the listen queue, on the real CLI: a storm of 2000 connections through nginx onto 2 workers (with
// the fixed backlog of 1024, 79% of 132k requests were 502: connect() failed (11: Resource temporarily
// unavailable)), and a queue filled on purpose (workers stopped with SIGSTOP) as --stats, --metrics, ss and the
// log show it.
import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT, startServer, startStack } from './nginx.js';
import { useCleanups } from '../helpers/cleanup.js';

const { defer, tempDir } = useCleanups('nu-backlog-');
const SOMAXCONN = Number(readFileSync('/proc/sys/net/core/somaxconn', 'latin1').trim());

function readStats(path: string): Promise<{ listen_queue: number; listen_queue_errors: number; sockets: Array<{ name: string; queue: number; max_queue: number }>; workers: Array<{ pid: number }> }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path });
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => resolve(JSON.parse(text)));
    socket.on('error', reject);
  });
}

/** Recv-Q and Send-Q of a listening Unix socket, as ss prints them (the queue and the backlog). */
function ssListener(path: string): { queue: number; backlog: number } | undefined {
  // node:cluster binds a socket by the shorter of its absolute path and its path relative to the master's cwd
  // (the harness starts the server in ROOT): from a checkout near the temp dir, ss names it `../tmp.../x.sock`.
  for (const name of new Set([path, relative(ROOT, path)])) {
    const line = execFileSync('ss', ['-xlnH', 'src', name], { encoding: 'utf8' }).trim();
    const match = /^\S+\s+LISTEN\s+(\d+)\s+(\d+)\s/.exec(line);
    if (match) return { queue: Number(match[1]), backlog: Number(match[2]) };
  }
  return undefined;
}

function getMetrics(socketPath: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get({ socketPath, path: '/metrics' }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

function wrk(url: string, connections: number, seconds: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('wrk', ['-t2', `-c${connections}`, `-d${seconds}s`, '--timeout', '10s', url], { timeout: (seconds + 30) * 1000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`wrk failed: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

describe('--backlog', () => {
  it('takes 2000 concurrent connections through nginx onto 2 workers without a 502 at the default backlog (somaxconn)', async () => {
    const dir = tempDir();
    const statsPath = join(dir, 'stats.sock');
    const stack = await startStack({ app: 'node.mjs', args: ['--workers', '2', '--stats', statsPath], workerConnections: 8192 });
    defer(() => stack.stop());
    expect(ssListener(stack.backend)?.backlog, 'the socket listens with somaxconn').toBe(SOMAXCONN);
    expect((await readStats(statsPath)).sockets[0]).toMatchObject({ name: stack.backend, max_queue: SOMAXCONN });

    const output = await wrk(stack.url('/hello'), 2000, 5);
    const requests = Number(/(\d+) requests in/.exec(output)?.[1]);
    // Tallied from nginx's access log; 499 is wrk closing the connections it has waiting at the end of the run.
    const tally = new Map<string, number>();
    for (const line of stack.nginx.accessLog().split('\n').filter(Boolean)) {
      const status = / (\d{3}) \d+ "/.exec(line)?.[1] ?? 'unparsed';
      tally.set(status, (tally.get(status) ?? 0) + 1);
    }
    const summary = JSON.stringify(Object.fromEntries(tally));
    expect(requests, output).toBeGreaterThan(2000);
    expect(tally.get('200') ?? 0, summary).toBeGreaterThan(2000);
    expect([...tally.keys()].filter((s) => s !== '200' && s !== '499'), `${summary}\n${output}`).toEqual([]);
    expect(stack.nginx.errorLog()).not.toContain('Resource temporarily unavailable');
  }, 90_000);

  it('shows a full Unix listen queue in --stats, --metrics and one ERR_LISTEN_QUEUE_FULL warning, for --socket and --http', async () => {
    const dir = tempDir();
    const sock = join(dir, 'app.sock');
    const httpSock = join(dir, 'http.sock');
    const statsPath = join(dir, 'stats.sock');
    const metricsPath = join(dir, 'metrics.sock');
    const server = await startServer({
      app: 'node.mjs',
      socket: `unix:${sock}`,
      args: ['--workers', '2', '--backlog', '16', '--http', `unix:${httpSock}`, '--stats', statsPath, '--metrics', metricsPath],
    });
    defer(() => server.stop());
    await server.waitForLog((line) => line.msg === 'ready');
    expect(ssListener(sock)).toEqual({ queue: 0, backlog: 16 });
    expect(ssListener(httpSock)).toEqual({ queue: 0, backlog: 16 });

    // Workers stopped: nothing accepts, so every connection waits in the queue, up to the backlog (Unix: one more).
    const pids = (await readStats(statsPath)).workers.map((w) => w.pid);
    expect(pids).toHaveLength(2);
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    defer(() => pids.forEach((pid) => process.kill(pid, 'SIGCONT')));
    const clients: net.Socket[] = [];
    const refused: string[] = [];
    defer(() => clients.forEach((c) => c.destroy()));
    await Promise.all(
      Array.from({ length: 20 }, () => {
        const client = net.connect({ path: sock });
        clients.push(client);
        return new Promise<void>((resolve) => {
          client.once('connect', () => resolve());
          client.once('error', (err: NodeJS.ErrnoException) => {
            refused.push(err.code ?? 'error');
            resolve();
          });
        });
      }),
    );
    expect(refused.length, 'connections past the backlog are refused with EAGAIN').toBeGreaterThan(0);
    expect(new Set(refused)).toEqual(new Set(['EAGAIN']));

    // A stats reading is at most a second old.
    let stats = await readStats(statsPath);
    for (const deadline = Date.now() + 5000; stats.sockets[0]!.queue < 16 && Date.now() < deadline; ) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      stats = await readStats(statsPath);
    }
    expect(stats.sockets[0]).toMatchObject({ name: sock, max_queue: 16 });
    expect(stats.sockets[0]!.queue).toBeGreaterThanOrEqual(16);
    expect(stats.listen_queue).toBe(stats.sockets[0]!.queue);
    expect(stats.listen_queue_errors).toBeGreaterThan(0);
    const warning = await server.waitForLog((line) => line.code === 'ERR_LISTEN_QUEUE_FULL');
    expect(warning).toMatchObject({ level: 40, address: `unix:${sock}`, backlog: 16 });

    const metrics = await getMetrics(metricsPath);
    expect(metrics).toMatch(new RegExp(`^nodeuwsgi_listen_queue\\{socket="unix:${sock}",proto="uwsgi"\\} (1[6-7])$`, 'm'));
    expect(metrics).toContain(`nodeuwsgi_listen_queue_backlog{socket="unix:${sock}",proto="uwsgi"} 16`);
    expect(metrics).toContain(`nodeuwsgi_listen_queue{socket="unix:${httpSock}",proto="http"} 0`);

    // Still full at the next reading (a second later): still one warning.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect((await readStats(statsPath)).sockets[0]!.queue).toBeGreaterThanOrEqual(16);
    expect(server.logs.filter((line) => line.code === 'ERR_LISTEN_QUEUE_FULL')).toHaveLength(1);

    // Resumed, the workers drain the queue; the episode ends with an info line.
    for (const pid of pids) process.kill(pid, 'SIGCONT');
    for (const c of clients) c.destroy();
    await server.waitForLog((line) => line.msg === 'listen queue of a socket back under half its backlog');
    expect((await readStats(statsPath)).sockets[0]!.queue).toBe(0);
  }, 60_000);
});

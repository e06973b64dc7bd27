// Out of file descriptors, on the real CLI behind nginx: a worker whose limit (256) is taken by idle connections
// refuses new ones while it lasts, but logs one ERR_FD_LIMIT warning naming EMFILE and the limit, invents no app
// exception (its heartbeat once threw EMFILE from process.memoryUsage.rss() every second, counted as one) and is
// not killed by --harakiri (the missing heartbeats once got it killed with all its connections); once the idle
// connections close, requests succeed again. And Node raises the soft RLIMIT_NOFILE to the hard one.
import { readFileSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { httpRequest, startServer, startStack } from './nginx.js';
import { useCleanups } from '../helpers/cleanup.js';

const { defer, tempDir } = useCleanups('nu-fds-');

interface Stats {
  workers: Array<{ pid: number; exceptions: number; harakiri_count: number; respawn_count: number }>;
}

function readStats(path: string): Promise<Stats> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path });
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.on('end', () => resolve(JSON.parse(text) as Stats));
    socket.on('error', reject);
  });
}

function openFilesLimit(pid: number): string {
  return /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync(`/proc/${pid}/limits`, 'latin1'))!.slice(1, 3).join(':');
}

describe('file descriptor limit', () => {
  it('Node raises the soft RLIMIT_NOFILE to the hard limit in the master and the workers', async () => {
    const dir = tempDir();
    const statsPath = join(dir, 'stats.sock');
    const server = await startServer({
      app: 'node.mjs',
      socket: `unix:${join(dir, 'app.sock')}`,
      args: ['--stats', statsPath],
      wrapper: ['prlimit', '--nofile=256:4096', '--'],
    });
    defer(() => server.stop());
    // startServer may return as soon as the uwsgi socket accepts, which the master binds before --stats listens.
    await server.waitForLog((line) => line.msg === 'ready');
    expect(openFilesLimit(server.child.pid!)).toBe('4096:4096');
    const [worker] = (await readStats(statsPath)).workers;
    expect(openFilesLimit(worker!.pid)).toBe('4096:4096');
  });

  it('a worker out of descriptors: one EMFILE warning with the limit, no app exception, no harakiri, then recovery', async () => {
    const dir = tempDir();
    const statsPath = join(dir, 'stats.sock');
    const stack = await startStack({
      app: 'node.mjs',
      args: ['--workers', '1', '--harakiri', '2', '--stats', statsPath],
      wrapper: ['prlimit', '--nofile=256:256', '--'],
    });
    defer(() => stack.stop());
    const server = stack.server;
    await server.waitForLog((line) => line.msg === 'ready');
    const before = (await readStats(statsPath)).workers[0]!;
    expect(openFilesLimit(before.pid)).toBe('256:256');
    expect((await httpRequest(stack.url('/hello'))).status).toBe(200);

    // 400 idle connections straight to the socket: the worker accepts until its descriptors run out. libuv then
    // closes every connection still queued (uv__emfile_trick), unseen; a descriptor open for a moment elsewhere
    // at that instant (seen under load, 5 of 256) leaves as many free afterwards, so a trickle of further idle
    // connections keeps the worker full, as clients that keep coming do.
    const idle: net.Socket[] = [];
    const connectIdle = (): void => void idle.push(net.connect({ path: stack.backend }).on('error', () => {}));
    const trickle = setInterval(connectIdle, 25);
    defer(() => {
      clearInterval(trickle);
      idle.forEach((socket) => socket.destroy());
    });
    for (let i = 0; i < 400; i++) connectIdle();
    const statuses = async (n: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = 0; i < n; i++) out.push((await httpRequest(stack.url('/hello'))).status);
      return out;
    };
    const warning = await server.waitForLog((line) => line.code === 'ERR_FD_LIMIT').catch((err: Error) => {
      const open = readdirSync(`/proc/${before.pid}/fd`).length;
      const connected = idle.filter((socket) => !socket.connecting && !socket.destroyed).length;
      throw new Error(`${err.message}\nworker ${before.pid} has ${open} descriptors open; ${connected} of ${idle.length} idle connections are connected`);
    });
    expect(warning).toMatchObject({ level: 40, worker: 1, errno: 'EMFILE', limit: 256, hardLimit: 256 });
    // nginx's connections are closed unserved: 502, or served when they win a descriptor freed for a moment. With
    // libuv (the JavaScript path) 502s are the rule. On the native path (same reserve-descriptor trick) nginx's
    // requests were served in 3 runs of 3 with the worker at 253-256 of 256 descriptors: which descriptor freed
    // for a moment they won is not understood yet; what matters holds on both paths (below).
    const jsPath = process.env.NODE_UWSGI_ACCEPT === 'js';
    const during = await statuses(5);
    if (jsPath) expect(during, during.join(' ')).toContain(502);
    expect(during.filter((s) => s !== 502 && s !== 200)).toEqual([]);

    // Past --harakiri and several heartbeats with the descriptors still taken: the worker's loop runs, so it
    // lives on, and the warning is not repeated.
    const deadline = Date.now() + 4000;
    while (Date.now() < deadline) {
      expect((await readStats(statsPath)).workers[0]).toMatchObject({ pid: before.pid, exceptions: 0, harakiri_count: 0 });
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const still = await statuses(5);
    if (jsPath) expect(still, still.join(' ')).toContain(502);
    expect(still.filter((s) => s !== 502 && s !== 200)).toEqual([]);
    expect(server.logs.filter((line) => line.code === 'ERR_FD_LIMIT')).toHaveLength(1);
    expect(server.logs.filter((line) => line.code === 'ERR_APP_EXCEPTION' || line.code === 'ERR_WORKER_BLOCKED')).toEqual([]);

    clearInterval(trickle);
    for (const socket of idle) socket.destroy();
    await server.waitForLog((line) => line.msg === 'file descriptors available again');
    expect((await httpRequest(stack.url('/hello'))).status).toBe(200);
    const after = (await readStats(statsPath)).workers[0]!;
    expect(after).toMatchObject({ pid: before.pid, exceptions: 0, harakiri_count: 0, respawn_count: 1 });
  }, 60_000);
});

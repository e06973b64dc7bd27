// Deploys that lose nothing, on one machine over TCP (README "Deploys that lose nothing"): a host stopped under
// load resets none of the connections nginx has made to it (a POST sent on one cannot be retried), and the two
// ways of restarting in place (a graceful reload; a stop and a start on a socket systemd holds) lose no request.
// nginx's upstream has a second server, B, so that a refused connect to the stopping one, A, is retried there.
// Across real hosts: hosts.test.ts.
import { closeSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { loadNative } from '../../src/server/native.js';
import { ACCESS_LOG_FORMAT, retriedByPhase, startMixedLoad } from '../helpers/mixed-load.js';
import { ROOT, freePort, launchServer, startNginx, startServer, type NginxProcess, type ServerProcess } from './nginx.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

/** nginx over `servers` (host:port), each kept in rotation whatever fails (max_fails=0): every stop is hit. */
async function nginxOver(servers: string[]): Promise<{ nginx: NginxProcess; log: string }> {
  const prefix = mkdtempSync(join(tmpdir(), 'nu-deploy-'));
  cleanups.push(() => rmSync(prefix, { recursive: true, force: true }));
  const log = join(prefix, 'hosts.log');
  const site = (port: number): string => `${ACCESS_LOG_FORMAT}
upstream app {
    ${servers.map((server) => `server ${server} max_fails=0;`).join('\n    ')}
}
server {
    listen 127.0.0.1:${port};
    access_log ${log} hosts;
    location / {
        include ${join(ROOT, 'nginx/uwsgi_params')};
        uwsgi_pass app;
        uwsgi_next_upstream error timeout;
        uwsgi_connect_timeout 1s;
    }
}`;
  const nginx = await startNginx({ prefix, transport: 'tcp', upstream: '', site, workerConnections: 1024 });
  cleanups.push(() => nginx.stop());
  return { nginx, log };
}

async function server(address: string, name: string): Promise<ServerProcess> {
  const started = await startServer({ app: 'hosts-app.mjs', socket: address, args: ['--workers', '2'], env: { HOST_NAME: name } });
  cleanups.push(() => started.stop());
  return started;
}

const RESETS = /reset by peer|prematurely closed/;

describe('deploys that lose nothing', () => {
  it('a SIGTERM under load: nginx sees a served request or a refused connect, never a reset (3 stops)', async () => {
    const a = `127.0.0.1:${await freePort()}`;
    const b = `127.0.0.1:${await freePort()}`;
    await server(b, 'b');
    const { nginx, log } = await nginxOver([a, b]);
    const mark = nginx.errorLogMark();
    const load = startMixedLoad(nginx.port, 16);
    cleanups.push(() => load.stop());
    for (let round = 0; round < 3; round++) {
      const host = await startServer({ app: 'hosts-app.mjs', socket: a, args: ['--workers', '2'], env: { HOST_NAME: 'a' } });
      await sleep(300);
      load.phase(`stop${round}`);
      expect(await host.stop()).toBe(0);
    }
    await load.stop();
    const counts = [...load.counts.values()];
    const sent = counts.reduce((n, c) => n + c.sent, 0);
    const servedByA = counts.reduce((n, c) => n + (c.byHost.a ?? 0), 0);
    const retried = [...retriedByPhase(log).values()].reduce((n, r) => n + r, 0);
    console.log(`deploy.test.ts SIGTERM x3 (${process.env.NODE_UWSGI_ACCEPT ?? 'auto'} accept): sent ${sent}, served by the stopped host ${servedByA}, retried by nginx ${retried}`);
    expect(servedByA).toBeGreaterThan(50);
    expect(counts.flatMap((c) => c.failures)).toEqual([]);
    expect(nginx.errorLog(mark).split('\n').filter((line) => RESETS.test(line))).toEqual([]);
  }, 60_000);

  it('graceful reloads (SIGHUP) under load lose nothing (2 reloads)', async () => {
    const a = `127.0.0.1:${await freePort()}`;
    const host = await server(a, 'a');
    const { nginx } = await nginxOver([a]);
    const load = startMixedLoad(nginx.port, 16);
    cleanups.push(() => load.stop());
    for (let round = 0; round < 2; round++) {
      const from = host.logs.length;
      host.child.kill('SIGHUP');
      await host.waitForLog((line) => line.msg === 'reload complete' && host.logs.indexOf(line) >= from, 20_000);
    }
    await load.stop();
    const counts = [...load.counts.values()];
    expect(counts.reduce((n, c) => n + c.sent, 0)).toBeGreaterThan(100);
    expect(counts.flatMap((c) => c.failures)).toEqual([]);
  }, 60_000);

  it('socket activation: a stop and a start on the socket its holder keeps lose nothing (3 restarts)', async () => {
    const addon = loadNative().addon;
    if (addon === undefined) throw new Error(`this test holds the socket with the native addon: ${loadNative().reason}`);
    const port = await freePort();
    // The test is systemd here: it holds the listening socket across the server's restarts and passes it as fd 3.
    const fd = addon.bindTcp('127.0.0.1', port, 511);
    cleanups.push(() => closeSync(fd));
    const { nginx } = await nginxOver([`127.0.0.1:${port}`]);
    const load = startMixedLoad(nginx.port, 16);
    cleanups.push(() => load.stop());
    for (let round = 0; round < 3; round++) {
      const host = launchServer({
        app: 'hosts-app.mjs',
        socket: `fd://3 (127.0.0.1:${port})`,
        listenArgs: [],
        args: ['--workers', '2'],
        env: { HOST_NAME: 'a', LISTEN_FDS: '1' },
        // systemd sets LISTEN_PID to the pid it starts; exec keeps the shell's.
        wrapper: ['sh', '-c', 'LISTEN_PID=$$ exec "$@"', 'sh'],
        fds: [fd],
      });
      await host.waitForLog((line) => line.msg === 'ready', 20_000);
      await sleep(300);
      expect(await host.stop()).toBe(0);
    }
    // Queued while no server ran: served by the next one.
    await startServer({ app: 'hosts-app.mjs', socket: `fd://3`, listenArgs: [], args: ['--workers', '2'], env: { HOST_NAME: 'a', LISTEN_FDS: '1' }, wrapper: ['sh', '-c', 'LISTEN_PID=$$ exec "$@"', 'sh'], fds: [fd] }).then((last) => cleanups.push(() => last.stop()));
    await sleep(300);
    await load.stop();
    const counts = [...load.counts.values()];
    expect(counts.reduce((n, c) => n + c.sent, 0)).toBeGreaterThan(100);
    expect(counts.flatMap((c) => c.failures)).toEqual([]);
  }, 60_000);
});

// An app's own listen() at import, through a real nginx: node-uwsgi serves the app, the port it asked for stays
// closed (no way around nginx and --allow-from), and each worker says so once. src/worker/listen-guard.ts.
import net from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { connects } from '../helpers/wait.js';
import { freePort, httpRequest, launchServer, startStack, type LogLine, type Stack } from './nginx.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function stack(app: string, port: number): Promise<Stack> {
  const started = await startStack({ app, args: ['--workers', '2'], env: { APP_PORT: String(port) } });
  cleanups.push(() => started.stop());
  // Every worker ready: each has imported the app, so each has made its listen() calls.
  await started.server.waitForLog((line) => line.msg === 'ready');
  return started;
}


/** On every interface too, not only loopback: the app asked for *:port. */
async function openAnywhere(port: number): Promise<boolean> {
  if (await connects(port)) return true;
  return new Promise((resolve) => {
    const socket = net.connect({ host: '::1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const listenWarnings = (logs: LogLine[]): LogLine[] => logs.filter((line) => line.code === 'ERR_APP_LISTEN');

describe("an app's own listen() at import", () => {
  it('Express as its docs write it (app.listen(port, cb)): served through nginx, the port stays closed, one warning per worker', async () => {
    const port = await freePort();
    const { server, url } = await stack('express-listen.cjs', port);
    for (let i = 0; i < 4; i++) {
      const res = await httpRequest(url('/'));
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('Hello World!');
    }
    expect(await openAnywhere(port)).toBe(false);
    const warnings = listenWarnings(server.logs);
    expect(warnings.map((line) => line.worker).sort()).toEqual([1, 2]);
    for (const line of warnings) expect(line).toMatchObject({ level: 40, address: `*:${port}` });
    // The app's callback ran in each worker: apps that wait for it go on.
    expect(server.logs.filter((line) => line.raw === `Example app listening on port ${port}`)).toHaveLength(2);
  });

  it('Fastify awaiting listen() at top level: listen() resolves, the app is served, the port stays closed', async () => {
    const port = await freePort();
    const { server, url } = await stack('fastify-listen.mjs', port);
    const res = await httpRequest(url('/'));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ hello: 'world', address: `http://127.0.0.1:${port}` });
    expect(await openAnywhere(port)).toBe(false);
    const warnings = listenWarnings(server.logs);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatchObject({ address: `localhost:${port}` });
  });

  it('a module that exports nothing but called listen(): the error says to export the app instead', async () => {
    const port = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'nu-listen-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const server = launchServer({ app: 'listen-no-export.mjs', socket: `unix:${join(dir, 'app.sock')}`, env: { APP_PORT: String(port) } });
    cleanups.push(() => server.stop());
    expect(await server.exited).toBe(1);
    const fatal = server.logs.find((line) => line.level === 60);
    expect(fatal, server.describe()).toMatchObject({ errorCode: 'ERR_APP_EXPORT_MISSING' });
    expect(String(fatal!.error)).toContain(`; the module called listen() on *:${port}: export the app (or the server) instead`);
    expect(server.stderr()).toContain(`the module called listen() on *:${port}: export the app (or the server) instead`);
  });
});

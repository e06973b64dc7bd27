// The worker's guard on the app's own listen(): real servers (net, http, https, Express, Koa, Fastify) whose listen()
// opens nothing while they look listening, and node-uwsgi's own listenOn, which still opens its socket.
import { once } from 'node:events';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import express from 'express';
import Fastify from 'fastify';
import Koa from 'koa';
import { afterEach, describe, expect, it } from 'vitest';
import { connects } from '../helpers/wait.js';
import { listenOn } from '../../src/server/listen.js';
import { describeListen, installListenGuard, type AskedListen, type ListenGuard } from '../../src/worker/listen-guard.js';

const nodeListen = net.Server.prototype.listen;

interface NestApp {
  listen(port: number): Promise<unknown>;
  getHttpServer(): http.Server;
  close(): Promise<void>;
}
let guard: ListenGuard | undefined;
let warned: AskedListen[] = [];
afterEach(() => {
  guard?.uninstall();
  guard = undefined;
  warned = [];
});

function install(): ListenGuard {
  guard = installListenGuard((asked) => warned.push(asked));
  return guard;
}

/** A TCP port on 127.0.0.1 that nothing listens on (the OS picked it, then it was closed). */
async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => (nodeListen as (...args: unknown[]) => net.Server).call(probe, 0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}


describe('describeListen', () => {
  it("reads each of net.Server's listen() signatures", () => {
    expect(describeListen([3000])).toEqual({ label: '*:3000', address: { address: '::', family: 'IPv6', port: 3000 } });
    expect(describeListen(['3000', () => {}])).toEqual({ label: '*:3000', address: { address: '::', family: 'IPv6', port: 3000 } });
    expect(describeListen([8080, '0.0.0.0', 511, () => {}])).toEqual({
      label: '0.0.0.0:8080',
      address: { address: '0.0.0.0', family: 'IPv4', port: 8080 },
    });
    expect(describeListen([{ port: 3000, host: '::1' }])).toEqual({ label: '[::1]:3000', address: { address: '::1', family: 'IPv6', port: 3000 } });
    expect(describeListen([{ port: 3000, host: 'localhost' }]).address).toEqual({ address: '127.0.0.1', family: 'IPv4', port: 3000 });
    expect(describeListen(['/run/app.sock', () => {}])).toEqual({ label: 'unix:/run/app.sock', address: '/run/app.sock' });
    expect(describeListen([{ path: '/run/app.sock' }])).toEqual({ label: 'unix:/run/app.sock', address: '/run/app.sock' });
    expect(describeListen([{ fd: 3 }])).toEqual({ label: 'fd://3', address: null });
    expect(describeListen([])).toEqual({ label: '*:0', address: { address: '::', family: 'IPv6', port: 0 } });
    expect(describeListen([() => {}]).label).toBe('*:0');
  });
});

describe('installListenGuard', () => {
  it('opens nothing for an http.Server, yet runs its callback and says it listens on the address asked', async () => {
    install();
    const port = await freePort();
    const server = http.createServer((_req, res) => res.end('x'));
    let called = 0;
    const returned = server.listen(port, '127.0.0.1', () => called++);
    expect(returned).toBe(server);
    await once(server, 'listening');
    expect(called).toBe(1);
    expect(server.listening).toBe(true);
    expect(server.address()).toEqual({ address: '127.0.0.1', family: 'IPv4', port });
    expect(await connects(port)).toBe(false);
    expect(warned).toEqual([{ label: `127.0.0.1:${port}`, address: { address: '127.0.0.1', family: 'IPv4', port } }]);
  });

  it('reports each address once, and keeps every call asked', async () => {
    const { asked } = install();
    http.createServer().listen(3000);
    net.createServer().listen('/tmp/nowhere.sock');
    https.createServer().listen({ port: 3443, host: '::' });
    http.createServer().listen(3000);
    expect(warned.map((w) => w.label)).toEqual(['*:3000', 'unix:/tmp/nowhere.sock', '[::]:3443']);
    expect(asked).toEqual(['*:3000', 'unix:/tmp/nowhere.sock', '[::]:3443', '*:3000']);
  });

  it('guards https.Server, which inherits net.Server.prototype.listen through tls.Server', async () => {
    install();
    const port = await freePort();
    const server = https.createServer();
    server.listen(port);
    await once(server, 'listening');
    expect(await connects(port)).toBe(false);
    expect(warned).toHaveLength(1);
  });

  it('lets node-uwsgi listen through listenOn while installed', async () => {
    install();
    const server = net.createServer((socket) => socket.end());
    await listenOn(server, { kind: 'tcp', host: '127.0.0.1', port: 0 });
    try {
      const { port } = server.address() as net.AddressInfo;
      expect(port).toBeGreaterThan(0);
      expect(await connects(port)).toBe(true);
      expect(warned).toEqual([]);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('closes a server that only looked listening without an error, and it stops looking so', async () => {
    install();
    const server = http.createServer();
    server.listen(3000);
    await once(server, 'listening');
    const err = await new Promise((resolve) => server.close(resolve));
    expect(err).toBeUndefined();
    expect(server.listening).toBe(false);
    expect(server.address()).toBeNull();
  });

  it("serves Express's app.listen(PORT, cb) as its docs write it: the callback runs, the port stays closed", async () => {
    install();
    const port = await freePort();
    const app = express();
    const logged: unknown[] = [];
    const server = app.listen(port, () => logged.push(server.address()));
    await once(server, 'listening');
    expect(logged).toEqual([{ address: '::', family: 'IPv6', port }]);
    expect(await connects(port)).toBe(false);
    expect(warned.map((w) => w.label)).toEqual([`*:${port}`]);
  });

  it("serves Koa's app.listen(PORT)", async () => {
    install();
    const port = await freePort();
    const server = new Koa().listen(port);
    await once(server, 'listening');
    expect(server.listening).toBe(true);
    expect(await connects(port)).toBe(false);
  });

  it("resolves Fastify's awaited listen() with the address asked, and fastify.close() still resolves", async () => {
    install();
    const port = await freePort();
    const fastify = Fastify({ logger: false });
    fastify.get('/', async () => 'ok');
    const address = await fastify.listen({ port, host: '127.0.0.1' });
    expect(address).toBe(`http://127.0.0.1:${port}`);
    expect(fastify.server.listening).toBe(true);
    expect(await connects(port)).toBe(false);
    // The routes still answer through the instance, as node-uwsgi serves it (routing), here by inject.
    expect((await fastify.inject({ url: '/' })).body).toBe('ok');
    await fastify.close();
    expect(fastify.server.listening).toBe(false);
  });

  it("resolves Fastify's listen() on its default host, localhost, whose second binding is guarded too", async () => {
    const { asked } = install();
    const port = await freePort();
    const fastify = Fastify({ logger: false });
    await fastify.listen({ port });
    expect(warned.map((w) => w.label)).toEqual([`localhost:${port}`]);
    expect(asked[0]).toBe(`localhost:${port}`);
    expect(await connects(port)).toBe(false);
    await fastify.close();
  });

  it("resolves NestJS's await app.listen(port) (it needs address() to answer), with the routes served by the server", async () => {
    install();
    const port = await freePort();
    const fixture = new URL('../fixtures/apps/loader/nest.mjs', import.meta.url).href;
    const { createApp } = (await import(fixture)) as { createApp(): Promise<NestApp> };
    const app = await createApp();
    expect(await app.listen(port)).toBe(app.getHttpServer());
    expect(app.getHttpServer().listening).toBe(true);
    expect(await connects(port)).toBe(false);
    expect(warned.map((w) => w.label)).toEqual([`*:${port}`]);
    await app.close();
  });

  it('puts the prototype back on uninstall', () => {
    install().uninstall();
    guard = undefined;
    expect(net.Server.prototype.listen).toBe(nodeListen);
  });
});

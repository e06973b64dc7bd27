// Unmodified Express 5, Koa 3, Fastify 5 and Hono 4 apps behind a real nginx: the client's address and scheme
// as each framework computes them (no `trust proxy`), query parsing, a JSON body, and a route that throws.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, startStack, type Stack } from './nginx.js';

const QUERY = '?a=1&b=two&b=three';
const PAYLOAD = { hello: 'wörld', list: [1, 2, 3], nested: { ok: true } };

interface Framework {
  name: string;
  app: string;
  interface: 'node' | 'fetch';
  /** What GET /info should answer, given nginx's port. */
  info(port: number): Record<string, unknown>;
}

const FRAMEWORKS: Framework[] = [
  {
    name: 'Express 5',
    app: 'express-app.mjs',
    interface: 'node',
    info: (port) => ({
      ip: '127.0.0.1',
      protocol: 'http',
      secure: false,
      query: { a: '1', b: ['two', 'three'] },
      host: `127.0.0.1:${port}`,
      hostname: '127.0.0.1',
    }),
  },
  {
    name: 'Koa 3',
    app: 'koa-app.mjs',
    interface: 'node',
    info: (port) => ({
      ip: '127.0.0.1',
      protocol: 'http',
      secure: false,
      query: { a: '1', b: ['two', 'three'] },
      host: `127.0.0.1:${port}`,
      href: `http://127.0.0.1:${port}/info${QUERY}`,
    }),
  },
  {
    name: 'Fastify 5',
    app: 'fastify-app.mjs',
    interface: 'node',
    info: (port) => ({
      ip: '127.0.0.1',
      protocol: 'http',
      query: { a: '1', b: ['two', 'three'] },
      host: `127.0.0.1:${port}`,
      hostname: '127.0.0.1',
    }),
  },
  {
    name: 'Hono 4',
    app: 'hono-app.mjs',
    interface: 'fetch',
    info: (port) => ({
      url: `http://127.0.0.1:${port}/info${QUERY}`,
      protocol: 'http',
      query: { a: ['1'], b: ['two', 'three'] },
      host: `127.0.0.1:${port}`,
    }),
  },
];

describe.each(FRAMEWORKS)('$name through nginx', (framework) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ app: framework.app });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it(`is served as a ${framework.interface} app`, async () => {
    const ready = await stack.server.waitForLog((line) => line.msg === 'ready');
    expect(ready.interface).toBe(framework.interface);
  });

  it('sees the client address, the http scheme, the Host with its port and the parsed query', async () => {
    const res = await httpRequest(stack.url(`/info${QUERY}`));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(JSON.parse(res.body.toString('utf8'))).toEqual(framework.info(stack.port));
  });

  it('parses a JSON request body', async () => {
    const body = Buffer.from(JSON.stringify(PAYLOAD));
    const res = await httpRequest(stack.url('/json'), {
      method: 'POST',
      headers: { 'content-type': 'application/json; charset=utf-8' },
      body,
    });
    expect(res.status).toBe(201);
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({ received: PAYLOAD, contentType: 'application/json; charset=utf-8' });
  });

  it("answers the framework's 500 for a throwing route, then serves the next request", async () => {
    const failed = await httpRequest(stack.url('/error'));
    expect(failed.status).toBe(500);
    const next = await httpRequest(stack.url('/info?after=error'));
    expect(next.status).toBe(200);
    expect(JSON.parse(next.body.toString('utf8')).host).toBe(`127.0.0.1:${stack.port}`);
    expect(stack.server.alive()).toBe(true);
  });
});

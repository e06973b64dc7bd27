// Unmodified Express 5, Koa 3, Fastify 5 and Hono 4 apps behind a real nginx: the client's address and scheme
// as each framework computes them (no `trust proxy`), query parsing, JSON bodies small and of 1 MiB, and a route
// that throws. Then Express's own: a multer upload, early hints, and a client gone mid-body.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { nginxVars } from '../helpers/serve.js';
import { httpRequest, parseResponse, rawExchange, seededBytes, sha256, startStack, type Stack } from './nginx.js';

const QUERY = '?a=1&b=two&b=three';
const PAYLOAD = { hello: 'wörld', list: [1, 2, 3], nested: { ok: true } };
// 1 MiB of JSON string: past every stream buffer between nginx and the app (Express 5 once hung from 82 KB on).
const BIG_DATA = seededBytes(0xb16, 768 * 1024).toString('base64');

interface Framework {
  name: string;
  app: string;
  interface: 'node' | 'fetch';
  /** What GET /info should answer, given nginx's port. */
  info(port: number): Record<string, unknown>;
  /** Extra command-line arguments. */
  args?: string[];
}

const HONO: Framework = {
  name: 'Hono 4',
  app: 'hono-app.mjs',
  interface: 'fetch',
  info: (port) => ({
    url: `http://127.0.0.1:${port}/info${QUERY}`,
    protocol: 'http',
    query: { a: ['1'], b: ['two', 'three'] },
    host: `127.0.0.1:${port}`,
  }),
};

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
  HONO,
  { ...HONO, name: 'Hono 4 --real-response', args: ['--real-response'] },
];

describe.each(FRAMEWORKS)('$name through nginx', (framework) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ app: framework.app, args: framework.args });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it(`is served as a ${framework.interface} app`, async () => {
    const ready = await stack.server.waitForLog((line) => line.msg === 'ready');
    expect(ready.interface).toBe(framework.interface);
  });

  if (framework.interface === 'fetch') {
    it("builds node-uwsgi's own global Response, or the platform's with --real-response", async () => {
      const res = await httpRequest(stack.url('/own'));
      expect(JSON.parse(res.body.toString('utf8'))).toEqual({ own: !(framework.args?.includes('--real-response') ?? false) });
    });
  }

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

  it('parses a 1 MiB JSON body whole', async () => {
    const body = Buffer.from(JSON.stringify({ data: BIG_DATA }));
    expect(body.length).toBeGreaterThan(1024 * 1024);
    const res = await httpRequest(stack.url('/digest'), { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({ length: BIG_DATA.length, sha256: sha256(BIG_DATA) });
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

/** A multipart/form-data body as a browser sends one: a text field, then a file. */
function multipart(boundary: string, note: string, name: string, file: Buffer): Buffer {
  return Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\n${note}\r\n`),
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${name}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
    file,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
}

describe('Express 5 through nginx: multer, early hints, a client gone mid-body', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ app: 'express-app.mjs', args: ['--access-log', '--log-level', 'debug', '--graceful-timeout', '30'] });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('takes a 5 MB multer upload: size and sha256 of the file as the client sent it', async () => {
    const file = seededBytes(0xf11e, 5 * 1000 * 1000 + 7);
    const boundary = '----node-uwsgi-test-boundary';
    const res = await httpRequest(stack.url('/upload'), {
      method: 'POST',
      headers: { 'content-type': `multipart/form-data; boundary=${boundary}` },
      body: multipart(boundary, 'a note', 'data.bin', file),
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({ field: 'a note', name: 'data.bin', size: file.length, sha256: sha256(file) });
  });

  it('sends no 1xx for res.writeEarlyHints(): read raw from the uwsgi socket, the response starts with its final status', async () => {
    const { raw } = await rawExchange({ path: stack.backend }, encodeRequest(nginxVars({ REQUEST_URI: '/hints', PATH_INFO: '/hints' })));
    expect(raw.subarray(0, 16).toString('latin1')).toBe('HTTP/1.1 200 OK\r');
    expect(raw.toString('latin1')).not.toMatch(/HTTP\/1\.[01] 1\d\d/);
    expect(parseResponse(raw).body.toString()).toBe('after the hints');
    expect(await stack.server.waitForLog((line) => line.msg === 'dropped an informational (1xx) response the front server cannot pass on')).toMatchObject({ uri: '/hints' });
  });

  it("sends no 1xx for res.writeEarlyHints(): nginx answers the client the app's 200 and body", async () => {
    const { raw } = await rawExchange({ port: stack.port }, `GET /hints HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    expect(raw.subarray(0, 15).toString('latin1')).toBe('HTTP/1.1 200 OK');
    const res = parseResponse(raw);
    expect(res.headers['link']).toBeUndefined();
    expect(res.body.toString()).toContain('after the hints');
  });

  // Runs last: it stops the server.
  it('frees a request whose peer goes away mid-body: the graceful stop after it does not wait', async () => {
    const body = Buffer.from(JSON.stringify({ data: BIG_DATA }));
    const packet = encodeRequest(
      nginxVars({ REQUEST_METHOD: 'POST', REQUEST_URI: '/digest', PATH_INFO: '/digest', CONTENT_TYPE: 'application/json', CONTENT_LENGTH: String(body.length) }),
      body,
    );
    // The head and 300 KB of the body, then the peer hangs up.
    const socket = net.connect({ path: stack.backend });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.once('connect', () => socket.write(packet.subarray(0, packet.length - body.length + 300 * 1024), () => resolve()));
    });
    socket.destroy();
    // The request ends and is logged: express.json fails on the cut body (400), or the close comes first (499).
    const logged = await stack.server.waitForLog((line) => line.msg === 'request' && line.uri === '/digest');
    expect([400, 499]).toContain(logged.status);
    const started = Date.now();
    expect(await stack.server.stop()).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});

import { afterEach, describe, expect, it } from 'vitest';
import http from 'node:http';
import net from 'node:net';
import { createHash } from 'node:crypto';
import express from 'express';
import Koa from 'koa';
import Fastify from 'fastify';
import { createNodeHandler, type NodeHandler } from '../../src/interfaces/node.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { nginxVars, startTestServer, type TestServer } from '../helpers/serve.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(app: NodeHandler | http.Server): Promise<TestServer> {
  server = await startTestServer(createNodeHandler(app));
  return server;
}

describe('node interface', () => {
  it('gives a plain handler real IncomingMessage/ServerResponse with the vars as method, url and headers', async () => {
    let seen: Record<string, unknown> = {};
    await serve((req, res) => {
      seen = {
        isIncoming: req instanceof http.IncomingMessage,
        isResponse: res instanceof http.ServerResponse,
        method: req.method,
        url: req.url,
        httpVersion: req.httpVersion,
        host: req.headers.host,
        contentType: req.headers['content-type'],
        cookie: req.headers.cookie,
        remoteAddress: req.socket.remoteAddress,
        remotePort: req.socket.remotePort,
      };
      res.setHeader('Content-Type', 'text/plain');
      res.end('ok');
    });
    const vars = nginxVars(
      { REQUEST_METHOD: 'POST', REQUEST_URI: '/a/b?x=1', PATH_INFO: '/a/b', QUERY_STRING: 'x=1', CONTENT_TYPE: 'text/plain', CONTENT_LENGTH: '2' },
      ['HTTP_CONTENT_TYPE', 'text/plain', 'HTTP_CONTENT_LENGTH', '2', 'HTTP_COOKIE', 'a=1', 'HTTP_COOKIE', 'b=2'],
    );
    const res = await server!.request(vars, Buffer.from('hi'));
    expect(res.statusLine).toBe('HTTP/1.1 200 OK');
    expect(res.body.toString()).toBe('ok');
    expect(seen).toEqual({
      isIncoming: true,
      isResponse: true,
      method: 'POST',
      url: '/a/b?x=1',
      httpVersion: '1.1',
      host: 'example.test',
      contentType: 'text/plain',
      cookie: 'a=1; b=2',
      remoteAddress: '203.0.113.7',
      remotePort: 51234,
    });
  });

  it("emits 'close' on res after 'finish', and on an unread GET's req, as http.Server does", async () => {
    const events: string[] = [];
    let done!: () => void;
    const closed = new Promise<void>((resolve) => (done = resolve));
    await serve((req, res) => {
      req.on('close', () => events.push('req close'));
      res.on('finish', () => events.push('res finish'));
      res.on('close', () => {
        events.push(`res close destroyed=${res.destroyed}`);
        setImmediate(done);
      });
      res.end('ok');
    });
    expect((await server!.request(nginxVars())).body.toString()).toBe('ok');
    await closed;
    expect(events.slice(0, 2)).toEqual(['res finish', 'res close destroyed=true']);
    expect(events).toContain('req close');
  });

  it('never chunks a response without Content-Length: the close ends the body', async () => {
    await serve((_req, res) => {
      res.write('hello ');
      setImmediate(() => res.end('world'));
    });
    const res = await server!.request(nginxVars());
    expect(res.header('transfer-encoding')).toBeUndefined();
    expect(res.header('connection')).toBe('close');
    expect(res.body.toString()).toBe('hello world');
  });

  it('never sends a 1xx: writeContinue is a no-op', async () => {
    await serve((_req, res) => {
      res.writeContinue();
      res.end('after continue');
    });
    const res = await server!.request(nginxVars({}, ['HTTP_EXPECT', '100-continue']));
    expect(res.statusLine).toBe('HTTP/1.1 200 OK');
    expect(res.raw.toString()).not.toContain('100 Continue');
  });

  it('streams a request body of several megabytes to the app', async () => {
    const body = Buffer.alloc(5 * 1024 * 1024 + 3);
    for (let i = 0; i < body.length; i++) body[i] = (i * 31) & 0xff;
    await serve((req, res) => {
      const hash = createHash('sha256');
      req.on('data', (c: Buffer) => hash.update(c));
      req.on('end', () => res.end(hash.digest('hex')));
    });
    const res = await server!.request(nginxVars({ REQUEST_METHOD: 'PUT', CONTENT_LENGTH: String(body.length) }), body);
    expect(res.body.toString()).toBe(createHash('sha256').update(body).digest('hex'));
  });

  it('answers 500 when a handler throws, and 500 for a rejected async handler', async () => {
    await serve(async () => {
      throw new Error('async boom');
    });
    const res = await server!.request(nginxVars());
    expect(res.status).toBe(500);
    expect(server!.records.some((r) => r.level === 50 && (r.err as { message: string }).message === 'async boom')).toBe(true);
  });

  it('cuts the connection when a handler throws after writing headers, without a second status line', async () => {
    await serve(async (_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/plain' });
      res.write('part');
      await new Promise((r) => setImmediate(r));
      throw new Error('late boom');
    });
    const res = await server!.request(nginxVars());
    expect(res.status).toBe(200);
    expect(res.raw.toString().match(/HTTP\/1\.1/g)).toHaveLength(1);
    expect(res.body.toString()).toBe('part');
  });

  it('serves an http.Server through its request listeners', async () => {
    await serve(http.createServer((req, res) => res.end(`server saw ${req.url}`)));
    const res = await server!.request(nginxVars({ REQUEST_URI: '/via-server' }));
    expect(res.body.toString()).toBe('server saw /via-server');
  });

  it('runs Express 5 unmodified: req.ip, req.protocol and req.secure come from REMOTE_ADDR and HTTPS', async () => {
    const app = express();
    app.use(express.json());
    app.post('/items', (req, res) => {
      res.json({ ip: req.ip, protocol: req.protocol, secure: req.secure, hostname: req.hostname, body: req.body, q: req.query });
    });
    await serve(app as unknown as NodeHandler);
    const payload = JSON.stringify({ n: 1 });
    const res = await server!.request(
      nginxVars({
        REQUEST_METHOD: 'POST', REQUEST_URI: '/items?x=2', PATH_INFO: '/items', QUERY_STRING: 'x=2',
        CONTENT_TYPE: 'application/json', CONTENT_LENGTH: String(payload.length), HTTPS: 'on', REQUEST_SCHEME: 'https',
      }),
      Buffer.from(payload),
    );
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({
      ip: '203.0.113.7', protocol: 'https', secure: true, hostname: 'example.test', body: { n: 1 }, q: { x: '2' },
    });
  });

  // Express re-parents req and res (Object.setPrototypeOf(req, app.request)): the adapter's behaviour must not
  // live on a prototype. A body past the stream buffers (about 32 KB) used to stop arriving, and hung.
  it('gives Express 5 a 1 MiB JSON body after it swaps the prototypes of req and res', async () => {
    const app = express();
    app.use(express.json({ limit: '4mb' }));
    app.post('/json', (req, res) => {
      const data = (req.body as { data: string }).data;
      res.json({ length: data.length, sha256: createHash('sha256').update(data).digest('hex') });
    });
    await serve(app as unknown as NodeHandler);
    const data = 'x'.repeat(1024 * 1024);
    const payload = Buffer.from(JSON.stringify({ data }));
    const res = await server!.request(
      nginxVars({ REQUEST_METHOD: 'POST', REQUEST_URI: '/json', CONTENT_TYPE: 'application/json', CONTENT_LENGTH: String(payload.length) }),
      payload,
    );
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ length: data.length, sha256: createHash('sha256').update(data).digest('hex') });
  });

  it('keeps backpressure when the app re-parents req and res: a body the app has not read yet stays unread', async () => {
    const body = Buffer.alloc(8 * 1024 * 1024, 7);
    let readBeforeConsuming = -1;
    await serve((req, res) => {
      // What Express does, with a prototype of the app's own above Node's.
      Object.setPrototypeOf(req, Object.create(http.IncomingMessage.prototype));
      Object.setPrototypeOf(res, Object.create(http.ServerResponse.prototype));
      req.once('readable', async () => {
        for (let turn = 0; turn < 50; turn++) await new Promise((resolve) => setImmediate(resolve));
        readBeforeConsuming = req.socket.bytesRead;
        const hash = createHash('sha256');
        for await (const chunk of req) hash.update(chunk as Buffer);
        res.end(hash.digest('hex'));
      });
    });
    const res = await server!.request(nginxVars({ REQUEST_METHOD: 'PUT', CONTENT_LENGTH: String(body.length) }), body);
    expect(res.body.toString()).toBe(createHash('sha256').update(body).digest('hex'));
    // The stream buffers (16 KB each for req and the body stream) and a socket read or two; not the 8 MB sent.
    expect(readBeforeConsuming).toBeGreaterThan(0);
    expect(readBeforeConsuming).toBeLessThan(1024 * 1024);
  });

  it('never sends a 1xx under Express: writeEarlyHints, writeContinue and writeProcessing are dropped and logged', async () => {
    const app = express();
    let called = 0;
    app.get('/hints', (_req, res) => {
      res.writeEarlyHints({ link: '</style.css>; rel=preload; as=style' }, () => called++);
      res.writeContinue(() => called++);
      res.writeProcessing(() => called++);
      setImmediate(() => res.send('final'));
    });
    await serve(app as unknown as NodeHandler);
    const res = await server!.request(nginxVars({ REQUEST_URI: '/hints' }));
    expect(res.raw.subarray(0, 15).toString('latin1')).toBe('HTTP/1.1 200 OK');
    expect(res.raw.toString('latin1')).not.toMatch(/HTTP\/1\.1 1\d\d/);
    expect(res.body.toString()).toBe('final');
    expect(called).toBe(3);
    const dropped = server!.records.filter((r) => r.msg.startsWith('dropped an informational'));
    expect(dropped).toHaveLength(3);
    expect(dropped[0]).toMatchObject({ level: 20, uri: '/hints' });
  });

  it('runs Koa 3 through app.callback()', async () => {
    const app = new Koa();
    app.use((ctx) => {
      ctx.body = { path: ctx.path, protocol: ctx.protocol, ip: ctx.ip };
    });
    await serve(app.callback() as NodeHandler);
    const res = await server!.request(nginxVars({ REQUEST_URI: '/koa' }));
    expect(JSON.parse(res.body.toString())).toEqual({ path: '/koa', protocol: 'http', ip: '203.0.113.7' });
  });

  it('runs Fastify 5 through its handler after ready()', async () => {
    const app = Fastify();
    app.get('/f', async (request) => ({ hello: 'fastify', ip: request.ip, protocol: request.protocol }));
    await app.ready();
    await serve((req, res) => app.routing(req, res));
    const res = await server!.request(nginxVars({ REQUEST_URI: '/f', HTTPS: 'on' }));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ hello: 'fastify', ip: '203.0.113.7', protocol: 'https' });
    await app.close();
  });

  it('tells the app when the peer goes away mid-response', async () => {
    let closed!: (finished: boolean) => void;
    const sawClose = new Promise<boolean>((r) => (closed = r));
    await serve((_req, res) => {
      res.write('start');
      res.on('close', () => closed(res.writableFinished));
    });
    const socket = net.connect({ path: server!.path });
    socket.write(encodeRequest(nginxVars()));
    socket.once('data', () => socket.destroy());
    expect(await sawClose).toBe(false);
  });
});

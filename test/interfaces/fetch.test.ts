// The fetch interface through the production path: the Request built from the vars, bodies streamed both
// ways, Set-Cookie kept apart, the abort signal, and what a broken handler gets. Each test runs with the real
// Request (the platform's global Request and fetch, as --real-request) and with the light one (node-uwsgi's
// global Request and fetch installed, as the worker does by default).
import { createHash } from 'node:crypto';
import net from 'node:net';
import { Hono } from 'hono';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFetchHandler, type FetchApp } from '../../src/interfaces/fetch.js';
import { installOwnRequest, requestKindOf } from '../../src/interfaces/fetch-request.js';
import { lightParts, Response as LightResponse } from '../../src/interfaces/fetch-response.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { nginxVars, startTestServer, type TestServer } from '../helpers/serve.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(app: FetchApp): Promise<TestServer> {
  server = await startTestServer(createFetchHandler(app));
  return server;
}

describe.each(['real', 'light'] as const)('fetch interface, %s Request', (kind) => {
  let restore: (() => void) | undefined;
  beforeAll(() => {
    if (kind === 'light') restore = installOwnRequest();
  });
  afterAll(() => restore?.());

  it('builds the Request URL from scheme, Host and REQUEST_URI, and its headers from HTTP_* and CONTENT_*', async () => {
    let seen: Record<string, unknown> = {};
    await serve(async (request) => {
      seen = {
        url: request.url,
        method: request.method,
        headers: [...request.headers],
        body: await request.text(),
      };
      return new Response('ok');
    });
    const body = Buffer.from('a=1&b=2');
    await server!.request(
      nginxVars(
        {
          REQUEST_METHOD: 'POST',
          REQUEST_URI: '/f/x%20y?q=1&r',
          HTTP_HOST: 'shop.test:8443',
          HTTPS: 'on',
          CONTENT_TYPE: 'application/x-www-form-urlencoded',
          CONTENT_LENGTH: String(body.length),
        },
        ['HTTP_CONTENT_TYPE', 'application/x-www-form-urlencoded', 'HTTP_CONTENT_LENGTH', String(body.length), 'HTTP_X_TRACE', 't1'],
      ),
      body,
    );
    expect(seen.url).toBe('https://shop.test:8443/f/x%20y?q=1&r');
    expect(seen.method).toBe('POST');
    expect(seen.body).toBe('a=1&b=2');
    const headers = seen.headers as Array<[string, string]>;
    // Once each, though nginx sent both CONTENT_TYPE and HTTP_CONTENT_TYPE.
    expect(headers.filter(([name]) => name === 'content-type')).toEqual([['content-type', 'application/x-www-form-urlencoded']]);
    expect(headers.filter(([name]) => name === 'content-length')).toEqual([['content-length', '7']]);
    expect(headers).toContainEqual(['x-trace', 't1']);
  });

  it('uses SERVER_NAME and SERVER_PORT when there is no Host', async () => {
    let url = '';
    let made = '';
    await serve((request) => {
      url = request.url;
      made = requestKindOf(request);
      return new Response(null, { status: 204 });
    });
    const vars = nginxVars({ REQUEST_URI: '/n', SERVER_NAME: 'internal', SERVER_PORT: '8080' }).slice();
    const hostAt = vars.indexOf('HTTP_HOST');
    vars.splice(hostAt, 2);
    const res = await server!.request(vars);
    expect(res.status).toBe(204);
    expect(url).toBe('http://internal:8080/n');
    // The URL alone needs no real Request.
    expect(made).toBe(kind);
  });

  it('hands the app a Request that new Request(request) copies: method, URL, headers and body', async () => {
    // The real Request is made without a signal in its init (the cost of one); a copy is what fetch(request) and
    // proxies make, and it reads the Request's internal state, not its getters (a light one's real Request).
    let seen: Record<string, unknown> = {};
    await serve(async (request) => {
      const copy = new Request(request);
      seen = {
        real: request instanceof Request,
        name: request.constructor.name,
        aborted: request.signal.aborted,
        url: copy.url,
        method: copy.method,
        trace: copy.headers.get('x-trace'),
        body: await copy.text(),
        used: request.bodyUsed,
      };
      return new Response('ok');
    });
    const body = Buffer.from('{"a":1}');
    const res = await server!.request(
      nginxVars({ REQUEST_METHOD: 'PUT', REQUEST_URI: '/p?x=1', CONTENT_LENGTH: String(body.length) }, ['HTTP_X_TRACE', 't2']),
      body,
    );
    expect(res.status).toBe(200);
    expect(seen).toEqual({
      real: true,
      name: 'Request',
      aborted: false,
      url: 'http://example.test/p?x=1',
      method: 'PUT',
      trace: 't2',
      body: '{"a":1}',
      used: true,
    });
  });

  it('keeps the URL parser as the judge of odd targets: dot segments resolved, a bad port is a 400', async () => {
    const urls: string[] = [];
    await serve((request) => {
      urls.push(request.url);
      return new Response('ok');
    });
    const dots = await server!.request(nginxVars({ REQUEST_URI: '/a/./b/../c?q=%20' }));
    expect(dots.status).toBe(200);
    expect(urls).toEqual(['http://example.test/a/c?q=%20']);
    const badPort = await server!.request(nginxVars({ HTTP_HOST: 'example.test:99999' }));
    expect(badPort.status).toBe(400);
    expect(server!.records.find((r) => r.code === 'ERR_UWSGI_BAD_TARGET')).toBeDefined();
    expect(urls).toHaveLength(1);
  });

  it('serves a Hono app (an object with fetch) unmodified', async () => {
    const app = new Hono();
    app.get('/hi/:name', (c) => c.json({ name: c.req.param('name'), q: c.req.query('q') }));
    await serve(app);
    const res = await server!.request(nginxVars({ REQUEST_URI: '/hi/ada?q=1' }));
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ name: 'ada', q: '1' });
  });

  it('streams a request body to the handler and a ReadableStream response back', async () => {
    await serve(async (request) => {
      const hash = createHash('sha256');
      let length = 0;
      for await (const chunk of request.body!) {
        hash.update(chunk);
        length += chunk.length;
      }
      const digest = hash.digest('hex');
      let i = 0;
      return new Response(
        new ReadableStream({
          pull(controller) {
            if (i === 3) controller.close();
            else controller.enqueue(new TextEncoder().encode(`${i++}:${length}:${digest.slice(0, 8)};`));
          },
        }),
      );
    });
    const body = Buffer.alloc(2 * 1024 * 1024 + 3, 1);
    const digest = createHash('sha256').update(body).digest('hex').slice(0, 8);
    const res = await server!.request(nginxVars({ REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(body.length) }), body);
    expect(res.body.toString()).toBe(`0:${body.length}:${digest};1:${body.length}:${digest};2:${body.length}:${digest};`);
    expect(res.header('transfer-encoding')).toBeUndefined();
  });

  it('sends each Set-Cookie on its own line, and the status text', async () => {
    await serve(() => {
      const headers = new Headers();
      headers.append('Set-Cookie', 'a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT');
      headers.append('Set-Cookie', 'b=2');
      return new Response('x', { status: 418, statusText: 'Short And Stout', headers });
    });
    const res = await server!.request(nginxVars());
    expect(res.statusLine).toBe('HTTP/1.1 418 Short And Stout');
    expect(res.headers.filter(([name]) => name === 'set-cookie').map(([, v]) => v)).toEqual([
      'a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
      'b=2',
    ]);
  });

  it('aborts request.signal when the peer goes away mid-response', async () => {
    let resolveAborted: (reason: unknown) => void = () => {};
    const aborted = new Promise((resolve) => (resolveAborted = resolve));
    await serve((request) => {
      if (!request.url.endsWith('/forever')) return new Response('next');
      request.signal.addEventListener('abort', () => resolveAborted(request.signal.reason));
      // A response that never ends by itself.
      return new Response(
        new ReadableStream({
          pull(controller) {
            controller.enqueue(new Uint8Array(1024));
            return new Promise((r) => setTimeout(r, 5));
          },
        }),
      );
    });
    const socket = net.connect({ path: server!.path });
    await new Promise((r) => socket.once('connect', r));
    socket.write(encodeRequest(nginxVars({ REQUEST_URI: '/forever' })));
    await new Promise((r) => socket.once('data', r));
    socket.destroy();
    await expect(aborted).resolves.toBeDefined();
    // The server is still serving.
    const next = await server!.request(nginxVars());
    expect(next.status).toBe(200);
    expect(next.body.toString()).toBe('next');
  });

  it.each([
    ['returns something that is not a Response', () => ({ status: 200 }) as unknown as Response, 'ERR_APP_BAD_RESPONSE'],
    ['throws', () => { throw new Error('fetch boom'); }, 'ERR_APP_EXCEPTION'],
    ['rejects', () => Promise.reject(new Error('fetch async boom')), 'ERR_APP_EXCEPTION'],
  ])('answers 500 when the handler %s', async (_name, handler, code) => {
    await serve(handler);
    const res = await server!.request(nginxVars());
    expect(res.status).toBe(500);
    expect(server!.records.find((r) => r.code === code)).toBeDefined();
  });

  describe("node-uwsgi's own Response", () => {
    it('writes a string body with its headers in one write, the default content type, no Transfer-Encoding', async () => {
      let sent: Response | undefined;
      await serve(() => (sent = new LightResponse('héllo', { status: 201, statusText: 'Made', headers: { 'X-A': '1', 'Set-Cookie': 'a=1' } })));
      const res = await server!.request(nginxVars());
      // Written from its parts: no real Response (and no stream) was made for it.
      expect(lightParts(sent!)).toMatchObject({ body: 'héllo' });
      expect(res.statusLine).toBe('HTTP/1.1 201 Made');
      expect(res.body.toString()).toBe('héllo');
      expect(res.header('x-a')).toBe('1');
      expect(res.header('content-type')).toBe('text/plain;charset=UTF-8');
      expect(res.header('transfer-encoding')).toBeUndefined();
    });

    it('sends pairs and Headers as they are (each Set-Cookie on its own line), bytes as bytes, no body for HEAD', async () => {
      const headers = new Headers([['content-type', 'application/octet-stream']]);
      headers.append('set-cookie', 'h=1');
      headers.append('set-cookie', 'h=2');
      await serve((request) =>
        request.url.endsWith('/pairs')
          ? new LightResponse('p', { headers: [['Set-Cookie', 'a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT'], ['Set-Cookie', 'b=2'], ['Content-Type', 'text/x']] })
          : new LightResponse(new Uint8Array([0, 255, 1]), { headers }),
      );
      const pairs = await server!.request(nginxVars({ REQUEST_URI: '/pairs' }));
      expect(pairs.headers.filter(([name]) => name.toLowerCase() === 'set-cookie').map(([, v]) => v)).toEqual([
        'a=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT',
        'b=2',
      ]);
      expect(pairs.header('content-type')).toBe('text/x');
      const bytes = await server!.request(nginxVars({ REQUEST_URI: '/bytes' }));
      expect([...bytes.body]).toEqual([0, 255, 1]);
      expect(bytes.headers.filter(([name]) => name === 'set-cookie').map(([, v]) => v)).toEqual(['h=1', 'h=2']);
      const head = await server!.request(nginxVars({ REQUEST_METHOD: 'HEAD', REQUEST_URI: '/bytes' }));
      expect(head.status).toBe(200);
      expect(head.body.length).toBe(0);
    });

    it('sends headers the app changed after construction, and a body the app read through the real Response', async () => {
      await serve(async (request) => {
        const res = new LightResponse('changed');
        res.headers.set('x-late', 'yes');
        if (request.url.endsWith('/read')) expect(await res.clone().text()).toBe('changed');
        return res;
      });
      for (const uri of ['/', '/read']) {
        const res = await server!.request(nginxVars({ REQUEST_URI: uri }));
        expect(res.header('x-late')).toBe('yes');
        expect(res.body.toString()).toBe('changed');
      }
    });

    it('answers 500 ERR_APP_BAD_HEADER for a header name the Headers class would have refused', async () => {
      await serve(() => new LightResponse('x', { headers: { 'bad name': '1' } }));
      const res = await server!.request(nginxVars());
      expect(res.status).toBe(500);
      expect(server!.records.find((r) => r.code === 'ERR_APP_BAD_HEADER')).toBeDefined();
    });
  });

  it('answers 400 ERR_UWSGI_BAD_TARGET when Host and target make no URL', async () => {
    let called = false;
    await serve(() => {
      called = true;
      return new Response('x');
    });
    const res = await server!.request(nginxVars({ HTTP_HOST: 'bad host[' }));
    expect(res.status).toBe(400);
    expect(called).toBe(false);
    expect(server!.records.find((r) => r.code === 'ERR_UWSGI_BAD_TARGET')).toBeDefined();
  });
});

// The light Request (fetch-request.ts) through the production path, with node-uwsgi's global Request and fetch
// installed as the worker installs them: what it answers without a real Request, what makes one, and the
// platform's ways of copying it (new Request, fetch, clone).
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { inspect } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFetchHandler, type FetchApp } from '../../src/interfaces/fetch.js';
import { installOwnRequest, requestKindOf } from '../../src/interfaces/fetch-request.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { nginxVars, startTestServer, type TestServer } from '../helpers/serve.js';

const PlatformRequest = globalThis.Request;
const platformFetch = globalThis.fetch;
let restore: (() => void) | undefined;
beforeAll(() => {
  restore = installOwnRequest();
});
afterAll(() => restore?.());

let server: TestServer | undefined;
const afterCase: Array<() => void> = [];
afterEach(async () => {
  await server?.close();
  server = undefined;
  for (const undo of afterCase.splice(0)) undo();
});

/** Serves `app`, sends one request, returns the status and the body as text. */
async function once(app: FetchApp, vars: string[], body?: Buffer): Promise<{ status: number; body: string }> {
  await server?.close();
  server = await startTestServer(createFetchHandler(app));
  const res = await server.request(vars, body);
  return { status: res.status, body: res.body.toString('utf8') };
}

function post(body: string, over: Record<string, string> = {}): [string[], Buffer] {
  const bytes = Buffer.from(body);
  return [nginxVars({ REQUEST_METHOD: 'POST', REQUEST_URI: '/in', CONTENT_LENGTH: String(bytes.length), CONTENT_TYPE: 'application/json', ...over }), bytes];
}

describe('light Request', () => {
  it('answers url, method and headers from the vars without a real Request, and is instanceof Request', async () => {
    let seen: Record<string, unknown> = {};
    // What an app adds to the global Request.prototype (a polyfill, say) reaches the light request.
    Object.defineProperty(Request.prototype, 'added', { value: 'from Request.prototype', configurable: true });
    afterCase.push(() => delete (Request.prototype as unknown as Record<string, unknown>).added);
    await once(
      (request) => {
        seen = {
          url: request.url,
          method: request.method,
          accept: request.headers.get('accept'),
          contentType: request.headers.get('content-type'),
          body: request.body,
          bodyUsed: request.bodyUsed,
          kind: requestKindOf(request),
          own: request instanceof Request,
          platform: request instanceof PlatformRequest,
          tag: Object.prototype.toString.call(request),
          name: request.constructor.name,
          added: (request as Request & { added?: string }).added,
          inspected: inspect(request),
        };
        return new Response('ok');
      },
      nginxVars({ REQUEST_URI: '/a/./b/../c%20d?q=1&r', HTTP_HOST: 'Shop.Test:80', HTTP_ACCEPT: 'text/html', CONTENT_TYPE: 'text/x' }),
    );
    expect(seen).toEqual({
      url: 'http://shop.test/a/c%20d?q=1&r',
      method: 'GET',
      accept: 'text/html',
      contentType: 'text/x',
      body: null,
      bodyUsed: false,
      kind: 'light',
      own: true,
      platform: true,
      tag: '[object Request]',
      name: 'Request',
      added: 'from Request.prototype',
      inspected: expect.stringContaining("url: 'http://shop.test/a/c%20d?q=1&r'"),
    });
  });

  it('builds the URL from SCRIPT_NAME, PATH_INFO and QUERY_STRING when there is no REQUEST_URI, https from HTTPS', async () => {
    let url = '';
    await once(
      (request) => {
        url = request.url;
        return new Response('ok');
      },
      nginxVars({ REQUEST_URI: '', SCRIPT_NAME: '/app', PATH_INFO: '/x y', QUERY_STRING: 'a=1', HTTPS: 'on', HTTP_HOST: 'example.test:8443' }),
    );
    expect(url).toBe('https://example.test:8443/app/x%20y?a=1');
  });

  it.each([
    ['text()', (r: Request) => r.text(), '{"a":[1,2]}', 'light'],
    ['json()', async (r: Request) => JSON.stringify(await r.json()), '{"a":[1,2]}', 'light'],
    ['arrayBuffer()', async (r: Request) => Buffer.from(await r.arrayBuffer()).toString(), '{"a":[1,2]}', 'light'],
    ['bytes()', async (r: Request) => Buffer.from(await (r as Request & { bytes(): Promise<Uint8Array> }).bytes()).toString(), '{"a":[1,2]}', 'light'],
    [
      'blob()',
      async (r: Request) => {
        const blob = await r.blob();
        return `${blob.type} ${await blob.text()}`;
      },
      'application/json {"a":[1,2]}',
      'light, real made',
    ],
    [
      'the body stream',
      async (r: Request) => {
        let out = '';
        for await (const chunk of r.body!) out += Buffer.from(chunk).toString();
        return `${out} ${r.bodyUsed}`;
      },
      '{"a":[1,2]} true',
      'light, real made',
    ],
  ])('reads a POST body through %s', async (_name, read, expected, made) => {
    let kind = '';
    const [vars, body] = post('{"a":[1,2]}');
    const res = await once(async (request) => {
      const out = await read(request);
      kind = requestKindOf(request);
      return new Response(out);
    }, vars, body);
    expect(res).toEqual({ status: 200, body: expected });
    // text(), json(), arrayBuffer() and bytes() read the connection's stream without a real Request.
    expect(kind).toBe(made);
  });

  it('decodes as the platform does (BOM dropped, bad bytes replaced), rejects bad JSON, copies arrayBuffer()', async () => {
    const bytes = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from('hé'), Buffer.from([0xff])]);
    const vars = nginxVars({ REQUEST_METHOD: 'PUT', CONTENT_LENGTH: String(bytes.length) });
    const res = await once(async (request) => {
      const direct = await request.text();
      const platform = await new PlatformRequest('http://x.test/', { method: 'PUT', body: bytes }).text();
      return new Response(JSON.stringify([direct === platform, direct, requestKindOf(request)]));
    }, vars, bytes);
    expect(JSON.parse(res.body)).toEqual([true, 'hé\ufffd', 'light']);
    const bad = await once(async (request) => new Response(String(await request.json().catch((err: Error) => err.name))), vars, bytes);
    expect(bad.body).toBe('SyntaxError');
    const res2 = await once(async (request) => {
      const buffer = await request.arrayBuffer();
      return new Response(`${buffer.byteLength} ${buffer instanceof ArrayBuffer}`);
    }, vars, bytes);
    expect(res2.body).toBe(`${bytes.length} true`);
  });

  it('after a direct read answers as a real Request after its text(): bodyUsed, body locked, no clone or copy', async () => {
    const [vars, body] = post('once');
    const res = await once(async (request) => {
      const text = await request.text();
      const refusals = [() => request.clone(), () => new Request(request)].map((make) => {
        try {
          make();
          return 'made';
        } catch (err) {
          return (err as Error).name;
        }
      });
      const again = await request.json().catch((err: Error) => err.name);
      return new Response([text, request.bodyUsed, request.body?.locked, ...refusals, again, requestKindOf(request)].join(' '));
    }, vars, body);
    expect(res.body).toBe('once true true TypeError TypeError TypeError light, real made');
  });

  it('refuses a second read of the body, as a real Request does', async () => {
    const [vars, body] = post('twice');
    const res = await once(async (request) => {
      const first = await request.text();
      const second = await request.text().then(
        () => 'read again',
        (err: Error) => err.name,
      );
      return new Response(`${first} ${second} ${request.bodyUsed}`);
    }, vars, body);
    expect(res.body).toBe('twice TypeError true');
  });

  it('clones: the clone and the original each read the whole body', async () => {
    const [vars, body] = post('cloned');
    const res = await once(async (request) => {
      const copy = request.clone();
      return new Response(`${copy instanceof Request} ${copy.url} ${await copy.text()} ${await request.text()}`);
    }, vars, body);
    expect(res.body).toBe('true http://example.test/in cloned cloned');
  });

  it('is copied by new Request(request), with init and with headers the app set first, and by new Request(url, request)', async () => {
    const [vars, body] = post('copied');
    const res = await once(async (request) => {
      request.headers.set('x-added', '1');
      const plain = new Request(request.clone(), { headers: { 'x-only': '2' } });
      const copy = new Request(request);
      const moved = new Request('http://upstream.test/x', { method: request.method, headers: request.headers, body: await copy.text(), signal: request.signal });
      return new Response(
        [plain.headers.get('x-only'), plain.headers.get('x-added'), copy.method, copy.url, copy.headers.get('x-added'), moved.url, await moved.text(), copy instanceof PlatformRequest].join(' '),
      );
    }, vars, body);
    expect(res.body).toBe('2  POST http://example.test/in 1 http://upstream.test/x copied true');
  });

  it('goes through the global fetch as itself: method, URL, headers and body reach the server it names', async () => {
    const upstream = http.createServer((req, res) => {
      let data = '';
      req.on('data', (chunk: Buffer) => (data += chunk.toString()));
      req.on('end', () => res.end(`${req.method} ${req.url} ${req.headers['x-trace']} ${data}`));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = upstream.address() as AddressInfo;
      const [vars, body] = post('proxied', { REQUEST_URI: '/up?x=1', HTTP_HOST: `127.0.0.1:${port}` });
      vars.push('HTTP_X_TRACE', 't9');
      const res = await once(async (request) => {
        const answer = await fetch(request);
        return new Response(await answer.text());
      }, vars, body);
      expect(res).toEqual({ status: 200, body: 'POST /up?x=1 t9 proxied' });
    } finally {
      upstream.close();
    }
  });

  it('keeps instanceof for platform Requests and for subclasses an app derives from the global Request', () => {
    class Derived extends Request {}
    const derived = new Derived('http://example.test/');
    expect(new PlatformRequest('http://example.test/') instanceof Request).toBe(true);
    expect(derived instanceof Derived).toBe(true);
    expect(derived instanceof PlatformRequest).toBe(true);
    expect(new PlatformRequest('http://example.test/') instanceof Derived).toBe(false);
    expect(globalThis.fetch).not.toBe(platformFetch);
  });

  it('hands a method the platform normalises or refuses to the real Request: PROPFIND real, TRACE refused', async () => {
    let kind = '';
    const propfind = await once(
      (request) => {
        kind = `${requestKindOf(request)} ${request.method}`;
        return new Response('ok');
      },
      nginxVars({ REQUEST_METHOD: 'PROPFIND' }),
    );
    expect(propfind.status).toBe(200);
    expect(kind).toBe('real PROPFIND');
    let called = false;
    const trace = await once(() => {
      called = true;
      return new Response('ok');
    }, nginxVars({ REQUEST_METHOD: 'TRACE' }));
    expect(trace.status).toBe(500);
    expect(called).toBe(false);
  });

  it("aborts its signal, the connection's own, when the peer goes away before the answer", async () => {
    let resolveCalled: () => void = () => {};
    const called = new Promise<void>((resolve) => (resolveCalled = resolve));
    let resolveAborted: (kind: string) => void = () => {};
    const aborted = new Promise<string>((resolve) => (resolveAborted = resolve));
    server = await startTestServer(
      createFetchHandler(
        (request) =>
          new Promise<Response>((resolve) => {
            request.signal.addEventListener('abort', () => {
              resolveAborted(requestKindOf(request));
              resolve(new Response('late'));
            });
            resolveCalled();
          }),
      ),
    );
    const socket = net.connect({ path: server.path });
    socket.on('error', () => {});
    await new Promise((r) => socket.once('connect', r));
    socket.write(encodeRequest(nginxVars()));
    await called;
    socket.destroy();
    await expect(aborted).resolves.toBe('light');
  });
});

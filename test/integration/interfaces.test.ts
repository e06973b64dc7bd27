// Each app interface (wsgi, node, fetch) behind a real nginx over a Unix socket: detection, what the app sees of
// the client, big cookies, repeated cookies, and an app that throws.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeChunked, httpRequest, parseResponse, rawExchange, sha256, startStack, type Stack } from './nginx.js';

const INTERFACES = [
  { name: 'wsgi', app: 'wsgi.mjs', failures: ['/throw'] },
  { name: 'node', app: 'node.mjs', failures: ['/throw', '/reject'] },
  { name: 'fetch', app: 'fetch.mjs', failures: ['/throw'] },
] as const;

interface Seen {
  interface: string;
  method: string;
  path: string;
  query: string;
  scheme: string;
  host: string;
  remoteAddress?: string;
  remotePort?: number;
  https?: string | null;
  cookie: { length: number; sha256: string; value?: string } | null;
  [key: string]: unknown;
}

describe.each(INTERFACES)('the $name interface through nginx', ({ name, app, failures }) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ app, args: ['--access-log'] });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('is detected from the app module without --interface', async () => {
    const ready = await stack.server.waitForLog((line) => line.msg === 'ready');
    expect(ready.interface).toBe(name);
  });

  it("serves a GET with the client's address, port, scheme and Host as nginx saw them", async () => {
    const res = await httpRequest(stack.url('/hello?name=n%C3%BCx&x=1'));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    const seen = JSON.parse(res.body.toString('utf8')) as Seen;
    expect(seen).toMatchObject({
      interface: name,
      method: 'GET',
      path: '/hello',
      // The raw query, still percent-encoded.
      query: 'name=n%C3%BCx&x=1',
      // No TLS in front: HTTPS is absent, so the scheme is http.
      scheme: 'http',
      // The client's Host header with its port (uwsgi_params does not override HTTP_HOST with $host).
      host: `127.0.0.1:${stack.port}`,
      cookie: null,
    });
    // A fetch app has node-uwsgi's light Request and Response as the globals; node and wsgi apps the platform's.
    expect(seen.platformGlobals).toBe(name !== 'fetch');
    if (name === 'fetch') {
      expect(seen.url).toBe(`http://127.0.0.1:${stack.port}/hello?name=n%C3%BCx&x=1`);
    } else {
      // The client's own address and port on its connection to nginx, not nginx's end of the Unix socket.
      expect(seen.remoteAddress).toBe('127.0.0.1');
      expect(seen.remotePort).toBe(res.localPort);
    }
    if (name === 'wsgi') {
      expect(seen.https).toBeNull();
      expect(seen.requestUri).toBe('/hello?name=n%C3%BCx&x=1');
      expect(seen.serverName).toBe('example.com');
    }
    const access = await stack.server.waitForLog((line) => line.msg === 'request' && line.uri === '/hello?name=n%C3%BCx&x=1');
    expect(access).toMatchObject({ method: 'GET', status: 200, remote: '127.0.0.1' });
  });

  it('passes a 12 KB Cookie header intact (large_client_header_buffers in the shipped site file)', async () => {
    const cookie = Array.from({ length: 12 }, (_, i) => `c${i}=${String(i).repeat(1010)}`).join('; ');
    expect(cookie.length).toBeGreaterThan(12 * 1024);
    const res = await httpRequest(stack.url('/hello'), { headers: { cookie } });
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body.toString('utf8')) as Seen;
    expect(seen.cookie).toEqual({ length: cookie.length, sha256: sha256(cookie) });
  });

  it('joins two Cookie header lines with "; " (nginx 1.22 sends them as two vars)', async () => {
    const { raw } = await rawExchange(
      { port: stack.port },
      `GET /hello HTTP/1.1\r\nHost: 127.0.0.1:${stack.port}\r\nCookie: a=1\r\nCookie: b=2\r\nConnection: close\r\n\r\n`,
    );
    const res = parseResponse(raw);
    expect(res.status).toBe(200);
    // A body without Content-Length (a fetch Response's stream) reaches an HTTP/1.1 client chunked by nginx.
    const body = res.headers['transfer-encoding'] === 'chunked' ? decodeChunked(res.body).data : res.body;
    const seen = JSON.parse(body.toString('utf8')) as Seen;
    expect(seen.cookie?.value).toBe('a=1; b=2');
  });

  it.each(failures)('answers 500 when the app fails (%s), logs the error, and serves the next request', async (path) => {
    const mark = stack.nginx.errorLogMark();
    const res = await httpRequest(stack.url(path));
    expect(res.status).toBe(500);
    // The client sees no details of the exception.
    expect(res.body.toString('utf8')).not.toMatch(/boom/);
    const logged = await stack.server.waitForLog((line) => line.level === 50 && JSON.stringify(line).includes('boom from'));
    expect(logged.code).toBe('ERR_APP_EXCEPTION');
    // A complete response, not a connection cut: nginx saw nothing wrong upstream.
    expect(stack.nginx.errorLog(mark)).not.toMatch(/upstream/);

    const next = await httpRequest(stack.url('/hello?after=failure'));
    expect(next.status).toBe(200);
    expect(JSON.parse(next.body.toString('utf8'))).toMatchObject({ query: 'after=failure' });
    expect(stack.server.alive()).toBe(true);
  });
});

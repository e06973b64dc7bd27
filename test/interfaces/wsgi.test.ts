// The wsgi interface through the production path (Unix socket -> connection -> adapter): the environ as PEP 3333
// describes it, startResponse's rules, every body form, close(), and the validator.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { validator } from '../../src/interfaces/validate.js';
import { createWsgiHandler, type Environ, type WsgiApp, type WsgiBody } from '../../src/interfaces/wsgi.js';
import { nginxVars, startTestServer, type TestServer } from '../helpers/serve.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(app: WsgiApp): Promise<TestServer> {
  server = await startTestServer(createWsgiHandler(app));
  return server;
}

const ok = (environ: Environ, startResponse: Parameters<WsgiApp>[1]): string[] => {
  startResponse('200 OK', [['Content-Type', 'text/plain']]);
  return ['ok'];
};

describe('the WSGI environ', () => {
  it('holds the CGI vars as strings, the wsgi.* keys, and leaves out HTTP_CONTENT_* and HTTP_PROXY', async () => {
    let environ: Environ = {};
    await serve((env, startResponse) => {
      environ = env;
      return ok(env, startResponse);
    });
    const body = Buffer.from('{"a":1}');
    const res = await server!.request(
      nginxVars(
        { REQUEST_METHOD: 'POST', REQUEST_URI: '/p?x=1', PATH_INFO: '/p', QUERY_STRING: 'x=1', CONTENT_TYPE: 'application/json', CONTENT_LENGTH: String(body.length) },
        ['HTTP_CONTENT_TYPE', 'application/json', 'HTTP_CONTENT_LENGTH', String(body.length), 'HTTP_PROXY', 'http://evil.test', 'HTTP_X_A', '1'],
      ),
      body,
    );
    expect(res.status).toBe(200);
    expect(environ).toMatchObject({
      REQUEST_METHOD: 'POST',
      PATH_INFO: '/p',
      QUERY_STRING: 'x=1',
      CONTENT_TYPE: 'application/json',
      CONTENT_LENGTH: '7',
      SCRIPT_NAME: '',
      SERVER_NAME: 'example.test',
      SERVER_PORT: '80',
      SERVER_PROTOCOL: 'HTTP/1.1',
      REMOTE_ADDR: '203.0.113.7',
      HTTP_X_A: '1',
      'wsgi.url_scheme': 'http',
      'wsgi.input_terminated': true,
      'wsgi.multithread': true,
      'wsgi.multiprocess': false,
      'wsgi.run_once': false,
    });
    expect(environ['wsgi.version']).toEqual([1, 0]);
    expect(environ['wsgi.input']).toBeInstanceOf(Readable);
    expect('HTTP_CONTENT_TYPE' in environ).toBe(false);
    expect('HTTP_CONTENT_LENGTH' in environ).toBe(false);
    expect('HTTP_PROXY' in environ).toBe(false);
    // uwsgi.vars keeps what the front server sent, all of it, in order.
    const raw = environ['uwsgi.vars'] as Array<[string, string]>;
    expect(raw.map(([name]) => name)).toContain('HTTP_PROXY');
    expect(raw[0]).toEqual(['QUERY_STRING', 'x=1']);
  });

  it.each([
    [{ HTTPS: 'on' }, 'https'],
    [{ HTTPS: '1' }, 'https'],
    [{ HTTPS: 'off' }, 'http'],
    [{ REQUEST_SCHEME: 'https' }, 'https'],
    [{ UWSGI_SCHEME: 'https', REQUEST_SCHEME: 'http' }, 'https'],
    [{ UWSGI_SCHEME: 'http', HTTPS: 'on' }, 'http'],
  ])('sets wsgi.url_scheme from %o to %s', async (over, scheme) => {
    let seen: unknown;
    await serve((env, startResponse) => {
      seen = env['wsgi.url_scheme'];
      return ok(env, startResponse);
    });
    await server!.request(nginxVars({ REQUEST_SCHEME: '', ...over }));
    expect(seen).toBe(scheme);
  });

  it('keeps repeated vars, joined in order (Cookie with "; ", others with ", ") and separately in uwsgi.vars', async () => {
    let environ: Environ = {};
    await serve((env, startResponse) => {
      environ = env;
      return ok(env, startResponse);
    });
    await server!.request(nginxVars({}, ['HTTP_COOKIE', 'a=1', 'HTTP_ACCEPT', 'text/html', 'HTTP_COOKIE', 'b=2', 'HTTP_ACCEPT', 'text/plain']));
    expect(environ.HTTP_COOKIE).toBe('a=1; b=2');
    expect(environ.HTTP_ACCEPT).toBe('text/html, text/plain');
    const cookies = (environ['uwsgi.vars'] as Array<[string, string]>).filter(([name]) => name === 'HTTP_COOKIE');
    expect(cookies).toEqual([['HTTP_COOKIE', 'a=1'], ['HTTP_COOKIE', 'b=2']]);
  });

  it('fills CGI defaults when the front server leaves vars out (PATH_INFO decoded from REQUEST_URI)', async () => {
    let environ: Environ = {};
    await serve((env, startResponse) => {
      environ = env;
      return ok(env, startResponse);
    });
    await server!.request(['REQUEST_URI', '/a%20b/c?q=1', 'HTTP_HOST', 'h.test:8080', 'HTTPS', 'on']);
    expect(environ).toMatchObject({
      REQUEST_METHOD: 'GET',
      SCRIPT_NAME: '',
      PATH_INFO: '/a b/c',
      QUERY_STRING: 'q=1',
      SERVER_NAME: 'h.test',
      SERVER_PORT: '443',
      SERVER_PROTOCOL: 'HTTP/1.1',
    });
  });

  it('treats UWSGI_* vars as plain data', async () => {
    let environ: Environ = {};
    await serve((env, startResponse) => {
      environ = env;
      return ok(env, startResponse);
    });
    const res = await server!.request(nginxVars({ UWSGI_FILE: '/etc/passwd', UWSGI_SCRIPT: 'evil' }));
    expect(res.status).toBe(200);
    expect(environ.UWSGI_FILE).toBe('/etc/passwd');
  });

  it('streams exactly CONTENT_LENGTH bytes through wsgi.input', async () => {
    await serve(async (env, startResponse) => {
      const hash = createHash('sha256');
      let length = 0;
      for await (const chunk of env['wsgi.input'] as Readable) {
        hash.update(chunk as Buffer);
        length += (chunk as Buffer).length;
      }
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return `${length} ${hash.digest('hex')}`;
    });
    const body = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    const res = await server!.request(nginxVars({ REQUEST_METHOD: 'PUT', CONTENT_LENGTH: String(body.length) }), body);
    expect(res.body.toString()).toBe(`${body.length} ${createHash('sha256').update(body).digest('hex')}`);
  });

  it('sends wsgi.errors lines to the log with the request', async () => {
    await serve((env, startResponse) => {
      const errors = env['wsgi.errors'] as { write(s: string): void };
      errors.write('first line\nsecond ');
      errors.write('half\nunterminated');
      return ok(env, startResponse);
    });
    await server!.request(nginxVars());
    const lines = server!.records.filter((r) => r.msg === 'wsgi.errors').map((r) => r.text);
    expect(lines).toEqual(['first line', 'second half', 'unterminated']);
  });
});

const BODIES: Array<[string, () => WsgiBody | Promise<WsgiBody>]> = [
    ['a string', () => 'hello'],
    ['bytes', () => Buffer.from('hello')],
    ['an array', () => ['he', Buffer.from('llo')]],
    ['a generator', () => (function* () { yield 'he'; yield ''; yield 'llo'; })()],
    ['an async generator', () => (async function* () { yield 'he'; yield Buffer.from('llo'); })()],
    ['a Readable', () => Readable.from([Buffer.from('he'), Buffer.from('llo')])],
    ['a promise of a body', () => Promise.resolve(['hello'])],
];

describe('WSGI responses', () => {
  it.each(BODIES)('sends %s as the body', async (_name, make) => {
    await serve((_env, startResponse) => {
      startResponse('200 OK', [['Content-Type', 'text/plain']]);
      return make();
    });
    const res = await server!.request(nginxVars());
    expect(res.statusLine).toBe('HTTP/1.1 200 OK');
    expect(res.body.toString()).toBe('hello');
    expect(res.header('transfer-encoding')).toBeUndefined();
    expect(res.header('connection')).toBe('close');
  });

  it('adds Content-Length to a body known in full, not to a stream', async () => {
    await serve((env, startResponse) => {
      startResponse('200 OK', []);
      return env.PATH_INFO === '/one' ? ['hello'] : (function* () { yield 'hello'; })();
    });
    expect((await server!.request(nginxVars({ PATH_INFO: '/one' }))).header('content-length')).toBe('5');
    expect((await server!.request(nginxVars({ PATH_INFO: '/gen' }))).header('content-length')).toBeUndefined();
  });

  it('lets startResponse be called from inside a generator, before its first chunk', async () => {
    await serve((_env, startResponse) =>
      (function* () {
        startResponse('201 Created', [['X-Late', 'yes']]);
        yield 'made';
      })(),
    );
    const res = await server!.request(nginxVars());
    expect(res.status).toBe(201);
    expect(res.header('x-late')).toBe('yes');
    expect(res.body.toString()).toBe('made');
  });

  it('writes through write() before the returned body', async () => {
    await serve(async (_env, startResponse) => {
      const write = startResponse('200 OK', []);
      await write('one,');
      return ['two'];
    });
    expect((await server!.request(nginxVars())).body.toString()).toBe('one,two');
  });

  it('replaces the status with excInfo before the headers went out', async () => {
    await serve((_env, startResponse) => {
      startResponse('200 OK', [['X-First', '1']]);
      startResponse('503 Service Unavailable', [['Retry-After', '5']], new Error('backend down'));
      return ['later'];
    });
    const res = await server!.request(nginxVars());
    expect(res.status).toBe(503);
    expect(res.header('retry-after')).toBe('5');
    expect(res.header('x-first')).toBeUndefined();
  });

  it('answers 500 (ERR_WSGI_START_RESPONSE) when startResponse is called twice without excInfo', async () => {
    await serve((_env, startResponse) => {
      startResponse('200 OK', []);
      startResponse('404 Not Found', []);
      return [];
    });
    const res = await server!.request(nginxVars());
    expect(res.status).toBe(500);
    expect(server!.records.find((r) => r.code === 'ERR_WSGI_START_RESPONSE')).toBeDefined();
  });

  it.each([
    ['a status that is not "NNN reason"', (sr: Parameters<WsgiApp>[1]) => sr('OK', []), 'ERR_WSGI_START_RESPONSE'],
    ['headers that are not pairs', (sr: Parameters<WsgiApp>[1]) => sr('200 OK', [['X-A']] as never), 'ERR_WSGI_START_RESPONSE'],
    ['a 1xx status', (sr: Parameters<WsgiApp>[1]) => sr('100 Continue', []), 'ERR_APP_BAD_STATUS'],
    ['a header value with CR LF', (sr: Parameters<WsgiApp>[1]) => sr('200 OK', [['X-A', 'a\r\nSet-Cookie: x=1']]), 'ERR_APP_BAD_HEADER'],
  ])('answers 500 for %s and logs %s', async (_name, start, code) => {
    await serve((_env, startResponse) => {
      start(startResponse);
      return ['body'];
    });
    const res = await server!.request(nginxVars());
    expect(res.status).toBe(500);
    expect(res.body.toString()).not.toContain('body');
    expect(server!.records.find((r) => r.code === code)).toBeDefined();
  });

  it('answers 500 when the body comes without startResponse, or is not a body', async () => {
    await serve((env) => (env.PATH_INFO === '/none' ? ['x'] : (42 as never)));
    expect((await server!.request(nginxVars({ PATH_INFO: '/none' }))).status).toBe(500);
    expect((await server!.request(nginxVars({ PATH_INFO: '/num' }))).status).toBe(500);
    expect(server!.records.map((r) => r.code)).toEqual(expect.arrayContaining(['ERR_WSGI_START_RESPONSE', 'ERR_APP_BAD_RESPONSE']));
  });

  it('calls the body close() once, after success and after failure', async () => {
    let closed = 0;
    await serve((env, startResponse) => {
      startResponse('200 OK', []);
      const fail = env.PATH_INFO === '/fail';
      return {
        *[Symbol.iterator]() {
          yield 'a';
          if (fail) throw new Error('mid-body failure');
          yield 'b';
        },
        close() {
          closed++;
        },
      };
    });
    expect((await server!.request(nginxVars())).body.toString()).toBe('ab');
    expect(closed).toBe(1);
    const cut = await server!.request(nginxVars({ PATH_INFO: '/fail' }));
    if (process.env.NODE_UWSGI_ACCEPT === 'native') {
      // The native path still held the response in memory when the app failed in the same turn: nothing is sent
      // (nginx answers 502), rather than a cut-short body that the close would make look whole.
      expect(cut.raw.length).toBe(0);
    } else {
      // After the headers went out the connection is cut: no second status line is appended.
      expect(cut.status).toBe(200);
      expect(cut.body.toString()).toBe('a');
    }
    expect(closed).toBe(2);
  });

  it('sends no body for HEAD, 204 and 304', async () => {
    await serve((env, startResponse) => {
      startResponse(env.PATH_INFO === '/204' ? '204 No Content' : '200 OK', []);
      return ['should not be sent'];
    });
    expect((await server!.request(nginxVars({ REQUEST_METHOD: 'HEAD' }))).body.length).toBe(0);
    const noContent = await server!.request(nginxVars({ PATH_INFO: '/204' }));
    expect(noContent.status).toBe(204);
    expect(noContent.body.length).toBe(0);
  });

  it('composes middleware as app => app', async () => {
    const addHeader = (app: WsgiApp): WsgiApp => (env, startResponse) =>
      app(env, (status, headers, excInfo) => startResponse(status, [...headers, ['X-Middleware', 'yes']], excInfo));
    await serve(addHeader(ok));
    const res = await server!.request(nginxVars());
    expect(res.header('x-middleware')).toBe('yes');
    expect(res.body.toString()).toBe('ok');
  });
});

describe('validator()', () => {
  it('passes a well-behaved app through unchanged', async () => {
    await serve(validator(ok));
    const res = await server!.request(nginxVars());
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('ok');
  });

  it.each([
    ['a status without a reason', (sr: Parameters<WsgiApp>[1]) => { sr('200', []); return ['x']; }, /NNN Reason/],
    ['a hop-by-hop header', (sr: Parameters<WsgiApp>[1]) => { sr('200 OK', [['Connection', 'keep-alive']]); return ['x']; }, /hop-by-hop/],
    // The writer drops Proxy-Connection (RFC 9110's connection-specific fields, src/protocol/headers.ts): the validator says so.
    ['a Proxy-Connection header', (sr: Parameters<WsgiApp>[1]) => { sr('200 OK', [['Proxy-Connection', 'close']]); return ['x']; }, /hop-by-hop/],
    ['a Status header', (sr: Parameters<WsgiApp>[1]) => { sr('200 OK', [['Status', '200']]); return ['x']; }, /Status/],
    ['a non-string header value', (sr: Parameters<WsgiApp>[1]) => { sr('200 OK', [['X-N', 5 as never]]); return ['x']; }, /two strings/],
    ['a body chunk that is a number', (sr: Parameters<WsgiApp>[1]) => { sr('200 OK', []); return [7 as never]; }, /not a string or bytes/],
    ['no body at all', (sr: Parameters<WsgiApp>[1]) => { sr('200 OK', []); return undefined as never; }, /return a body/],
    ['a body before startResponse', () => ['x'], /before startResponse/],
  ])('reports %s as ERR_WSGI_VALIDATION with a 500', async (_name, body, detail) => {
    await serve(validator((_env, startResponse) => body(startResponse)));
    const res = await server!.request(nginxVars());
    expect(res.status).toBe(500);
    const record = server!.records.find((r) => r.code === 'ERR_WSGI_VALIDATION');
    expect(record).toBeDefined();
    expect(JSON.stringify(record)).toMatch(detail);
  });
});

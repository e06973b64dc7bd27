// --http: the plain HTTP/1.1 listener beside the uwsgi socket, in the real CLI (dist/cli.js), driven with fetch():
// every interface, uploads (sized and chunked), a streamed download, 413, failures, WebSocket, the uwsgi
// socket serving the same app at the same time, and --body-timeout / --send-timeout.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import {
  CLI,
  ROOT,
  expectedDownload,
  freePort,
  parseResponse,
  seededBytes,
  sha256,
  startServer,
  type LogLine,
  type ServerProcess,
} from './nginx.js';

const MAX_BODY = 1024 * 1024;

/** Starts the CLI with a uwsgi Unix socket and --http on a free port (retried if a parallel test took it). */
async function startWithHttp(app: string, dir: string, extra: string[] = []): Promise<{ server: ServerProcess; base: string; sock: string }> {
  const sock = join(dir, `${app}.sock`);
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      const server = await startServer({
        app,
        socket: `unix:${sock}`,
        args: ['--http', `127.0.0.1:${port}`, '--access-log', '--max-body-size', String(MAX_BODY), ...extra],
      });
      await server.waitForLog((line) => line.msg === 'listening' && line.protocol === 'http');
      return { server, base: `http://127.0.0.1:${port}`, sock };
    } catch (err) {
      lastError = err as Error;
      if (!/ERR_SOCKET_IN_USE|EADDRINUSE/.test(lastError.message)) throw lastError;
    }
  }
  throw lastError!;
}


const INTERFACES = [
  { name: 'wsgi', app: 'wsgi.mjs' },
  { name: 'node', app: 'node.mjs' },
  { name: 'fetch', app: 'fetch.mjs' },
] as const;

describe.each(INTERFACES)('--http with the $name interface', ({ name, app }) => {
  let dir: string;
  let server: ServerProcess;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nu-http-'));
    ({ server, base } = await startWithHttp(app, dir));
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves a GET with the method, query, Host, scheme and client address the vars carry', async () => {
    const res = await fetch(`${base}/hello?name=n%C3%BCx&x=1`);
    expect(res.status).toBe(200);
    expect(res.headers.get('connection')).toBe('close');
    const seen = (await res.json()) as Record<string, unknown>;
    expect(seen).toMatchObject({ interface: name, method: 'GET', path: '/hello', query: 'name=n%C3%BCx&x=1', scheme: 'http', host: base.slice(7) });
    if (name !== 'fetch') expect(seen.remoteAddress).toBe('127.0.0.1');
    if (name === 'wsgi') expect(seen).toMatchObject({ requestUri: '/hello?name=n%C3%BCx&x=1', https: null, serverName: '127.0.0.1' });
    if (name === 'fetch') expect(seen.url).toBe(`${base}/hello?name=n%C3%BCx&x=1`);
    const access = await server.waitForLog((line) => line.msg === 'request' && line.uri === '/hello?name=n%C3%BCx&x=1');
    expect(access).toMatchObject({ method: 'GET', status: 200, remote: '127.0.0.1', protocol: 'http' });
  });

  it('answers one request after another (fetch reuses nothing: each response closes its connection)', async () => {
    for (let i = 0; i < 5; i++) {
      const res = await fetch(`${base}/hello?i=${i}`);
      expect(((await res.json()) as { query: string }).query).toBe(`i=${i}`);
    }
  });

  it('passes an upload with Content-Length, and a chunked one, to the app intact', async () => {
    const data = seededBytes(11, 700_000);
    const sized = await fetch(`${base}/upload`, { method: 'POST', body: data });
    expect(sized.status).toBe(200);
    expect(await sized.json()).toEqual({ length: data.length, sha256: sha256(data) });

    const parts = [data.subarray(0, 1000), data.subarray(1000, 400_000), data.subarray(400_000)];
    const stream = new ReadableStream<Uint8Array>({
      pull(controller) {
        const part = parts.shift();
        if (part === undefined) controller.close();
        else controller.enqueue(part);
      },
    });
    const chunked = await fetch(`${base}/upload`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    expect(chunked.status).toBe(200);
    expect(await chunked.json()).toEqual({ length: data.length, sha256: sha256(data) });
  });

  it('streams a 16 MiB download to the end', async () => {
    const res = await fetch(`${base}/download`);
    expect(res.status).toBe(200);
    const hash = createHash('sha256');
    let length = 0;
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      length += chunk.length;
    }
    expect({ length, sha256: hash.digest('hex') }).toEqual(expectedDownload());
  });

  it('answers 413 to a body over --max-body-size before the app runs, sized or chunked', async () => {
    const big = Buffer.alloc(MAX_BODY + 1, 1);
    const sized = await fetch(`${base}/upload`, { method: 'POST', body: big });
    expect(sized.status).toBe(413);
    expect(await sized.text()).toContain('--max-body-size');
    const line = await server.waitForLog((l) => l.code === 'ERR_BODY_TOO_LARGE');
    expect(line.uri).toBe('/upload');

    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < 5; i++) controller.enqueue(new Uint8Array(MAX_BODY / 4));
        controller.close();
      },
    });
    const chunked = await fetch(`${base}/upload`, { method: 'POST', body: stream, duplex: 'half' } as RequestInit);
    expect(chunked.status).toBe(413);
  });

  it('answers 500 to an app that throws, and keeps serving', async () => {
    const res = await fetch(`${base}/throw`);
    expect(res.status).toBe(500);
    expect(await res.text()).toBe('Internal Server Error\n');
    expect((await fetch(`${base}/hello`)).status).toBe(200);
  });
});

describe('--http beside the uwsgi socket', () => {
  let dir: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'nu-http-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the same app on both at once, with the same vars but for the transport', async () => {
    const { server, base, sock } = await startWithHttp('echo-vars.mjs', dir, ['--workers', '2']);
    try {
      const viaUwsgi = (async () => {
        const child = spawn(process.execPath, [CLI, 'request', `unix:${sock}`, '/both?x=1', '-H', 'X-Who: uwsgi'], { cwd: ROOT });
        let out = '';
        child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
        const [code] = (await once(child, 'close')) as [number];
        expect(code).toBe(0);
        return JSON.parse(out) as { vars: Record<string, string> };
      })();
      const viaHttp = fetch(`${base}/both?x=1`, { headers: { 'X-Who': 'http', 'X_Who': 'spoof' } }).then(
        async (res) => (await res.json()) as { vars: Record<string, string>; uwsgiVars: Array<[string, string]> },
      );
      const [u, h] = await Promise.all([viaUwsgi, viaHttp]);
      expect(u.vars).toMatchObject({ PATH_INFO: '/both', QUERY_STRING: 'x=1', HTTP_X_WHO: 'uwsgi' });
      expect(h.vars).toMatchObject({
        REQUEST_METHOD: 'GET',
        PATH_INFO: '/both',
        QUERY_STRING: 'x=1',
        REQUEST_URI: '/both?x=1',
        SERVER_PROTOCOL: 'HTTP/1.1',
        REMOTE_ADDR: '127.0.0.1',
        SERVER_PORT: base.split(':')[2],
        HTTP_X_WHO: 'http',
      });
      expect(h.vars.HTTPS).toBeUndefined();
      // A header name with an underscore is dropped, as nginx does by default (it would alias X-Who).
      expect(h.uwsgiVars.filter(([name]) => name === 'HTTP_X_WHO')).toEqual([['HTTP_X_WHO', 'http']]);
      // The master says where each listener is.
      expect(server.logs.some((l) => l.msg === 'listening' && l.address === `unix:${sock}`)).toBe(true);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('listens on a Unix socket path too, with the socket mode --chmod-socket gives', async () => {
    const httpSock = join(dir, 'http.sock');
    const server = await startServer({
      app: 'echo-vars.mjs',
      socket: `unix:${join(dir, 'u.sock')}`,
      args: ['--http', `unix:${httpSock}`, '--chmod-socket', '660'],
    });
    try {
      await server.waitForLog((line) => line.msg === 'listening' && line.address === `unix:${httpSock}`);
      const body = await new Promise<string>((resolve, reject) => {
        const req = http.request({ socketPath: httpSock, path: '/over/unix', headers: { host: 'app.local' } }, (res) => {
          let text = '';
          res.setEncoding('utf8').on('data', (c: string) => (text += c));
          res.on('end', () => resolve(text));
        });
        req.on('error', reject);
        req.end();
      });
      const { vars } = JSON.parse(body) as { vars: Record<string, string> };
      expect(vars).toMatchObject({ PATH_INFO: '/over/unix', HTTP_HOST: 'app.local', SERVER_NAME: 'app.local' });
      expect(vars.REMOTE_ADDR).toBeUndefined();
      expect(statSync(httpSock).mode & 0o777).toBe(0o660);
    } finally {
      await server.stop();
    }
  });

  it('hands WebSocket upgrades to the app, as on the uwsgi socket', async () => {
    const { server, base } = await startWithHttp('ws-server.mjs', dir);
    try {
      const ws = new WebSocket(`${base.replace('http:', 'ws:')}/ws/chat`);
      const [first] = (await once(ws, 'message')) as [Buffer];
      expect(JSON.parse(first.toString())).toMatchObject({ url: '/ws/chat', remoteAddress: '127.0.0.1' });
      const echoed = once(ws, 'message') as Promise<[Buffer]>;
      ws.send('over http');
      expect((await echoed)[0].toString()).toBe('over http');
      ws.close();
      await once(ws, 'close');
      const plain = await fetch(`${base}/plain?x=1`);
      expect(await plain.text()).toBe('plain /plain?x=1');
    } finally {
      await server.stop();
    }
  });
});

// The uwsgi sockets' --body-timeout and --send-timeout (test/server/limits.test.ts, upgrade-send.test.ts) on --http:
// one request lifecycle serves both (src/server/lifecycle.ts).
describe('--http honours --body-timeout and --send-timeout', () => {
  let dir: string;
  let server: ServerProcess;
  let port: number;
  const WARN = 40;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nu-http-'));
    let base: string;
    ({ server, base } = await startWithHttp('limits-app.mjs', dir, ['--body-timeout', '1', '--send-timeout', '1']));
    port = Number(base.split(':')[2]);
  }, 60_000);
  afterAll(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** The first log line from index `mark` on that matches (waiting for it). */
  const logAfter = (mark: number, match: (line: LogLine) => boolean): Promise<LogLine> =>
    server.waitForLog((line) => server.logs.indexOf(line) >= mark && match(line), 15_000);
  const appEvent = (mark: number, route: string, event: string): Promise<LogLine> =>
    logAfter(mark, (line) => line.msg === 'limits-app: event' && line.route === route && line.event === event);

  async function expectStillServing(tag: string): Promise<void> {
    const res = await fetch(`http://127.0.0.1:${port}/hello?${tag}`);
    expect(await res.json()).toEqual({ hello: tag });
  }

  /** Writes `parts` with `gapMs` between them; resolves with what came back once the server closed. */
  function slowSend(parts: string[], gapMs: number): Promise<{ raw: Buffer; ms: number }> {
    return new Promise((resolve) => {
      const started = Date.now();
      const chunks: Buffer[] = [];
      const socket = net.connect({ host: '127.0.0.1', port });
      let i = 0;
      const next = (): void => {
        if (i < parts.length && !socket.destroyed) socket.write(parts[i++]!);
        if (i < parts.length) setTimeout(next, gapMs);
      };
      socket.on('connect', next);
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', () => {});
      socket.on('close', () => resolve({ raw: Buffer.concat(chunks), ms: Date.now() - started }));
    });
  }

  const head = (framing: string): string => `POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n${framing}Connection: close\r\n\r\n`;

  it('a stalled request body: 408 ERR_BODY_TIMEOUT, the app’s body stream errors, the next request is served', async () => {
    const mark = server.logs.length;
    // Two pieces 600 ms apart keep it alive (each gap under the 1 s timeout); then silence.
    const { raw, ms } = await slowSend([head('Content-Length: 1000\r\n'), 'x'.repeat(50), 'x'.repeat(50)], 600);
    expect(ms).toBeGreaterThanOrEqual(2000);
    expect(parseResponse(raw).status).toBe(408);
    const line = await logAfter(mark, (l) => l.code === 'ERR_BODY_TIMEOUT' && l.msg !== 'limits-app: event');
    expect(line).toMatchObject({ level: WARN, method: 'POST', uri: '/upload' });
    expect(line.msg).toContain('(100 of 1000 received)');
    expect(await appEvent(mark, 'upload', 'read failed')).toMatchObject({ code: 'ERR_BODY_TIMEOUT', length: 100 });
    await expectStillServing('after-body-timeout');
  });

  it('a stalled chunked body (read whole before the app runs): 408 ERR_BODY_TIMEOUT, the app never runs', async () => {
    const mark = server.logs.length;
    const { raw } = await slowSend([head('Transfer-Encoding: chunked\r\n'), '5\r\nhello\r\n'], 100);
    expect(parseResponse(raw).status).toBe(408);
    const line = await logAfter(mark, (l) => l.code === 'ERR_BODY_TIMEOUT');
    expect(line).toMatchObject({ level: WARN, uri: '/upload' });
    expect(await logAfter(mark, (l) => l.msg === 'request' && l.uri === '/upload')).toMatchObject({ status: 408, protocol: 'http' });
    expect(server.logs.slice(mark).filter((l) => l.msg === 'limits-app: event')).toEqual([]);
    await expectStillServing('after-chunked-body-timeout');
  });

  it('a peer that stops reading a big response: cut after --send-timeout with ERR_SEND_TIMEOUT, the app stops', async () => {
    const mark = server.logs.length;
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('error', () => {});
    socket.pause(); // reads nothing, ever
    socket.write('GET /endless HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const line = await logAfter(mark, (l) => l.code === 'ERR_SEND_TIMEOUT');
    expect(line).toMatchObject({ level: WARN, method: 'GET', uri: '/endless' });
    expect(line.pending as number).toBeGreaterThan(0);
    expect(await appEvent(mark, 'endless', 'stopped writing')).toBeDefined();
    socket.destroy();
    await expectStillServing('after-send-timeout');
  });
});

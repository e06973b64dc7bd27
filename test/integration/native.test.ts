// The native accept path (src/native/accept.c + src/server/native.ts) over a real Unix socket: body-less requests
// run without a net.Socket (the node interface's ServerResponse on a light socket); everything else is handed over to the JavaScript path with
// the bytes already read. The rest of test/server and test/integration runs on it with NODE_UWSGI_ACCEPT=native.
import net from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { text } from 'node:stream/consumers';
import type { Exchange, ExchangeHandler } from '../../src/exchange.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { chooseAccept } from '../../src/server/native.js';
import { createNodeHandler, type NodeHandler } from '../../src/interfaces/node.js';
import { useCleanups } from '../helpers/cleanup.js';
import { memoryLogger, nginxVars, parseRawResponse, startTestServer, type TestServer } from '../helpers/serve.js';
import { constants, networkInterfaces } from 'node:os';
import { createServer } from '../../src/server/server.js';
import { buildAllowList } from '../../src/server/allow.js';
import { DEFAULT_LIMITS } from '../../src/protocol/decoder.js';
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { APPS, CLI, freePort, startServer } from './nginx.js';

const native = chooseAccept('native').addon!;
let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});
const { defer, tempDir } = useCleanups('nu-native-');

const sinks: string[] = [];
/** A handler that answers through the response sink (as wsgi and fetch do) and records which sink it was given. */
const hello: ExchangeHandler = async (ex) => {
  sinks.push(ex.response.constructor.name);
  ex.response.writeHead(200, 'OK', [['Content-Type', 'text/plain']]);
  ex.response.write(`hello ${ex.vars[ex.vars.indexOf('REQUEST_URI') + 1]}`);
  ex.response.end();
};

function tcpRequest(host: string, port: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host, port }, () => socket.write(encodeRequest(nginxVars())));
    socket.on('data', (c) => chunks.push(c)).on('error', () => {}).on('close', () => resolve(Buffer.concat(chunks)));
  });
}

function start(handler: ExchangeHandler, config: Parameters<typeof startTestServer>[1] = {}): Promise<TestServer> {
  return startTestServer(handler, { ...config, config: { native, ...config.config } });
}

describe('native accept', () => {
  it('serves a body-less request without a socket: one write, then close; the access log counts its bytes', async () => {
    server = await start(hello);
    sinks.length = 0;
    const res = await server.request(nginxVars({ REQUEST_URI: '/a' }));
    expect(res.statusLine).toBe('HTTP/1.1 200 OK');
    expect(res.body.toString()).toBe('hello /a');
    expect(sinks).toEqual(['NativeResponse']);
    const line = server.records.find((r) => r.msg === 'request');
    expect(line).toMatchObject({ status: 200, bytes: res.raw.length, uri: '/a' });
  });

  it('serves 300 concurrent requests, each its own answer (descriptor numbers are reused at once)', async () => {
    server = await start(hello);
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => server!.request(nginxVars({ REQUEST_URI: `/${i}` }))));
    results.forEach((res, i) => expect(res.body.toString()).toBe(`hello /${i}`));
  });

  it('hands a request with a body over to the JavaScript path, with the bytes already read', async () => {
    server = await start(
      (async (ex) => {
        const body = await text(ex.body);
        ex.response.writeHead(200, 'OK', []);
        ex.response.write(`${ex.response.constructor.name} ${body.length}`);
        ex.response.end();
      }),
    );
    const body = Buffer.alloc(300_000, 'x');
    const res = await server.request(nginxVars({ REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(body.length) }), body);
    expect(res.body.toString()).toBe('SocketResponse 300000');
  });

  it('a body that came whole with the head is served natively from memory; one still coming goes to JavaScript', async () => {
    server = await start(
      (async (ex) => {
        const body = await text(ex.body);
        ex.response.writeHead(200, 'OK', []);
        ex.response.write(`${ex.response.constructor.name} ${body.length} ${body.slice(0, 8)}`);
        ex.response.end();
      }),
    );
    const json = JSON.stringify({ items: Array.from({ length: 100 }, (_, i) => ({ i, name: `item ${i}` })) });
    const vars = nginxVars({ REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(Buffer.byteLength(json)), CONTENT_TYPE: 'application/json' });
    expect((await server.request(vars, Buffer.from(json))).body.toString()).toBe(`NativeResponse ${json.length} ${json.slice(0, 8)}`);
    // The same request with its body late: the head alone first, then the body.
    const packet = encodeRequest(vars);
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = net.connect({ path: server!.path }, () => {
        socket.write(packet);
        setTimeout(() => socket.write(json), 50);
      });
      socket.on('data', (c) => chunks.push(c)).on('error', reject).on('close', () => resolve(Buffer.concat(chunks)));
    });
    expect(parseRawResponse(raw).body.toString()).toBe(`SocketResponse ${json.length} ${json.slice(0, 8)}`);
  });

  it('a body kept while the app waits is its own, not the bytes of the requests read after it (C reads every request into one buffer)', async () => {
    server = await start(
      (async (ex) => {
        await sleep(ex.vars[ex.vars.indexOf('REQUEST_URI') + 1] === '/first' ? 150 : 0);
        const body = await text(ex.body);
        ex.response.writeHead(200, 'OK', []);
        ex.response.write(`${ex.response.constructor.name} ${body}`);
        ex.response.end();
      }),
    );
    const post = (uri: string, body: string, head: Record<string, string> = {}) =>
      server!.request(nginxVars({ REQUEST_METHOD: 'POST', REQUEST_URI: uri, CONTENT_LENGTH: String(body.length), ...head }), Buffer.from(body));
    const first = post('/first', 'a'.repeat(200));
    await sleep(30);
    // Later requests land where the first one's head and body were read: longer vars, other bytes at every offset.
    const later = await Promise.all(Array.from({ length: 20 }, (_, i) => post(`/later/${i}`, String(i).repeat(300), { HTTP_X_PAD: 'p'.repeat(i * 7) })));
    later.forEach((res, i) => expect(res.body.toString()).toBe(`NativeResponse ${String(i).repeat(300)}`));
    expect((await first).body.toString()).toBe(`NativeResponse ${'a'.repeat(200)}`);
  });

  it('unixQueue: a listening Unix socket\'s queue and backlog from sock_diag, as ss prints them', async () => {
    const path = join(tempDir(), 'queue.sock');
    const fd = native.bindUnix(path, 7);
    defer(() => closeSync(fd));
    expect(native.unixQueue!(fd)).toEqual([0, 7]);
    const clients = Array.from({ length: 3 }, () => net.connect({ path }).on('error', () => {}));
    defer(() => clients.forEach((c) => c.destroy()));
    await Promise.all(clients.map((c) => new Promise((resolve) => c.once('connect', resolve))));
    expect(native.unixQueue!(fd)).toEqual([3, 7]);
    const ss = spawnSync('ss', ['-xlnH'], { encoding: 'latin1' }).stdout.split('\n').find((line) => line.includes(path));
    expect(ss?.split(/\s+/).slice(2, 4)).toEqual(['3', '7']);
    const file = openSync(join(tempDir(), 'not-a-socket'), 'w');
    defer(() => closeSync(file));
    expect(native.unixQueue!(file), 'not a socket: refused before sock_diag is asked').toBe(-constants.errno.ENOTSOCK);
  });

  it('a peer that connects before it sends is waited for in C and served natively', async () => {
    server = await start(hello);
    sinks.length = 0;
    const packet = encodeRequest(nginxVars({ REQUEST_URI: '/late' }));
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = net.connect({ path: server!.path }, () => setTimeout(() => socket.write(packet), 100));
      socket.on('data', (c) => chunks.push(c)).on('error', reject).on('close', () => resolve(Buffer.concat(chunks)));
    });
    expect(parseRawResponse(raw).body.toString()).toBe('hello /late');
    expect(sinks).toEqual(['NativeResponse']);
  });

  it('a peer that sends nothing goes to JavaScript after 1-2 s, whose --header-timeout lets it go', async () => {
    server = await start(hello, { config: { headerTimeout: 300 } });
    const started = Date.now();
    const socket = net.connect({ path: server.path });
    await new Promise((resolve) => socket.on('close', resolve).on('error', () => {}));
    const waited = Date.now() - started;
    expect(waited).toBeGreaterThanOrEqual(1000);
    expect(waited).toBeLessThan(4000);
    expect(server.records.filter((r) => r.code === 'ERR_HEADER_TIMEOUT')).toMatchObject([{ received: 0 }]);
  });

  it('a head that arrives in pieces goes on in JavaScript, and is served', async () => {
    server = await start(hello);
    const packet = encodeRequest(nginxVars({ REQUEST_URI: '/split' }));
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = net.connect({ path: server!.path }, () => {
        socket.write(packet.subarray(0, 3));
        setTimeout(() => socket.write(packet.subarray(3)), 50);
      });
      socket.on('data', (c) => chunks.push(c)).on('error', reject).on('close', () => resolve(Buffer.concat(chunks)));
    });
    expect(parseRawResponse(raw).body.toString()).toBe('hello /split');
  });

  it('a response over 64 KiB becomes a stream on a net.Socket, whole and in order', async () => {
    const big = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = i % 251;
    server = await start(
      (async (ex) => {
        ex.response.writeHead(200, 'OK', [['Content-Length', String(big.length)]]);
        for (let at = 0; at < big.length; at += 50_000) {
          if (!ex.response.write(big.subarray(at, at + 50_000))) await ex.response.drain();
        }
        ex.response.end();
      }),
    );
    const res = await server.request(nginxVars());
    expect(res.status).toBe(200);
    expect(res.body.equals(big)).toBe(true);
  });

  it('the peer hanging up while the app awaits aborts its signal', async () => {
    let aborted: Promise<unknown> | undefined;
    server = await start(
      (async (ex: Exchange) => {
        aborted = new Promise((resolve) => ex.signal.addEventListener('abort', () => resolve(ex.signal.reason)));
        await aborted;
      }),
    );
    const socket = net.connect({ path: server.path }, () => socket.write(encodeRequest(nginxVars())));
    while (aborted === undefined) await sleep(10);
    socket.destroy();
    expect(String(await aborted)).toMatch(/peer closed/);
    expect(server.records.some((r) => r.msg === 'peer closed the connection before the response was complete')).toBe(true);
  });

  it('--request-timeout answers 504 on the native path and aborts the app', async () => {
    let signal: AbortSignal | undefined;
    server = await start(
      (async (ex) => {
        signal = ex.signal;
        await new Promise((resolve) => setTimeout(resolve, 400));
      }),
      { config: { requestTimeout: 100 } },
    );
    const res = await server.request(nginxVars());
    expect(res.status).toBe(504);
    expect(signal?.aborted).toBe(true);
    expect(server.records.some((r) => r.code === 'ERR_REQUEST_TIMEOUT')).toBe(true);
  });

  it('an app that throws before the headers gets a 500; after them, the connection is cut', async () => {
    server = await start(
      (async (ex) => {
        if (ex.vars.includes('/after')) {
          ex.response.writeHead(200, 'OK', []);
          ex.response.write('partial');
        }
        throw new Error('boom');
      }),
    );
    expect((await server.request(nginxVars())).status).toBe(500);
    // Cut: no 500 after the 200's head, and never the whole response (no Content-Length: the close would end it).
    const cut = (await server.send(encodeRequest(nginxVars({ REQUEST_URI: '/after' })))).toString();
    expect(cut).not.toContain('500');
    expect(server.records.some((r) => r.msg === 'app failed after the response started: connection cut')).toBe(true);
  });

  it('HTTP sent to the uwsgi socket gets the JavaScript path 400, and the next request is served', async () => {
    server = await start(hello);
    const raw = await server.send(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(raw.toString()).toMatch(/^HTTP\/1.1 400 Bad Request/);
    expect((await server.request(nginxVars())).status).toBe(200);
  });

  it('close() (a graceful reload) serves a connection accepted before its bytes arrived, instead of dropping it', async () => {
    server = await start(hello);
    const packet = encodeRequest(nginxVars({ REQUEST_URI: '/during-reload' }));
    const socket = net.connect({ path: server.path });
    await new Promise((resolve) => socket.once('connect', resolve));
    // Accepted by C, waiting for its first bytes (as nginx's connection is between connect and write).
    await sleep(100);
    const closing = server.server.close();
    const raw = new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      socket.on('data', (c) => chunks.push(c)).on('error', reject).on('close', () => resolve(Buffer.concat(chunks)));
    });
    socket.write(packet);
    expect(parseRawResponse(await raw).body.toString()).toBe('hello /during-reload');
    await closing;
    server = undefined;
  });

  it('close() waits for the requests running natively', async () => {
    server = await start(
      (async (ex) => {
        await sleep(200);
        ex.response.writeHead(200, 'OK', []);
        ex.response.end();
      }),
    );
    const pending = server.request(nginxVars());
    await sleep(50);
    const closing = server.server.close();
    expect((await pending).status).toBe(200);
    await closing;
  });

  it('TCP: served natively, --allow-from checked on the peer address C read at accept', async () => {
    const external = Object.values(networkInterfaces())
      .flat()
      .find((e) => e?.family === 'IPv4' && !e.internal)?.address;
    expect(external, 'this test needs a non-loopback IPv4 address').toBeDefined();
    const port = await freePort();
    const { log, records } = memoryLogger();
    const tcp = createServer({ handler: hello, log, limits: DEFAULT_LIMITS, native, allowList: buildAllowList(['198.51.100.0/24']) });
    await tcp.listen([{ kind: 'tcp', host: '0.0.0.0', port }]);
    defer(() => tcp.close());
    sinks.length = 0;
    const ok = parseRawResponse(await tcpRequest('127.0.0.1', port));
    expect(ok.body.toString()).toBe('hello /');
    expect(sinks).toEqual(['NativeResponse']);
    expect((await tcpRequest(external!, port)).length).toBe(0);
    expect(records.filter((r) => r.code === 'ERR_PEER_NOT_ALLOWED')).toMatchObject([{ peer: external }]);
  });

  it('the CLI says which accept path runs, once, in its start-up log', async () => {
    for (const [mode, msg, fields] of [
      ['native', 'accept: native', { sockets: 1 }],
      ['js', 'accept: js', { reason: '--accept js' }],
    ] as const) {
      const started = await startServer({ app: 'wsgi.mjs', socket: `unix:${join(tempDir(), 'app.sock')}`, args: ['--accept', mode] });
      defer(() => started.stop());
      while (!started.logs.some((l) => l.msg === 'ready')) await sleep(20);
      const lines = started.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('accept: '));
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatchObject({ msg, ...fields });
    }
  });

  it('refuses an inherited fd that is not a listening stream socket, naming it (fd://N, socket activation)', () => {
    // A child's stdin from 'pipe' is a connected socketpair (libuv), from 'ignore' /dev/null.
    for (const [stdin, what] of [
      ['pipe', 'a socket nobody called listen() on'],
      ['ignore', 'not a socket'],
    ] as const) {
      const r = spawnSync(process.execPath, [CLI, join(APPS, 'wsgi.mjs'), '--socket', 'fd://0', '--accept', 'native'], {
        stdio: [stdin, 'pipe', 'pipe'],
        encoding: 'utf8',
        timeout: 30_000,
      });
      expect(r.status, r.stderr).toBe(1);
      expect(r.stderr).toContain(`cannot listen on fd://0: fd 0 is ${what}; pass a listening stream socket (systemd: ListenStream=)`);
      expect(r.stdout).toContain('"code":"ERR_SOCKET_LISTEN"');
    }
  });

  it('with 2 workers on one socket, a connection wakes one worker, not both (EPOLLEXCLUSIVE)', async () => {
    const path = join(tempDir(), 'app.sock');
    const started = await startServer({ app: 'wsgi.mjs', socket: `unix:${path}`, args: ['--workers', '2', '--accept', 'native'] });
    defer(() => started.stop());
    while (!started.logs.some((l) => l.msg === 'ready')) await sleep(20);
    const master = started.child.pid!;
    // The master's children are its workers, and now and then an `ss` (listen queues).
    const workers = readFileSync(`/proc/${master}/task/${master}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .map(Number)
      .filter((pid) => readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('worker/main.js'));
    expect(workers).toHaveLength(2);
    const wakes = (): number[] => workers.map((pid) => Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]));
    const request = encodeRequest(nginxVars({ REQUEST_URI: '/hello', PATH_INFO: '/hello' }));
    const before = wakes();
    const count = 200;
    for (let i = 0; i < count; i++) {
      const raw = await new Promise<Buffer>((resolve, reject) => {
        const chunks: Buffer[] = [];
        const socket = net.connect({ path }, () => socket.write(request));
        socket.on('data', (c) => chunks.push(c)).on('error', reject).on('close', () => resolve(Buffer.concat(chunks)));
      });
      expect(parseRawResponse(raw).statusLine).toBe('HTTP/1.1 200 OK');
    }
    const perRequest = wakes().map((n, i) => (n - before[i]!) / count);
    // One request at a time: each worker woke for every connection before (1.2-1.25 wake-ups per request each,
    // measured); now the worker the kernel did not pick sleeps on (0.06-0.12).
    expect(Math.min(...perRequest), `wake-ups per request: ${perRequest.join(', ')}`).toBeLessThan(0.5);
  });
});

describe('native accept: the node interface on a light socket', () => {
  /** A (req, res) app through the node adapter, as the CLI wires it. */
  const node = (app: NodeHandler): ExchangeHandler => createNodeHandler(app);

  it('serves (req, res) without a net.Socket: one write; the peer, the scheme and the access log as on the JavaScript path', async () => {
    const seen: unknown[] = [];
    server = await start(
      node((req, res) => {
        seen.push(req.socket.constructor.name, req.socket.remoteAddress, req.socket.remotePort, (req.socket as unknown as { encrypted?: boolean }).encrypted);
        res.setHeader('Content-Type', 'text/plain');
        res.end(`hello ${req.url} ${req.headers.host}`);
      }),
    );
    const res = await server.request(nginxVars({ REQUEST_URI: '/n?x=1', REMOTE_ADDR: '203.0.113.9', REMOTE_PORT: '4242', HTTPS: 'on', HTTP_HOST: 'example.org' }));
    expect(res.statusLine).toBe('HTTP/1.1 200 OK');
    const names = res.headers.map(([name, value]) => `${name.toLowerCase()}: ${value}`);
    expect(names).toContain('content-type: text/plain');
    expect(names).toContain('connection: close');
    expect(names.filter((h) => h.startsWith('transfer-encoding'))).toEqual([]);
    expect(res.body.toString()).toBe('hello /n?x=1 example.org');
    expect(seen).toEqual(['LightSocket', '203.0.113.9', 4242, true]);
    expect(server.records.find((r) => r.msg === 'request')).toMatchObject({ status: 200, bytes: res.raw.length, uri: '/n?x=1' });
  });

  it('a streamed 4 MiB response with backpressure: the connection becomes a net.Socket past one write, whole and in order', async () => {
    const big = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 253;
    const sockets = new Set<string>();
    let drains = 0;
    server = await start(
      node(async (_req, res) => {
        res.writeHead(200, { 'Content-Length': String(big.length) });
        for (let at = 0; at < big.length; at += 16_384) {
          sockets.add(res.socket!.constructor.name);
          if (!res.write(big.subarray(at, at + 16_384))) {
            drains++;
            await new Promise((resolve) => res.once('drain', resolve));
          }
        }
        res.end();
      }),
    );
    // A slow reader, so that the kernel's buffers fill and the app has to wait for 'drain'.
    const raw = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = net.connect({ path: server!.path }, () => socket.write(encodeRequest(nginxVars())));
      socket.pause();
      setTimeout(() => socket.resume(), 300);
      socket.on('data', (c) => chunks.push(c)).on('error', reject).on('close', () => resolve(Buffer.concat(chunks)));
    });
    const res = parseRawResponse(raw);
    expect(res.status).toBe(200);
    expect(res.body.equals(big)).toBe(true);
    expect(drains).toBeGreaterThan(0);
    expect([...sockets]).toEqual(['LightSocket']);
    expect(server.records.find((r) => r.msg === 'request')).toMatchObject({ status: 200, bytes: raw.length });
  });

  it('the peer hanging up while the app waits: res and the socket say close, the access log 499', async () => {
    const events: string[] = [];
    let started = false;
    server = await start(
      node((req, res) => {
        started = true;
        res.on('close', () => events.push(`res close finished=${res.writableFinished}`));
        req.socket.on('close', () => events.push('socket close'));
      }),
    );
    const socket = net.connect({ path: server.path }, () => socket.write(encodeRequest(nginxVars())));
    while (!started) await sleep(10);
    socket.destroy();
    while (!server.records.some((r) => r.msg === 'request')) await sleep(10);
    expect(events).toContain('res close finished=false');
    expect(events).toContain('socket close');
    expect(server.records.find((r) => r.msg === 'request')).toMatchObject({ status: 499 });
  });

  it('--request-timeout: 504, and the app hears its response close', async () => {
    let closed = false;
    server = await start(
      node((_req, res) => {
        res.on('close', () => (closed = true));
      }),
      { config: { requestTimeout: 100 } },
    );
    const res = await server.request(nginxVars());
    expect(res.status).toBe(504);
    while (!closed) await sleep(10);
    expect(server.records.some((r) => r.code === 'ERR_REQUEST_TIMEOUT')).toBe(true);
  });

  const app = node((req, res) => {
    if (req.url === '/throw') throw new Error('boom');
    if (req.url === '/destroy') return void res.socket!.destroy();
    res.setTimeout(50, () => res.end('timed'));
  });

  it('a throw before the head is a 500', async () => {
    server = await start(app);
    expect((await server.request(nginxVars({ REQUEST_URI: '/throw' }))).status).toBe(500);
  });

  it('res.socket.destroy() closes the connection without an answer', async () => {
    server = await start(app);
    expect((await server.send(encodeRequest(nginxVars({ REQUEST_URI: '/destroy' })))).length).toBe(0);
    expect((await server.request(nginxVars({ REQUEST_URI: '/throw' }))).status).toBe(500);
  });

  it('res.setTimeout fires on the light socket, and on a net.Socket (the JavaScript path)', async () => {
    server = await start(app);
    expect((await server.request(nginxVars({ REQUEST_URI: '/late' }))).body.toString()).toBe('timed');
    await server.close();
    server = await startTestServer(app);
    expect((await server.request(nginxVars({ REQUEST_URI: '/late' }))).body.toString()).toBe('timed');
  });

  it('a small JSON body that came with the head: the node app reads it on the light socket, as express.json() does', async () => {
    server = await start(
      node(async (req, res) => {
        const body = JSON.parse(await text(req)) as { n: number };
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ socket: req.socket.constructor.name, n: body.n, complete: req.complete, length: req.headers['content-length'] }));
      }),
    );
    const json = JSON.stringify({ n: 42, pad: 'x'.repeat(2000) });
    const vars = nginxVars({ REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(json.length), CONTENT_TYPE: 'application/json' });
    const res = await server.request(vars, Buffer.from(json));
    expect(JSON.parse(res.body.toString())).toEqual({ socket: 'LightSocket', n: 42, complete: true, length: String(json.length) });
  });

  it('a request with a body is handed over: the node app reads it whole from a net.Socket', async () => {
    server = await start(
      node(async (req, res) => {
        const body = await text(req);
        res.end(`${req.socket.constructor.name} ${body.length}`);
      }),
    );
    const body = Buffer.alloc(300_000, 'y');
    const res = await server.request(nginxVars({ REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(body.length) }), body);
    expect(res.body.toString()).toBe('Socket 300000');
  });
});

describe('native accept: a response still being written reaches the client as it is written', () => {
  /** Connects, sends a request, resolves with the bytes received once `until` matches them (the response goes on). */
  function firstBytes(path: string, until: RegExp): Promise<{ text: string; socket: net.Socket }> {
    return new Promise((resolve, reject) => {
      let text = '';
      const socket = net.connect({ path }, () => socket.write(encodeRequest(nginxVars())));
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        text += chunk;
        if (until.test(text)) resolve({ text, socket });
      });
      socket.on('error', reject);
      socket.on('close', () => reject(new Error(`closed after ${JSON.stringify(text)}`)));
    });
  }

  it('server-sent events from a node app: the first event arrives while the response is open', async () => {
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    server = await start(
      createNodeHandler((_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
        res.write('data: first\n\n');
        const timer = setInterval(() => res.write('data: tick\n\n'), 50);
        res.on('close', () => {
          clearInterval(timer);
          stop();
        });
      }),
    );
    const { text, socket } = await firstBytes(server.path, /data: first\n\n/);
    expect(text).toMatch(/^HTTP\/1.1 200 OK\r\n[^]*content-type: text\/event-stream/i);
    socket.destroy();
    await stopped;
  });

  it('a response sink written in parts with waits between them: each part arrives before the next is written', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    server = await start(async (ex) => {
      ex.response.writeHead(200, 'OK', [['Content-Type', 'text/plain']]);
      ex.response.write('part one;');
      await released;
      ex.response.write('part two');
      ex.response.end();
    });
    const { text, socket } = await firstBytes(server.path, /part one;/);
    expect(text).not.toContain('part two');
    socket.removeAllListeners('close').removeAllListeners('data');
    const rest = new Promise<string>((resolve) => {
      let more = '';
      socket.on('data', (chunk: string) => (more += chunk)).on('close', () => resolve(more));
    });
    release();
    expect(await rest).toBe('part two');
  });
});

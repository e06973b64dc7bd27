// Limits, request consistency and client aborts through a real nginx (issue 5): for each, the error code
// node-uwsgi logs, the status nginx gives the client, and that the next request through nginx is served.
// The shipped site file buffers request bodies; the cases that need a client's pace to reach node-uwsgi run a
// second nginx on the same backend with `uwsgi_request_buffering off` (generated here, never shipped).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { nginxVars } from '../helpers/serve.js';
import {
  NGINX_BIN,
  accepting,
  freePort,
  httpRequest,
  nginxConfig,
  parseResponse,
  rawExchange,
  siteConfig,
  startStack,
  type LogLine,
  type Stack,
} from './nginx.js';

// 1m: the suffix is parsed as the README says (1048576 bytes).
const MAX_BODY = 1024 * 1024;
const MAX_VARS_SIZE = 4096;
const MAX_VARS = 40;
// Seconds; generous, as the machine is shared, and far below nginx's own 60 s timeouts.
const HEADER_TIMEOUT = 2;
const BODY_TIMEOUT = 2;
const IO_TIMEOUT = 30_000;
const DEBUG = 20;
const WARN = 40;

let stack: Stack;
let unbuffered: ExtraNginx;
beforeAll(async () => {
  stack = await startStack({
    app: 'limits-app.mjs',
    args: [
      '--max-body-size', '1m',
      '--max-vars-size', String(MAX_VARS_SIZE),
      '--max-vars', String(MAX_VARS),
      '--header-timeout', String(HEADER_TIMEOUT),
      '--body-timeout', String(BODY_TIMEOUT),
      '--log-level', 'debug',
    ],
  });
  unbuffered = await startExtraNginx(stack.backend, 'uwsgi_request_buffering off;');
});
afterAll(async () => {
  await unbuffered?.stop();
  await stack?.stop();
});

// --- helpers -------------------------------------------------------------------------------------------------

interface ExtraNginx {
  readonly port: number;
  errorLog(): string;
  stop(): Promise<void>;
}

/** nginx from the shipped site file with `directives` added to its location, on the same backend. */
async function startExtraNginx(backend: string, directives: string): Promise<ExtraNginx> {
  const prefix = mkdtempSync(join(tmpdir(), 'nu-nginx-extra-'));
  const port = await freePort();
  const site = siteConfig('unix', port, backend).replace(/^([ \t]*uwsgi_pass[ \t][^\n]*\n)/m, `$1        ${directives}\n`);
  expect(site).toContain(directives);
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, nginxConfig(prefix, site));
  const child = spawn(NGINX_BIN, ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')], { stdio: 'ignore' });
  const errorLog = (): string => {
    try {
      return readFileSync(join(prefix, 'error.log'), 'utf8');
    } catch {
      return '';
    }
  };
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
    }
    rmSync(prefix, { recursive: true, force: true });
  };
  try {
    await waitListening(port, child, errorLog);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port, errorLog, stop };
}

/** Resolves once 127.0.0.1:port accepts a connection; rejects if `child` exits or 15 s pass. */
async function waitListening(port: number, child: ChildProcess, log: () => string): Promise<void> {
  if (!(await accepting(port, child))) throw new Error(`nginx did not listen on ${port} within 15 s: ${log()}`);
}

/** The first server log line from index `mark` on that matches (waiting for it). */
function logAfter(mark: number, match: (line: LogLine) => boolean, timeout = 15_000): Promise<LogLine> {
  const logs = stack.server.logs;
  return stack.server.waitForLog((line) => logs.indexOf(line) >= mark && match(line), timeout);
}

/** The app's event lines (limits-app.mjs) from index `mark` on. */
function appEvents(mark: number, route?: string): LogLine[] {
  return stack.server.logs
    .slice(mark)
    .filter((line) => line.msg === 'limits-app: event' && (route === undefined || line.route === route));
}

function appEvent(mark: number, route: string, event: string): Promise<LogLine> {
  return logAfter(mark, (line) => line.msg === 'limits-app: event' && line.route === route && line.event === event);
}

async function expectStillServing(tag: string, port = stack.port): Promise<void> {
  const res = await httpRequest(`http://127.0.0.1:${port}/hello?${tag}`);
  expect(res.status).toBe(200);
  expect(JSON.parse(res.body.toString('utf8'))).toEqual({ hello: tag });
  expect(stack.server.alive()).toBe(true);
}

/** A client on a raw connection to nginx: writes what it is told, collects the answer until nginx closes. */
function rawClient(port: number): { socket: net.Socket; received: () => Buffer; closed: Promise<Buffer> } {
  const socket = net.connect({ host: '127.0.0.1', port });
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => {});
  const closed = new Promise<Buffer>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`nginx did not close the connection within ${IO_TIMEOUT} ms`)), IO_TIMEOUT);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
  return { socket, received: () => Buffer.concat(chunks), closed };
}

function uploadHead(length: number, path = '/upload'): string {
  return `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\nContent-Length: ${length}\r\nConnection: close\r\n\r\n`;
}

// --- limits --------------------------------------------------------------------------------------------------

describe('--max-body-size through nginx', () => {
  it('a body over it (nginx allows 64m): 413 to the client, ERR_BODY_TOO_LARGE logged, the app never runs', async () => {
    const mark = stack.server.logs.length;
    const res = await httpRequest(stack.url('/upload'), { method: 'POST', body: Buffer.alloc(MAX_BODY + 1, 7) });
    expect(res.status).toBe(413);
    const line = await logAfter(mark, (l) => l.code === 'ERR_BODY_TOO_LARGE');
    expect(line.level).toBe(WARN);
    expect(appEvents(mark, 'upload')).toEqual([]);
    await expectStillServing('after-413');
  });

  it('a body of 8 MiB: still 413, though nginx was still sending it', async () => {
    const mark = stack.server.logs.length;
    const res = await httpRequest(stack.url('/upload'), { method: 'POST', body: Buffer.alloc(8 * 1024 * 1024, 7) });
    expect(res.status).toBe(413);
    await logAfter(mark, (l) => l.code === 'ERR_BODY_TOO_LARGE');
    expect(appEvents(mark, 'upload')).toEqual([]);
    await expectStillServing('after-big-413');
  });

  it('a body of exactly the limit is served', async () => {
    const res = await httpRequest(stack.url('/upload'), { method: 'POST', body: Buffer.alloc(MAX_BODY, 7) });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString('utf8'))).toMatchObject({ length: MAX_BODY });
  });
});

describe('--max-vars-size and --max-vars through nginx', () => {
  it('headers that make the vars block bigger than --max-vars-size: 431 relayed by nginx, ERR_UWSGI_VARS_TOO_LARGE', async () => {
    const mark = stack.server.logs.length;
    const res = await httpRequest(stack.url('/hello?big'), { headers: { 'x-big': 'b'.repeat(MAX_VARS_SIZE) } });
    expect(res.status).toBe(431);
    expect(res.body.toString('utf8')).toMatch(/--max-vars-size/);
    const line = await logAfter(mark, (l) => l.code === 'ERR_UWSGI_VARS_TOO_LARGE');
    expect(line.level).toBe(WARN);
    // Nothing went wrong in the app: a response that finished normally still says 'close' (as http.Server's do),
    // and an earlier test's may be read after the mark.
    expect(appEvents(mark).filter((l) => !(l.event === 'res close' && l.finished === true))).toEqual([]);
    await expectStillServing('after-vars-size');
  });

  it('more headers than --max-vars allows: 431 relayed by nginx, ERR_UWSGI_TOO_MANY_VARS', async () => {
    const mark = stack.server.logs.length;
    const headers: Record<string, string> = {};
    for (let i = 0; i < MAX_VARS; i++) headers[`x-many-${i}`] = String(i);
    const res = await httpRequest(stack.url('/hello?many'), { headers });
    expect(res.status).toBe(431);
    expect(res.body.toString('utf8')).toMatch(/--max-vars/);
    const line = await logAfter(mark, (l) => l.code === 'ERR_UWSGI_TOO_MANY_VARS');
    expect(line.level).toBe(WARN);
    await expectStillServing('after-many-vars');
  });
});

describe('--header-timeout', () => {
  it('nginx never triggers it: a client sending its request line and headers slowly gets its answer', async () => {
    const mark = stack.server.logs.length;
    const client = rawClient(unbuffered.port);
    const head = 'GET /hello?slow-head HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1\r\nConnection: close\r\n\r\n';
    const pieces = [head.slice(0, 10), head.slice(10, 40), head.slice(40)];
    // Spread over longer than --header-timeout: nginx waits for the whole head before it connects upstream.
    for (const piece of pieces) {
      client.socket.write(piece);
      await sleep((HEADER_TIMEOUT * 1000) / 1.5);
    }
    const res = parseResponse(await client.closed);
    expect(res.status).toBe(200);
    expect(stack.server.logs.slice(mark).filter((l) => l.code === 'ERR_HEADER_TIMEOUT')).toEqual([]);
  });

  it('a peer on the uwsgi socket that stalls inside the vars block is closed unanswered, ERR_HEADER_TIMEOUT', async () => {
    const mark = stack.server.logs.length;
    const packet = encodeRequest(nginxVars({ REQUEST_URI: '/hello', PATH_INFO: '/hello' }));
    const started = Date.now();
    const { raw } = await rawExchange({ path: stack.backend }, packet.subarray(0, 30));
    expect(raw.length).toBe(0);
    expect(Date.now() - started).toBeGreaterThanOrEqual(HEADER_TIMEOUT * 1000 - 100);
    const line = await logAfter(mark, (l) => l.code === 'ERR_HEADER_TIMEOUT');
    expect(line.level).toBe(WARN);
    expect(line.received).toBe(30);
    await expectStillServing('after-header-timeout');
  });
});

describe('--body-timeout through nginx (uwsgi_request_buffering off)', () => {
  it('a client that stalls mid-body: ERR_BODY_TIMEOUT, the app’s body stream errors, nginx relays the 408', async () => {
    const mark = stack.server.logs.length;
    const client = rawClient(unbuffered.port);
    client.socket.write(uploadHead(1000) + 'x'.repeat(100));
    // The server's line: the app's own event line carries the same code and may reach stdout first.
    const line = await logAfter(mark, (l) => l.code === 'ERR_BODY_TIMEOUT' && l.msg !== 'limits-app: event');
    expect(line.level).toBe(WARN);
    const failed = await appEvent(mark, 'upload', 'read failed');
    expect(failed).toMatchObject({ code: 'ERR_BODY_TIMEOUT', length: 100 });
    const res = parseResponse(await client.closed);
    expect(res.status).toBe(408);
    await expectStillServing('after-body-timeout', unbuffered.port);
    await expectStillServing('after-body-timeout');
  });
});

// --- consistency rules nginx enforces before node-uwsgi ------------------------------------------------------

describe('request framing nginx refuses itself', () => {
  it.each([
    ['a Content-Length that is not a number', 'Content-Length: abc\r\n'],
    ['Content-Length and Transfer-Encoding together', 'Content-Length: 3\r\nTransfer-Encoding: chunked\r\n'],
    ['two different Content-Lengths', 'Content-Length: 3\r\nContent-Length: 4\r\n'],
  ])('%s: 400 from nginx, node-uwsgi never sees it', async (_what, framing) => {
    const mark = stack.server.logs.length;
    const { raw } = await rawExchange(
      { port: stack.port },
      `POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n${framing}Connection: close\r\n\r\nabc`,
    );
    expect(parseResponse(raw).status).toBe(400);
    await expectStillServing('after-framing');
    expect(appEvents(mark, 'upload')).toEqual([]);
  });

  it('bytes after the body become nginx’s next request, never part of this one', async () => {
    const mark = stack.server.logs.length;
    const smuggled = 'GET /hello?smuggled HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n';
    const { raw } = await rawExchange(
      { port: stack.port },
      `POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n\r\nhello${smuggled}`,
    );
    const text = raw.toString('latin1');
    // The upload saw its 5 bytes; the rest was a separate request with its own answer.
    expect(text).toContain('"length":5');
    expect(text).toContain('{"hello":"smuggled"}');
    await appEvent(mark, 'upload', 'started');
    expect(appEvents(mark, 'upload').filter((e) => e.event === 'started')).toHaveLength(1);
  });
});

// --- client aborts -----------------------------------------------------------------------------------------

describe('a client that goes away mid-upload', () => {
  it('with uwsgi_request_buffering off: the app sees aborted and close, its body errors; logged at debug', async () => {
    const mark = stack.server.logs.length;
    const client = rawClient(unbuffered.port);
    client.socket.write(uploadHead(MAX_BODY) + 'u'.repeat(100_000));
    await appEvent(mark, 'upload', 'first bytes');
    client.socket.destroy();
    const failed = await appEvent(mark, 'upload', 'read failed');
    expect(failed.code).toBe('ERR_UWSGI_BODY_INCOMPLETE');
    await appEvent(mark, 'upload', 'req aborted');
    await appEvent(mark, 'upload', 'req close');
    const ended = await logAfter(mark, (l) => l.msg === 'request body ended early');
    expect(ended).toMatchObject({ level: DEBUG, code: 'ERR_UWSGI_BODY_INCOMPLETE' });
    await logAfter(mark, (l) => l.msg === 'peer closed the connection before the response was complete');
    await expectStillServing('after-upload-abort', unbuffered.port);
    expect(stack.server.logs.slice(mark).filter((l) => typeof l.level === 'number' && l.level >= WARN)).toEqual([]);
  });

  it('with the shipped site file (buffered): nginx drops the request, the app never sees it', async () => {
    const mark = stack.server.logs.length;
    const nginxMark = stack.nginx.errorLogMark();
    const client = rawClient(stack.port);
    client.socket.write(uploadHead(1_000_000) + 'u'.repeat(100_000));
    // Give nginx the bytes, then leave.
    await new Promise<void>((resolve) => client.socket.write('', () => resolve()));
    client.socket.destroy();
    await waitFor(() => /client prematurely closed connection/.test(stack.nginx.errorLog(nginxMark)), 'nginx to log the abort');
    await expectStillServing('after-buffered-abort');
    expect(appEvents(mark, 'upload')).toEqual([]);
  });
});

describe('a client that goes away mid-download', () => {
  it.each([
    ['unbuffered (X-Accel-Buffering: no)', '/endless'],
    ['buffered by nginx (the default)', '/endless?buffering=on'],
  ])('%s: the app’s response closes unfinished and it stops writing; logged at debug', async (_what, path) => {
    const mark = stack.server.logs.length;
    const client = rawClient(stack.port);
    client.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    await waitFor(() => client.received().length >= 1024 * 1024, 'a megabyte of the download');
    client.socket.destroy();
    const closed = await appEvent(mark, 'endless', 'res close');
    expect(closed.finished).toBe(false);
    await appEvent(mark, 'endless', 'stopped writing');
    await appEvent(mark, 'endless', 'req close');
    const line = await logAfter(mark, (l) => l.msg === 'peer closed the connection before the response was complete');
    expect(line.level).toBe(DEBUG);
    await expectStillServing('after-download-abort');
    expect(stack.server.logs.slice(mark).filter((l) => typeof l.level === 'number' && l.level >= WARN)).toEqual([]);
  });
});

/** Polls `check` (a file or buffer that fills up, with nothing to wait on) until true, or fails after 15 s. */
async function waitFor(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

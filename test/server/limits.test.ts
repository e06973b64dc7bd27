// Limits and request consistency over a real Unix socket, through the production path (issue 5, first part):
// each asserts the error code in the log, the status on the wire, that the app never ran when it must not, and
// that the next request is served.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { ExchangeHandler } from '../../src/exchange.js';
import { DEFAULT_LIMITS } from '../../src/protocol/decoder.js';
import { encodeRequest, encodeRequestHead } from '../../src/protocol/encoder.js';
import { nginxVars, parseRawResponse, startTestServer, type TestServer } from '../helpers/serve.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

let appRuns = 0;
const app: ExchangeHandler = async (ex) => {
  appRuns++;
  let length = 0;
  for await (const chunk of ex.body) length += (chunk as Buffer).length;
  ex.response.writeHead(200, undefined, [['Content-Type', 'text/plain']]);
  ex.response.write(`read ${length}`);
  ex.response.end();
};

function post(length: number, over: Record<string, string> = {}, extra: string[] = []): string[] {
  return nginxVars({ REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(length), ...over }, extra);
}

async function expectNextServed(): Promise<void> {
  const res = await server!.request(post(3), Buffer.from('abc'));
  expect(res.status).toBe(200);
  expect(res.body.toString()).toBe('read 3');
}

function codes(): unknown[] {
  return server!.records.map((r) => r.code).filter(Boolean);
}

/** Connects, writes `parts` with `gapMs` between them, and resolves with what came back once the server closed. */
function slowSend(path: string, parts: Buffer[], gapMs: number): Promise<{ raw: Buffer; ms: number }> {
  return new Promise((resolve) => {
    const started = Date.now();
    const chunks: Buffer[] = [];
    const socket = net.connect({ path });
    let i = 0;
    const next = (): void => {
      if (i < parts.length && !socket.destroyed) socket.write(parts[i++]!);
      if (i < parts.length) setTimeout(next, gapMs);
    };
    socket.on('connect', next);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => {});
    socket.on('close', () => resolve({ raw: Buffer.concat(chunks), ms: Date.now() - started }));
  });
}

describe('--max-body-size', () => {
  it('answers 413 ERR_BODY_TOO_LARGE before the app runs, and serves the next request', async () => {
    server = await startTestServer(app, { limits: { ...DEFAULT_LIMITS, maxBodySize: 10 } });
    appRuns = 0;
    const res = await server.request(post(11), Buffer.alloc(11));
    expect(res.status).toBe(413);
    expect(appRuns).toBe(0);
    expect(codes()).toContain('ERR_BODY_TOO_LARGE');
    const ok = await server.request(post(10), Buffer.alloc(10));
    expect(ok.body.toString()).toBe('read 10');
    await expectNextServed();
    // One incident, one line: the peer's close after the 413 is not a second, "incomplete request", warning.
    expect(codes()).toEqual(['ERR_BODY_TOO_LARGE']);
  });
});

describe('request consistency', () => {
  it('refuses CONTENT_LENGTH and a Content-Length header that disagree: 400 ERR_UWSGI_LENGTH_MISMATCH, app not run', async () => {
    server = await startTestServer(app);
    appRuns = 0;
    const res = await server.request(post(3, {}, ['HTTP_CONTENT_LENGTH', '30']), Buffer.from('abc'));
    expect(res.status).toBe(400);
    expect(appRuns).toBe(0);
    expect(codes()).toContain('ERR_UWSGI_LENGTH_MISMATCH');
    await expectNextServed();
  });

  it('accepts them when they agree, as nginx sends them', async () => {
    server = await startTestServer(app);
    const res = await server.request(post(3, {}, ['HTTP_CONTENT_LENGTH', '3']), Buffer.from('abc'));
    expect(res.status).toBe(200);
  });

  it.each(['abc', '-1', '1e3'])('answers 400 ERR_UWSGI_BAD_CONTENT_LENGTH to CONTENT_LENGTH %j, app not run', async (value) => {
    server = await startTestServer(app);
    appRuns = 0;
    const res = await server.request(post(0, { CONTENT_LENGTH: value }));
    expect(res.status).toBe(400);
    expect(appRuns).toBe(0);
    expect(codes()).toContain('ERR_UWSGI_BAD_CONTENT_LENGTH');
    await expectNextServed();
  });

  it('never lets bytes beyond CONTENT_LENGTH reach the app or become a second request', async () => {
    server = await startTestServer(app);
    appRuns = 0;
    const smuggled = encodeRequest(nginxVars({ REQUEST_URI: '/admin' }));
    // One write: a POST of 3 body bytes, then a whole second packet right behind them.
    const raw = await server.send(Buffer.concat([encodeRequest(post(3)), Buffer.from('abc'), smuggled]));
    const res = parseRawResponse(raw);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('read 3');
    expect(appRuns).toBe(1);
  });
});

describe('--header-timeout and --body-timeout', () => {
  it('closes a peer that does not finish the vars block in time, logging ERR_HEADER_TIMEOUT', async () => {
    server = await startTestServer(app, { config: { headerTimeout: 200 } });
    const head = encodeRequestHead(nginxVars(), 0, 0);
    const { raw, ms } = await slowSend(server.path, [head.subarray(0, 10), head.subarray(10, 20), head.subarray(20)], 1000);
    expect(raw.length).toBe(0);
    expect(ms).toBeGreaterThanOrEqual(180);
    expect(ms).toBeLessThan(900);
    expect(codes()).toContain('ERR_HEADER_TIMEOUT');
    await expectNextServed();
  });

  it('answers 408 ERR_BODY_TIMEOUT when the body stalls before the response started; the app sees its body error', async () => {
    let bodyError: unknown;
    const reader: ExchangeHandler = async (ex) => {
      try {
        for await (const _chunk of ex.body) void _chunk;
      } catch (err) {
        bodyError = err;
        throw err;
      }
      ex.response.writeHead(200, undefined, []);
      ex.response.end();
    };
    server = await startTestServer(reader, { config: { bodyTimeout: 400 } });
    const head = encodeRequest(post(10));
    const { raw, ms } = await slowSend(server.path, [head, Buffer.from('abc'), Buffer.from('def')], 150);
    // Two body pieces 150 ms apart keep it alive (a loaded machine may send them late, but not 400 ms late); then
    // silence for longer than 400 ms.
    expect(ms).toBeGreaterThanOrEqual(700);
    const res = parseRawResponse(raw);
    expect(res.status).toBe(408);
    expect((bodyError as { code?: string } | undefined)?.code).toBe('ERR_BODY_TIMEOUT');
    expect(codes()).toContain('ERR_BODY_TIMEOUT');
  });

  it('does not time out a body that keeps coming, however slowly in total', async () => {
    server = await startTestServer(app, { config: { bodyTimeout: 300 } });
    const parts = [encodeRequest(post(6)), ...'abcdef'.split('').map((c) => Buffer.from(c))];
    const { raw, ms } = await slowSend(server.path, parts, 100);
    expect(ms).toBeGreaterThanOrEqual(600);
    expect(parseRawResponse(raw).body.toString()).toBe('read 6');
  });
});

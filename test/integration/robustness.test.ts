// Bytes that are not a well-formed uwsgi request, written straight to the server's socket (and headers nginx
// itself cannot pack): the server answers or closes, logs the cause, and keeps serving nginx's traffic.
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRequest, encodeRequestHead } from '../../src/protocol/encoder.js';
import { nginxVars } from '../helpers/serve.js';
import { httpRequest, parseResponse, rawExchange, seededBytes, startStack, type Stack } from './nginx.js';

let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ app: 'node.mjs' });
});
afterAll(async () => {
  await stack?.stop();
});

const uwsgiSocket = (): { path: string } => ({ path: stack.backend });

async function expectStillServing(tag: string): Promise<void> {
  const res = await httpRequest(stack.url(`/hello?after=${tag}`));
  expect(res.status).toBe(200);
  expect(JSON.parse(res.body.toString('utf8'))).toMatchObject({ query: `after=${tag}`, remoteAddress: '127.0.0.1' });
  expect(stack.server.alive()).toBe(true);
}

function warned(code: string): Promise<unknown> {
  return stack.server.waitForLog((line) => line.level === 40 && line.code === code);
}

describe('malformed input on the uwsgi socket', () => {
  it('random garbage: each connection is closed, any answer is a 4xx, and nginx traffic is still served', async () => {
    for (let seed = 1; seed <= 16; seed++) {
      const data = seededBytes(seed, 1 + ((seed * 977) % 6000));
      // Every other packet gets past the modifier check, so the vars decoder sees garbage too.
      if (seed % 2 === 0) data[0] = 0;
      const { raw } = await rawExchange(uwsgiSocket(), data, { end: true });
      if (raw.length > 0) {
        const status = parseResponse(raw).status;
        expect(status, `seed ${seed}`).toBeGreaterThanOrEqual(400);
        expect(status, `seed ${seed}`).toBeLessThan(500);
      }
    }
    await expectStillServing('garbage');
  });

  it('plain HTTP: 400 telling the operator to use uwsgi_pass', async () => {
    const { raw } = await rawExchange(uwsgiSocket(), 'GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    const res = parseResponse(raw);
    expect(res.status).toBe(400);
    expect(res.body.toString('utf8')).toMatch(/uwsgi_pass/);
    await warned('ERR_UWSGI_HTTP_ON_SOCKET');
    await expectStillServing('http');
  });

  it('a modifier1 other than 0: 400 naming uwsgi_modifier1', async () => {
    const { raw } = await rawExchange(uwsgiSocket(), encodeRequestHead(nginxVars(), 5));
    const res = parseResponse(raw);
    expect(res.status).toBe(400);
    expect(res.body.toString('utf8')).toMatch(/uwsgi_modifier1/);
    await warned('ERR_UWSGI_MODIFIER');
    await expectStillServing('modifier');
  });

  it('a vars block whose key runs past its end: 400 malformed vars', async () => {
    // Block size 4; the first key claims 255 bytes.
    const { raw } = await rawExchange(uwsgiSocket(), Buffer.from([0, 4, 0, 0, 0xff, 0x00, 0x41, 0x41]));
    expect(parseResponse(raw).status).toBe(400);
    await warned('ERR_UWSGI_MALFORMED_VARS');
    await expectStillServing('malformed');
  });

  it('a packet truncated inside the vars, then EOF: no response, logged as incomplete', async () => {
    const packet = encodeRequest(nginxVars({ REQUEST_URI: '/hello', PATH_INFO: '/hello' }));
    const { raw } = await rawExchange(uwsgiSocket(), packet.subarray(0, 40), { end: true });
    // Nothing, or at most a 400: never the app's response to a request that never arrived.
    if (raw.length > 0) expect(parseResponse(raw).status).toBe(400);
    await warned('ERR_UWSGI_HEAD_INCOMPLETE');
    await expectStillServing('truncated');
  });

  it('a peer stalled halfway through a packet does not hold up other requests', async () => {
    const stalled = net.connect({ path: stack.backend });
    await new Promise<void>((resolve, reject) => {
      stalled.once('connect', resolve);
      stalled.once('error', reject);
    });
    stalled.write(encodeRequest(nginxVars()).subarray(0, 20));
    try {
      const results = await Promise.all([1, 2, 3].map((i) => httpRequest(stack.url(`/hello?concurrent=${i}`))));
      expect(results.map((r) => r.status)).toEqual([200, 200, 200]);
    } finally {
      stalled.destroy();
    }
    await expectStillServing('stalled');
  });

  it('a body shorter than CONTENT_LENGTH, then EOF: the connection closes and the server goes on', async () => {
    const vars = nginxVars({
      REQUEST_METHOD: 'POST',
      REQUEST_URI: '/upload',
      PATH_INFO: '/upload',
      CONTENT_LENGTH: '100000',
      CONTENT_TYPE: 'application/octet-stream',
    });
    const { raw } = await rawExchange(uwsgiSocket(), encodeRequest(vars, Buffer.alloc(1000, 1)), { end: true });
    // The app never got its 100000 bytes: whatever came back, it is not a 200 with a digest of them.
    if (raw.length > 0) expect(parseResponse(raw).status).not.toBe(200);
    await expectStillServing('short-body');
  });
});

describe('limits nginx enforces in front of the server', () => {
  it('headers past the uwsgi 64 KB vars block: nginx answers 500 and logs "uwsgi request is too big"; the server goes on', async () => {
    const mark = stack.nginx.errorLogMark();
    const big = 'a'.repeat(24_000);
    const res = await httpRequest(stack.url('/hello?too-big'), { headers: { 'x-big-1': big, 'x-big-2': big, 'x-big-3': big } });
    expect(res.status).toBe(500);
    expect(stack.nginx.errorLog(mark)).toMatch(/uwsgi request is too big/);
    await expectStillServing('too-big');
  });
});

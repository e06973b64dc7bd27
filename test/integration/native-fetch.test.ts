// The light Request (src/interfaces/fetch-request.ts) on the native accept path: a body that came with the head is
// read from memory. Needs the native addon (a C compiler at build time), hence here and not in test/interfaces.
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createFetchHandler } from '../../src/interfaces/fetch.js';
import { installOwnRequest } from '../../src/interfaces/fetch-request.js';
import type { ExchangeHandler } from '../../src/exchange.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { chooseAccept } from '../../src/server/native.js';
import { nginxVars, startTestServer, type TestServer } from '../helpers/serve.js';

let restore: (() => void) | undefined;
beforeAll(() => {
  restore = installOwnRequest();
});
afterAll(() => restore?.());

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

describe('light Request, native accept', () => {
  it('on the native path takes a body that came with the head from memory, without the body stream; a late one streams', async () => {
    const json = JSON.stringify({ items: Array.from({ length: 50 }, (_, i) => ({ i })) });
    const app = createFetchHandler(async (request) => {
      const copy = request.clone();
      const data = (await request.json()) as { items: unknown[] };
      return new Response(`${data.items.length} ${(await copy.text()).length}`);
    });
    const streams: string[] = [];
    // Whether the exchange made its body stream: NativeExchange makes it on first read of `body` only.
    const handler: ExchangeHandler = async (exchange) => {
      await app(exchange);
      streams.push((exchange as unknown as { stream?: unknown }).stream === undefined ? 'no stream' : 'stream');
    };
    server = await startTestServer(handler, { config: { native: chooseAccept('native').addon! } });
    const vars = nginxVars({ REQUEST_METHOD: 'POST', REQUEST_URI: '/in', CONTENT_LENGTH: String(json.length), CONTENT_TYPE: 'application/json' });
    const direct = createFetchHandler(async (request) => new Response(String(((await request.json()) as { items: unknown[] }).items.length)));
    // clone() makes the real Request, whose body is then the bytes in memory too.
    expect((await server.request(vars, Buffer.from(json))).body.toString()).toBe(`50 ${json.length}`);
    await server.close();
    server = await startTestServer(async (exchange) => {
      await direct(exchange);
      streams.push((exchange as unknown as { stream?: unknown }).stream === undefined ? 'no stream' : 'stream');
    }, { config: { native: chooseAccept('native').addon! } });
    expect((await server.request(vars, Buffer.from(json))).body.toString()).toBe('50');
    const late = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = net.connect({ path: server!.path }, () => {
        socket.write(encodeRequest(vars));
        setTimeout(() => socket.write(json), 50);
      });
      socket.on('data', (c) => chunks.push(c)).on('error', reject).on('close', () => resolve(Buffer.concat(chunks)));
    });
    expect(late.toString()).toMatch(/\r\n\r\n50$/);
    expect(streams).toEqual(['no stream', 'no stream', 'stream']);
  });
});

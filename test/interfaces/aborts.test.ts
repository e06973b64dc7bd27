// Client aborts (issue 5, part): when the peer goes away mid-response, node apps hear 'aborted'/'close', WSGI
// apps see wsgi.input error mid-upload, and the server goes on serving.
import net from 'node:net';
import type { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createNodeHandler } from '../../src/interfaces/node.js';
import { createWsgiHandler } from '../../src/interfaces/wsgi.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { nginxVars, startTestServer, type TestServer } from '../helpers/serve.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function connectAndDrop(path: string, packet: Buffer, dropAfter: 'first-data' | 'written'): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ path }, () => {
      socket.write(packet);
      if (dropAfter === 'written') setTimeout(() => socket.destroy(), 50);
    });
    socket.once('data', () => {
      if (dropAfter === 'first-data') socket.destroy();
    });
    socket.on('error', () => {});
    socket.on('close', () => resolve());
  });
}

describe('client aborts', () => {
  it("node: a peer gone mid-download emits 'aborted' or 'close' on req and 'close' on res; the next request works", async () => {
    const events: string[] = [];
    let resolveClosed: () => void = () => {};
    const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
    server = await startTestServer(
      createNodeHandler((req, res) => {
        if (req.url !== '/forever') {
          res.end('next');
          return;
        }
        req.on('aborted', () => events.push('req aborted'));
        req.on('close', () => events.push('req close'));
        res.on('close', () => {
          events.push('res close');
          resolveClosed();
        });
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        const timer = setInterval(() => res.write('x'.repeat(1024)), 5);
        res.on('close', () => clearInterval(timer));
      }),
    );
    await connectAndDrop(server.path, encodeRequest(nginxVars({ REQUEST_URI: '/forever' })), 'first-data');
    await closed;
    expect(events).toContain('res close');
    expect(events.some((e) => e.startsWith('req'))).toBe(true);
    expect((await server.request(nginxVars({ REQUEST_URI: '/next' }))).body.toString()).toBe('next');
  });

  it('wsgi: wsgi.input errors when the peer goes away mid-upload; the server goes on', async () => {
    let resolveError: (err: unknown) => void = () => {};
    const inputError = new Promise<unknown>((resolve) => (resolveError = resolve));
    server = await startTestServer(
      createWsgiHandler(async (environ, startResponse) => {
        if (environ.REQUEST_METHOD === 'POST') {
          try {
            for await (const _chunk of environ['wsgi.input'] as Readable) void _chunk;
          } catch (err) {
            resolveError(err);
            throw err;
          }
        }
        startResponse('200 OK', []);
        return ['next'];
      }),
    );
    const head = encodeRequest(nginxVars({ REQUEST_METHOD: 'POST', CONTENT_LENGTH: '100000' }));
    await connectAndDrop(server.path, Buffer.concat([head, Buffer.alloc(1000)]), 'written');
    const err = await inputError;
    expect(err).toBeInstanceOf(Error);
    expect((err as { code?: string }).code).toBe('ERR_UWSGI_BODY_INCOMPLETE');
    expect((await server.request(nginxVars())).body.toString()).toBe('next');
  });
});

// The shipped nginx/site-tcp.conf in front of the server on a loopback TCP socket.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { httpRequest, seededBytes, sha256, startStack, type Stack } from './nginx.js';

describe('site-tcp.conf with --socket 127.0.0.1:<port>', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ app: 'node.mjs', transport: 'tcp' });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('listens where it was told', async () => {
    expect(stack.backend).toMatch(/^127\.0\.0\.1:\d+$/);
    const listening = await stack.server.waitForLog((line) => line.msg === 'listening');
    expect(listening.address).toBe(stack.backend);
  });

  it("serves a GET with the client's address and port, not nginx's connection to the backend", async () => {
    const res = await httpRequest(stack.url('/hello?over=tcp'));
    expect(res.status).toBe(200);
    const seen = JSON.parse(res.body.toString('utf8')) as Record<string, unknown>;
    expect(seen).toMatchObject({ interface: 'node', query: 'over=tcp', remoteAddress: '127.0.0.1', scheme: 'http', host: `127.0.0.1:${stack.port}` });
    expect(seen.remotePort).toBe(res.localPort);
  });

  it('receives a 2 MB upload whole', async () => {
    const body = seededBytes(42, 2 * 1024 * 1024);
    const res = await httpRequest(stack.url('/upload'), { method: 'POST', body });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({ length: body.length, sha256: sha256(body) });
  });
});

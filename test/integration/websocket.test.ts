// WebSocket through nginx's uwsgi_pass, with the shipped site file: a real ws client, nginx, node-uwsgi and the
// ws library in the app. The Upgrade goes to the app's http.Server 'upgrade' listeners or to its module's
// upgrade(req, socket, head) export; the socket the app gets is the raw uwsgi connection, tunnelled by nginx.
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { io as ioClient, type Socket as IoSocket } from 'socket.io-client';
import WebSocket from 'ws';
import { httpRequest, startStack, type Stack, type Transport } from './nginx.js';

function open(url: string): Promise<{ ws: WebSocket; first: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`handshake answered ${res.statusCode}`)));
    ws.once('message', (data) => resolve({ ws, first: data.toString() }));
  });
}

async function roundTrip(ws: WebSocket, data: string | Buffer): Promise<WebSocket.RawData> {
  const reply = once(ws, 'message') as Promise<[WebSocket.RawData, boolean]>;
  ws.send(data);
  return (await reply)[0];
}

describe.each<Transport>(['unix', 'tcp'])('WebSocket through nginx (%s)', (transport) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ app: 'ws-server.mjs', transport, args: ['--log-level', 'debug', '--access-log'] });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('an http.Server app: the ws server on its upgrade listeners round-trips text and binary messages', async () => {
    const { ws, first } = await open(stack.url('/ws/chat?room=1').replace('http:', 'ws:'));
    expect(JSON.parse(first)).toMatchObject({ url: '/ws/chat?room=1', remoteAddress: '127.0.0.1' });
    expect((await roundTrip(ws, 'hello')).toString()).toBe('hello');
    const big = Buffer.alloc(256 * 1024, 7);
    expect(Buffer.compare(Buffer.from((await roundTrip(ws, big)) as Buffer), big)).toBe(0);
    for (let i = 0; i < 50; i++) expect((await roundTrip(ws, `m${i}`)).toString()).toBe(`m${i}`);
    const closed = once(ws, 'close');
    ws.close(1000, 'done');
    const [code] = (await closed) as [number];
    expect(code).toBe(1000);
    // The tunnel's end is the request's end: logged with status 101.
    await stack.server.waitForLog((line) => line.msg === 'request' && line.status === 101 && line.uri === '/ws/chat?room=1');
  });

  it('plain requests still reach the same server, during and after a tunnel', async () => {
    const { ws } = await open(stack.url('/live').replace('http:', 'ws:'));
    const res = await httpRequest(stack.url('/plain?x=1'));
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('plain /plain?x=1');
    expect((await roundTrip(ws, 'still there')).toString()).toBe('still there');
    ws.terminate();
  });

  it('several sockets at once, each its own tunnel', async () => {
    const sockets = await Promise.all(Array.from({ length: 8 }, (_, i) => open(stack.url(`/n/${i}`).replace('http:', 'ws:'))));
    const replies = await Promise.all(sockets.map(({ ws }, i) => roundTrip(ws, `from ${i}`)));
    expect(replies.map(String)).toEqual(sockets.map((_, i) => `from ${i}`));
    for (const { ws } of sockets) ws.close();
  });
});

describe('WebSocket through nginx to an upgrade(req, socket, head) export beside a WSGI app', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ app: 'ws-export.mjs' });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('round-trips messages through the export; plain requests go to the WSGI app', async () => {
    const { ws, first } = await open(stack.url('/socket').replace('http:', 'ws:'));
    expect(JSON.parse(first)).toEqual({ url: '/socket', via: 'upgrade export' });
    expect((await roundTrip(ws, 'ping')).toString()).toBe('echo: ping');
    ws.close();
    const res = await httpRequest(stack.url('/page'));
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('wsgi /page upgrade=');
  });

  it('a handshake the app refuses: the client sees the app\'s status, the server keeps serving', async () => {
    await expect(open(stack.url('/refuse').replace('http:', 'ws:'))).rejects.toThrow(/handshake answered 403/);
    const res = await httpRequest(stack.url('/after'));
    expect(res.status).toBe(200);
  });
});

describe('socket.io through nginx', () => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ app: 'socketio-app.mjs' });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  /** socket.io's emitters are not Node EventEmitters: once() from node:events does not take them. */
  function event(emitter: { once(name: string, fn: () => void): unknown }, name: string): Promise<void> {
    return new Promise((resolve) => emitter.once(name, () => resolve()));
  }

  async function echo(client: IoSocket, payload: unknown): Promise<{ payload: unknown; transport: string }> {
    return (await client.timeout(10_000).emitWithAck('echo', payload)) as { payload: unknown; transport: string };
  }

  it('the WebSocket transport: acknowledged events round-trip', async () => {
    const client = ioClient(stack.url(''), { transports: ['websocket'], reconnection: false });
    try {
      await event(client, 'connect');
      expect(await echo(client, { n: 1 })).toEqual({ payload: { n: 1 }, transport: 'websocket' });
    } finally {
      client.close();
    }
  });

  it('long-polling first (plain requests), then the upgrade to WebSocket', async () => {
    const client = ioClient(stack.url(''), { reconnection: false });
    try {
      await event(client, 'connect');
      expect((await echo(client, 'first')).payload).toBe('first');
      if (client.io.engine.transport.name !== 'websocket') await event(client.io.engine, 'upgrade');
      expect(await echo(client, 'after upgrade')).toEqual({ payload: 'after upgrade', transport: 'websocket' });
    } finally {
      client.close();
    }
  });
});

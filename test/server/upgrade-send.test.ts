// --send-timeout and Upgrade hand-over over a real Unix socket, through the production connection handler.
import net from 'node:net';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import type { ExchangeHandler } from '../../src/exchange.js';
import { createHandler } from '../../src/handler.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { nginxVars, startTestServer, type TestServer } from '../helpers/serve.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

function connect(path: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path }, () => resolve(socket));
    socket.once('error', reject);
  });
}

function waitFor(check: () => boolean, timeout = 10_000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const poll = (): void => {
      if (check()) return resolve();
      if (Date.now() - started > timeout) return reject(new Error('condition not met in time'));
      setTimeout(poll, 20);
    };
    poll();
  });
}

describe('--send-timeout', () => {
  // Writes 1 MiB pieces with backpressure until told to stop; records how it ended.
  let outcome: string | undefined;
  const download: ExchangeHandler = async (ex) => {
    ex.response.writeHead(200, undefined, [['Content-Type', 'application/octet-stream']]);
    // /one: a single 2 MiB write, which a slow reader takes in many partial pieces.
    const one = ex.vars.includes('/one');
    const piece = Buffer.alloc(one ? 2 * 1024 * 1024 : 1024 * 1024, 1);
    for (let i = 0; i < (one ? 1 : 512); i++) {
      if (ex.signal.aborted) {
        outcome = `aborted: ${(ex.signal.reason as { code?: string }).code}`;
        return;
      }
      if (!ex.response.write(piece)) await ex.response.drain();
    }
    outcome = 'finished';
    ex.response.end();
  };

  it('a peer that stops reading: the connection is closed, the app\'s signal fires, the next request is served', async () => {
    outcome = undefined;
    server = await startTestServer(
      async (ex) => (ex.vars.includes('/small') ? (ex.response.writeHead(200, undefined, []), ex.response.write('ok'), ex.response.end()) : download(ex)),
      { config: { sendTimeout: 500 } },
    );
    const socket = await connect(server.path);
    socket.pause(); // reads nothing, ever
    socket.write(encodeRequest(nginxVars({ REQUEST_URI: '/big', PATH_INFO: '/big' })));
    await waitFor(() => server!.records.some((r) => r.code === 'ERR_SEND_TIMEOUT'));
    const record = server.records.find((r) => r.code === 'ERR_SEND_TIMEOUT')!;
    expect(record).toMatchObject({ level: 40, uri: '/big' });
    expect(record.pending as number).toBeGreaterThan(0);
    await waitFor(() => outcome !== undefined);
    expect(outcome).toBe('aborted: ERR_SEND_TIMEOUT');
    socket.destroy();
    const res = await server.request(nginxVars({ REQUEST_URI: '/small', PATH_INFO: '/small' }));
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('ok');
  });

  it('a slow app that writes nothing for longer is not a stalled peer: the response completes', async () => {
    server = await startTestServer(
      async (ex) => {
        await new Promise((r) => setTimeout(r, 1200));
        ex.response.writeHead(200, undefined, []);
        ex.response.write('late');
        ex.response.end();
      },
      { config: { sendTimeout: 300 } },
    );
    const res = await server.request(nginxVars());
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('late');
    expect(server.records.some((r) => r.code === 'ERR_SEND_TIMEOUT')).toBe(false);
  });

  it('a peer that reads slowly but steadily is not cut off', { timeout: 90_000 }, async () => {
    outcome = undefined;
    server = await startTestServer(download, { config: { sendTimeout: 300 } });
    const socket = await connect(server.path);
    socket.write(encodeRequest(nginxVars({ REQUEST_URI: '/one', PATH_INFO: '/one' })));
    let received = 0;
    // Takes what is buffered every 50 ms: the one big write drains in partial pieces, each well inside the
    // timeout, though the write as a whole takes far longer than it.
    socket.pause();
    const startedAt = Date.now();
    const timer = setInterval(() => {
      const chunk = socket.read() as Buffer | null;
      if (chunk !== null) received += chunk.length;
    }, 50);
    await waitFor(() => outcome !== undefined && received > 2 * 1024 * 1024, 80_000);
    expect(Date.now() - startedAt).toBeGreaterThan(600);
    clearInterval(timer);
    expect(outcome).toBe('finished');
    expect(received).toBeGreaterThan(2 * 1024 * 1024);
    expect(server.records.some((r) => r.code === 'ERR_SEND_TIMEOUT')).toBe(false);
    socket.destroy();
  });
});

describe('Upgrade hand-over', () => {
  it('the app gets the raw socket and the bytes that came with the head; the exchange ends at close', async () => {
    let seenHead = '';
    server = await startTestServer(
      createHandler({
        interface: 'node',
        app: (_req: unknown, res: { end(s: string): void }) => res.end('plain'),
        upgrade: ((req: { url: string; headers: Record<string, string> }, socket: net.Socket, head: Buffer) => {
          seenHead = head.toString();
          socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\nX-Url: ${req.url}\r\n\r\n`);
          socket.on('data', (d) => socket.write(d));
          socket.on('end', () => socket.end());
        }) as never,
      }),
    );
    const socket = await connect(server.path);
    const vars = nginxVars({ REQUEST_URI: '/tunnel', PATH_INFO: '/tunnel' }, ['HTTP_UPGRADE', 'echo', 'HTTP_CONNECTION', 'Upgrade']);
    let received = '';
    socket.on('data', (d) => (received += d.toString('latin1')));
    // The head and the first tunnel bytes in one write: they must reach the app as `head`, not be dropped.
    socket.write(Buffer.concat([encodeRequest(vars), Buffer.from('EARLY')]));
    await waitFor(() => received.includes('\r\n\r\n'));
    expect(received).toMatch(/^HTTP\/1\.1 101 Switching Protocols\r\n/);
    expect(received).toContain('X-Url: /tunnel');
    expect(seenHead).toBe('EARLY');
    socket.write('ping-1');
    await waitFor(() => received.endsWith('ping-1'));
    socket.end();
    await once(socket, 'close');
    await waitFor(() => server!.records.some((r) => r.msg === 'request' && r.status === 101));
    // A plain request after the tunnel.
    const res = await server.request(nginxVars());
    expect(res.body.toString()).toBe('plain');
  });

  it('keeps what the peer sends before the app listens: an app that reads after an async step gets it all', async () => {
    server = await startTestServer(
      createHandler({
        interface: 'node',
        app: (_req: unknown, res: { end(s: string): void }) => res.end('plain'),
        upgrade: ((_req: unknown, socket: net.Socket) => {
          socket.write('HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n');
          // An auth check, say: the listener comes later than the client's first bytes.
          setTimeout(() => {
            let got = '';
            socket.on('data', (d) => {
              got += d.toString();
              if (got.length >= 5) socket.end(`got ${got}`);
            });
          }, 200);
        }) as never,
      }),
    );
    const socket = await connect(server.path);
    let received = '';
    socket.on('data', (d) => (received += d.toString('latin1')));
    socket.write(encodeRequest(nginxVars({}, ['HTTP_UPGRADE', 'echo', 'HTTP_CONNECTION', 'Upgrade'])));
    await waitFor(() => received.includes('\r\n\r\n'));
    socket.write('hello');
    await once(socket, 'close');
    expect(received.endsWith('got hello')).toBe(true);
  });

  it('an Upgrade header without "upgrade" among the Connection tokens is a plain request, as for Node', async () => {
    let upgrades = 0;
    server = await startTestServer(
      createHandler({
        interface: 'node',
        app: (_req: unknown, res: { end(s: string): void }) => res.end('plain'),
        upgrade: (() => upgrades++) as never,
      }),
    );
    const res = await server.request(nginxVars({}, ['HTTP_UPGRADE', 'h2c', 'HTTP_CONNECTION', 'keep-alive']));
    expect(res.body.toString()).toBe('plain');
    expect(upgrades).toBe(0);
  });

  it('an Upgrade request without an upgrade handler is served as a plain request', async () => {
    server = await startTestServer(
      createHandler({ interface: 'node', app: (req: { headers: Record<string, string> }, res: { end(s: string): void }) => res.end(`plain ${req.headers.upgrade}`) }),
    );
    const res = await server.request(nginxVars({}, ['HTTP_UPGRADE', 'websocket', 'HTTP_CONNECTION', 'Upgrade']));
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('plain websocket');
  });

  it('an upgrade handler that throws: logged as the app\'s error, connection closed, the server keeps serving', async () => {
    server = await startTestServer(
      createHandler({
        interface: 'node',
        app: (_req: unknown, res: { end(s: string): void }) => res.end('plain'),
        upgrade: (() => {
          throw new Error('no tunnels today');
        }) as never,
      }),
    );
    const raw = await server.send(encodeRequest(nginxVars({}, ['HTTP_UPGRADE', 'websocket', 'HTTP_CONNECTION', 'keep-alive, Upgrade'])));
    expect(raw.length).toBe(0);
    await waitFor(() => server!.records.some((r) => r.level === 50 && /no tunnels today/.test(JSON.stringify(r.err))));
    const res = await server.request(nginxVars());
    expect(res.body.toString()).toBe('plain');
  });
});

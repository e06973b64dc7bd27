// The native accept path's connection lifecycle (review of the light socket and RequestLifecycle): the fd of a
// peer that hung up is closed, the light socket closes after its response as a net.Socket would, a socket idle
// timeout set after the response became a net.Socket still fires, and a 504 the server answered is what the
// access log says.
import net from 'node:net';
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import type { ExchangeHandler } from '../../src/exchange.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { chooseAccept } from '../../src/server/native.js';
import { createNodeHandler, type NodeHandler } from '../../src/interfaces/node.js';
import { nginxVars, startTestServer, type TestServer } from '../helpers/serve.js';

const native = chooseAccept('native').addon!;
let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});
function start(handler: ExchangeHandler, config: Parameters<typeof startTestServer>[1] = {}): Promise<TestServer> {
  return startTestServer(handler, { ...config, config: { native, ...config.config } });
}
const node = (app: NodeHandler): ExchangeHandler => createNodeHandler(app);
const fds = (): number => readdirSync('/proc/self/fd').length;

describe('native accept: the connection after the response', () => {
  it('20 peers hanging up while their apps wait: their 20 descriptors are closed', async () => {
    let started = 0;
    let release!: () => void;
    const released = new Promise<void>((r) => (release = r));
    server = await start(async (ex) => {
      if (ex.vars.includes('/wait')) {
        started++;
        await released;
      }
      ex.response.writeHead(200, 'OK', []);
      ex.response.end();
    });
    await server.request(nginxVars());
    const before = fds();
    const sockets = Array.from({ length: 20 }, () => {
      const s = net.connect({ path: server!.path }, () => s.write(encodeRequest(nginxVars({ REQUEST_URI: '/wait' }))));
      s.on('error', () => {});
      return s;
    });
    while (started < 20) await sleep(10);
    for (const s of sockets) s.destroy();
    await sleep(200);
    release();
    await sleep(200);
    expect(fds() - before).toBeLessThan(5);
  });

  it('req.socket.setTimeout: no timeout after the response; the light socket says close, as a net.Socket does', async () => {
    const events: string[] = [];
    server = await start(
      node((req, res) => {
        req.socket.setTimeout(150, () => events.push('timeout'));
        req.socket.on('close', () => events.push('close'));
        res.end('ok');
      }),
    );
    const r = await server.request(nginxVars());
    expect(r.body.toString()).toBe('ok');
    await sleep(300);
    expect(events).toEqual(['close']);
  });

  it('res.setTimeout after the response became a net.Socket still fires', async () => {
    server = await start(
      node((_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.write(Buffer.alloc(70_000, 'a'));
        res.setTimeout(100, () => res.end('timed'));
      }),
    );
    const r = await server.request(nginxVars());
    expect(r.body.subarray(-5).toString()).toBe('timed');
  }, 5000);

  it('--request-timeout on a node app: the access log says 504', async () => {
    server = await start(node(() => {}), { config: { requestTimeout: 100, accessLog: true } });
    expect((await server.request(nginxVars())).status).toBe(504);
    while (!server.records.some((r) => r.msg === 'request')) await sleep(10);
    expect(server.records.find((r) => r.msg === 'request')).toMatchObject({ status: 504 });
  });

  it('--request-timeout on a node app on the JavaScript path: the access log says 504', async () => {
    server = await startTestServer(node(() => {}), { config: { requestTimeout: 100, accessLog: true } });
    expect((await server.request(nginxVars())).status).toBe(504);
    while (!server.records.some((r) => r.msg === 'request')) await sleep(10);
    expect(server.records.find((r) => r.msg === 'request')).toMatchObject({ status: 504 });
  });

  it('res.end() then req.destroy() in the same tick (a body nobody read): the response goes out, as on a net.Socket', async () => {
    const app = node((req, res) => {
      res.writeHead(413, { 'Content-Type': 'text/plain', 'Content-Length': '9' });
      res.end('too large');
      req.destroy();
    });
    server = await start(app);
    const onLight = await server.request(nginxVars());
    await server.close();
    server = await startTestServer(app);
    const onSocket = await server.request(nginxVars());
    expect([onLight.status, onLight.body.toString()]).toEqual([413, 'too large']);
    expect([onSocket.status, onSocket.body.toString()]).toEqual([413, 'too large']);
    expect(server.records.find((r) => r.msg === 'request')).toMatchObject({ status: 413 });
  });

  it('res.socket.destroy() before the response ended still sends nothing', async () => {
    server = await start(
      node((_req, res) => {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.write('half');
        res.socket!.destroy();
      }),
    );
    expect((await server.send(encodeRequest(nginxVars()))).length).toBe(0);
  });
});

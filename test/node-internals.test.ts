// One test per Node internal that src/node-internals.ts touches: each asserts the property or symbol exists and
// behaves as node-uwsgi relies on, so a Node release that removes or changes it fails here first (CI runs this on
// Node 20 and Node 24). queuedBody's web-stream internals have their own file, node-internals-queued-body.test.ts.
import { once } from 'node:events';
import { IncomingMessage, OutgoingMessage, ServerResponse, createServer as createHttpServer, request } from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { EventEmitter } from 'node:events';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import {
  addHeaderLines,
  clearNeedDrain,
  dumpUnread,
  listenHandleOf,
  markClosed,
  markConsuming,
  setPeer,
  streamStateKey,
  tlsPeerAddress,
  writableStateOf,
  writeQueueSize,
} from '../src/node-internals.js';

/** The built module (npm run build), for the child process that inherits a listening fd. */
const INTERNALS = new URL('../dist/node-internals.js', import.meta.url).href;

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const step of cleanup.splice(0)) step();
});

async function tcpServer(onConnection: (socket: net.Socket) => void = () => {}): Promise<net.Server> {
  const server = net.createServer(onConnection);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return server;
}

function handleFd(server: net.Server): number {
  return (server as unknown as { _handle: { fd: number } })._handle.fd;
}

describe('node internals', () => {
  it('_listen2: a process listens on a listening fd it inherited (as a worker does), and accepts on it', async () => {
    const owner = await tcpServer();
    const port = (owner.address() as net.AddressInfo).port;
    const child = spawn(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import net from 'node:net';
         import { listenOnFd } from ${JSON.stringify(INTERNALS)};
         const server = net.createServer((socket) => { socket.end('from the child'); server.close(); });
         listenOnFd(server, 3, 511);
         console.log(JSON.stringify({ listening: server.listening, port: server.address().port }));`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit', handleFd(owner)] },
    );
    cleanup.push(() => child.kill());
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    expect(JSON.parse(line)).toEqual({ listening: true, port });
    owner.close();
    const client = net.connect(port, '127.0.0.1');
    client.setEncoding('utf8');
    let text = '';
    client.on('data', (chunk: string) => (text += chunk));
    await once(client, 'end');
    expect(text).toBe('from the child');
    const [code] = (await once(child, 'exit')) as [number];
    expect(code).toBe(0);
  });

  it('_handle.writeQueueSize: grows while a peer that reads nothing holds a big write', async () => {
    const accepted: net.Socket[] = [];
    const server = await tcpServer((socket) => {
      socket.pause();
      accepted.push(socket);
    });
    cleanup.push(() => server.close());
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    cleanup.push(() => client.destroy());
    await once(client, 'connect');
    expect(writeQueueSize(client)).toBe(0);
    client.write(Buffer.alloc(32 * 1024 * 1024));
    expect(typeof (client as unknown as { _handle: { writeQueueSize: unknown } })._handle.writeQueueSize).toBe('number');
    expect(writeQueueSize(client)).toBeGreaterThan(0);
    client.destroy();
    expect(writeQueueSize(client)).toBe(0);
    for (const socket of accepted) socket.destroy();
  });

  it("_addHeaderLines: fills rawHeaders, and headers with Node's rules for repeated names", () => {
    const req = new IncomingMessage(new net.Socket());
    addHeaderLines(req, ['Host', 'example.org', 'Cookie', 'a=1', 'Cookie', 'b=2', 'Set-Cookie', 'x', 'Set-Cookie', 'y', 'Accept', 'a', 'Accept', 'b']);
    expect(req.rawHeaders).toEqual(['Host', 'example.org', 'Cookie', 'a=1', 'Cookie', 'b=2', 'Set-Cookie', 'x', 'Set-Cookie', 'y', 'Accept', 'a', 'Accept', 'b']);
    expect(req.headers).toEqual({ host: 'example.org', cookie: 'a=1; b=2', 'set-cookie': ['x', 'y'], accept: 'a, b' });
    expect(req.headersDistinct.cookie).toEqual(['a=1', 'b=2']);
  });

  it('_consuming and _dump: an unread body is dumped and ends; a read one is left to its reader', async () => {
    const unread = new IncomingMessage(new net.Socket());
    unread._read = () => {};
    expect((unread as unknown as { _consuming: boolean })._consuming).toBe(false);
    dumpUnread(unread);
    expect((unread as unknown as { _dumped: boolean })._dumped).toBe(true);
    unread.push(Buffer.from('body nobody reads'));
    unread.push(null);
    await once(unread, 'end');

    // Node's own _read marks the request consumed; the adapter's _read does the same with markConsuming.
    const read = new IncomingMessage(new net.Socket());
    read.read(0);
    expect((read as unknown as { _consuming: boolean })._consuming).toBe(true);
    dumpUnread(read);
    expect((read as unknown as { _dumped: boolean })._dumped).toBe(false);
    const adapted = new IncomingMessage(new net.Socket());
    adapted._read = function (this: IncomingMessage) {
      markConsuming(this);
    };
    adapted.read(0);
    dumpUnread(adapted);
    expect((adapted as unknown as { _dumped: boolean })._dumped).toBe(false);
  });

  it("_closed: http.Server marks a finished response closed with it, and markClosed answers once", async () => {
    let served: ServerResponse | undefined;
    const server = createHttpServer((_req, res) => {
      served = res;
      expect((res as unknown as { _closed: boolean })._closed).toBe(false);
      res.end('ok');
    });
    cleanup.push(() => server.close());
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const req = request({ port: (server.address() as net.AddressInfo).port, host: '127.0.0.1', agent: false });
    req.end();
    const [response] = (await once(req, 'response')) as [IncomingMessage];
    response.resume();
    await once(response, 'end');
    if (!served!.destroyed) await once(served!, 'close');
    expect((served as unknown as { _closed: boolean })._closed).toBe(true);
    expect(markClosed(served!)).toBe(false);

    const fresh = new ServerResponse(new IncomingMessage(new net.Socket()));
    expect(markClosed(fresh)).toBe(true);
    expect(markClosed(fresh)).toBe(false);
  });

  it('kNeedDrain: the symbol writableNeedDrain reads, and clearNeedDrain resets it', () => {
    const res = new ServerResponse(new IncomingMessage(new net.Socket()));
    const symbol = Object.getOwnPropertySymbols(res).find((sym) => sym.description === 'kNeedDrain');
    expect(symbol).toBeDefined();
    (res as unknown as Record<symbol, boolean>)[symbol!] = true;
    expect(res.writableNeedDrain).toBe(true);
    clearNeedDrain(res);
    expect(res.writableNeedDrain).toBe(false);
  });

  it("_peername: net.Socket's remoteAddress, remotePort and remoteFamily answer from the cache, connected or not", async () => {
    const loose = new net.Socket();
    setPeer(loose, '2001:db8::1', 4321);
    expect([loose.remoteAddress, loose.remotePort, loose.remoteFamily]).toEqual(['2001:db8::1', 4321, 'IPv6']);

    const server = await tcpServer();
    cleanup.push(() => server.close());
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    cleanup.push(() => client.destroy());
    await once(client, 'connect');
    setPeer(client, '192.0.2.7', 80);
    expect([client.remoteAddress, client.remotePort, client.remoteFamily]).toEqual(['192.0.2.7', 80, 'IPv4']);
  });

  it('_parent: a TLS socket keeps its plain socket, whose remoteAddress outlives the TLS socket', async () => {
    const server = await tcpServer();
    cleanup.push(() => server.close());
    const plain = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    cleanup.push(() => plain.destroy());
    await once(plain, 'connect');
    const secure = new tls.TLSSocket(plain);
    expect((secure as unknown as { _parent: unknown })._parent).toBe(plain);
    expect(tlsPeerAddress(secure)).toBe('127.0.0.1');
    secure.destroy();
    expect(tlsPeerAddress(secure)).toBe('127.0.0.1');
  });

  it('_httpMessage and _writableState: ServerResponse names itself on its socket, and end() uncorks through corked = 1', () => {
    expect(writableStateOf(new net.Socket()).corked).toBe(0);
    const corked: number[] = [];
    const state = {
      set corked(value: number) {
        corked.push(value);
      },
      get corked() {
        return 0;
      },
    };
    const socket = fakeConnection({ _writableState: state });
    const res = new ServerResponse(new IncomingMessage(new net.Socket()));
    res.assignSocket(socket as unknown as net.Socket);
    expect(socket._httpMessage).toBe(res);
    res.end('done');
    expect(corked).toContain(1);
    expect(OutgoingMessage.prototype.end.toString()).toContain('_writableState.corked = 1');
  });

  it("_hadError: http's onFinish emits no 'finish' for a response whose socket errored (the light socket sets it)", async () => {
    const finished = async (hadError: boolean): Promise<boolean> => {
      const socket = fakeConnection({
        destroyed: false,
        _hadError: hadError,
        _writableState: { corked: 0 },
        write: (_data: unknown, _encoding: unknown, callback?: () => void) => {
          if (typeof callback === 'function') process.nextTick(callback);
          return true;
        },
      });
      const res = new ServerResponse(new IncomingMessage(new net.Socket()));
      res.assignSocket(socket as unknown as net.Socket);
      let finish = false;
      res.on('finish', () => (finish = true));
      res.end('done');
      await new Promise((resolve) => setImmediate(resolve));
      return finish;
    };
    expect(await finished(false)).toBe(true);
    expect(await finished(true)).toBe(false);
  });

  it("_handle in listen options: net.Server.listen reads options._handle before options.handle", () => {
    const handle = { fd: 3 };
    expect(listenHandleOf({ _handle: handle, handle: { fd: 4 } })).toBe(handle);
    expect(listenHandleOf({ handle })).toBe(handle);
    expect(net.Server.prototype.listen.toString()).toContain('options._handle || options.handle || options');
  });

  it("web streams' kState: found on a byte stream of our own, with the shape queuedBody reads", () => {
    expect(streamStateKey()).not.toBeNull();
  });
});

/** The least of a connection that http's ServerResponse writes to (as the light socket is), with `fields` over it. */
function fakeConnection<T extends object>(fields: T): EventEmitter & { writable: boolean; _httpMessage: unknown } & T {
  return Object.assign(
    new EventEmitter(),
    { writable: true, _httpMessage: null as unknown, write: () => true, cork: () => {}, uncork: () => {}, setTimeout: () => {}, destroy: () => {} },
    fields,
  );
}

// --http: a plain HTTP/1.1 listener beside the uwsgi sockets, for development and health checks (uWSGI's
// --http-socket), not an edge server. node:http parses each request; its vars are built as nginx's
// uwsgi_params builds them (nginx/uwsgi_params), and the exchange then runs exactly as a uwsgi one: the
// adapters write a complete HTTP/1.1 response with `Connection: close` to the raw socket, as they do towards
// nginx, so one request per connection and no chunked framing, whatever the interface.
import http, { IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { unlinkSync } from 'node:fs';
import { codeOf, UwsgiError } from '../errors.js';
import { formatSocketAddress, type SocketAddress } from '../address.js';
import { hostName } from '../protocol/vars.js';
import { cgiVars } from '../protocol/cgi.js';
import { lifecycleContext, RequestLifecycle, simpleResponse, SocketLifecycle, type LifecycleContext } from './lifecycle.js';
import { listenOn } from './listen.js';
import { admitPeer } from './allow.js';
import { SocketResponse } from './response.js';
import { acceptErrorListener, type ServerConfig } from './server.js';

/** The uwsgi server's settings that apply here too; the header timeout is node:http's (0 leaves its default). */
export interface HttpListenerConfig
  extends Pick<
    ServerConfig,
    'handler' | 'log' | 'accessLog' | 'multiprocess' | 'chmodSocket' | 'shared' | 'requestTimeout' | 'headerTimeout' | 'bodyTimeout' | 'sendTimeout' | 'tracker' | 'allowList' | 'backlog' | 'onAcceptError'
  > {
  /** Largest request body (--max-body-size); 0 disables. */
  readonly maxBodySize: number;
}

export interface HttpListener {
  listen(addresses: readonly SocketAddress[]): Promise<void>;
  /** Stops accepting and waits for the requests in flight. */
  close(): Promise<void>;
  readonly servers: readonly http.Server[];
}

/** How long a refused request's unread body may keep its connection open (nginx's lingering close). */
const LINGER_MS = 5000;

export function createHttpListener(config: HttpListenerConfig): HttpListener {
  const servers: http.Server[] = [];
  const unixPaths: string[] = [];
  const inflight = new Set<Promise<void>>();
  /** Sockets with a request being served: a pipelined second request on one is not served (we close after). */
  const busy = new WeakSet<Socket>();
  const onAcceptError = acceptErrorListener(config);
  const ctx = lifecycleContext(config, 'http');

  const track = (done: Promise<void>): void => {
    inflight.add(done);
    void done.then(() => inflight.delete(done));
  };

  const onRequest = (req: HttpRequest, res: ServerResponse): void => {
    const socket = req.socket;
    if (busy.has(socket)) {
      req.resume();
      return;
    }
    busy.add(socket);
    // The adapters write to the raw socket, as towards nginx: node:http's own response stays unused.
    res.detachSocket(socket);
    track(serve(req, socket, Buffer.alloc(0), false));
  };

  const onUpgrade = (req: HttpRequest, socket: Socket, head: Buffer): void => {
    busy.add(socket);
    track(serve(req, socket, head, true));
  };

  function serve(req: HttpRequest, socket: Socket, head: Buffer, upgrade: boolean): Promise<void> {
    return serveHttpRequest(req, socket, head, upgrade, config, ctx).catch((err: unknown) => {
      config.log.error({ err, code: codeOf(err) }, 'HTTP request failed');
      socket.destroy();
    });
  }

  // `Expect: 100-continue`: a body over --max-body-size is refused before the client sends it.
  const onCheckContinue = (req: HttpRequest, res: ServerResponse): void => {
    const length = Number(req.headers['content-length']);
    if (!(config.maxBodySize > 0 && length > config.maxBodySize)) res.writeContinue();
    onRequest(req, res);
  };

  return {
    servers,
    async listen(addresses) {
      try {
        for (const address of addresses) {
          const server = http.createServer({
            IncomingMessage: HttpRequest,
            // Timeouts of our own (--request-timeout, --body-timeout); node's 300 s request timeout would cut long uploads.
            requestTimeout: 0,
            headersTimeout: config.headerTimeout || 60_000,
            noDelay: true,
          });
          // Peers off --allow-from are closed before node:http reads a byte from them.
          server.prependListener('connection', (socket: Socket) => void admitPeer(config.allowList, socket, config.log));
          server.on('request', onRequest);
          server.on('upgrade', onUpgrade);
          server.on('checkContinue', onCheckContinue);
          servers.push(server);
          await listenOn(server, address, config.chmodSocket, config.shared, config.backlog);
          server.on('error', onAcceptError);
          if (address.kind === 'unix' && !config.shared) unixPaths.push(address.path);
          config.log[config.shared ? 'debug' : 'info']({ address: formatSocketAddress(address), protocol: 'http' }, 'listening');
        }
      } catch (err) {
        await this.close();
        throw err;
      }
    },
    async close() {
      await Promise.all(
        servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              if (!server.listening) return resolve();
              server.close(() => resolve());
              server.closeIdleConnections();
            }),
        ),
      );
      for (const path of unixPaths) {
        try {
          unlinkSync(path);
        } catch {
          // Already gone.
        }
      }
      await Promise.all(inflight);
    },
  };
}

/** node:http's request, telling the lifecycle of each piece of its body as the parser hands it over (--body-timeout
 * counts silence between pieces as for a uwsgi request; an IncomingMessage the app reads is paced by the app). */
class HttpRequest extends IncomingMessage {
  lifecycle: RequestLifecycle | undefined;

  override push(chunk: unknown, encoding?: BufferEncoding): boolean {
    const lifecycle = this.lifecycle;
    if (lifecycle !== undefined) {
      if (chunk === null) lifecycle.bodyEnded();
      else lifecycle.bodyData((chunk as Buffer).length);
    }
    return super.push(chunk, encoding);
  }
}

class HttpExchange extends SocketLifecycle {
  readonly modifier1 = 0;
  readonly modifier2 = 0;
  /** Set once the body's length is known (a chunked body is read whole first). */
  vars: string[] = [];
  readonly response: SocketResponse;

  constructor(
    ctx: LifecycleContext,
    readonly socket: Socket,
    method: string,
    uri: string,
    readonly upgrade: boolean,
    public contentLength: number,
    public body: Readable,
    private readonly head: Buffer,
  ) {
    super(ctx, method, uri);
    this.response = new SocketResponse(socket, method);
  }

  override get bodyIfMade(): Readable {
    return this.body;
  }

  takeOver(): Buffer {
    this.handOver(this.socket);
    return this.head;
  }

  protected unreadBody(): Readable | undefined {
    return this.contentLength > 0 && !this.body.readableEnded ? this.body : undefined;
  }

  protected override remote(): string | undefined {
    return this.socket.remoteAddress;
  }
}

/** Serves one request of the HTTP listener; resolves once its connection is closed. Never rejects. */
async function serveHttpRequest(
  req: HttpRequest,
  socket: Socket,
  head: Buffer,
  upgrade: boolean,
  config: HttpListenerConfig,
  ctx: LifecycleContext,
): Promise<void> {
  let closedNow: () => void = () => {};
  const closed = new Promise<void>((resolve) => (closedNow = resolve));
  socket.on('error', (err: NodeJS.ErrnoException) => config.log.debug({ err, code: err.code }, 'connection error'));
  const method = req.method ?? 'GET';
  const uri = req.url ?? '/';
  const limit = config.maxBodySize;

  const headers: Array<[string, string]> = [];
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i += 2) headers.push([raw[i]!, raw[i + 1]!]);
  const declared = req.headers['content-length'];
  const chunked = req.headers['transfer-encoding'] !== undefined;
  let length: number | undefined = declared === undefined || chunked ? undefined : Number(declared);
  let body: Readable = req;

  // Made before the parser hands over a byte of the body, which it does right after this synchronous part.
  const exchange = new HttpExchange(ctx, socket, method, uri, upgrade && (length ?? 0) === 0, length ?? 0, req, head);
  if (socket.destroyed) closedNow();
  else {
    socket.once('close', () => {
      exchange.connectionClosed();
      closedNow();
    });
  }

  const refuse = (status: number, err: UwsgiError): Promise<void> => {
    config.log.warn({ code: err.code, method, uri }, err.message);
    socket.end(simpleResponse(status, `${err.message}\n`));
    // Lingering close, as nginx does: the client gets to read the answer before its unsent body resets it.
    req.resume();
    const linger = setTimeout(() => socket.destroy(), LINGER_MS);
    void closed.then(() => clearTimeout(linger));
    exchange.refused(status);
    return closed;
  };

  if (length !== undefined && limit > 0 && length > limit) {
    return refuse(413, new UwsgiError('ERR_BODY_TOO_LARGE', { length, limit }));
  }
  if (!upgrade && (chunked || (length ?? 0) > 0)) {
    req.lifecycle = exchange;
    exchange.bodyStarted();
  }
  exchange.watchSend(socket);
  if (chunked && !upgrade) {
    const whole = await readWhole(req, socket, limit);
    if (whole === 'too large') {
      exchange.bodyEnded();
      return refuse(413, new UwsgiError('ERR_BODY_TOO_LARGE', { length: `more than ${limit}`, limit }));
    }
    if (whole === undefined) {
      // --body-timeout answered 408 (and logged why) before the app could run.
      if (exchange.status === 408) {
        exchange.refused(408);
        return closed;
      }
      config.log.debug('peer closed the connection before the request body was complete');
      socket.destroy();
      return closed;
    }
    length = whole.length;
    body = Readable.from(whole.length === 0 ? [] : [whole]);
  }

  const local = socket.localAddress;
  const host = req.headers.host;
  const vars = cgiVars({
    method,
    target: uri,
    httpVersion: req.httpVersion,
    headers: chunked && length !== undefined ? headers.filter(([name]) => name.toLowerCase() !== 'transfer-encoding') : headers,
    contentLength: length,
    remoteAddress: socket.remoteAddress,
    remotePort: socket.remotePort,
    serverName: host !== undefined ? hostName(host) : local ?? 'localhost',
    serverPort: socket.localPort !== undefined ? String(socket.localPort) : '80',
  });
  if (chunked && length !== undefined) vars.push('HTTP_CONTENT_LENGTH', String(length));
  const contentLength = length ?? 0;
  if (contentLength === 0 && body === req) {
    body = Readable.from([]);
    req.resume();
  }
  exchange.vars = vars;
  exchange.contentLength = contentLength;
  exchange.body = body;
  exchange.run();
  return closed;
}

/** A chunked body, read whole (nginx buffers it too: CONTENT_LENGTH must be known before the app runs). */
function readWhole(req: IncomingMessage, socket: Socket, limit: number): Promise<Buffer | 'too large' | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const done = (value: Buffer | 'too large' | undefined): void => {
      req.off('data', onData);
      socket.off('close', onClose);
      resolve(value);
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (limit > 0 && received > limit) done('too large');
      else chunks.push(chunk);
    };
    const onClose = (): void => done(undefined);
    req.on('data', onData);
    req.once('end', () => done(Buffer.concat(chunks)));
    req.once('error', () => done(undefined));
    socket.once('close', onClose);
  });
}



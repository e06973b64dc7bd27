// The node interface: real http.IncomingMessage and http.ServerResponse objects over the uwsgi connection, so
// (req, res) handlers, Express, Koa and Fastify run unmodified. Node's http module is used, never patched.
import { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Exchange, ExchangeHandler, SocketHooks } from '../exchange.js';
import { addHeaderLines, clearNeedDrain, dumpUnread, markClosed, markConsuming, setPeer } from '../node-internals.js';
import { requestLineOf } from '../protocol/vars.js';
import { isThenable } from '../values.js';

export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => unknown;
/** What http.Server's 'upgrade' listeners take: the request, the raw connection, the bytes after the head. */
export type UpgradeHandler = (req: IncomingMessage, socket: Socket, head: Buffer) => unknown;

// Express (and any framework that does the same) re-parents req and res with Object.setPrototypeOf(req,
// app.request): methods of a subclass would be lost with the old prototype, and Node's own ones would come back
// (IncomingMessage's _read resumes the socket, not the body stream: a body past the buffers then never arrives;
// ServerResponse's writeEarlyHints sends a real 103). So the adapter's behaviour lives in own properties of each
// instance, which no prototype swap touches. Plain instances with four own properties cost no more to make than
// the subclasses did (bench/node-objects.js; bench/README.md, "Node adapter objects").

/** Where the adapter's own properties find their exchange (the body to resume, the logger). */
const kExchange = Symbol('node-uwsgi.exchange');

type UwsgiIncomingMessage = IncomingMessage & { [kExchange]: Exchange };

/** req._read: the request's bytes come from the exchange body, not from Node's HTTP parser. */
function readBody(this: UwsgiIncomingMessage): void {
  markConsuming(this);
  const exchange = this[kExchange];
  // Without a body the request was ended at once; `body` would make a stream for nothing.
  if (exchange.contentLength > 0 && exchange.bodyBytes === undefined) exchange.body.resume();
}

/**
 * res.writeContinue, writeProcessing and writeEarlyHints: a 1xx before the response would be taken by the front
 * server as the final response (nginx answers the client 103 and drops the rest). The hint is dropped and logged.
 */
function dropInformational(this: ServerResponse, ...args: unknown[]): void {
  const callback = args[args.length - 1];
  const exchange = (this.req as UwsgiIncomingMessage)[kExchange];
  exchange.log.debug({ uri: this.req.url }, 'dropped an informational (1xx) response the front server cannot pass on');
  if (typeof callback === 'function') process.nextTick(callback as () => void);
}

/** Wraps a (req, res) handler, or an http.Server whose 'request' listeners serve, as an exchange handler. */
export function createNodeHandler(app: NodeHandler | Server): ExchangeHandler {
  const handler: NodeHandler = app instanceof Server ? (req, res) => app.emit('request', req, res) : app;
  return (exchange) => serveNode(exchange, handler);
}

/**
 * Serves Upgrade requests (WebSocket handshakes) with `upgrade` when it will take them, everything else with
 * `serve`. `upgrade` returns undefined when nobody listens (an http.Server without 'upgrade' listeners): the
 * request then goes to `serve` as a plain request, as Node's own server does.
 */
export function withUpgrade(serve: ExchangeHandler, upgrade: () => UpgradeHandler | undefined): ExchangeHandler {
  return (exchange) => {
    if (!exchange.upgrade) return serve(exchange);
    const handler = upgrade();
    return handler === undefined ? serve(exchange) : serveUpgrade(exchange, handler);
  };
}

/** The upgrade listener of an http.Server app, while it has any. */
export function serverUpgrade(server: Server): () => UpgradeHandler | undefined {
  const emit: UpgradeHandler = (req, socket, head) => server.emit('upgrade', req, socket, head);
  return () => (server.listenerCount('upgrade') > 0 ? emit : undefined);
}

/** Hands the raw connection to the app, as http.Server's 'upgrade' event does; ends when the connection closes. */
function serveUpgrade(exchange: Exchange, handler: UpgradeHandler): Promise<void> {
  const socket = exchange.socket;
  const req = incomingMessage(exchange, socket);
  // Set by Node's parser on the requests it hands to 'upgrade' listeners.
  (req as unknown as { upgrade: boolean }).upgrade = true;
  return new Promise<void>((resolve, reject) => {
    const head = exchange.takeOver();
    if (socket.destroyed) return resolve();
    socket.once('close', () => resolve());
    try {
      const result = handler(req, socket, head);
      if (isThenable(result)) result.then(undefined, reject);
    } catch (err) {
      reject(err);
    }
  });
}

/** The request as Node's parser would have made it, from the uwsgi vars. */
function incomingMessage(exchange: Exchange, socket: Socket): UwsgiIncomingMessage {
  const line = requestLineOf(exchange.vars, exchange.contentLength);
  exposePeer(socket, line.remoteAddress, line.remotePort, line.scheme === 'https');

  const req = new IncomingMessage(socket) as UwsgiIncomingMessage;
  req[kExchange] = exchange;
  req._read = readBody;
  req.method = line.method;
  req.url = line.target;
  req.httpVersion = line.httpVersion;
  if (line.httpVersion === '1.1') {
    req.httpVersionMajor = 1;
    req.httpVersionMinor = 1;
  } else {
    const dot = line.httpVersion.indexOf('.');
    req.httpVersionMajor = Number(line.httpVersion.slice(0, dot === -1 ? undefined : dot)) || 1;
    req.httpVersionMinor = dot === -1 ? 0 : Number(line.httpVersion.slice(dot + 1)) || 0;
  }
  // What Node's own parser calls: req.headers and req.headersDistinct are then built lazily from rawHeaders,
  // with Node's rules for repeated names (cookie joined with '; ', set-cookie kept as an array...).
  addHeaderLines(req, line.headers);
  const whole = exchange.bodyBytes;
  if (whole !== undefined) {
    req.push(whole);
    req.complete = true;
    req.push(null);
  } else if (exchange.contentLength > 0) pipeBody(exchange.body, req);
  else {
    req.complete = true;
    req.push(null);
  }
  return req;
}

function serveNode(exchange: Exchange, handler: NodeHandler): Promise<void> {
  const socket = exchange.socket;
  const req = incomingMessage(exchange, socket);
  const res = new ServerResponse(req);
  res.writeContinue = dropInformational;
  res.writeProcessing = dropInformational;
  res.writeEarlyHints = dropInformational;
  // The connection's close ends the body: no chunked framing towards the front server, no keep-alive.
  res.useChunkedEncodingByDefault = false;
  res.shouldKeepAlive = false;
  res.assignSocket(socket);
  return new Promise<void>((resolve, reject) => {
    const call = new NodeCall(exchange, socket, req, res, resolve, reject);
    try {
      const result = handler(req, res);
      if (isThenable(result)) result.then(undefined, (err: unknown) => call.fail(err));
    } catch (err) {
      call.fail(err);
    }
  });
}

/**
 * One request of the node interface while its response runs: what http.Server does for its own sockets, and the
 * end of the exchange. A light socket (the native path) calls its hooks directly; a net.Socket gets listeners.
 */
class NodeCall implements SocketHooks {
  private readonly finished: () => void;
  private listeners: { close: () => void; drain: () => void; timeout: () => void } | undefined;

  constructor(
    private readonly exchange: Exchange,
    private readonly socket: Socket,
    private readonly req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly resolve: () => void,
    private readonly reject: (err: unknown) => void,
  ) {
    this.finished = () => this.settle();
    res.on('finish', this.finished);
    const light = socket as Socket & { hooks?: SocketHooks | undefined };
    if ('hooks' in light) light.hooks = this;
    else {
      this.listeners = { close: () => this.closed(), drain: () => this.drain(), timeout: () => this.timeout() };
      socket.once('close', this.listeners.close);
      socket.on('drain', this.listeners.drain);
      socket.on('timeout', this.listeners.timeout);
    }
  }

  /** socketOnDrain: a response whose write() returned false hears 'drain' when the socket drains. Without it,
   * `await once(res, 'drain')` would wait forever. */
  drain(): void {
    if (!this.res.writableNeedDrain) return;
    clearNeedDrain(this.res);
    this.res.emit('drain');
  }

  /** socketOnTimeout: res.setTimeout(ms, cb) and req.setTimeout set the socket's idle timeout, whose 'timeout'
   * reaches the request and response; nobody listening, the connection is closed. */
  timeout(): void {
    const { req, res, socket } = this;
    const heard = (!req.complete && req.emit('timeout', socket)) || res.emit('timeout', socket);
    if (!heard) socket.destroy();
  }

  /** The connection closed: before the response finished, the request is aborted. */
  closed(): void {
    this.unhook();
    const { exchange, req, res } = this;
    if (!res.writableFinished) {
      req.destroy();
      // A 504 or 408 the server answered itself stays what the access log says.
      exchange.status = res.headersSent ? res.statusCode : exchange.status || 499;
    }
    this.resolve();
  }

  private settle(): void {
    const { exchange, req, res, socket } = this;
    this.unhook();
    exchange.status = res.statusCode;
    if (res.socket === socket) res.detachSocket(socket);
    afterFinish(req, res);
    this.resolve();
  }

  fail(err: unknown): void {
    this.unhook();
    if (this.res.headersSent) this.exchange.status = this.res.statusCode;
    this.reject(err);
  }

  private unhook(): void {
    this.res.off('finish', this.finished);
    const socket = this.socket as Socket & { hooks?: SocketHooks | undefined };
    const listeners = this.listeners;
    if (listeners === undefined) {
      if (socket.hooks === this) socket.hooks = undefined;
      return;
    }
    this.listeners = undefined;
    socket.off('close', listeners.close);
    socket.off('drain', listeners.drain);
    socket.off('timeout', listeners.timeout);
  }
}

/**
 * What http.Server does once a response has finished (resOnFinish): a request body nobody reads is dumped (a
 * body-less request then ends and emits 'close'), and the response emits 'close' on the next tick. Fastify's
 * and pino-http's hooks listen for them.
 */
function afterFinish(req: IncomingMessage, res: ServerResponse): void {
  dumpUnread(req);
  process.nextTick(emitClose, res);
}

function emitClose(res: ServerResponse): void {
  if (!markClosed(res)) return;
  (res as { destroyed: boolean }).destroyed = true;
  res.emit('close');
}

/** The client's address and scheme as nginx saw them, where Express, Koa and Fastify read them. */
function exposePeer(socket: Socket, address: string | undefined, port: number | undefined, https: boolean): void {
  if (address !== undefined) setPeer(socket, address, port);
  // req.secure (Express), ctx.protocol (Koa) and request.protocol (Fastify) read socket.encrypted. A TLSSocket
  // (--ssl-socket) says true of itself: that is the hop from nginx, not the client's scheme.
  const sock = socket as unknown as { encrypted?: boolean };
  if (https) sock.encrypted = true;
  else if (sock.encrypted) sock.encrypted = false;
}

function pipeBody(body: Readable, req: IncomingMessage): void {
  body.on('data', (chunk: Buffer) => {
    if (!req.push(chunk)) body.pause();
  });
  body.once('end', () => {
    req.complete = true;
    req.push(null);
  });
  body.once('error', (err) => req.destroy(err));
}

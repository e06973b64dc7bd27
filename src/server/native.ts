// The native accept path, JavaScript half: src/native/accept.c accepts on the uwsgi listening sockets, reads until
// the header and vars block are whole and calls onRequest once per request. A body-less request to an app that
// answers through the response sink (wsgi, fetch) runs here without a net.Socket: its response is collected and
// written in one write by C, which closes the connection. Everything else (a body, an Upgrade, the node
// interface, a partial or malformed head, a response too big for one write) becomes a net.Socket on the fd and
// goes on through handleConnection, today's JavaScript path, with the bytes already read.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import net, { type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { getSystemErrorName } from 'node:util';
import type { Logger } from 'pino';
import type { BlockList } from 'node:net';
import { codeOf, statusOf, UwsgiError } from '../errors.js';
import { formatSocketAddress, type SocketAddress } from '../options.js';
import { isAllowed } from './allow.js';
import { socketlessHandlers, type Exchange, type ResponseSink } from '../exchange.js';
import { RequestDecoder, type DecoderHandler, type RequestHead } from '../protocol/decoder.js';
import { getVar } from '../protocol/vars.js';
import { handleConnection, scanHead, scanned, simpleResponse, type ConnectionContext } from './connection.js';
import { FramedResponse, waitDrain } from './response.js';

export interface NativeAddon {
  /** onRequest's `peer`: a TCP peer's address (for --allow-from); undefined on Unix sockets. */
  listen(
    fd: number,
    onRequest: (fd: number, bytes: Buffer, complete: boolean, peer: string | undefined) => void,
    onAbort: (fd: number) => void,
    onError: (errno: number) => void,
  ): object;
  stop(listener: object): void;
  respond(fd: number, bytes: Buffer): number;
  release(fd: number): void;
  close(fd: number): void;
  bindUnix(path: string, backlog: number): number;
  bindTcp(host: string, port: number, backlog: number): number;
  /** An inherited listening socket made non-blocking, its queue set to `backlog`; throws if it is not one. */
  adoptFd(fd: number, backlog: number): 'unix' | 'tcp';
}

export type NativeLoad = { addon: NativeAddon; reason?: undefined } | { addon?: undefined; reason: string };

let loaded: NativeLoad | undefined;

/** The addon (dist/native/accept.node, built by scripts/build-native.js), or why there is none. Loaded once. */
export function loadNative(): NativeLoad {
  if (loaded !== undefined) return loaded;
  if (process.platform !== 'linux') return (loaded = { reason: `no native accept on ${process.platform} yet` });
  try {
    const require = createRequire(import.meta.url);
    // dist/native/accept.node beside dist/server/native.js; from src (the tests) the built one under dist.
    const file = ['../native/accept.node', '../../dist/native/accept.node'].find((f) => existsSync(new URL(f, import.meta.url)));
    loaded = { addon: require(file ?? '../native/accept.node') as NativeAddon };
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    loaded = {
      reason: e.code === 'MODULE_NOT_FOUND' ? 'the native addon was not built (no C compiler or headers at build time)' : `the native addon does not load: ${e.message}`,
    };
  }
  return loaded;
}

/** --accept: the addon to accept with, or undefined and why not. `native` without an addon is an error. */
export function chooseAccept(mode: 'auto' | 'native' | 'js'): NativeLoad {
  if (mode === 'js') return { reason: '--accept js' };
  const load = loadNative();
  if (load.addon === undefined && mode === 'native') throw new UwsgiError('ERR_NATIVE_ACCEPT', { detail: load.reason });
  return load;
}

/** A listening Unix or TCP socket bound by the addon (no libuv handle: nobody accepts on it until listen()). */
export function bindSocket(addon: NativeAddon, address: SocketAddress & { kind: 'unix' | 'tcp' }, backlog: number): number {
  const label = formatSocketAddress(address);
  try {
    return address.kind === 'unix' ? addon.bindUnix(address.path, backlog) : addon.bindTcp(address.host, address.port, backlog);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw e.code === 'EADDRINUSE'
      ? new UwsgiError('ERR_SOCKET_IN_USE', { address: label }, { cause: e })
      : new UwsgiError('ERR_SOCKET_LISTEN', { address: label, detail: e.message }, { cause: e });
  }
}

/** An inherited fd (fd://N, socket activation) for the native listeners: it must be a listening Unix or TCP stream
 * socket (checked with getsockopt: SO_TYPE, SO_DOMAIN, SO_ACCEPTCONN); it is made non-blocking and its queue set to
 * `backlog`, as Node's listen({ fd }) does on the JavaScript path. */
export function adoptSocket(addon: NativeAddon, fd: number, backlog: number): 'unix' | 'tcp' {
  try {
    return addon.adoptFd(fd, backlog);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new UwsgiError('ERR_SOCKET_LISTEN', { address: `fd://${fd}`, detail: `fd ${fd} is ${e.message}; pass a listening stream socket (systemd: ListenStream=)` }, { cause: e });
  }
}

/** Responses collected up to this size go out in C's one write; a bigger one makes the connection a net.Socket. */
const COLLECT_LIMIT = 64 * 1024;
const RESOLVED = Promise.resolve();

/** One listening socket served by the addon. `track`: a connection handed over to the JavaScript path. */
export class NativeListener {
  private readonly handle: object;
  /** Requests running without a net.Socket, by fd. */
  private readonly byFd: Array<NativeExchange | undefined> = [];
  private running = 0;
  /** Requests running without a net.Socket. */
  get requests(): number {
    return this.running;
  }

  private idle: (() => void) | undefined;
  private readonly socketless: boolean;

  constructor(
    readonly addon: NativeAddon,
    fd: number,
    readonly ctx: ConnectionContext,
    private readonly track: (done: Promise<void>) => void,
    onAcceptError: (err: NodeJS.ErrnoException) => void,
    private readonly allowList: BlockList | undefined,
  ) {
    this.socketless = socketlessHandlers.has(ctx.handler);
    this.handle = addon.listen(
      fd,
      (conn, bytes, complete, peer) => {
        try {
          if (peer !== undefined && this.allowList !== undefined && !isAllowed(this.allowList, peer)) return this.refuse(conn, peer);
          this.onRequest(conn, bytes, complete);
        } catch (err) {
          // A bug of this file, not the app's (run() catches the app's): the connection must not be left open.
          ctx.log.error({ err }, 'native accept: request not started');
          if (this.byFd[conn] === undefined) addon.close(conn);
        }
      },
      (conn) => this.byFd[conn]?.peerClosed(),
      (errno) => onAcceptError(acceptError(errno)),
    );
  }

  /** Stops accepting; resolves when the requests it runs are done (handed-over ones are tracked by the server). */
  close(): Promise<void> {
    this.addon.stop(this.handle);
    if (this.running === 0) return RESOLVED;
    return new Promise((resolve) => (this.idle = resolve));
  }

  /** --allow-from: a TCP peer it does not list is closed unserved (as allow.ts admitPeer does). */
  private refuse(fd: number, peer: string): void {
    const err = new UwsgiError('ERR_PEER_NOT_ALLOWED', { peer });
    this.ctx.log.warn({ code: err.code, peer }, err.message);
    this.addon.close(fd);
  }

  private onRequest(fd: number, bytes: Buffer, complete: boolean): void {
    if (!complete) return this.handOver(fd, bytes);
    const head = this.decode(bytes);
    if (head === undefined || head.contentLength > 0 || !this.socketless) return this.handOver(fd, bytes);
    scanHead(head);
    if (scanned.upgrade) return this.handOver(fd, bytes);
    const ex = new NativeExchange(this, fd, head, scanned.method, scanned.uri);
    this.byFd[fd] = ex;
    this.running++;
    ex.run();
  }

  /** The head of a complete request, or undefined for anything the JavaScript path answers (malformed, too big). */
  private decode(bytes: Buffer): RequestHead | undefined {
    decoded = undefined;
    try {
      new RequestDecoder(capture, this.ctx.limits).execute(bytes);
    } catch {
      return undefined;
    }
    return decoded;
  }

  /** The connection goes on as a net.Socket on today's JavaScript path, with the bytes already read. */
  handOver(fd: number, bytes: Buffer): void {
    const socket = adopt(this.addon, fd);
    if (socket !== undefined) this.track(handleConnection(socket, this.ctx, bytes));
  }

  ended(ex: NativeExchange): void {
    if (this.byFd[ex.fd] === ex) this.byFd[ex.fd] = undefined;
    if (--this.running === 0 && this.idle !== undefined) this.idle();
  }
}

let decoded: RequestHead | undefined;
const capture: DecoderHandler = {
  onHead(head) {
    decoded = head;
  },
  onBody() {},
  onEnd() {},
};

function acceptError(errno: number): NodeJS.ErrnoException {
  const code = getSystemErrorName(-errno);
  const err = new Error(`accept failed: ${code}`) as NodeJS.ErrnoException;
  err.code = code;
  err.errno = errno;
  err.syscall = 'accept';
  return err;
}

/** The fd as a net.Socket (the addon lets go of it first); undefined if Node cannot open it (closed then). */
function adopt(addon: NativeAddon, fd: number): Socket | undefined {
  addon.release(fd);
  try {
    return new net.Socket({ fd, readable: true, writable: true });
  } catch {
    addon.close(fd);
    return undefined;
  }
}

/** A request on the native path: the same Exchange the adapters get from connection.ts, without a socket until
 * one is needed. */
class NativeExchange implements Exchange {
  status = 0;
  readonly modifier1: number;
  readonly modifier2: number;
  readonly vars: string[];
  readonly contentLength = 0;
  readonly multiprocess: boolean;
  readonly upgrade = false;
  readonly response: NativeResponse;
  /** The connection as a net.Socket, once the response outgrew one write (or someone asked for the socket). */
  conn: Socket | undefined;
  /** The fd is closed, or no longer this exchange's to write to (a timeout's answer, the peer's hang-up). */
  private answered = false;
  private finished = false;
  private readonly started: bigint;
  private token = -1;
  private timer: NodeJS.Timeout | undefined;
  private controller: AbortController | undefined;
  private stream: Readable | undefined;

  constructor(
    private readonly listener: NativeListener,
    readonly fd: number,
    head: RequestHead,
    readonly method: string,
    readonly uri: string | undefined,
  ) {
    const ctx = listener.ctx;
    this.modifier1 = head.modifier1;
    this.modifier2 = head.modifier2;
    this.vars = head.vars;
    this.multiprocess = ctx.multiprocess;
    this.response = new NativeResponse(this, method);
    this.started = ctx.accessLog ? process.hrtime.bigint() : 0n;
  }

  get log(): Logger {
    return this.listener.ctx.log;
  }

  get body(): Readable {
    if (this.stream === undefined) {
      this.stream = new Readable({ read() {} });
      this.stream.push(null);
    }
    return this.stream;
  }

  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }

  /** The raw connection: made a net.Socket on demand (what was collected of the response goes out first). */
  get socket(): Socket {
    return this.takeSocket() ?? this.deadSocket();
  }

  takeOver(): Buffer {
    throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: 'not an upgrade request' });
  }

  abort(reason: unknown): void {
    if (this.controller === undefined) this.controller = new AbortController();
    this.controller.abort(reason);
  }

  run(): void {
    const ctx = this.listener.ctx;
    if (ctx.tracker) this.token = ctx.tracker.start(this.method, this.uri ?? '');
    if (ctx.requestTimeout) this.timer = setTimeout(timeOut, ctx.requestTimeout, this);
    let result: Promise<void>;
    try {
      result = ctx.handler(this);
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      () => this.finish(),
      (err: unknown) => this.fail(err),
    );
  }

  /** The addon saw the peer hang up while the app runs. */
  peerClosed(): void {
    if (this.finished || this.answered) return;
    this.answered = true;
    this.log.debug('peer closed the connection before the response was complete');
    this.abort(new Error('the peer closed the connection'));
  }

  /** Whether any of the response has gone out or been collected (connection.ts responseStarted). */
  private responseStarted(): boolean {
    return this.response.headersSent || this.status !== 0 || this.response.size > 0;
  }

  private fail(err: unknown): void {
    const log = this.log;
    if (this.answered || this.conn?.destroyed) {
      log.debug({ err }, 'app failed after the peer closed the connection');
    } else if (!this.responseStarted()) {
      const status = statusOf(err);
      this.status = status;
      log.error({ err, code: codeOf(err), uri: this.uri }, 'app failed before the response started');
      this.response.replace(simpleResponse(status, status === 500 ? 'Internal Server Error\n' : `${(err as Error).message}\n`));
    } else {
      log.error({ err, code: codeOf(err), uri: this.uri }, 'app failed after the response started: connection cut');
      this.cut();
    }
    this.finish();
  }

  /** Closes the connection without (more of) an answer. */
  private cut(): void {
    if (this.conn !== undefined) this.conn.destroy();
    else if (!this.answered) this.listener.addon.close(this.fd);
    this.answered = true;
  }

  /** --request-timeout: a 504 if nothing of the response exists yet; the app is told through its signal. */
  timedOut(): void {
    this.timer = undefined;
    if (this.finished || this.answered || this.responseStarted()) return;
    const ctx = this.listener.ctx;
    const err = new UwsgiError('ERR_REQUEST_TIMEOUT', { seconds: ctx.requestTimeout! / 1000 });
    this.status = 504;
    this.log.warn({ code: err.code, method: this.method, uri: this.uri, timeoutMs: ctx.requestTimeout }, err.message);
    this.abort(err);
    if (this.conn !== undefined) {
      this.conn.end(simpleResponse(504, 'Gateway Timeout: the app did not answer in time\n'));
    } else {
      this.send(Buffer.from(simpleResponse(504, 'Gateway Timeout: the app did not answer in time\n'), 'utf8'));
    }
    this.answered = true;
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    const ctx = this.listener.ctx;
    const conn = this.conn;
    if (this.status === 0) this.status = this.response.status;
    const bytes = conn !== undefined ? conn.bytesWritten : this.answered ? 0 : this.response.size;
    if (ctx.tracker) ctx.tracker.end(this.token, this.status, bytes);
    if (ctx.accessLog) {
      ctx.log.info(
        {
          method: this.method,
          uri: this.uri,
          status: this.status,
          bytes,
          duration: Number(process.hrtime.bigint() - this.started) / 1e6,
          remote: getVar(this.vars, 'REMOTE_ADDR'),
        },
        'request',
      );
    }
    if (conn !== undefined) {
      if (!conn.destroyed) conn.end();
      // The listener counts this request until the socket closes, as the JavaScript path does.
      if (conn.closed) this.listener.ended(this);
      else conn.once('close', () => this.listener.ended(this));
      return;
    }
    if (!this.answered) {
      this.answered = true;
      this.send(this.response.take());
    }
    this.listener.ended(this);
  }

  /** One write of a whole response by the addon, which closes the connection; what does not fit in the peer's
   * buffer goes on through a net.Socket, under --send-timeout. */
  private send(bytes: Buffer): void {
    const addon = this.listener.addon;
    const written = addon.respond(this.fd, bytes);
    if (written < 0 || written === bytes.length) return;
    const socket = adopt(addon, this.fd);
    if (socket === undefined) return;
    this.watch(socket);
    socket.end(bytes.subarray(written));
  }

  private watch(socket: Socket): void {
    const ctx = this.listener.ctx;
    socket.on('error', (err: NodeJS.ErrnoException) => ctx.log.debug({ err, code: err.code }, 'connection error'));
    if (ctx.sendWatch === undefined) return;
    ctx.sendWatch.watch(socket, (pending) => {
      if (socket.destroyed) return;
      const err = new UwsgiError('ERR_SEND_TIMEOUT', { seconds: ctx.sendWatch!.seconds, pending });
      ctx.log.warn({ code: err.code, method: this.method, uri: this.uri, pending }, err.message);
      this.abort(err);
      socket.destroy();
    });
    socket.once('close', () => ctx.sendWatch?.unwatch(socket));
  }

  /** The connection as a net.Socket from here on, with what was collected written first; undefined once the
   * connection is gone. */
  takeSocket(): Socket | undefined {
    if (this.conn !== undefined) return this.conn;
    if (this.answered) return undefined;
    const socket = adopt(this.listener.addon, this.fd);
    if (socket === undefined) {
      this.answered = true;
      return undefined;
    }
    this.conn = socket;
    this.watch(socket);
    socket.on('close', () => {
      if (!this.finished) {
        this.log.debug('peer closed the connection before the response was complete');
        this.abort(new Error('the peer closed the connection'));
      }
    });
    // The peer sends nothing more on a body-less request: reading sees its hang-up.
    socket.resume();
    return socket;
  }

  private deadSocket(): Socket {
    const socket = new net.Socket();
    socket.destroy();
    return socket;
  }
}

function timeOut(ex: NativeExchange): void {
  ex.timedOut();
}

/** The ResponseSink of a native request: collects the head and body for one write; past COLLECT_LIMIT (or when the
 * app waits for a drain) the connection becomes a net.Socket and the rest streams with backpressure. */
class NativeResponse extends FramedResponse implements ResponseSink {
  /** Bytes collected (head included once the body starts or the response ends). */
  size = 0;
  private chunks: Buffer[] = [];

  constructor(
    private readonly ex: NativeExchange,
    method: string,
  ) {
    super(method);
  }

  write(chunk: Uint8Array | string): boolean {
    const length = this.bodyLength(chunk);
    if (length === 0) return true;
    const isString = typeof chunk === 'string';
    const conn = this.ex.conn;
    if (conn !== undefined) return (isString ? conn.write(chunk, 'utf8') : conn.write(chunk)) || conn.destroyed;
    const head = this.pendingHead;
    if (head !== undefined) {
      // Head and the first chunk in one buffer, as SocketResponse sends them.
      this.pendingHead = undefined;
      const buffer = Buffer.allocUnsafe(head.length + length);
      buffer.write(head, 0, head.length, 'latin1');
      if (isString) buffer.write(chunk, head.length, length, 'utf8');
      else buffer.set(chunk, head.length);
      this.chunks.push(buffer);
      this.size += buffer.length;
    } else {
      this.chunks.push(isString ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.size += length;
    }
    if (this.size <= COLLECT_LIMIT) return true;
    return this.spill();
  }

  /** The response outgrows one write: the connection becomes a net.Socket and what was collected goes out. */
  private spill(): boolean {
    const socket = this.ex.takeSocket();
    if (socket === undefined) return true;
    let ok = true;
    for (const chunk of this.chunks) ok = socket.write(chunk);
    this.chunks = [];
    return ok || socket.destroyed;
  }

  drain(): Promise<void> {
    const conn = this.ex.conn;
    return conn !== undefined && conn.writableNeedDrain && !conn.destroyed ? waitDrain(conn) : RESOLVED;
  }

  end(): void {
    const head = this.endHead();
    if (head === undefined) return;
    const conn = this.ex.conn;
    if (conn !== undefined) {
      conn.write(head, 'latin1');
    } else {
      this.chunks.push(Buffer.from(head, 'latin1'));
      this.size += head.length;
    }
  }

  /** What was collected, as one buffer for the addon's write. */
  take(): Buffer {
    const chunks = this.chunks;
    this.chunks = [];
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  /** An error answer instead of what the app collected (nothing of it was sent). */
  replace(text: string): void {
    this.chunks = [Buffer.from(text, 'utf8')];
    this.size = this.chunks[0]!.length;
    this.pendingHead = undefined;
  }
}

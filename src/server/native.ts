// The native accept path, JavaScript half: src/native/accept.c accepts on the uwsgi listening sockets, reads until
// the header and vars block are whole and calls onRequest once per request. A request whose body is absent or came
// whole with the head runs here without a net.Socket: wsgi and fetch answer through the response sink, the node
// interface through a light socket (light-socket.ts); the response is collected and written in one write by C,
// which closes the connection. Everything else (a body still to come, an Upgrade, a partial or malformed head, a
// response too big for one write) becomes a net.Socket on the fd and goes on through handleConnection, today's
// JavaScript path, with the bytes already read.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import net, { type Socket } from 'node:net';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { getSystemErrorName } from 'node:util';
import type { BlockList } from 'node:net';
import { UwsgiError } from '../errors.js';
import { formatSocketAddress, type SocketAddress } from '../address.js';
import { isAllowed } from './allow.js';
import type { ResponseSink } from '../exchange.js';
import { RequestDecoder, type DecoderHandler, type RequestHead } from '../protocol/decoder.js';
import { handleConnection, scanHead, scanned, type ConnectionContext } from './connection.js';
import { RequestLifecycle } from './lifecycle.js';
import { LightSocket, type LightSocketOwner } from './light-socket.js';
import { drained, FramedResponse, joinHead, writeChunk, RESOLVED } from './response.js';

export interface NativeAddon {
  /** Where C reads requests: onRequest's first `length` bytes are here until it returns (one buffer per env). */
  readonly readBuffer: Buffer;
  /** onRequest's `peer`: a TCP peer's address (for --allow-from); undefined on Unix sockets. */
  listen(
    fd: number,
    onRequest: (fd: number, length: number, complete: boolean, peer: string | undefined) => void,
    onAbort: (fd: number) => void,
    onError: (errno: number) => void,
  ): object;
  /** `serveQueue`: accept and serve what is queued first (absent: false). */
  stop(listener: object, serveQueue?: boolean): void;
  respond(fd: number, bytes: Buffer): number;
  release(fd: number): void;
  close(fd: number): void;
  bindUnix(path: string, backlog: number): number;
  bindTcp(host: string, port: number, backlog: number): number;
  /** An inherited listening socket made non-blocking, its queue set to `backlog`; throws if it is not one. */
  adoptFd(fd: number, backlog: number): 'unix' | 'tcp';
  /** A TCP listening socket stops completing handshakes (a filter drops SYNs): 0, or -errno (-EINVAL on a Unix
   * socket). Absent from an addon built before it. */
  refuseNew?(fd: number): number;
  /** Accepts until the queue is empty; the connections' fds. Absent from an addon built before it. */
  acceptAll?(fd: number): number[];
  /** A listening Unix socket's [queue, backlog] from sock_diag, or -errno. Absent from an addon built before it. */
  unixQueue?(fd: number): [number, number] | number;
}

export type NativeLoad = { addon: NativeAddon; file: string; reason?: undefined } | { addon?: undefined; file?: undefined; reason: string };

/** Where the addon may be, first found first tried, relative to the package root: the one built on this machine
 * (scripts/build-native.js at `npm run build` or at install), then the one the package carries for this
 * platform. `node.napi.node` is what `prebuildify --napi` writes and node-gyp-build loads for any Node version
 * (Node-API, no ABI tag). */
const ADDON_FILES = ['dist/native/accept.node', `prebuilds/linux-${process.arch}/node.napi.node`] as const;

// dist/server/native.js, or src/server/native.ts in the tests: the package root either way.
const ROOT = new URL('../../', import.meta.url);

let loaded: NativeLoad | undefined;

/** The addon, or why there is none. Loaded once. */
export function loadNative(): NativeLoad {
  if (loaded !== undefined) return loaded;
  if (process.platform !== 'linux') return (loaded = { reason: `no native accept on ${process.platform} yet` });
  const require = createRequire(import.meta.url);
  const failed: string[] = [];
  for (const file of ADDON_FILES) {
    const url = new URL(file, ROOT);
    if (!existsSync(url)) continue;
    try {
      const addon = require(fileURLToPath(url)) as NativeAddon;
      if (!Buffer.isBuffer(addon.readBuffer)) {
        failed.push(`${file} was built from an older accept.c (no readBuffer): rebuild it (npm run build)`);
        continue;
      }
      return (loaded = { addon, file });
    } catch (err) {
      failed.push(`${file} does not load: ${(err as Error).message}`);
    }
  }
  loaded = {
    reason:
      failed.length > 0
        ? `the native addon does not load (${failed.join('; ')})`
        : `no native addon: neither ${ADDON_FILES[0]} (built with a C compiler at npm run build or install) nor ${ADDON_FILES[1]} (prebuilt) is there`,
  };
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

  constructor(
    readonly addon: NativeAddon,
    fd: number,
    readonly ctx: ConnectionContext,
    private readonly track: (done: Promise<void>) => void,
    onAcceptError: (err: NodeJS.ErrnoException) => void,
    private readonly allowList: BlockList | undefined,
  ) {
    const readBuffer = addon.readBuffer;
    this.handle = addon.listen(
      fd,
      (conn, length, complete, peer) => {
        try {
          if (peer !== undefined && this.allowList !== undefined && !isAllowed(this.allowList, peer)) return this.refuse(conn, peer);
          this.onRequest(conn, readBuffer.subarray(0, length), complete);
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

  /** Stops accepting (`serveQueue`: after serving what is queued: the socket may close with this listener);
   * resolves when the requests it runs are done (handed-over ones are tracked by the server). */
  close(serveQueue = false): Promise<void> {
    this.addon.stop(this.handle, serveQueue);
    if (this.running === 0) return RESOLVED;
    return new Promise((resolve) => (this.idle = resolve));
  }

  /** --allow-from: a TCP peer it does not list is closed unserved (as allow.ts admitPeer does). */
  private refuse(fd: number, peer: string): void {
    const err = new UwsgiError('ERR_PEER_NOT_ALLOWED', { peer });
    this.ctx.log.warn({ code: err.code, peer }, err.message);
    this.addon.close(fd);
  }

  /** `bytes`: a view of the addon's read buffer, which the next read overwrites: what outlives this call is copied. */
  private onRequest(fd: number, bytes: Buffer, complete: boolean): void {
    if (!complete) return this.handOver(fd, bytes);
    const head = this.decode(bytes);
    if (head === undefined) return this.handOver(fd, bytes);
    let body: Buffer | undefined;
    if (head.contentLength > 0) {
      // A body that came whole with the head (nginx writes a small one with it) is served here from memory;
      // a longer one streams on the JavaScript path, with backpressure and --body-timeout.
      const headSize = 4 + bytes.readUInt16LE(1);
      if (bytes.length - headSize !== head.contentLength) return this.handOver(fd, bytes);
      body = Buffer.from(bytes.subarray(headSize));
    }
    scanHead(head);
    if (scanned.upgrade) return this.handOver(fd, bytes);
    const ex = new NativeExchange(this, fd, head, scanned.method, scanned.uri, body);
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

  /** The connection goes on as a net.Socket on today's JavaScript path, with (a copy of) the bytes already read. */
  handOver(fd: number, bytes: Buffer): void {
    const socket = adopt(this.addon, fd);
    if (socket !== undefined) this.track(handleConnection(socket, this.ctx, Buffer.from(bytes)));
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
class NativeExchange extends RequestLifecycle implements LightSocketOwner {
  readonly modifier1: number;
  readonly modifier2: number;
  readonly vars: string[];
  readonly contentLength: number;
  readonly upgrade = false;
  readonly response: NativeResponse;
  /** The connection as a net.Socket, once the response outgrew one write (or someone asked for the socket). */
  conn: Socket | undefined;
  /** The fd is closed, or no longer this exchange's to write to (a timeout's answer, the peer's hang-up). */
  private answered = false;
  private stream: Readable | undefined;
  /** The connection as the node interface sees it (light-socket.ts), once it asked. */
  private light: LightSocket | undefined;

  constructor(
    private readonly listener: NativeListener,
    readonly fd: number,
    head: RequestHead,
    method: string,
    uri: string | undefined,
    readonly bodyBytes: Buffer | undefined,
  ) {
    super(listener.ctx, method, uri);
    this.contentLength = head.contentLength;
    this.modifier1 = head.modifier1;
    this.modifier2 = head.modifier2;
    this.vars = head.vars;
    this.response = new NativeResponse(this, method);
  }

  get body(): Readable {
    if (this.stream === undefined) {
      this.stream = new Readable({ read() {} });
      if (this.bodyBytes !== undefined) this.stream.push(this.bodyBytes);
      this.stream.push(null);
    }
    return this.stream;
  }

  /** The connection for the node interface's ServerResponse: a light socket whose writes are collected for one
   * write, until the response outgrows it and the connection becomes a net.Socket. */
  get socket(): Socket {
    this.light ??= new LightSocket(this);
    return this.light as unknown as Socket;
  }

  collect(chunk: Buffer): void {
    this.response.collect(chunk);
  }

  /** The response is still being written and nothing of it has left: a stream (server-sent events, a long
   * response), not the one write of a finished answer. */
  streaming(): boolean {
    return !this.finished && !this.answered && this.conn === undefined;
  }

  endEarly(): void {
    if (this.answered || this.conn !== undefined) return;
    this.answered = true;
    this.send(this.response.take());
  }

  takeOver(): Buffer {
    throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: 'not an upgrade request' });
  }

  /** The addon saw the peer hang up while the app runs. */
  peerClosed(): void {
    if (this.finished || this.answered) return;
    this.answered = true;
    // C stopped watching but left the fd open (it is JavaScript's to close): closed now, or it leaks.
    this.listener.addon.close(this.fd);
    this.connectionClosed();
    this.light?.gone();
  }

  protected wroteAny(): boolean {
    return this.response.size > 0;
  }

  protected gone(): boolean {
    return this.answered || this.conn?.destroyed === true;
  }

  protected bytesOut(): number {
    const conn = this.conn;
    return conn !== undefined ? conn.bytesWritten : this.answered ? 0 : this.response.size;
  }

  protected writeAnswer(text: string): void {
    this.response.replace(text);
  }

  protected endWith(text: string): void {
    this.answered = true;
    if (this.conn !== undefined) {
      this.conn.end(text);
    } else {
      this.send(Buffer.from(text, 'utf8'));
      this.light?.gone();
    }
  }

  /** Closes the connection without (more of) an answer. */
  override cut(): void {
    if (this.conn !== undefined) this.conn.destroy();
    else if (!this.answered) this.listener.addon.close(this.fd);
    this.answered = true;
  }

  protected close(): void {
    const conn = this.conn;
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
    // The connection is closed as a net.Socket's would be: 'close' for whoever listens, its idle timer stopped
    // (an armed one would keep the exchange alive and fire after the response).
    if (this.light !== undefined) process.nextTick(lightGone, this.light);
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
    const ctx = this.ctx;
    socket.on('error', (err: NodeJS.ErrnoException) => ctx.log.debug({ err, code: err.code }, 'connection error'));
    if (ctx.sendWatch === undefined) return;
    this.watchSend(socket);
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
    this.light?.attach(socket);
    socket.on('close', () => this.connectionClosed());
    // The peer sends nothing more on a body-less request: reading sees its hang-up.
    socket.resume();
    return socket;
  }
}

function lightGone(light: LightSocket): void {
  light.gone();
}

/** Responses with bytes collected in this turn of the loop, checked once in its check phase (one setImmediate for
 * all of them). */
let unflushed: NativeResponse[] = [];
let flushing: NodeJS.Immediate | undefined;

function flushUnended(): void {
  flushing = undefined;
  const responses = unflushed;
  unflushed = [];
  for (const response of responses) response.flushIfOpen();
}

/** The ResponseSink of a native request: collects the head and body for one write; past COLLECT_LIMIT (or when the
 * app waits for a drain) the connection becomes a net.Socket and the rest streams with backpressure. */
class NativeResponse extends FramedResponse<NativeExchange> implements ResponseSink {
  /** Bytes collected (head included once the body starts or the response ends). */
  size = 0;
  private chunks: Buffer[] = [];

  protected send(chunk: Uint8Array | string, length: number): boolean {
    const conn = this.out.conn;
    if (conn !== undefined) return writeChunk(conn, chunk);
    const head = this.pendingHead;
    if (head === undefined) {
      return this.collect(typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    }
    // Head and the first chunk in one buffer, as SocketResponse sends them.
    this.pendingHead = undefined;
    return this.collect(joinHead(head, chunk, length));
  }

  /** Framed bytes for the one write (also those of the node interface's ServerResponse, which frames its own);
   * false when the connection became a net.Socket whose buffer is full. */
  collect(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    this.size += chunk.length;
    return this.size > COLLECT_LIMIT ? this.spill() : this.queue();
  }

  private queued = false;

  /** Collected bytes wait for the end of the app's turn: if the response has not ended by then (the app writes,
   * then awaits), they go out and the rest streams, so that a client sees what was written as it is written. */
  private queue(): true {
    if (!this.queued) {
      this.queued = true;
      unflushed.push(this);
      flushing ??= setImmediate(flushUnended);
    }
    return true;
  }

  flushIfOpen(): void {
    this.queued = false;
    if (this.chunks.length > 0 && this.out.streaming()) this.spill();
  }

  /** The response outgrows one write: the connection becomes a net.Socket and what was collected goes out. */
  private spill(): boolean {
    const socket = this.out.takeSocket();
    if (socket === undefined) {
      // The connection is gone (the peer left, a 504 answered): what the app still writes goes nowhere, as on
      // a destroyed net.Socket, rather than piling up until it is done.
      this.chunks = [];
      return true;
    }
    let ok = true;
    for (const chunk of this.chunks) ok = socket.write(chunk);
    this.chunks = [];
    return ok || socket.destroyed;
  }

  drain(): Promise<void> {
    const conn = this.out.conn;
    return conn !== undefined ? drained(conn) : RESOLVED;
  }

  end(): void {
    const head = this.endHead();
    if (head === undefined) return;
    const conn = this.out.conn;
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

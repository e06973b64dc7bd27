// The connection as the node interface sees it on the native accept path, without a net.Socket: what Node's
// http.ServerResponse and IncomingMessage use of their socket (write, cork, the peer's address, 'close', 'drain',
// setTimeout...) and what Express, Koa, Fastify and NestJS read of it. A response that fits in one write is
// collected by the native exchange and written by C; one that outgrows it (or waits for a drain) makes the
// connection a real net.Socket, and from then on this object forwards to it. A net.Socket costs its stream
// machinery per connection; this costs an EventEmitter (bench/README.md, "Figures the source cites").
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { SocketHooks } from '../exchange.js';
import { writableStateOf, type Peer } from '../node-internals.js';

/** What the light socket needs of its exchange (native.ts NativeExchange). */
export interface LightSocketOwner {
  /** Collects bytes of the response; past the one-write limit the exchange takes a net.Socket (attach()). */
  collect(chunk: Buffer): void;
  /** The connection is closed now, without (more of) an answer. */
  cut(): void;
  /** The response ends here (the app ended the socket rather than the response): what was collected goes out. */
  endEarly(): void;
}


type Callback = ((err?: Error | null) => void) | null | undefined;

const NO_ADDRESS = Object.freeze({});

export class LightSocket extends EventEmitter {
  /** Set by http.ServerResponse.assignSocket. */
  _httpMessage: unknown = null;
  /** Filled by the node adapter (exposePeer): net.Socket keeps the peer here too. */
  _peername: Peer | undefined = undefined;
  encrypted = false;
  /** The request this socket serves, told of 'close', 'drain' and 'timeout' before any listener (exchange.ts). */
  hooks: SocketHooks | undefined = undefined;
  readonly connecting = false;
  readonly pending = false;
  /** http's onFinish reads it (a socket that errored emits no 'finish'). */
  _hadError = false;
  destroyed = false;
  bytesWritten = 0;
  /** The real socket, once the response outgrew one write. */
  private real: Socket | undefined = undefined;
  private ended = false;
  private closed = false;
  private readonly state = { corked: 0 };
  private timer: NodeJS.Timeout | undefined = undefined;
  private timeoutMs = 0;

  constructor(private readonly owner: LightSocketOwner) {
    super();
  }

  get writable(): boolean {
    return this.real !== undefined ? this.real.writable : !this.destroyed && !this.ended;
  }

  get readable(): boolean {
    return this.real !== undefined ? this.real.readable : !this.destroyed;
  }

  get remoteAddress(): string | undefined {
    return this._peername?.address;
  }

  get remotePort(): number | undefined {
    return this._peername?.port;
  }

  get remoteFamily(): string | undefined {
    return this._peername?.family;
  }

  get localAddress(): string | undefined {
    return undefined;
  }

  get localPort(): number | undefined {
    return undefined;
  }

  get writableLength(): number {
    return this.real !== undefined ? this.real.writableLength : 0;
  }

  get writableNeedDrain(): boolean {
    return this.real !== undefined && this.real.writableNeedDrain;
  }

  get writableCorked(): number {
    return this.real !== undefined ? this.real.writableCorked : this.state.corked;
  }

  get writableHighWaterMark(): number {
    return this.real !== undefined ? this.real.writableHighWaterMark : 16384;
  }

  get writableEnded(): boolean {
    return this.real !== undefined ? this.real.writableEnded : this.ended;
  }

  /** http's OutgoingMessage.end sets `_writableState.corked = 1` before its final uncork. */
  get _writableState(): { corked: number } {
    return this.real !== undefined ? writableStateOf(this.real) : this.state;
  }

  write(data: string | Uint8Array, encoding?: BufferEncoding | Callback, callback?: Callback): boolean {
    if (typeof encoding === 'function') {
      callback = encoding;
      encoding = undefined;
    }
    if (this.real !== undefined) return this.real.write(data, encoding ?? 'utf8', callback ?? undefined);
    if (this.destroyed || this.ended) {
      if (typeof callback === 'function') process.nextTick(callback, new Error('write after the connection ended'));
      return false;
    }
    // ServerResponse.end() writes '' with its finish callback after the head and body: nothing to collect.
    if (data.length === 0) {
      if (typeof callback === 'function') process.nextTick(callback, null);
      return true;
    }
    const chunk = typeof data === 'string' ? Buffer.from(data, encoding ?? 'utf8') : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    this.bytesWritten += chunk.length;
    if (this.timer !== undefined) this.timer.refresh();
    this.owner.collect(chunk);
    if (typeof callback === 'function') process.nextTick(callback, null);
    // collect() may have made the connection a net.Socket: its buffer says whether to wait for 'drain'.
    return this.real === undefined || !(this.real as Socket).writableNeedDrain;
  }

  /** The exchange made the connection a net.Socket: from now on everything goes to it. */
  attach(socket: Socket): void {
    this.real = socket;
    this.clearTimer();
    // Every 'timeout' of the socket, from a setTimeout made before or after this (a callback given to
    // socket.setTimeout would hear only the first, and none set later).
    socket.on('timeout', () => this.timedOut());
    if (this.timeoutMs > 0) socket.setTimeout(this.timeoutMs);
    socket.on('drain', () => {
      this.hooks?.drain();
      this.emit('drain');
    });
    socket.on('error', (err) => {
      this._hadError = true;
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    socket.once('close', (hadError: boolean) => this.gone(hadError));
  }

  /** The connection is gone (the peer hung up, a timeout answered, or it was cut): 'close', as a socket says. */
  gone(hadError = false): void {
    if (this.closed) return;
    this.closed = true;
    this.destroyed = true;
    this.clearTimer();
    this.hooks?.closed();
    this.emit('close', hadError);
  }

  cork(): void {
    if (this.real !== undefined) this.real.cork();
    else this.state.corked++;
  }

  uncork(): void {
    if (this.real !== undefined) this.real.uncork();
    else if (this.state.corked > 0) this.state.corked--;
  }

  end(data?: string | Uint8Array | (() => void), encoding?: BufferEncoding | (() => void), callback?: () => void): this {
    if (this.real !== undefined) {
      this.real.end(data as string, encoding as BufferEncoding, callback);
      return this;
    }
    if (typeof data === 'function') callback = data;
    else if (typeof encoding === 'function') callback = encoding;
    if (data !== undefined && typeof data !== 'function') this.write(data, typeof encoding === 'string' ? encoding : undefined);
    if (this.ended || this.destroyed) return this;
    this.ended = true;
    this.owner.endEarly();
    if (callback !== undefined) process.nextTick(callback);
    process.nextTick(() => this.gone());
    return this;
  }

  destroySoon(): void {
    this.end();
  }

  destroy(err?: Error): this {
    if (this.real !== undefined) {
      this.real.destroy(err);
      return this;
    }
    if (this.destroyed) return this;
    this.destroyed = true;
    this.clearTimer();
    // A response the app ended went to the kernel on a net.Socket (end() uncorks it) before a destroy in the
    // same tick (`res.end(); req.destroy()` on a body nobody read): it goes out here too. Anything less is cut.
    if ((this._httpMessage as { writableEnded?: boolean } | null)?.writableEnded === true) this.owner.endEarly();
    else this.owner.cut();
    process.nextTick(() => {
      if (err !== undefined && this.listenerCount('error') > 0) this.emit('error', err);
      this.gone(err !== undefined);
    });
    return this;
  }

  /** As net.Socket: 'timeout' after `ms` without a write (the connection stays open; 0 turns it off). */
  setTimeout(ms: number, callback?: () => void): this {
    if (callback !== undefined) this.once('timeout', callback);
    this.timeoutMs = ms;
    if (this.real !== undefined) {
      this.real.setTimeout(ms);
      return this;
    }
    this.clearTimer();
    if (ms > 0 && !this.destroyed) {
      this.timer = setTimeout(() => this.timedOut(), ms);
      this.timer.unref();
    }
    return this;
  }

  /** The request's own hook first, as http.Server's socket listener comes before any the app adds. */
  private timedOut(): void {
    this.hooks?.timeout();
    this.emit('timeout');
  }

  private clearTimer(): void {
    if (this.timer === undefined) return;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  // net.Socket's calls that mean nothing without a socket of its own: each returns the light socket (set below).
  declare setNoDelay: () => this;
  declare setKeepAlive: () => this;
  declare ref: () => this;
  declare unref: () => this;
  declare pause: () => this;
  declare resume: () => this;

  address(): object {
    return this.real !== undefined ? this.real.address() : NO_ADDRESS;
  }
}

function returnThis<T>(this: T): T {
  return this;
}
for (const name of ['setNoDelay', 'setKeepAlive', 'ref', 'unref', 'pause', 'resume'] as const) {
  Object.defineProperty(LightSocket.prototype, name, { value: returnThis, writable: true, configurable: true });
}

// One request's lifecycle, whichever path brought it (the native accept path, a uwsgi connection, --http): the
// in-flight tracker, --request-timeout (504), --body-timeout (408), --send-timeout, the answer to an app that
// fails (500 before its response started, the connection cut after), the access log line and the end of the
// connection. The exchange classes extend it and keep only how bytes arrive and leave; the fields and methods
// live on the exchange itself, so a request costs no object or closure more than its exchange.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { codeOf, statusOf, UwsgiError } from '../errors.js';
import type { Exchange, ExchangeHandler, ResponseSink } from '../exchange.js';
import { getVar } from '../protocol/vars.js';
import { SendWatch, type StallListener } from './send-watch.js';

/** The settings a request's lifecycle reads; every entry path (server.ts, http.ts) builds one per listener. */
export interface LifecycleContext {
  readonly handler: ExchangeHandler;
  readonly log: Logger;
  readonly accessLog: boolean;
  readonly multiprocess: boolean;
  /** ms before a request whose response has not started gets a 504; 0 disables. */
  readonly requestTimeout?: number;
  /** ms of silence allowed between two pieces of the body; 0 disables. */
  readonly bodyTimeout?: number;
  /** --send-timeout: the server's watch over stalled responses (send-watch.ts); undefined disables. */
  readonly sendWatch?: SendWatch | undefined;
  /** Told when each request starts and ends (a worker's request count, in-flight table and heartbeat). */
  readonly tracker?: RequestTracker | undefined;
  /** Added to the access log line (`http` for the --http listener). */
  readonly protocol?: string | undefined;
}

export interface RequestTracker {
  start(method: string, uri: string): number;
  /** `status`: what the peer was answered (0: nothing); `bytes`: written to the peer. */
  end(token: number, status?: number, bytes?: number): void;
}

/** What a listener's settings say about its requests' lifecycle. */
export interface LifecycleOptions {
  readonly handler: ExchangeHandler;
  readonly log: Logger;
  readonly accessLog?: boolean | undefined;
  readonly multiprocess?: boolean | undefined;
  readonly requestTimeout?: number | undefined;
  readonly bodyTimeout?: number | undefined;
  readonly sendTimeout?: number | undefined;
  readonly tracker?: RequestTracker | undefined;
}

/** Built once per listener: a SendWatch of its own when --send-timeout is set. */
export function lifecycleContext(options: LifecycleOptions, protocol?: string): LifecycleContext {
  return {
    handler: options.handler,
    log: options.log,
    accessLog: options.accessLog ?? false,
    multiprocess: options.multiprocess ?? false,
    requestTimeout: options.requestTimeout ?? 0,
    bodyTimeout: options.bodyTimeout ?? 0,
    sendWatch: options.sendTimeout ? new SendWatch(options.sendTimeout) : undefined,
    tracker: options.tracker,
    protocol,
  };
}

const noop = (): void => {};

export abstract class RequestLifecycle implements Exchange, StallListener {
  status = 0;
  /** The app's promise settled (or the request was refused): counted, logged, and its connection ending. */
  finished = false;
  /** The connection was handed to the app (Upgrade): the exchange ends when it closes. */
  takenOver = false;
  private token = -1;
  /** --request-timeout, until the app settles. */
  private timer: NodeJS.Timeout | undefined;
  /** --body-timeout, from the head until the body is complete. */
  private bodyTimer: NodeJS.Timeout | undefined;
  /** Body bytes received (for ERR_BODY_TIMEOUT's message). */
  private received = 0;
  private controller: AbortController | undefined;
  private readonly started: bigint;

  abstract readonly modifier1: number;
  abstract readonly modifier2: number;
  abstract readonly vars: string[];
  abstract readonly contentLength: number;
  abstract readonly body: Readable;
  abstract readonly socket: Socket;
  abstract readonly upgrade: boolean;
  abstract readonly response: ResponseSink & { readonly status: number };
  abstract takeOver(): Buffer;

  constructor(
    readonly ctx: LifecycleContext,
    readonly method: string,
    /** REQUEST_URI, else PATH_INFO (for logs and the in-flight table). */
    readonly uri: string | undefined,
  ) {
    this.started = ctx.accessLog ? process.hrtime.bigint() : 0n;
  }

  get log(): Logger {
    return this.ctx.log;
  }

  get multiprocess(): boolean {
    return this.ctx.multiprocess;
  }

  // Made on first use: most requests never look at it.
  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    this.controller ??= new AbortController();
    this.controller.abort(reason);
  }

  /** The body stream if the app may be reading it (the peer's hang-up and --body-timeout error it). */
  get bodyIfMade(): Readable | undefined {
    return undefined;
  }

  // What each path does with its bytes.
  /** Whether bytes of the response went out or wait to (beyond the sink's headersSent and the status). */
  protected abstract wroteAny(): boolean;
  /** The connection is closed, or no longer this request's to write to. */
  protected abstract gone(): boolean;
  /** Bytes written to the peer, for the tracker and the access log. */
  protected abstract bytesOut(): number;
  /** A whole answer instead of the app's (nothing of it went out); the connection ends at close(). */
  protected abstract writeAnswer(text: string): void;
  /** A whole answer now, then the end of the connection; `then` once it is written. */
  protected abstract endWith(text: string, then?: () => void): void;
  /** Closes the connection without (more of) an answer. */
  protected abstract cut(): void;
  /** The app is done: end the connection (reading what is left of the body first where there is one). */
  protected abstract close(): void;

  /** Counts the request in, arms --request-timeout and runs the app. */
  run(): void {
    const ctx = this.ctx;
    if (ctx.tracker !== undefined) this.token = ctx.tracker.start(this.method, this.uri ?? '');
    if (ctx.requestTimeout) this.timer = setTimeout(requestTimedOut, ctx.requestTimeout, this);
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

  /** Whether any of the response has gone out (or been queued): then no error answer can replace it. */
  responseStarted(): boolean {
    return this.response.headersSent || this.status !== 0 || this.wroteAny();
  }

  /** The app failed: the client gets the error's status if nothing of the response has gone out, else the
   * connection is cut (a half-sent response must not look complete). The cause is logged either way. */
  private fail(err: unknown): void {
    const log = this.ctx.log;
    if (this.gone()) {
      log.debug({ err }, 'app failed after the peer closed the connection');
    } else if (!this.responseStarted()) {
      const status = statusOf(err);
      this.status = status;
      log.error({ err, code: codeOf(err), uri: this.uri }, 'app failed before the response started');
      this.writeAnswer(simpleResponse(status, status === 500 ? 'Internal Server Error\n' : `${(err as Error).message}\n`));
    } else {
      log.error({ err, code: codeOf(err), uri: this.uri }, 'app failed after the response started: connection cut');
      this.cut();
    }
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.status === 0) this.status = this.response.status;
    const bytes = this.bytesOut();
    const tracker = this.ctx.tracker;
    if (tracker !== undefined) tracker.end(this.token, this.status, bytes);
    if (this.ctx.accessLog) this.logRequest(bytes);
    this.close();
  }

  /** Answered before the app ran (--http: a 413, or a 408 while a chunked body is read whole): logged, not counted
   * in the tracker (it never started). */
  refused(status: number): void {
    this.finished = true;
    this.status = status;
    if (this.ctx.accessLog) this.logRequest(this.bytesOut());
  }

  private logRequest(bytes: number): void {
    this.ctx.log.info(
      {
        method: this.method,
        uri: this.uri,
        status: this.status,
        bytes,
        duration: Number(process.hrtime.bigint() - this.started) / 1e6,
        remote: this.remote(),
        protocol: this.ctx.protocol,
      },
      'request',
    );
  }

  protected remote(): string | undefined {
    return getVar(this.vars, 'REMOTE_ADDR');
  }

  /** --request-timeout: a 504 if nothing of the response has gone out yet; the app is told through its signal. */
  timedOut(): void {
    this.timer = undefined;
    if (this.finished || this.gone() || this.responseStarted()) return;
    const timeoutMs = this.ctx.requestTimeout!;
    const err = new UwsgiError('ERR_REQUEST_TIMEOUT', { seconds: timeoutMs / 1000 });
    this.status = 504;
    this.ctx.log.warn({ code: err.code, method: this.method, uri: this.uri, timeoutMs }, err.message);
    this.abort(err);
    this.endWith(simpleResponse(504, 'Gateway Timeout: the app did not answer in time\n'));
  }

  /** The body starts arriving: --body-timeout watches the silence between its pieces. */
  bodyStarted(): void {
    const ms = this.ctx.bodyTimeout;
    if (ms) this.bodyTimer = setTimeout(bodyTimedOut, ms, this);
  }

  bodyData(length: number): void {
    this.received += length;
    this.bodyTimer?.refresh();
  }

  bodyEnded(): void {
    if (this.bodyTimer !== undefined) clearTimeout(this.bodyTimer);
    this.bodyTimer = undefined;
  }

  /** --body-timeout: the app's body stream errors; a 408 if nothing of the response has gone out yet. */
  bodyTimedOut(): void {
    this.bodyTimer = undefined;
    if (this.gone()) return;
    const err = new UwsgiError('ERR_BODY_TIMEOUT', {
      seconds: this.ctx.bodyTimeout! / 1000,
      received: this.received,
      expected: this.contentLength || 'unknown',
    });
    this.ctx.log.warn({ code: err.code, method: this.method, uri: this.uri }, err.message);
    const started = this.responseStarted() || this.finished;
    this.abort(err);
    if (!started) {
      this.status = 408;
      // The body errors once the 408 is out: a node app's IncomingMessage destroys the socket with it, which
      // would cut the answer short.
      this.endWith(simpleResponse(408, 'Request Timeout: the request body stalled\n'), () => this.bodyIfMade?.destroy(err));
    } else {
      this.bodyIfMade?.destroy(err);
      this.cut();
    }
  }

  /** Watches `socket` under --send-timeout until it closes or is handed over. */
  watchSend(socket: Socket): void {
    this.ctx.sendWatch?.watch(socket, this);
  }

  /** --send-timeout: the peer has taken none of the waiting response bytes for that long (send-watch.ts): the
   * connection is closed and the app told through its signal. */
  sendStalled(socket: Socket, pending: number): void {
    if (socket.destroyed) return;
    const sendWatch = this.ctx.sendWatch!;
    const err = new UwsgiError('ERR_SEND_TIMEOUT', { seconds: sendWatch.seconds, pending });
    this.ctx.log.warn({ code: err.code, method: this.method, uri: this.uri, pending }, err.message);
    this.abort(err);
    socket.destroy();
  }

  /** Upgrade: the app owns `socket` from here; the server stops timing it. */
  protected handOver(socket: Socket): void {
    if (this.takenOver) throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: 'the connection was already taken over' });
    this.takenOver = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.ctx.sendWatch?.unwatch(socket);
    this.status = 101;
  }

  /** The connection closed: timers stop; before the response was complete, the app is told through its signal
   * and a body it still reads errors. */
  connectionClosed(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.bodyEnded();
    if (this.finished || this.takenOver) return;
    this.ctx.log.debug('peer closed the connection before the response was complete');
    this.abort(new Error('the peer closed the connection'));
    const body = this.bodyIfMade;
    if (body !== undefined && !body.readableEnded) body.destroy();
  }
}

function requestTimedOut(lifecycle: RequestLifecycle): void {
  lifecycle.timedOut();
}

function bodyTimedOut(lifecycle: RequestLifecycle): void {
  lifecycle.bodyTimedOut();
}

/** The lifecycle of a request served over a net.Socket (a uwsgi connection, --http): whatever writes the
 * response, every byte passes through the socket. */
export abstract class SocketLifecycle extends RequestLifecycle {
  /** The body stream if the app left part of it unread (it is read to its end before the connection ends). */
  protected abstract unreadBody(): Readable | undefined;

  /** The send watch lets go of the socket with the request (a no-op where it never watched it). */
  override connectionClosed(): void {
    this.ctx.sendWatch?.unwatch(this.socket);
    super.connectionClosed();
  }

  protected wroteAny(): boolean {
    const socket = this.socket;
    return socket.bytesWritten > 0 || socket.writableLength > 0;
  }

  protected gone(): boolean {
    return this.socket.destroyed;
  }

  protected bytesOut(): number {
    return this.socket.bytesWritten;
  }

  protected writeAnswer(text: string): void {
    this.socket.write(text);
  }

  protected endWith(text: string, then?: () => void): void {
    this.socket.end(text, then);
  }

  protected cut(): void {
    this.socket.destroy();
  }

  protected close(): void {
    const socket = this.socket;
    if (socket.destroyed || this.takenOver) return;
    // Apache answers 503 when the backend closes before reading the whole body, and a client would read a reset
    // instead of the response: read the rest, then close.
    const body = this.unreadBody();
    if (body === undefined) return void socket.end();
    body.on('error', noop);
    body.once('end', () => socket.end());
    body.resume();
  }
}

/** A minimal complete response for errors found before any app ran. */
export function simpleResponse(status: number, text: string): string {
  const reason = STATUS_CODES[status] ?? 'Error';
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`
  );
}

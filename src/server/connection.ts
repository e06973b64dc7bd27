// The per-connection glue: socket bytes -> decoder -> exchange -> adapter -> response -> close. One request per
// connection (nginx has no keep-alive towards uwsgi upstreams). A worker process hosts it as is.
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { codeOf, isUwsgiError, statusOf, UwsgiError } from '../errors.js';
import type { Exchange, ExchangeHandler } from '../exchange.js';
import { RequestDecoder, type DecoderLimits, type RequestHead } from '../protocol/decoder.js';
import { getVar } from '../protocol/vars.js';
import { SocketResponse } from './response.js';
import type { SendWatch } from './send-watch.js';

export interface ConnectionContext {
  readonly handler: ExchangeHandler;
  readonly log: Logger;
  readonly limits: DecoderLimits;
  readonly accessLog: boolean;
  readonly multiprocess: boolean;
  /** ms before a request whose response has not started gets a 504; 0 disables. */
  readonly requestTimeout?: number;
  /** ms a peer has to complete the header and vars block; 0 disables. */
  readonly headerTimeout?: number;
  /** ms of silence allowed between two pieces of the body; 0 disables. */
  readonly bodyTimeout?: number;
  /** --send-timeout: the server's watch over stalled responses (send-watch.ts); undefined disables. */
  readonly sendWatch?: SendWatch;
  /** Told when each request starts and ends (a worker's request count, in-flight table and heartbeat). */
  readonly tracker?: RequestTracker;
}

export interface RequestTracker {
  start(method: string, uri: string): number;
  /** `status`: what the peer was answered (0: nothing); `bytes`: written to the peer. */
  end(token: number, status?: number, bytes?: number): void;
}

/** The request body as the app reads it: pauses the socket when the app does not keep up. */
class BodyStream extends Readable {
  constructor(private readonly socket: Socket) {
    super();
  }

  override _read(): void {
    if (!this.socket.destroyed) this.socket.resume();
  }
}

class ConnectionExchange implements Exchange {
  status = 0;
  readonly response: SocketResponse;
  /** Made on first use when there is no body (most requests): a stream per request that nobody reads is a
   * measurable share of a small request's cost (bench/README.md). */
  private stream: BodyStream | undefined;
  private controller: AbortController | undefined;
  /** Bytes that came after the head of an Upgrade request, until takeOver(). */
  early: Buffer[] | undefined;
  takenOver = false;
  /** Set by the connection: detaches its listeners and timers from the socket. */
  detach: () => void = () => {};

  constructor(
    readonly socket: Socket,
    head: RequestHead,
    readonly log: Logger,
    readonly multiprocess: boolean,
    readonly method: string,
    /** REQUEST_URI, else PATH_INFO (for logs and the in-flight table), found once at the head. */
    readonly uri: string | undefined,
    readonly upgrade: boolean,
  ) {
    this.modifier1 = head.modifier1;
    this.modifier2 = head.modifier2;
    this.vars = head.vars;
    this.contentLength = head.contentLength;
    if (this.contentLength > 0) this.stream = new BodyStream(socket);
    this.response = new SocketResponse(socket, method);
  }

  readonly modifier1: number;
  readonly modifier2: number;
  readonly vars: string[];
  readonly contentLength: number;

  get body(): BodyStream {
    if (this.stream === undefined) {
      this.stream = new BodyStream(this.socket);
      this.stream.push(null);
    }
    return this.stream;
  }

  /** The body stream if it exists (reading, ending or destroying an unmade empty body is a no-op). */
  get bodyIfMade(): BodyStream | undefined {
    return this.stream;
  }

  // Made on first use: most requests never look at it.
  get signal(): AbortSignal {
    this.controller ??= new AbortController();
    return this.controller.signal;
  }

  takeOver(): Buffer {
    if (this.takenOver) throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: 'the connection was already taken over' });
    this.takenOver = true;
    this.detach();
    const early = this.early ?? [];
    this.early = undefined;
    return early.length === 1 ? early[0]! : Buffer.concat(early);
  }

  abort(reason: unknown): void {
    this.controller?.abort(reason);
    if (this.controller === undefined) this.controller = abortedController(reason);
  }
}

function abortedController(reason: unknown): AbortController {
  const controller = new AbortController();
  controller.abort(reason);
  return controller;
}

/** What the server reads from a request's vars before the app runs: scanHead's result (one object, reused). */
export const scanned = { method: '', uri: undefined as string | undefined, upgrade: false };

/** Method and URI in one pass over the vars (the first of each, as nginx sends one), and whether the request
 * asks for a protocol switch; the result is in `scanned` until the next call. */
export function scanHead(head: RequestHead): void {
  let method = '';
  let uri: string | undefined;
  let upgrade = false;
  let connection = '';
  const vars = head.vars;
  for (let i = 0; i < vars.length; i += 2) {
    const name = vars[i]!;
    if (name.length === 14 && method === '' && name === 'REQUEST_METHOD') method = vars[i + 1]!;
    else if (name.length === 11 && uri === undefined && name === 'REQUEST_URI') uri = vars[i + 1]!;
    else if (name.length === 12 && name === 'HTTP_UPGRADE') upgrade = true;
    else if (name.length === 15 && name === 'HTTP_CONNECTION') connection = vars[i + 1]!;
  }
  scanned.method = method === '' ? 'GET' : method;
  scanned.uri = uri ?? getVar(vars, 'PATH_INFO');
  // As Node's parser: an Upgrade header and "upgrade" among the Connection tokens. One with a body is not
  // a protocol switch this server can hand over (WebSocket has none).
  scanned.upgrade = upgrade && head.contentLength === 0 && UPGRADE_TOKEN.test(connection);
}

/** Serves one connection; resolves once it is closed. Never rejects: every failure is logged and answered.
 * `initial`: bytes already read from the socket (the native accept path hands a connection over with them). */
export function handleConnection(socket: Socket, ctx: ConnectionContext, initial?: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const started = ctx.accessLog ? process.hrtime.bigint() : 0n;
    let exchange: ConnectionExchange | undefined;
    let responseDone = false;
    let token = -1;
    let timer: NodeJS.Timeout | undefined;
    // One timer for the phase the connection is in: the header, then the body's idle time.
    let phaseTimer: NodeJS.Timeout | undefined = ctx.headerTimeout ? setTimeout(headerTimedOut, ctx.headerTimeout) : undefined;

    const decoder = new RequestDecoder(
      {
        onHead(head) {
          scanHead(head);
          const { method, uri, upgrade } = scanned;
          const ex = new ConnectionExchange(socket, head, ctx.log, ctx.multiprocess, method, uri, upgrade);
          exchange = ex;
          if (phaseTimer !== undefined) clearTimeout(phaseTimer);
          phaseTimer = head.contentLength > 0 && ctx.bodyTimeout ? setTimeout(bodyTimedOut, ctx.bodyTimeout) : undefined;
          if (ctx.tracker) token = ctx.tracker.start(method, uri ?? '');
          if (ctx.requestTimeout) timer = setTimeout(timeOut, ctx.requestTimeout, ex);
          ctx.sendWatch?.watch(socket, sendTimedOut);
          if (upgrade) {
            // The app runs once this chunk is decoded, so that tunnel bytes that came with the head are in `early`.
            ex.early = [];
            ex.detach = () => detach(ex);
            queueMicrotask(() => {
              run(ex);
              // The app's upgrade handler takes the connection over at once, or not at all: if not, stop keeping
              // what the peer sends after the request.
              if (!ex.takenOver) ex.early = undefined;
            });
          } else {
            run(ex);
          }
        },
        onBody(chunk) {
          phaseTimer?.refresh();
          if (!exchange!.body.push(chunk)) socket.pause();
        },
        onEnd() {
          if (phaseTimer !== undefined) clearTimeout(phaseTimer);
          phaseTimer = undefined;
          exchange!.bodyIfMade?.push(null);
        },
        onExcess(chunk) {
          exchange?.early?.push(Buffer.from(chunk));
        },
      },
      ctx.limits,
    );

    const onData = (chunk: Buffer): void => {
      try {
        decoder.execute(chunk);
      } catch (err) {
        rejectPacket(err);
      }
    };
    socket.on('data', onData);
    const preRead = initial?.length ?? 0;

    socket.on('end', () => {
      // A rejected packet was answered and logged once; the peer's close after it is no second incident.
      if (rejected) return;
      try {
        decoder.finish();
      } catch (err) {
        if (exchange === undefined) {
          // A peer that connects and hangs up (a health check, a port scan) is not worth a warning.
          const level = isUwsgiError(err, 'ERR_UWSGI_HEAD_INCOMPLETE') && socket.bytesRead + preRead === 0 ? 'debug' : 'warn';
          ctx.log[level]({ err, code: (err as UwsgiError).code }, 'incomplete uwsgi request');
          socket.destroy();
        } else {
          ctx.log.debug({ err, code: (err as UwsgiError).code }, 'request body ended early');
          exchange.bodyIfMade?.destroy(err as Error);
        }
      }
    });

    socket.on('error', (err: NodeJS.ErrnoException) => {
      // Our own errors (a timeout that destroyed the socket with its cause) are logged where they happen.
      if (isUwsgiError(err)) return;
      ctx.log.debug({ err, code: err.code }, 'connection error');
    });

    socket.on('close', () => {
      ctx.sendWatch?.unwatch(socket);
      if (phaseTimer !== undefined) clearTimeout(phaseTimer);
      if (timer !== undefined) clearTimeout(timer);
      if (exchange !== undefined && !responseDone && !exchange.takenOver) {
        ctx.log.debug('peer closed the connection before the response was complete');
        exchange.abort(new Error('the peer closed the connection'));
        if (exchange.bodyIfMade && !exchange.bodyIfMade.readableEnded) exchange.bodyIfMade.destroy();
      }
      resolve();
    });

    let rejected = false;
    function rejectPacket(err: unknown): void {
      rejected = true;
      socket.off('data', onData);
      const code = isUwsgiError(err) ? err.code : 'ERR_UWSGI_MALFORMED_VARS';
      const message = err instanceof Error ? err.message : String(err);
      ctx.log.warn({ code, peer: peerOf(socket) }, message);
      if (exchange === undefined) {
        const status = statusOf(err);
        socket.end(simpleResponse(status, `${message}\n`));
      } else {
        // A malformed body cannot happen (the decoder only counts it); keep the request's own outcome.
        exchange.bodyIfMade?.destroy(err as Error);
      }
    }

    function run(ex: ConnectionExchange): void {
      let result: Promise<void>;
      try {
        result = ctx.handler(ex);
      } catch (err) {
        result = Promise.reject(err);
      }
      result.then(
        () => finish(ex),
        (err: unknown) => {
          answerAppFailure(ex, err, ctx.log, ex.uri);
          finish(ex);
        },
      );
    }

    /** Upgrade: the app owns the socket from here; only 'close' (which ends the exchange) stays ours. */
    function detach(ex: ConnectionExchange): void {
      socket.off('data', onData);
      // Out of flowing mode, as Node's http server leaves an upgraded socket: what the peer sends before the app
      // listens waits in the socket's buffer instead of going to nobody.
      (socket as unknown as { readableFlowing: boolean | null }).readableFlowing = null;
      if (timer !== undefined) clearTimeout(timer);
      timer = undefined;
      ctx.sendWatch?.unwatch(socket);
      ex.status = 101;
    }

    /** --send-timeout: the peer has taken none of the waiting response bytes for that long (send-watch.ts): the
     * connection is closed and the app told through its signal. */
    function sendTimedOut(pending: number): void {
      if (socket.destroyed) return;
      const err = new UwsgiError('ERR_SEND_TIMEOUT', { seconds: ctx.sendWatch!.seconds, pending });
      ctx.log.warn({ code: err.code, method: exchange?.method, uri: exchange?.uri, pending }, err.message);
      exchange?.abort(err);
      socket.destroy();
    }

    /** --header-timeout: no request exists yet, so nothing to answer; the peer is logged and let go. */
    function headerTimedOut(): void {
      phaseTimer = undefined;
      if (exchange !== undefined || socket.destroyed) return;
      const received = socket.bytesRead + preRead;
      const err = new UwsgiError('ERR_HEADER_TIMEOUT', { seconds: ctx.headerTimeout! / 1000, received });
      ctx.log.warn({ code: err.code, peer: peerOf(socket), received }, err.message);
      socket.destroy();
    }

    /** --body-timeout: the app's body stream errors; a 408 if nothing of the response has gone out yet. */
    function bodyTimedOut(): void {
      phaseTimer = undefined;
      const ex = exchange;
      if (ex === undefined || decoder.done || socket.destroyed) return;
      const expected = ex.contentLength;
      const err = new UwsgiError('ERR_BODY_TIMEOUT', {
        seconds: ctx.bodyTimeout! / 1000,
        received: expected - decoder.bodyRemainingBytes,
        expected,
      });
      ctx.log.warn({ code: err.code, method: ex.method, uri: ex.uri }, err.message);
      const started = responseStarted(ex) || responseDone;
      ex.abort(err);
      if (!started) {
        ex.status = 408;
        // The body errors once the 408 is out: a node app's IncomingMessage destroys the socket with it, which
        // would cut the answer short.
        socket.end(simpleResponse(408, 'Request Timeout: the request body stalled\n'), () => ex.bodyIfMade?.destroy(err));
      } else {
        ex.bodyIfMade?.destroy(err);
        socket.destroy();
      }
    }

    /** --request-timeout: a 504 if nothing of the response has gone out yet; the app is told through its signal. */
    function timeOut(ex: ConnectionExchange): void {
      timer = undefined;
      if (!responseDone) answerRequestTimeout(ex, ctx.requestTimeout!, ctx.log, ex.method, ex.uri);
    }

    function finish(ex: ConnectionExchange): void {
      if (responseDone) return;
      responseDone = true;
      if (timer !== undefined) clearTimeout(timer);
      if (ex.status === 0) ex.status = ex.response.status;
      if (ctx.tracker) ctx.tracker.end(token, ex.status, socket.bytesWritten);
      if (ctx.accessLog) {
        const remote = getVar(ex.vars, 'REMOTE_ADDR');
        ctx.log.info(
          {
            method: ex.method,
            uri: ex.uri,
            status: ex.status,
            bytes: socket.bytesWritten,
            duration: Number(process.hrtime.bigint() - started) / 1e6,
            remote,
          },
          'request',
        );
      }
      if (socket.destroyed) return;
      // Apache answers 503 when the backend closes before reading the whole body: read the rest, then close.
      if (!decoder.done) {
        ex.body.on('error', () => {});
        ex.body.resume();
        ex.body.once('end', () => socket.end());
        socket.resume();
      } else {
        socket.end();
      }
    }

    // Bytes read before the socket was made (the native accept path's hand-over), once everything is set up.
    if (preRead > 0) onData(initial!);
  });
}

const UPGRADE_TOKEN = /(?:^|,)\s*upgrade\s*(?:,|$)/i;

/** An exchange as the uwsgi connection and the --http listener serve it: what the answers below need. */
type Served = Pick<Exchange, 'socket' | 'response' | 'status'> & { abort(reason: unknown): void };

/** Whether any of the response has gone out (or been queued): whatever writes it, every adapter's bytes pass
 * through the socket. */
function responseStarted(ex: Served): boolean {
  const socket = ex.socket;
  return ex.response.headersSent || ex.status !== 0 || socket.bytesWritten > 0 || socket.writableLength > 0;
}

/** The app failed: the client gets the error's status if nothing of the response has gone out, else the
 * connection is cut (a half-sent response must not look complete). The cause is logged either way. */
export function answerAppFailure(ex: Served, err: unknown, log: Logger, uri: string | undefined): void {
  const socket = ex.socket;
  if (socket.destroyed) {
    log.debug({ err }, 'app failed after the peer closed the connection');
  } else if (!responseStarted(ex)) {
    const status = statusOf(err);
    ex.status = status;
    log.error({ err, code: codeOf(err), uri }, 'app failed before the response started');
    socket.write(simpleResponse(status, status === 500 ? 'Internal Server Error\n' : `${(err as Error).message}\n`));
  } else {
    log.error({ err, code: codeOf(err), uri }, 'app failed after the response started: connection cut');
    socket.destroy();
  }
}

/** --request-timeout: a 504 if nothing of the response has gone out yet; the app is told through its signal. */
export function answerRequestTimeout(ex: Served, timeoutMs: number, log: Logger, method: string, uri: string | undefined): void {
  if (responseStarted(ex) || ex.socket.destroyed) return;
  const err = new UwsgiError('ERR_REQUEST_TIMEOUT', { seconds: timeoutMs / 1000 });
  ex.status = 504;
  log.warn({ code: err.code, method, uri, timeoutMs }, err.message);
  ex.abort(err);
  ex.socket.end(simpleResponse(504, 'Gateway Timeout: the app did not answer in time\n'));
}

function peerOf(socket: Socket): string | undefined {
  return socket.remoteAddress ?? undefined;
}

/** A minimal complete response for errors found before any app ran. */
export function simpleResponse(status: number, text: string): string {
  const reason = STATUS_CODES[status] ?? 'Error';
  return (
    `HTTP/1.1 ${status} ${reason}\r\nContent-Type: text/plain; charset=utf-8\r\n` +
    `Content-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`
  );
}

// The per-connection glue: socket bytes -> decoder -> exchange -> adapter -> response -> close. One request per
// connection (nginx has no keep-alive towards uwsgi upstreams). A worker process hosts it as is.
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import { isUwsgiError, statusOf, UwsgiError } from '../errors.js';
import type { Exchange } from '../exchange.js';
import { RequestDecoder, type DecoderLimits, type RequestHead } from '../protocol/decoder.js';
import { getVar } from '../protocol/vars.js';
import { simpleResponse, SocketLifecycle, type LifecycleContext } from './lifecycle.js';
import { SocketResponse } from './response.js';

export interface ConnectionContext extends LifecycleContext {
  readonly limits: DecoderLimits;
  /** ms a peer has to complete the header and vars block; 0 disables. */
  readonly headerTimeout?: number;
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

class ConnectionExchange extends SocketLifecycle implements Exchange {
  readonly response: SocketResponse;
  /** Made on first use when there is no body (most requests): a stream per request that nobody reads is a
   * measurable share of a small request's cost (bench/README.md). */
  private stream: BodyStream | undefined;
  /** Bytes that came after the head of an Upgrade request, until takeOver(). */
  early: Buffer[] | undefined;
  readonly modifier1: number;
  readonly modifier2: number;
  readonly vars: string[];
  readonly contentLength: number;

  constructor(
    ctx: ConnectionContext,
    readonly socket: Socket,
    private readonly decoder: RequestDecoder,
    /** The connection's 'data' listener, removed at takeOver(). */
    private readonly onData: (chunk: Buffer) => void,
    head: RequestHead,
    method: string,
    uri: string | undefined,
    readonly upgrade: boolean,
  ) {
    super(ctx, method, uri);
    this.modifier1 = head.modifier1;
    this.modifier2 = head.modifier2;
    this.vars = head.vars;
    this.contentLength = head.contentLength;
    if (this.contentLength > 0) this.stream = new BodyStream(socket);
    this.response = new SocketResponse(socket, method);
  }

  get body(): BodyStream {
    if (this.stream === undefined) {
      this.stream = new BodyStream(this.socket);
      this.stream.push(null);
    }
    return this.stream;
  }

  /** The body stream if it exists (reading, ending or destroying an unmade empty body is a no-op). */
  override get bodyIfMade(): BodyStream | undefined {
    return this.stream;
  }

  /** Upgrade: the app owns the socket from here; only 'close' (which ends the exchange) stays ours. */
  takeOver(): Buffer {
    const socket = this.socket;
    this.handOver(socket);
    socket.off('data', this.onData);
    // Out of flowing mode, as Node's http server leaves an upgraded socket: what the peer sends before the app
    // listens waits in the socket's buffer instead of going to nobody.
    (socket as unknown as { readableFlowing: boolean | null }).readableFlowing = null;
    const early = this.early ?? [];
    this.early = undefined;
    return early.length === 1 ? early[0]! : Buffer.concat(early);
  }

  protected unreadBody(): Readable | undefined {
    if (this.decoder.done) return undefined;
    this.socket.resume();
    return this.body;
  }
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
    let exchange: ConnectionExchange | undefined;
    let headerTimer: NodeJS.Timeout | undefined = ctx.headerTimeout ? setTimeout(headerTimedOut, ctx.headerTimeout) : undefined;

    const decoder = new RequestDecoder(
      {
        onHead(head) {
          scanHead(head);
          const { method, uri, upgrade } = scanned;
          const ex = new ConnectionExchange(ctx, socket, decoder, onData, head, method, uri, upgrade);
          exchange = ex;
          if (headerTimer !== undefined) clearTimeout(headerTimer);
          headerTimer = undefined;
          if (head.contentLength > 0) ex.bodyStarted();
          ex.watchSend(socket);
          if (upgrade) {
            // The app runs once this chunk is decoded, so that tunnel bytes that came with the head are in `early`.
            ex.early = [];
            queueMicrotask(() => {
              ex.run();
              // The app's upgrade handler takes the connection over at once, or not at all: if not, stop keeping
              // what the peer sends after the request.
              if (!ex.takenOver) ex.early = undefined;
            });
          } else {
            ex.run();
          }
        },
        onBody(chunk) {
          const ex = exchange!;
          ex.bodyData(chunk.length);
          if (!ex.body.push(chunk)) socket.pause();
        },
        onEnd() {
          const ex = exchange!;
          ex.bodyEnded();
          ex.bodyIfMade?.push(null);
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
      if (headerTimer !== undefined) clearTimeout(headerTimer);
      exchange?.connectionClosed();
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

    /** --header-timeout: no request exists yet, so nothing to answer; the peer is logged and let go. */
    function headerTimedOut(): void {
      headerTimer = undefined;
      if (exchange !== undefined || socket.destroyed) return;
      const received = socket.bytesRead + preRead;
      const err = new UwsgiError('ERR_HEADER_TIMEOUT', { seconds: ctx.headerTimeout! / 1000, received });
      ctx.log.warn({ code: err.code, peer: peerOf(socket), received }, err.message);
      socket.destroy();
    }

    // Bytes read before the socket was made (the native accept path's hand-over), once everything is set up.
    if (preRead > 0) onData(initial!);
  });
}

const UPGRADE_TOKEN = /(?:^|,)\s*upgrade\s*(?:,|$)/i;

function peerOf(socket: Socket): string | undefined {
  return socket.remoteAddress ?? undefined;
}

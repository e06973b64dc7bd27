// The seam between the server and the app adapters: one request as the server hands it over (vars, body
// stream, response sink, abort signal). The server never knows which interface runs; adapters never see the
// decoder.
import type { Socket } from 'node:net';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';

/** Response headers as [name, value] pairs, in order, repeated names allowed (Set-Cookie). */
export type HeaderList = Array<[string, string]>;

/** Where adapters that do not own the connection (wsgi, fetch) write their response. Never chunked. */
export interface ResponseSink {
  /** True once the status line and headers are on the wire (or queued for it). */
  readonly headersSent: boolean;
  /**
   * Sends the status line and headers. Hop-by-hop headers (Connection, Transfer-Encoding, Keep-Alive) are
   * dropped; `Connection: close` is added. Throws UwsgiError ERR_APP_BAD_STATUS / ERR_APP_BAD_HEADER.
   */
  writeHead(status: number, reason: string | undefined, headers: HeaderList): void;
  /** Writes body bytes, a string as UTF-8 (no-op for HEAD/204/304). Returns false when the socket's buffer is full: await drain()
   * before writing more (backpressure, as stream.write). */
  write(chunk: Uint8Array | string): boolean;
  /** Resolves when the socket can take more (at once if it can), or when it is gone. */
  drain(): Promise<void>;
  /** Ends the response (sends the head if not yet sent). */
  end(): void;
}

/** What a socket that is not a net.Socket (the native path's light socket) tells the request it serves, in place of
 * the 'close', 'drain' and 'timeout' listeners a net.Socket would get (a listener added and removed per request
 * is a measurable share of a small request's cost). Such a socket has a `hooks` property. */
export interface SocketHooks {
  closed(): void;
  drain(): void;
  timeout(): void;
}

export interface Exchange {
  readonly modifier1: number;
  readonly modifier2: number;
  /** Flat [name0, value0, ...] vars in arrival order, as latin1 strings; repeated names kept. */
  readonly vars: string[];
  /** Body length from CONTENT_LENGTH (0 when absent). */
  readonly contentLength: number;
  /** The request body: exactly contentLength bytes, streamed with backpressure. Errors if the peer hangs up early. */
  readonly body: Readable;
  /** The whole body, when it came with the head (the native path): an adapter may take it instead of `body`. */
  readonly bodyBytes?: Buffer | undefined;
  /** Aborted when the peer goes away before the response is complete. */
  readonly signal: AbortSignal;
  /** The request's logger (a pino child). */
  readonly log: Logger;
  /** The raw connection; only the node adapter writes to it directly (ServerResponse, Upgrade). */
  readonly socket: Socket;
  /** The response sink for adapters that do not own the connection. */
  readonly response: ResponseSink;
  /** Status sent, for the access log; adapters that write to the socket themselves set it once headers are out
   * (the server then knows not to answer 500 on a later failure). */
  status: number;
  /** Whether this server runs several worker processes (wsgi.multiprocess). */
  readonly multiprocess: boolean;
  /** The request asks to switch protocols (an Upgrade header, no body): a WebSocket handshake, typically. */
  readonly upgrade: boolean;
  /**
   * Hands the raw connection over for an Upgrade: the server stops reading and timing it, and the exchange ends
   * when the socket closes. Returns the bytes that came after the request head (Node's `head` argument).
   */
  takeOver(): Buffer;
}

/** An app adapter: serves one exchange; resolves when the response is complete, rejects on app failure. */
export type ExchangeHandler = (exchange: Exchange) => Promise<void>;

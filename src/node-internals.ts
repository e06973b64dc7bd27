// The one place node-uwsgi touches Node's internals: each use is a named function here, checked on Node 20 and
// 24 by test/node-internals.test.ts, whose test for it fails when a Node release removes or changes it. These are
// plain functions on the per-request path: no allocation, no try/catch, nothing found twice.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Server, Socket } from 'node:net';

/**
 * Listens on an fd this process owns with net.Server's `_listen2` (net.js's alias of setupListenHandle), which a
 * cluster worker's listen({ fd }) skips to ask the master instead. Checked on Node 20 and 24. If it goes, workers
 * cannot listen on inherited socket-activated fds (src/server/listen.ts listenOn).
 */
export function listenOnFd(server: Server, fd: number, backlog: number): void {
  (server as unknown as { _listen2(address: null, port: null, addressType: null, backlog: number, fd: number): void })._listen2(null, null, null, backlog, fd);
}

/**
 * Bytes of the write in progress that libuv still holds (`socket._handle.writeQueueSize`); 0 without a handle.
 * Checked on Node 20 and 24. If it goes, the send watch sees no progress inside one big write and may call a slow
 * reader stalled after --send-timeout (src/server/send-watch.ts).
 */
export function writeQueueSize(socket: Socket): number {
  return (socket as unknown as { _handle?: { writeQueueSize?: number } | null })._handle?.writeQueueSize ?? 0;
}

/**
 * Fills req.rawHeaders (and the lazy req.headers / headersDistinct) as Node's own HTTP parser does, with
 * IncomingMessage's `_addHeaderLines(headers, n)`. Checked on Node 20 and 24. If it goes, the node interface's
 * requests have no headers.
 */
export function addHeaderLines(req: IncomingMessage, headers: string[]): void {
  (req as unknown as { _addHeaderLines(headers: string[], n: number): void })._addHeaderLines(headers, headers.length);
}

interface ConsumeState {
  _consuming?: boolean;
  _dump?: () => void;
}

/**
 * What IncomingMessage's own _read does first (`_consuming = true`): the node adapter replaces _read, so its
 * _read calls this, or a body the app reads in paused mode (req.read()) would be dumped by dumpUnread.
 * Checked on Node 20 and 24.
 */
export function markConsuming(req: IncomingMessage): void {
  (req as IncomingMessage & ConsumeState)._consuming = true;
}

/**
 * What http.Server's resOnFinish does with a request body nobody reads: `_dump()` it unless `_consuming`, so a
 * body-less request ends and emits 'close'. Checked on Node 20 and 24. If it goes, Fastify's and pino-http's
 * hooks on the request's 'close' never run.
 */
export function dumpUnread(req: IncomingMessage): void {
  const incoming = req as IncomingMessage & ConsumeState;
  if (!incoming._consuming && !req.readableFlowing) incoming._dump?.();
}

/**
 * Marks a response closed (ServerResponse's `_closed`, which http.Server sets before emitting 'close'); false if
 * it already was. Checked on Node 20 and 24. If it changes, a response may emit 'close' twice.
 */
export function markClosed(res: ServerResponse): boolean {
  const internal = res as ServerResponse & { _closed?: boolean };
  if (internal._closed === true) return false;
  internal._closed = true;
  return true;
}

let needDrainSymbol: symbol | undefined;

/**
 * Resets ServerResponse's need-drain flag (the symbol described 'kNeedDrain', found once), as Node's
 * socketOnDrain does; writableNeedDrain reads it. Checked on Node 20 and 24. If it goes, res.writableNeedDrain
 * stays true after a 'drain' (apps that wait on it stall).
 */
export function clearNeedDrain(res: ServerResponse): void {
  needDrainSymbol ??= Object.getOwnPropertySymbols(res).find((sym) => sym.description === 'kNeedDrain');
  if (needDrainSymbol !== undefined) (res as unknown as Record<symbol, boolean>)[needDrainSymbol] = false;
}

/** The shape of net.Socket's `_peername` cache. */
export interface Peer {
  address: string;
  port: number | undefined;
  family: string;
}

/**
 * Sets the peer net.Socket's remoteAddress, remotePort and remoteFamily answer, through their `_peername` cache
 * (Node 12 to 24; checked on 20 and 24): a plain field write where defineProperty per socket costs far more. The
 * light socket (src/server/light-socket.ts) keeps the same field. If it changes, Express's req.ip, Koa's ctx.ip
 * and Fastify's request.ip show the nginx hop instead of the client.
 */
export function setPeer(socket: object, address: string, port: number | undefined): void {
  (socket as { _peername?: Peer })._peername = { address, port, family: address.includes(':') ? 'IPv6' : 'IPv4' };
}

/**
 * The peer's address of a TLS socket, also once Node destroyed it after refusing its certificate: the plain socket
 * underneath (`_parent`) keeps the answer it gave. Checked on Node 20 and 24. If it goes, refused handshakes log
 * no peer.
 */
export function tlsPeerAddress(socket: Socket): string | undefined {
  return socket.remoteAddress ?? (socket as unknown as { _parent?: Socket })._parent?.remoteAddress ?? undefined;
}

// The light socket (src/server/light-socket.ts) stands in for a net.Socket under http.ServerResponse, so it keeps
// the fields http reads and writes there as plain fields: `_httpMessage` (assignSocket sets it), `_peername`
// (setPeer), `_hadError` (http's onFinish emits no 'finish' when set) and `_writableState` (below). Each has its
// test in test/node-internals.test.ts, checked on Node 20 and 24.

/**
 * A net.Socket's `_writableState`, which http's OutgoingMessage.end writes (`corked = 1`) before its final
 * uncork; the light socket answers with the real socket's once it has one. Checked on Node 20 and 24. If it goes,
 * the light socket's forwarding is wrong and its test (test/server/light-socket.test.ts) fails.
 */
export function writableStateOf(socket: Socket): { corked: number } {
  return (socket as unknown as { _writableState: { corked: number } })._writableState;
}

/**
 * The handle a listen(options) call names, by net.Server.listen's own reading: `options._handle`, else
 * `options.handle`, else the options themselves. Checked on Node 20 and 24.
 */
export function listenHandleOf(options: Record<string, unknown>): Record<string, unknown> {
  return (options._handle ?? options.handle ?? options) as Record<string, unknown>;
}

// Web streams: the bytes a platform Response of a string or bytes already holds, closed, in its body stream's
// queue (Node's web streams keep their state under a symbol described 'kState'; undici keeps the body's source in
// a private field, out of reach). The fetch adapter writes them without a reader: two reads and the abort listener
// cost measurably more per request on Node 24 (bench/README.md). Anything else, or a Node whose internals look
// otherwise (Node 20's undici enqueues on the first read), answers undefined and the adapter reads the stream.

interface ByteQueueEntry {
  buffer: ArrayBuffer;
  byteOffset: number;
  byteLength: number;
}

const EMPTY = new Uint8Array(0);

/** Node's kState symbol, found on a stream of our own and checked once; null where the shape is not the known one. */
const kState: symbol | null = findStateKey();

/** The web streams' state symbol, exported for its test; null where the shape is not the known one. */
export function streamStateKey(): symbol | null {
  return kState;
}

function findStateKey(): symbol | null {
  try {
    const stream = new ReadableStream({ type: 'bytes' });
    const key = Object.getOwnPropertySymbols(stream).find((symbol) => symbol.description === 'kState');
    if (key === undefined) return null;
    const state = (stream as unknown as Record<symbol, Record<string, unknown>>)[key];
    const controller = state?.controller as Record<symbol, Record<string, unknown>> | undefined;
    const inner = controller?.[key];
    if (state?.state !== 'readable' || state.disturbed !== false || inner === undefined) return null;
    if (typeof inner.closeRequested !== 'boolean' || typeof inner.queueTotalSize !== 'number') return null;
    return key;
  } catch {
    return null;
  }
}

/**
 * The whole body of a stream nobody has read or locked whose source closed it with at most one chunk queued (what
 * the platform's Response makes of a string or bytes by the time the app returns it), else undefined. The stream is
 * left as it is: the adapter drops the Response after writing it. Checked on Node 20 (always undefined there) and
 * 24. If the internals change, it answers undefined and the fetch adapter reads the stream: slower, still right.
 */
export function queuedBody(stream: ReadableStream<Uint8Array>): Uint8Array | undefined {
  if (kState === null) return undefined;
  const state = (stream as unknown as Record<symbol, Record<string, unknown> | undefined>)[kState];
  if (state === undefined || state.disturbed !== false || state.reader !== undefined) return undefined;
  if (state.state === 'closed') return EMPTY;
  if (state.state !== 'readable' || !(state.controller instanceof ReadableByteStreamController)) return undefined;
  const inner = (state.controller as unknown as Record<symbol, Record<string, unknown> | undefined>)[kState];
  if (inner === undefined || inner.closeRequested !== true) return undefined;
  const queue = inner.queue as { length: number; peek?: () => unknown } | ByteQueueEntry[] | undefined;
  if (queue === undefined || queue.length !== 1) return undefined;
  // Node 24 keeps a ring buffer with peek(); Node 20 an array.
  const entry = (Array.isArray(queue) ? queue[0] : queue.peek?.()) as ByteQueueEntry | undefined;
  if (entry === undefined || !(entry.buffer instanceof ArrayBuffer) || entry.byteLength !== inner.queueTotalSize) return undefined;
  return new Uint8Array(entry.buffer, entry.byteOffset, entry.byteLength);
}

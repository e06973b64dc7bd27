// Response framing towards the front server: a real HTTP/1.1 status line (Apache needs one), headers, the body
// as the app yields it, then close. Never chunked: nginx and Apache pass chunk framing through undecoded.
import type { Socket } from 'node:net';
import { STATUS_CODES } from 'node:http';
import { UwsgiError } from '../errors.js';
import type { HeaderList, ResponseSink } from '../exchange.js';
import { HOP_BY_HOP, TOKEN } from '../protocol/headers.js';

// Header values must not carry CR, LF or NUL (response splitting).
const BAD_VALUE = /[\r\n\0]/;

// Header names repeat from response to response: each distinct valid one is checked once.
const validNames = new Set<string>();
function checkName(name: string): boolean {
  if (!TOKEN.test(name)) return false;
  if (validNames.size < 1024) validNames.add(name);
  return true;
}

/** HEAD, 204 and 304 responses carry no body, whatever the app writes. */
export function bodyAllowed(method: string, status: number): boolean {
  return method !== 'HEAD' && status !== 204 && status !== 304;
}

/** Serialises a status line and headers; validates both. */
export function serializeHead(status: number, reason: string | undefined, headers: HeaderList): string {
  if (!Number.isInteger(status) || status < 200 || status > 999) {
    throw new UwsgiError('ERR_APP_BAD_STATUS', { value: JSON.stringify(status) });
  }
  const text = reason ?? STATUS_CODES[status] ?? 'Unknown';
  if (BAD_VALUE.test(text)) throw new UwsgiError('ERR_APP_BAD_STATUS', { value: JSON.stringify(`${status} ${text}`) });
  let head = `HTTP/1.1 ${status} ${text}\r\n`;
  for (const [name, value] of headers) {
    if (typeof name !== 'string' || (!validNames.has(name) && !checkName(name))) {
      throw new UwsgiError('ERR_APP_BAD_HEADER', { name: JSON.stringify(name) });
    }
    const str = String(value);
    if (BAD_VALUE.test(str)) throw new UwsgiError('ERR_APP_BAD_HEADER', { name: JSON.stringify(name) });
    if (HOP_BY_HOP.has(name.toLowerCase())) continue;
    head += `${name}: ${str}\r\n`;
  }
  return head + 'Connection: close\r\n\r\n';
}

/**
 * What every ResponseSink shares: the head serialized once at writeHead (sent with the first body bytes or at the
 * end), whether the method and status allow a body, and the order checks (no body before the head or after the
 * end). Subclasses move the bytes: SocketResponse over a net.Socket, the native path's collector (native.ts).
 */
export abstract class FramedResponse<Out> {
  headersSent = false;
  status = 0;
  protected pendingHead: string | undefined;
  protected withBody = true;
  protected ended = false;

  constructor(
    /** Where the bytes go: the socket, or the native path's exchange. */
    protected readonly out: Out,
    protected readonly method: string,
  ) {}

  writeHead(status: number, reason: string | undefined, headers: HeaderList): void {
    if (this.headersSent) throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: 'headers were already sent' });
    this.pendingHead = serializeHead(status, reason, headers);
    this.status = status;
    this.withBody = bodyAllowed(this.method, status);
    this.headersSent = true;
  }

  /** A body chunk (a string as UTF-8); false when the caller should wait for drain(). */
  write(chunk: Uint8Array | string): boolean {
    const length = this.bodyLength(chunk);
    return length === 0 || this.send(chunk, length);
  }

  /** Sends or keeps `length` body bytes (the pending head goes first); the order checks are done. */
  protected abstract send(chunk: Uint8Array | string, length: number): boolean;

  /** The body bytes `chunk` holds, after the order checks; 0 when nothing is to be sent (no body allowed, empty). */
  private bodyLength(chunk: Uint8Array | string): number {
    if (!this.headersSent) throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: 'body written before headers' });
    if (this.ended) throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: 'body written after the end' });
    if (!this.withBody) return 0;
    return typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
  }

  /** Marks the end (after the order check); the head not yet sent, taken, or undefined. */
  protected endHead(): string | undefined {
    if (!this.headersSent) throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: 'response ended before headers' });
    this.ended = true;
    const head = this.pendingHead;
    this.pendingHead = undefined;
    return head;
  }
}

/** The ResponseSink over a socket: head, then body with backpressure. */
export class SocketResponse extends FramedResponse<Socket> implements ResponseSink {
  protected send(chunk: Uint8Array | string, length: number): boolean {
    const isString = typeof chunk === 'string';
    const socket = this.out;
    const head = this.pendingHead;
    if (head === undefined) return writeChunk(socket, chunk);
    this.pendingHead = undefined;
    if (length > COALESCE_LIMIT) {
      // A big first chunk: head and chunk in one writev, without copying the chunk.
      socket.cork();
      socket.write(head, 'latin1');
      const ok = isString ? socket.write(chunk, 'utf8') : socket.write(chunk);
      socket.uncork();
      return ok || socket.destroyed;
    }
    // Head and a small first chunk in one buffer: one write, one packet (most responses).
    return socket.write(joinHead(head, chunk, length)) || socket.destroyed;
  }

  drain(): Promise<void> {
    return drained(this.out);
  }

  end(): void {
    const head = this.endHead();
    if (head !== undefined) this.out.write(head, 'latin1');
  }
}

export const RESOLVED = Promise.resolve();
/** First chunks up to this size are copied behind the head (one buffer); bigger ones go out with writev. */
const COALESCE_LIMIT = 16 * 1024;

/** A body chunk to the socket (a string as UTF-8); true also once the socket is gone: nothing to wait for. */
export function writeChunk(socket: Socket, chunk: Uint8Array | string): boolean {
  return (typeof chunk === 'string' ? socket.write(chunk, 'utf8') : socket.write(chunk)) || socket.destroyed;
}

/** The head and the first body chunk (`length` bytes, a string as UTF-8) in one buffer. */
export function joinHead(head: string, chunk: Uint8Array | string, length: number): Buffer {
  const buffer = Buffer.allocUnsafe(head.length + length);
  buffer.write(head, 0, head.length, 'latin1');
  if (typeof chunk === 'string') buffer.write(chunk, head.length, length, 'utf8');
  else buffer.set(chunk, head.length);
  return buffer;
}

/** Settles once the socket can take more: at once when its buffer is not full or it is gone, else at its
 * 'drain' or 'close'. */
export function drained(socket: Socket): Promise<void> {
  return socket.writableNeedDrain && !socket.destroyed ? waitDrain(socket) : RESOLVED;
}

function waitDrain(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

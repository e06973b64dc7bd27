// Incremental decoder of one uwsgi request: the 4-byte header, the vars block, then CONTENT_LENGTH body bytes.
// Bytes in, callbacks out; it never sees a socket. Spec: https://uwsgi-docs.readthedocs.io/en/latest/Protocol.html
import { UwsgiError } from '../errors.js';
import { nameAt } from './names.js';

/** The protocol's ceiling: the vars block size is a 16-bit field. */
export const MAX_VARS_SIZE = 65535;
export const DEFAULT_MAX_VARS = 1000;
export const HEADER_SIZE = 4;

export interface DecoderLimits {
  /** Largest vars block accepted, in bytes (at most 65535). */
  readonly maxVarsSize: number;
  /** Most vars (key/value pairs) accepted in one block. */
  readonly maxVars: number;
  /** Largest request body (CONTENT_LENGTH) accepted, in bytes; 0 for no limit. */
  readonly maxBodySize?: number;
}

export const DEFAULT_LIMITS: DecoderLimits = { maxVarsSize: MAX_VARS_SIZE, maxVars: DEFAULT_MAX_VARS };

export interface RequestHead {
  readonly modifier1: number;
  readonly modifier2: number;
  /** Flat [name0, value0, name1, value1, ...] in arrival order, as latin1 strings (like http's rawHeaders). */
  readonly vars: string[];
  /** Body length in bytes, from CONTENT_LENGTH alone (absent or empty: 0). */
  readonly contentLength: number;
}

export interface DecoderHandler {
  /** Called once, when the header and the vars block are complete. */
  onHead(head: RequestHead): void;
  /** Body bytes, never past CONTENT_LENGTH. The buffer may be a view into the caller's chunk. */
  onBody(chunk: Buffer): void;
  /** Called once, when CONTENT_LENGTH body bytes have arrived (right after onHead when there is no body). */
  onEnd(): void;
  /** Bytes after the request (never parsed as another one): counted in excessBytes, and handed here if given
   * (an Upgrade's tunnel bytes that came with its head). */
  onExcess?(chunk: Buffer): void;
}

const enum State {
  Header,
  Vars,
  Body,
  Done,
}

// Methods a misdirected HTTP client starts with; as a uwsgi header they read as modifier1 'G', size 0x2045...
const HTTP_PREFIXES = ['GET ', 'POST', 'HEAD', 'PUT ', 'DELE', 'OPTI', 'PATC', 'CONN', 'TRAC', 'PRI '];

export class RequestDecoder {
  private state = State.Header;
  private readonly limits: DecoderLimits;
  private readonly handler: DecoderHandler;
  /** Bytes of an incomplete header or vars block carried between chunks. */
  private pending: Buffer | undefined;
  private pendingLength = 0;
  private modifier1 = 0;
  private modifier2 = 0;
  private varsSize = 0;
  private bodyRemaining = 0;
  private bodyLength = 0;
  private received = 0;
  /** Bytes that arrived after the body, discarded (never parsed as another request). */
  excessBytes = 0;

  constructor(handler: DecoderHandler, limits: DecoderLimits = DEFAULT_LIMITS) {
    this.handler = handler;
    this.limits = limits;
  }

  get done(): boolean {
    return this.state === State.Done;
  }

  get headComplete(): boolean {
    return this.state === State.Body || this.state === State.Done;
  }

  /** Body bytes still expected. */
  get bodyRemainingBytes(): number {
    return this.bodyRemaining;
  }

  /** Feeds bytes; throws UwsgiError on a malformed packet (the decoder is then unusable for this request). */
  execute(chunk: Buffer): void {
    this.received += chunk.length;
    let data = chunk;
    while (data.length > 0) {
      switch (this.state) {
        case State.Header:
        case State.Vars: {
          data = this.takeHead(data);
          break;
        }
        case State.Body: {
          if (data.length <= this.bodyRemaining) {
            this.bodyRemaining -= data.length;
            this.handler.onBody(data);
            data = EMPTY;
          } else {
            this.handler.onBody(data.subarray(0, this.bodyRemaining));
            data = data.subarray(this.bodyRemaining);
            this.bodyRemaining = 0;
          }
          if (this.bodyRemaining === 0) this.finishBody();
          break;
        }
        case State.Done: {
          this.excessBytes += data.length;
          this.handler.onExcess?.(data);
          data = EMPTY;
          break;
        }
      }
    }
  }

  /** The peer closed its side: throws if the request was not complete. */
  finish(): void {
    if (this.state === State.Header || this.state === State.Vars) {
      throw new UwsgiError('ERR_UWSGI_HEAD_INCOMPLETE', { received: this.received });
    }
    if (this.state === State.Body) {
      throw new UwsgiError('ERR_UWSGI_BODY_INCOMPLETE', {
        received: this.bodyLength - this.bodyRemaining,
        expected: this.bodyLength,
      });
    }
  }

  /** Consumes header or vars bytes from `data`; returns what is left after them. */
  private takeHead(data: Buffer): Buffer {
    const need = this.state === State.Header ? HEADER_SIZE : this.varsSize;
    let buf = data;
    if (this.pending !== undefined) {
      // Copied into a buffer of the final size: a block arriving in tiny pieces costs linear time, not quadratic.
      const n = Math.min(need - this.pendingLength, data.length);
      data.copy(this.pending, this.pendingLength, 0, n);
      this.pendingLength += n;
      if (this.pendingLength < need) return EMPTY;
      buf = this.pending;
      data = data.subarray(n);
      this.pending = undefined;
    } else if (data.length < need) {
      this.pending = Buffer.allocUnsafe(need);
      this.pendingLength = data.copy(this.pending, 0);
      return EMPTY;
    } else {
      data = data.subarray(need);
    }
    if (this.state === State.Header) this.readHeader(buf);
    else this.readVars(buf.subarray(0, need));
    if (this.state === State.Vars && this.varsSize === 0) this.readVars(EMPTY);
    return data;
  }

  private readHeader(buf: Buffer): void {
    const modifier1 = buf[0]!;
    const size = buf[1]! | (buf[2]! << 8);
    if (modifier1 !== 0) {
      const preview = buf.toString('latin1', 0, HEADER_SIZE);
      if (HTTP_PREFIXES.includes(preview)) {
        throw new UwsgiError('ERR_UWSGI_HTTP_ON_SOCKET', { preview: JSON.stringify(preview) });
      }
      throw new UwsgiError('ERR_UWSGI_MODIFIER', { modifier1 });
    }
    if (size > this.limits.maxVarsSize) {
      throw new UwsgiError('ERR_UWSGI_VARS_TOO_LARGE', { size, limit: this.limits.maxVarsSize });
    }
    this.modifier1 = modifier1;
    this.modifier2 = buf[3]!;
    this.varsSize = size;
    this.state = State.Vars;
  }

  private readVars(block: Buffer): void {
    const vars: string[] = [];
    const end = block.length;
    // One latin1 decode for the whole block, then substrings: a native call per key and value costs more than
    // all the rest of the parsing (latin1 is one char per byte, so byte offsets are string offsets).
    const text = block.toString('latin1');
    let offset = 0;
    let contentLength: string | undefined;
    let headerLength: string | undefined;
    while (offset < end) {
      if (vars.length >= this.limits.maxVars * 2) {
        throw new UwsgiError('ERR_UWSGI_TOO_MANY_VARS', { limit: this.limits.maxVars });
      }
      if (offset + 2 > end) malformed('truncated key length', offset);
      const keyLength = block[offset]! | (block[offset + 1]! << 8);
      offset += 2;
      if (offset + keyLength > end) malformed('key longer than the block', offset);
      const key = nameAt(block, text, offset, keyLength);
      offset += keyLength;
      if (offset + 2 > end) malformed('truncated value length', offset);
      const valueLength = block[offset]! | (block[offset + 1]! << 8);
      offset += 2;
      if (offset + valueLength > end) malformed('value longer than the block', offset);
      const value = text.slice(offset, offset + valueLength);
      offset += valueLength;
      if (keyLength === 0) malformed('empty key', offset);
      vars.push(key, value);
      if (keyLength === 14 && key === 'CONTENT_LENGTH') contentLength = value;
      else if (keyLength === 19 && key === 'HTTP_CONTENT_LENGTH') headerLength = value;
    }
    const length = parseContentLength(contentLength);
    // Framing is CONTENT_LENGTH's; a client header that says otherwise is a smuggling attempt or a broken peer.
    if (headerLength !== undefined && contentLength !== undefined && headerLength.trim() !== contentLength) {
      throw new UwsgiError('ERR_UWSGI_LENGTH_MISMATCH', { length: JSON.stringify(contentLength), header: JSON.stringify(headerLength) });
    }
    const maxBody = this.limits.maxBodySize ?? 0;
    if (maxBody > 0 && length > maxBody) throw new UwsgiError('ERR_BODY_TOO_LARGE', { length, limit: maxBody });
    this.bodyLength = length;
    this.bodyRemaining = length;
    this.state = State.Body;
    this.handler.onHead({ modifier1: this.modifier1, modifier2: this.modifier2, vars, contentLength: length });
    if (length === 0) this.finishBody();
  }

  private finishBody(): void {
    this.state = State.Done;
    this.handler.onEnd();
  }
}

const EMPTY = Buffer.alloc(0);
const DIGITS = /^[0-9]{1,15}$/;

/** CONTENT_LENGTH as the body's length: absent or empty is 0; anything but decimal digits is an error. */
export function parseContentLength(value: string | undefined): number {
  if (value === undefined || value === '') return 0;
  if (!DIGITS.test(value)) throw new UwsgiError('ERR_UWSGI_BAD_CONTENT_LENGTH', { value: JSON.stringify(value) });
  return Number(value);
}

function malformed(detail: string, offset: number): never {
  throw new UwsgiError('ERR_UWSGI_MALFORMED_VARS', { detail, offset });
}

// Encoder of uwsgi request packets: the inverse of decoder.ts, for tests, benchmarks and the request client.
import { MAX_VARS_SIZE } from './decoder.js';

/** Encodes a header and vars block; `vars` is flat [name0, value0, ...] latin1 strings or byte buffers. */
export function encodeRequestHead(vars: ReadonlyArray<string | Uint8Array>, modifier1 = 0, modifier2 = 0): Buffer {
  const parts = vars.map((v) => (typeof v === 'string' ? Buffer.from(v, 'latin1') : Buffer.from(v)));
  let size = 0;
  for (const part of parts) {
    if (part.length > 0xffff) throw new RangeError(`uwsgi var of ${part.length} bytes exceeds 65535`);
    size += 2 + part.length;
  }
  if (size > MAX_VARS_SIZE) throw new RangeError(`uwsgi vars block of ${size} bytes exceeds ${MAX_VARS_SIZE}`);
  const out = Buffer.allocUnsafe(4 + size);
  out[0] = modifier1;
  out.writeUInt16LE(size, 1);
  out[3] = modifier2;
  let offset = 4;
  for (const part of parts) {
    out.writeUInt16LE(part.length, offset);
    offset += 2;
    part.copy(out, offset);
    offset += part.length;
  }
  return out;
}

/** A whole request packet: head, then the body (CONTENT_LENGTH is the caller's to set in `vars`). */
export function encodeRequest(vars: ReadonlyArray<string | Uint8Array>, body?: Uint8Array): Buffer {
  const head = encodeRequestHead(vars);
  return body === undefined || body.length === 0 ? head : Buffer.concat([head, body]);
}

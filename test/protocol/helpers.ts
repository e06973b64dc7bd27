// Shared by the protocol tests: the captured nginx packets, a decoder driver that checks the handler contract on
// every run, and the chunkings each vector is replayed in.
import { readdirSync, readFileSync } from 'node:fs';
import { RequestDecoder, type DecoderLimits, type RequestHead } from '../../src/protocol/index.js';

const FIXTURES = new URL('../fixtures/nginx/', import.meta.url);

/** Every captured packet file, sorted, so a new capture cannot go untested. */
export function fixtureFiles(): string[] {
  return readdirSync(FIXTURES)
    .filter((name) => name.endsWith('.uwsgi'))
    .sort();
}

export function readFixture(file: string): Buffer {
  return readFileSync(new URL(file, FIXTURES));
}

export interface Decoded {
  head: RequestHead;
  body: Buffer;
  excessBytes: number;
}

/**
 * Feeds `chunks` to a fresh decoder, then finish(), as a connection would. Throws whatever the decoder throws;
 * throws a plain Error if the decoder breaks its handler contract (head once and first, body within
 * CONTENT_LENGTH, end once and last), so a property test cannot mistake a contract breach for a UwsgiError.
 */
export function decodeChunks(chunks: Iterable<Buffer>, limits?: DecoderLimits): Decoded {
  let head: RequestHead | undefined;
  const body: Buffer[] = [];
  let bodyLength = 0;
  let ended = false;
  const decoder = new RequestDecoder(
    {
      onHead(h) {
        if (head !== undefined) throw new Error('contract: onHead called twice');
        head = h;
      },
      onBody(chunk) {
        if (head === undefined || ended) throw new Error('contract: onBody outside head..end');
        bodyLength += chunk.length;
        if (bodyLength > head.contentLength) throw new Error('contract: body past CONTENT_LENGTH');
        // A copy: the decoder may hand out views into the caller's chunk.
        body.push(Buffer.from(chunk));
      },
      onEnd() {
        if (head === undefined || ended) throw new Error('contract: onEnd before onHead or twice');
        if (bodyLength !== head.contentLength) throw new Error('contract: onEnd before the whole body');
        ended = true;
      },
    },
    limits,
  );
  for (const chunk of chunks) decoder.execute(chunk);
  decoder.finish();
  if (head === undefined || !ended || !decoder.done) throw new Error('contract: finish() passed an incomplete request');
  return { head, body: Buffer.concat(body), excessBytes: decoder.excessBytes };
}

/** Runs `fn` and returns what it threw; fails if it did not throw. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw, got none');
}

/** mulberry32: a tiny seeded PRNG, so a failing random split can be replayed from the seed in its test name. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `buf` cut at the given offsets (any order, repeats give empty chunks), as views. */
export function splitAt(buf: Buffer, points: readonly number[]): Buffer[] {
  const cuts = points.map((p) => Math.min(Math.max(p, 0), buf.length)).sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let from = 0;
  for (const cut of cuts) {
    chunks.push(buf.subarray(from, cut));
    from = cut;
  }
  chunks.push(buf.subarray(from));
  return chunks;
}

/** `buf` in chunks of 0..maxChunk bytes drawn from `seed`: empty chunks included, as a socket never sends them but a caller may. */
export function randomSplit(buf: Buffer, seed: number, maxChunk = 48): Buffer[] {
  const random = mulberry32(seed);
  const chunks: Buffer[] = [];
  for (let from = 0; from < buf.length; ) {
    const size = Math.floor(random() * (maxChunk + 1));
    chunks.push(buf.subarray(from, from + size));
    from += size;
  }
  return chunks;
}

export function bytesOf(text: string): Buffer {
  return Buffer.from(text, 'latin1');
}

/** Bytes from hex written with spaces and `|` for readability: "00 0e 00 00 | 01 00 41". */
export function hex(text: string): Buffer {
  return Buffer.from(text.replace(/[\s|]/g, ''), 'hex');
}

/** Flat [name, value, ...] as [[name, value], ...], for readable diffs. */
export function pairs(vars: readonly string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i < vars.length; i += 2) out.push([vars[i]!, vars[i + 1]!]);
  return out;
}

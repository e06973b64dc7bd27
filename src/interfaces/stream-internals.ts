// The one place the fetch adapter reads Node's internals: the bytes a platform Response of a string or bytes
// already holds, closed, in its body stream's queue (Node's web streams keep their state under a symbol; undici
// keeps the body's source in a private field, out of reach). The adapter writes them without a reader: two reads
// and the abort listener cost 1.5-2 µs per request on Node 24. Anything else, or a Node whose internals look
// otherwise (Node 20's undici enqueues on the first read), answers undefined and the adapter reads the stream.

interface ByteQueueEntry {
  buffer: ArrayBuffer;
  byteOffset: number;
  byteLength: number;
}

const EMPTY = new Uint8Array(0);

/** Node's kState symbol, found on a stream of our own and checked once; null where the shape is not the known one. */
const kState: symbol | null = findStateKey();

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
 * left as it is: the adapter drops the Response after writing it.
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

// queuedBody: the bytes a platform Response of a string or bytes holds in its closed stream, or undefined; never
// other bytes than a reader would get. Node 24's undici has enqueued and closed by the time the app returns the
// Response; Node 20's enqueues on the first read, so there it always answers undefined and the adapter reads.
import { describe, expect, it } from 'vitest';
import { queuedBody } from '../src/node-internals.js';

const ENQUEUES_AT_CONSTRUCTION = Number(process.versions.node.split('.')[0]) >= 24;

async function settled(response: Response): Promise<ReadableStream<Uint8Array>> {
  // As the adapter sees it: after the app's return (an await) the body's close has run.
  await null;
  return response.body!;
}

const text = (bytes: Uint8Array | undefined): string | undefined => (bytes === undefined ? undefined : Buffer.from(bytes).toString('utf8'));

describe('queuedBody', () => {
  it.each([
    ['a string', () => new Response('héllo'), 'héllo'],
    ['an empty string', () => new Response(''), ''],
    ['bytes', () => new Response(new Uint8Array([104, 105])), 'hi'],
    ['URLSearchParams', () => new Response(new URLSearchParams('a=1&b=2')), 'a=1&b=2'],
    ['100 kB', () => new Response('x'.repeat(100_000)), 'x'.repeat(100_000)],
  ])('gives the body of a Response of %s on Node 24, undefined on Node 20', async (_name, make, expected) => {
    const bytes = queuedBody(await settled(make()));
    expect(text(bytes)).toBe(ENQUEUES_AT_CONSTRUCTION ? expected : undefined);
  });

  it('answers undefined for a stream still open, read, locked, of the app, or a Blob', async () => {
    const open = new ReadableStream({ type: 'bytes', start: (c: ReadableByteStreamController) => c.enqueue(new Uint8Array([1])) }) as ReadableStream<Uint8Array>;
    expect(queuedBody(open)).toBeUndefined();

    const read = await settled(new Response('read'));
    const reader = read.getReader();
    expect(queuedBody(read)).toBeUndefined();
    expect(text((await reader.read()).value)).toBe('read');
    reader.releaseLock();
    expect(queuedBody(read)).toBeUndefined();

    const ofApp = new ReadableStream<Uint8Array>({
      start(c) {
        c.enqueue(new Uint8Array([7]));
        c.close();
      },
    });
    expect(queuedBody(await settled(new Response(ofApp)))).toBeUndefined();
    expect(queuedBody(await settled(new Response(new Blob(['blob']))))).toBeUndefined();
  });

  it('answers undefined for a body read to its end, whose stream is closed and disturbed', async () => {
    const response = new Response('gone');
    expect(await response.text()).toBe('gone');
    expect(queuedBody(response.body!)).toBeUndefined();
  });

  it('answers undefined for a stream that errored', async () => {
    const errored = new ReadableStream({ type: 'bytes', start: (c: ReadableByteStreamController) => c.error(new Error('no')) }) as ReadableStream<Uint8Array>;
    await null;
    expect(queuedBody(errored)).toBeUndefined();
  });
});

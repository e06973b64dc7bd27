// Properties of the codec over generated input: encode/decode round trips in any chunking, and arbitrary bytes
// yield a request or a UwsgiError (never another error), the same one however they are chunked.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isUwsgiError } from '../../src/errors.js';
import { DEFAULT_LIMITS, MAX_VARS_SIZE, encodeRequest, type DecoderLimits } from '../../src/protocol/index.js';
import { decodeChunks, readFixture, splitAt } from './helpers.js';

// Modest, so the file runs in about a second; fast-check prints the seed of any failure to replay it.
const NUM_RUNS = 300;

const latin1Char = fc.integer({ min: 0, max: 0xff }).map((code) => String.fromCharCode(code));
const key = fc.oneof(
  fc.string({ unit: latin1Char, minLength: 1, maxLength: 24 }).filter((k) => k !== 'CONTENT_LENGTH'),
  // Names that repeat in real packets: every occurrence must come back, in order.
  fc.constantFrom('HTTP_COOKIE', 'HTTP_ACCEPT', 'QUERY_STRING'),
);
const value = fc.oneof(
  { weight: 9, arbitrary: fc.string({ unit: latin1Char, maxLength: 64 }) },
  // Large values take blocks towards the 65535-byte ceiling.
  { weight: 1, arbitrary: fc.tuple(latin1Char, fc.integer({ min: 1000, max: 30_000 })).map(([c, n]) => c.repeat(n)) },
);

function blockSize(vars: readonly string[]): number {
  return vars.reduce((size, v) => size + 2 + Buffer.byteLength(v, 'latin1'), 0);
}

/** A request as nginx might send it: arbitrary vars with CONTENT_LENGTH somewhere among them, and its body. */
const request = fc
  .record({
    vars: fc.array(fc.tuple(key, value), { maxLength: 40 }),
    body: fc.uint8Array({ maxLength: 1024 }),
    contentLengthAt: fc.nat(),
  })
  .map(({ vars, body, contentLengthAt }) => {
    const flat = vars.flat();
    const at = 2 * (contentLengthAt % (vars.length + 1));
    flat.splice(at, 0, 'CONTENT_LENGTH', String(body.length));
    return { vars: flat, body: Buffer.from(body) };
  })
  .filter(({ vars }) => blockSize(vars) <= MAX_VARS_SIZE);

/** Cut points for a buffer of `length` bytes. */
const cuts = fc.array(fc.nat(), { maxLength: 12 });
const within = (points: number[], length: number): number[] => points.map((p) => p % (length + 1));

describe('round trip', () => {
  it('decodes what encodeRequest wrote, in any chunking', () => {
    fc.assert(
      fc.property(request, cuts, ({ vars, body }, points) => {
        const packet = encodeRequest(vars, body);
        const decoded = decodeChunks(splitAt(packet, within(points, packet.length)));
        expect(decoded.head.vars).toEqual(vars);
        expect(decoded.head.contentLength).toBe(body.length);
        expect(decoded.body).toEqual(body);
        expect(decoded.excessBytes).toBe(0);
      }),
      { numRuns: NUM_RUNS },
    );
  });
});

type Outcome = { ok: unknown } | { code: string; details: unknown };

/** A request, or the UwsgiError it raised; any other throw escapes and fails the property. */
function outcome(chunks: Buffer[], limits: DecoderLimits): Outcome {
  try {
    return { ok: decodeChunks(chunks, limits) };
  } catch (err) {
    if (!isUwsgiError(err)) throw err;
    return { code: err.code, details: err.details };
  }
}

// Purely random bytes mostly stop at modifier1; these reach the vars parser and the body too.
const garbage = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
  fc
    .tuple(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 0, max: 0xff }), fc.uint8Array({ maxLength: 400 }))
    .map(([size, modifier2, rest]) => Buffer.concat([Buffer.from([0, size & 0xff, size >> 8, modifier2]), rest])),
  // A valid packet with a few bytes overwritten and its tail maybe cut off.
  fc
    .tuple(
      request,
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 0xff })), { maxLength: 3 }),
      fc.oneof(fc.constant(0), fc.nat()),
    )
    .map(([{ vars, body }, edits, drop]) => {
      const packet = encodeRequest(vars, body);
      for (const [at, byte] of edits) packet[at % packet.length] = byte;
      return packet.subarray(0, packet.length - (drop % (packet.length + 1)));
    }),
  // A CONTENT_LENGTH that may or may not be a number, and may or may not match the body that follows.
  fc
    .tuple(fc.string({ unit: fc.constantFrom(...'0123456789 -+.ex'), maxLength: 4 }), fc.uint8Array({ maxLength: 64 }))
    .map(([length, body]) => encodeRequest(['REQUEST_METHOD', 'POST', 'CONTENT_LENGTH', length], body)),
);
const limits = fc.oneof(
  { weight: 3, arbitrary: fc.constant(DEFAULT_LIMITS) },
  { weight: 1, arbitrary: fc.constant<DecoderLimits>({ maxVarsSize: 256, maxVars: DEFAULT_LIMITS.maxVars }) },
  { weight: 1, arbitrary: fc.constant<DecoderLimits>({ maxVarsSize: MAX_VARS_SIZE, maxVars: 4 }) },
);

describe('arbitrary bytes', () => {
  it('give a request or a UwsgiError, the same one in any chunking', () => {
    let failures = 0;
    fc.assert(
      fc.property(garbage, cuts, limits, (bytes, points, lim) => {
        const whole = outcome([bytes], lim);
        if ('code' in whole) failures++;
        expect(outcome(splitAt(bytes, within(points, bytes.length)), lim)).toEqual(whole);
      }),
      { numRuns: NUM_RUNS * 2 },
    );
    // Both branches ran: a generator that only ever produced errors would prove little.
    expect(failures).toBeGreaterThan(0);
    expect(failures).toBeLessThan(NUM_RUNS * 2);
  });

  it('leave no state behind: a fixture decodes the same after them', () => {
    const fixture = readFixture('nginx-post-form.uwsgi');
    const before = decodeChunks([fixture]);
    fc.assert(
      fc.property(garbage, (bytes) => {
        outcome([bytes], DEFAULT_LIMITS);
      }),
      { numRuns: NUM_RUNS },
    );
    expect(decodeChunks([fixture])).toEqual(before);
  });
});

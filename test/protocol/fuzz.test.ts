// Fuzzing the pure decoder (issue 5): arbitrary bytes, valid packets corrupted, arbitrary limits, arbitrary
// chunking. Only a UwsgiError with one of the decoder's codes from the error table may escape, never another
// exception or a broken handler contract; a valid packet decodes in full whatever came before it on another
// decoder, and whatever bytes follow it on the same one. FUZZ_RUNS sets the number of inputs per property:
// a short pass in the suite, a million with `npm run fuzz`.
import { isDeepStrictEqual } from 'node:util';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ERRORS, UwsgiError, type ErrorCode } from '../../src/errors.js';
import { DEFAULT_LIMITS, MAX_VARS_SIZE, RequestDecoder, encodeRequest, type DecoderLimits, type RequestHead } from '../../src/protocol/index.js';
import { readFixture, splitAt } from './helpers.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 500);
// About 0.5 ms an input on a busy 2-core machine; generous, as the long run shares the machine too.
const TIMEOUT = Math.max(60_000, RUNS * 3);

/** What the decoder may throw, and nothing else. */
const DECODER_CODES = new Set<ErrorCode>([
  'ERR_UWSGI_MODIFIER',
  'ERR_UWSGI_HTTP_ON_SOCKET',
  'ERR_UWSGI_VARS_TOO_LARGE',
  'ERR_UWSGI_TOO_MANY_VARS',
  'ERR_UWSGI_MALFORMED_VARS',
  'ERR_UWSGI_BAD_CONTENT_LENGTH',
  'ERR_UWSGI_HEAD_INCOMPLETE',
  'ERR_UWSGI_BODY_INCOMPLETE',
  'ERR_UWSGI_LENGTH_MISMATCH',
  'ERR_BODY_TOO_LARGE',
]);

interface Decoded {
  head: RequestHead;
  body: Buffer;
  excess: Buffer;
  excessBytes: number;
}

/** A handler-contract breach: a plain Error, so that it can never pass for a UwsgiError. */
class ContractError extends Error {}

/** Feeds the chunks to a fresh decoder, then finish(); checks the handler contract at every callback. */
function drive(chunks: readonly Buffer[], limits: DecoderLimits): Decoded {
  let head: RequestHead | undefined;
  let ended = false;
  const body: Buffer[] = [];
  const excess: Buffer[] = [];
  let bodyLength = 0;
  const decoder = new RequestDecoder(
    {
      onHead(h) {
        if (head !== undefined) throw new ContractError('onHead twice');
        if (h.vars.length % 2 !== 0) throw new ContractError('odd vars');
        if (h.vars.length > 2 * limits.maxVars) throw new ContractError('more vars than --max-vars');
        if (limits.maxBodySize && h.contentLength > limits.maxBodySize) throw new ContractError('body over --max-body-size');
        head = h;
      },
      onBody(chunk) {
        if (head === undefined || ended) throw new ContractError('onBody outside head..end');
        bodyLength += chunk.length;
        if (bodyLength > head.contentLength) throw new ContractError('body past CONTENT_LENGTH');
        body.push(Buffer.from(chunk));
      },
      onEnd() {
        if (head === undefined || ended || bodyLength !== head.contentLength) throw new ContractError('onEnd out of place');
        ended = true;
      },
      onExcess(chunk) {
        if (!ended) throw new ContractError('excess before the end');
        excess.push(Buffer.from(chunk));
      },
    },
    limits,
  );
  for (const chunk of chunks) decoder.execute(chunk);
  decoder.finish();
  if (head === undefined || !ended || !decoder.done) throw new ContractError('finish() passed an incomplete request');
  return { head, body: Buffer.concat(body), excess: Buffer.concat(excess), excessBytes: decoder.excessBytes };
}

type Outcome = { ok: Decoded } | { code: string; message: string };

/** The decoded request or the UwsgiError; anything else is rethrown and fails the property. */
function outcome(chunks: readonly Buffer[], limits: DecoderLimits): Outcome {
  try {
    return { ok: drive(chunks, limits) };
  } catch (err) {
    if (!(err instanceof UwsgiError)) throw err;
    return { code: err.code, message: err.message };
  }
}

const seen = new Map<string, number>();
const FIXTURE = readFixture('nginx-post-form.uwsgi');
const fixture = outcome([FIXTURE], DEFAULT_LIMITS);

/** expect().toEqual() costs more than the decoding; a million runs need the cheap check (the failure still shows both). */
function same(actual: Outcome, expected: Outcome): void {
  if (!isDeepStrictEqual(actual, expected)) expect(actual).toEqual(expected);
}

function checkError(result: Outcome): void {
  if (!('code' in result)) return;
  seen.set(result.code, (seen.get(result.code) ?? 0) + 1);
  if (!DECODER_CODES.has(result.code as ErrorCode) || !(result.code in ERRORS)) throw new Error(`not a decoder code: ${result.code}`);
  // Every placeholder of the table's message was filled from the details.
  if (/\{[a-zA-Z]+\}/.test(result.message)) throw new Error(`unfilled placeholder in ${JSON.stringify(result.message)}`);
}

// --- generators ----------------------------------------------------------------------------------------------

const latin1 = fc.string({ unit: fc.integer({ min: 0, max: 0xff }).map((c) => String.fromCharCode(c)), maxLength: 16 });
const varName = fc.oneof(
  latin1,
  fc.constantFrom('REQUEST_METHOD', 'REQUEST_URI', 'PATH_INFO', 'HTTP_HOST', 'HTTP_COOKIE', 'HTTP_UPGRADE', 'HTTPS'),
);
const contentLengthValue = fc.oneof(
  fc.nat({ max: 600 }).map(String),
  fc.string({ unit: fc.constantFrom(...'0123456789 -+.exX'), maxLength: 17 }),
);

/** A packet as nginx would send it: vars in any order, maybe CONTENT_LENGTH and HTTP_CONTENT_LENGTH, a body. */
const packet = fc
  .record({
    vars: fc.array(fc.tuple(varName, latin1), { maxLength: 12 }),
    body: fc.uint8Array({ maxLength: 300 }),
    lengthAt: fc.nat(),
    header: fc.oneof(fc.constant(undefined), fc.constant('same'), contentLengthValue),
  })
  .map(({ vars, body, lengthAt, header }) => {
    const flat = vars.filter(([name]) => name !== '' && name !== 'CONTENT_LENGTH' && name !== 'HTTP_CONTENT_LENGTH').flat();
    const at = 2 * (lengthAt % (flat.length / 2 + 1));
    flat.splice(at, 0, 'CONTENT_LENGTH', String(body.length));
    if (header !== undefined) flat.push('HTTP_CONTENT_LENGTH', header === 'same' ? String(body.length) : header);
    return { vars: flat, body: Buffer.from(body) };
  })
  .filter(({ vars }) => vars.reduce((n, v) => n + 2 + v.length, 0) <= MAX_VARS_SIZE);

const HTTP_STARTS = ['GET ', 'POST', 'HEAD', 'PUT ', 'DELE', 'OPTI', 'PATC', 'CONN', 'TRAC', 'PRI '];

const bytes = fc.oneof(
  // Anything at all: mostly stops at modifier1.
  fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
  // A plausible header, then anything: reaches the vars parser.
  fc
    .tuple(fc.nat({ max: 600 }), fc.integer({ min: 0, max: 0xff }), fc.uint8Array({ maxLength: 600 }))
    .map(([size, modifier2, rest]) => Buffer.concat([Buffer.from([0, size & 0xff, size >> 8, modifier2]), rest])),
  // HTTP on the uwsgi socket.
  fc.tuple(fc.constantFrom(...HTTP_STARTS), latin1).map(([start, rest]) => Buffer.from(start + rest, 'latin1')),
  // A vars block of arbitrary (key length, key, value length, value) records, lengths maybe lying.
  fc
    .array(fc.tuple(fc.nat({ max: 70 }), latin1, fc.nat({ max: 70 }), latin1), { maxLength: 12 })
    .map((records) => {
      const block = Buffer.concat(
        records.map(([kl, k, vl, v]) => {
          const key = Buffer.from(k, 'latin1');
          const value = Buffer.from(v, 'latin1');
          const out = Buffer.alloc(4 + key.length + value.length);
          out.writeUInt16LE(kl, 0);
          key.copy(out, 2);
          out.writeUInt16LE(vl, 2 + key.length);
          value.copy(out, 4 + key.length);
          return out;
        }),
      );
      return Buffer.concat([Buffer.from([0, block.length & 0xff, block.length >> 8, 0]), block]);
    }),
  // A well-formed packet whose CONTENT_LENGTH may be anything, and whose body may be short or long.
  fc
    .tuple(packet, contentLengthValue, fc.integer({ min: -20, max: 20 }))
    .map(([{ vars, body }, length, delta]) => {
      const i = vars.indexOf('CONTENT_LENGTH');
      vars[i + 1] = length;
      const sized = delta < 0 ? body.subarray(0, Math.max(0, body.length + delta)) : Buffer.concat([body, Buffer.alloc(delta, 0x2a)]);
      return encodeRequest(vars, sized);
    }),
  // A valid packet with bytes overwritten, inserted or deleted, and maybe its tail cut off.
  fc
    .tuple(
      packet,
      fc.array(fc.tuple(fc.constantFrom('set', 'insert', 'delete'), fc.nat(), fc.integer({ min: 0, max: 0xff })), { maxLength: 4 }),
      fc.oneof(fc.constant(0), fc.nat()),
    )
    .map(([{ vars, body }, edits, cut]) => {
      let data = encodeRequest(vars, body);
      for (const [op, at, byte] of edits) {
        const i = at % (data.length + 1);
        if (op === 'set' && i < data.length) data[i] = byte;
        else if (op === 'insert') data = Buffer.concat([data.subarray(0, i), Buffer.from([byte]), data.subarray(i)]);
        else if (op === 'delete') data = Buffer.concat([data.subarray(0, i), data.subarray(i + 1)]);
      }
      return data.subarray(0, data.length - (cut % (data.length + 1)));
    }),
);

const limits = fc.oneof(
  { weight: 2, arbitrary: fc.constant(DEFAULT_LIMITS) },
  {
    weight: 3,
    arbitrary: fc.record({
      maxVarsSize: fc.oneof(fc.nat({ max: 700 }), fc.constant(MAX_VARS_SIZE)),
      maxVars: fc.oneof(fc.nat({ max: 40 }), fc.constant(DEFAULT_LIMITS.maxVars)),
      maxBodySize: fc.oneof(fc.constant(undefined), fc.constant(0), fc.nat({ max: 700 })),
    }),
  },
);

/** Cut points, repeats and ends included: empty chunks are fed too. */
const cuts = fc.array(fc.nat(), { maxLength: 12 });
const chunked = (data: Buffer, points: number[]): Buffer[] => splitAt(data, points.map((p) => p % (data.length + 1)));

// --- properties ----------------------------------------------------------------------------------------------

describe('the decoder under arbitrary input', () => {
  it(
    'lets only its own UwsgiErrors escape, the same whole or in any chunking, and a fresh decoder still decodes a valid packet',
    () => {
      seen.clear();
      let decodedCount = 0;
      fc.assert(
        fc.property(bytes, cuts, cuts, limits, (data, pointsA, pointsB, lim) => {
          const whole = outcome([data], lim);
          checkError(whole);
          if ('ok' in whole) decodedCount++;
          same(outcome(chunked(data, pointsA), lim), whole);
          // One byte at a time for short inputs: every split point at once.
          if (data.length <= 64) same(outcome([...data].map((b) => Buffer.from([b])), lim), whole);
          // No state shared between decoders: nginx's own packet decodes as it always does.
          same(outcome(chunked(FIXTURE, pointsB), DEFAULT_LIMITS), fixture);
        }),
        { numRuns: RUNS },
      );
      // The generators reach deep enough: requests decoded, and most of the decoder's errors raised.
      expect(decodedCount).toBeGreaterThan(0);
      // (a short run may miss the rarest, ERR_BODY_TOO_LARGE, about 1 input in 1000; a long one must see them all).
      const expected = RUNS >= 100_000 ? DECODER_CODES.size : RUNS >= 500 ? 8 : 4;
      expect(seen.size, JSON.stringify([...seen])).toBeGreaterThanOrEqual(expected);
    },
    TIMEOUT,
  );

  it(
    'decodes a valid packet whatever follows it on the same connection: trailing bytes are excess, never a request',
    () => {
      fc.assert(
        fc.property(packet, fc.uint8Array({ minLength: 1, maxLength: 400 }), cuts, (good, trailing, points) => {
          // Without the Content-Length header, which this generator may make disagree on purpose.
          const withoutHeader: string[] = [];
          for (let i = 0; i < good.vars.length; i += 2) {
            if (good.vars[i] !== 'HTTP_CONTENT_LENGTH') withoutHeader.push(good.vars[i]!, good.vars[i + 1]!);
          }
          const tail = Buffer.from(trailing);
          const data = Buffer.concat([encodeRequest(withoutHeader, good.body), tail]);
          const result = outcome(chunked(data, points), DEFAULT_LIMITS);
          if ('code' in result) throw new Error(`a valid packet raised ${result.code}: ${result.message}`);
          const { head, body, excess, excessBytes } = result.ok;
          if (!isDeepStrictEqual(head.vars, withoutHeader) || !body.equals(good.body) || excessBytes !== tail.length || !excess.equals(tail)) {
            expect({ vars: head.vars, body, excess, excessBytes }).toEqual({ vars: withoutHeader, body: good.body, excess: tail, excessBytes: tail.length });
          }
        }),
        { numRuns: RUNS },
      );
    },
    TIMEOUT,
  );
});

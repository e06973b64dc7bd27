// Fuzzing the whole connection handler over a real Unix socket (issue 5): arbitrary bytes in arbitrary chunks,
// valid packets with arbitrary corruption. Only the project's own error codes may appear in the log, every
// answer is a well-formed HTTP response (or none), the server stays up, and a following good request succeeds.
// One property, two accept paths: test/server/fuzz.test.ts runs JavaScript's (unit), test/integration/native-fuzz.test.ts
// the native addon's (built with a C compiler). The long run is `npm run fuzz`: both over a million inputs (FUZZ_RUNS).
import net from 'node:net';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERRORS } from '../../src/errors.js';
import type { ExchangeHandler } from '../../src/exchange.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { chooseAccept } from '../../src/server/native.js';
import { nginxVars, parseRawResponse, startTestServer, type TestServer } from './serve.js';

/** The response sinks requests were answered through: NativeResponse on the native path's requests that run without a socket. */
const sinks = new Set<string>();
const echo: ExchangeHandler = async (ex) => {
  sinks.add(ex.response.constructor.name);
  let length = 0;
  for await (const chunk of ex.body) length += (chunk as Buffer).length;
  ex.response.writeHead(200, undefined, [['Content-Type', 'text/plain']]);
  ex.response.write(`read ${length}`);
  ex.response.end();
};

const KNOWN = new Set(Object.keys(ERRORS));
// `npm run fuzz` sets FUZZ_RUNS (a million); the suite runs a short pass.
const RUNS = Number(process.env.FUZZ_RUNS ?? 500);

/** Writes the chunks, then half-closes (as a peer that has said all it will), and reads until the server closes. */
function sendAndEnd(path: string, parts: Buffer[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ path }, () => {
      for (const part of parts) socket.write(part);
      socket.end();
    });
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? undefined : reject(err)));
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** Splits `data` at the given cut points into chunks written one by one. */
function chunked(data: Buffer, cuts: number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => c % (data.length + 1)))].sort((a, b) => a - b);
  const parts: Buffer[] = [];
  let last = 0;
  for (const p of points) {
    parts.push(data.subarray(last, p));
    last = p;
  }
  parts.push(data.subarray(last));
  return parts.filter((p) => p.length > 0);
}

const good = encodeRequest(nginxVars({ REQUEST_METHOD: 'POST', CONTENT_LENGTH: '5' }), Buffer.from('hello'));
const input = fc.oneof(
  fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  // A valid packet with a few bytes overwritten and maybe cut short: what a confused peer sends.
  fc
    .tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat())
    .map(([edits, cut]) => {
      const copy = Buffer.from(good);
      for (const [at, value] of edits) copy[at % copy.length] = value;
      return copy.subarray(0, Math.max(1, copy.length - (cut % 8)));
    }),
);

/** The fuzz on one accept path: JavaScript's, or the native one (src/native/accept.c reads the first bytes and checks
 * the header's size before the codec sees them). */
export function describeServerFuzz(accept: 'js' | 'native'): void {
  describe(`the connection handler under arbitrary input, ${accept} accept`, () => {
    let server: TestServer;
    beforeAll(async () => {
      const native = accept === 'native' ? chooseAccept('native').addon : undefined;
      server = await startTestServer(echo, { config: { headerTimeout: 2000, bodyTimeout: 2000, native } });
      sinks.clear();
    });
    afterAll(async () => {
      await server.close();
    });

    it('answers only with its own errors or a response, stays up, and serves the next good request', async () => {
      await fc.assert(
        fc.asyncProperty(input, fc.array(fc.nat(), { maxLength: 5 }), async (data, cuts) => {
          const before = server.records.length;
          const raw = await sendAndEnd(server.path, chunked(data, cuts));
          if (raw.length > 0) {
            const res = parseRawResponse(raw);
            expect(res.statusLine).toMatch(/^HTTP\/1\.1 [1-5]\d\d /);
          }
          for (const record of server.records.slice(before)) {
            // The project's codes, or an errno (EPIPE, ECONNRESET) on a 'connection error' debug line.
            const code = record.code === undefined ? undefined : String(record.code);
            if (code !== undefined && !KNOWN.has(code)) {
              expect(record.msg, code).toBe('connection error');
              expect(code).toMatch(/^E[A-Z]+$/);
            }
          }
          const next = parseRawResponse(await server.send(good));
          expect(next.body.toString()).toBe('read 5');
        }),
        { numRuns: RUNS },
      );
      // The native path did serve: body-less complete heads (a corrupted CONTENT_LENGTH) ran without a socket.
      if (accept === 'native') expect(sinks).toContain('NativeResponse');
    }, Math.max(120_000, RUNS * 20));
  });
}

// The decoder against packets captured from nginx 1.22 (tools/capture-nginx.mjs), replayed in every chunking,
// and against malformed input, each case asserting the exact error code from src/errors.ts.
import { describe, expect, it } from 'vitest';
import { ERRORS, isUwsgiError, type ErrorCode, type ErrorSpec, type UwsgiError } from '../../src/errors.js';
import { RequestDecoder, encodeRequest, type DecoderLimits } from '../../src/protocol/index.js';
import {
  bytesOf,
  decodeChunks,
  fixtureFiles,
  hex,
  pairs,
  randomSplit,
  readFixture,
  splitAt,
  thrown,
} from './helpers.js';

// Vars that differ on every capture (ephemeral ports): the tool's re-runs must not break the tests.
const ANY_PORT = expect.stringMatching(/^[0-9]{1,5}$/);
const ANY_HOST = expect.stringMatching(/^127\.0\.0\.1:[0-9]{1,5}$/);

type Expected = Array<[string, unknown]>;

/** The vars of nginx/uwsgi_params, in file order (HTTPS is absent: if_not_empty, and these are plain HTTP). */
function params(p: {
  method: string;
  uri: string;
  path: string;
  query?: string;
  contentType?: string;
  contentLength?: string;
  remotePort?: unknown;
  serverPort?: unknown;
}): Expected {
  return [
    ['QUERY_STRING', p.query ?? ''],
    ['REQUEST_METHOD', p.method],
    ['CONTENT_TYPE', p.contentType ?? ''],
    ['CONTENT_LENGTH', p.contentLength ?? ''],
    ['REQUEST_URI', p.uri],
    ['PATH_INFO', p.path],
    ['DOCUMENT_ROOT', '/tmp/cap/html'],
    ['SERVER_PROTOCOL', 'HTTP/1.1'],
    ['REQUEST_SCHEME', 'http'],
    ['REMOTE_ADDR', '127.0.0.1'],
    ['REMOTE_PORT', p.remotePort ?? ANY_PORT],
    ['SERVER_PORT', p.serverPort ?? ANY_PORT],
    ['SERVER_NAME', ''],
  ];
}

const UA: [string, unknown] = ['HTTP_USER_AGENT', 'capture-nginx'];
const CLOSE: [string, unknown] = ['HTTP_CONNECTION', 'close'];
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

/** What each fixture must decode to. modifier1 and modifier2 are 0 in every packet nginx sends. */
const GOLDEN: Record<string, { vars: Expected; body: Buffer }> = {
  // The first two were captured with curl (FROM_CURL), their ports pinned as they are.
  'nginx-get-query.uwsgi': {
    vars: [
      ...params({ method: 'GET', uri: '/hello?x=1', path: '/hello', query: 'x=1', remotePort: '36710', serverPort: '9080' }),
      ['HTTP_HOST', '127.0.0.1'],
      ['HTTP_USER_AGENT', 'curl/7.88.1'],
      ['HTTP_ACCEPT', '*/*'],
      ['HTTP_X_CUSTOM', 'a'],
    ],
    body: Buffer.alloc(0),
  },
  'nginx-post-form.uwsgi': {
    vars: [
      ...params({
        method: 'POST',
        uri: '/p',
        path: '/p',
        contentType: 'application/x-www-form-urlencoded',
        contentLength: '3',
        remotePort: '36726',
        serverPort: '9080',
      }),
      ['HTTP_HOST', '127.0.0.1'],
      ['HTTP_USER_AGENT', 'curl/7.88.1'],
      ['HTTP_ACCEPT', '*/*'],
      // nginx sends both CONTENT_* and HTTP_CONTENT_*: a server mapping both to headers duplicates them.
      ['HTTP_CONTENT_LENGTH', '3'],
      ['HTTP_CONTENT_TYPE', 'application/x-www-form-urlencoded'],
    ],
    body: bytesOf('abc'),
  },
  'nginx-head.uwsgi': {
    vars: [...params({ method: 'HEAD', uri: '/status', path: '/status' }), ['HTTP_HOST', ANY_HOST], UA, CLOSE],
    body: Buffer.alloc(0),
  },
  'nginx-get-query-encoded.uwsgi': {
    vars: [
      // PATH_INFO is decoded (UTF-8 bytes, read as latin1) and normalised; REQUEST_URI stays raw.
      ...params({
        method: 'GET',
        uri: '/caf%C3%A9/./docs/../menu?q=caf%C3%A9&a=1&a=2&empty=',
        path: '/caf\u00c3\u00a9/menu',
        query: 'q=caf%C3%A9&a=1&a=2&empty=',
      }),
      ['HTTP_HOST', ANY_HOST],
      UA,
      ['HTTP_ACCEPT', 'text/html'],
      CLOSE,
    ],
    body: Buffer.alloc(0),
  },
  'nginx-get-cookies.uwsgi': {
    vars: [
      ...params({ method: 'GET', uri: '/cookies', path: '/cookies' }),
      ['HTTP_HOST', ANY_HOST],
      // nginx 1.22 sends a repeated header as separate vars, in the client's order.
      ['HTTP_COOKIE', 'a=1'],
      UA,
      ['HTTP_COOKIE', 'b=2; c=3'],
      CLOSE,
    ],
    body: Buffer.alloc(0),
  },
  'nginx-post-json.uwsgi': {
    vars: [
      ...params({
        method: 'POST',
        uri: '/api/items',
        path: '/api/items',
        contentType: 'application/json; charset=utf-8',
        contentLength: '22',
      }),
      ['HTTP_HOST', ANY_HOST],
      UA,
      ['HTTP_CONTENT_TYPE', 'application/json; charset=utf-8'],
      ['HTTP_CONTENT_LENGTH', '22'],
      CLOSE,
    ],
    body: Buffer.from('{"name":"café","n":1}', 'utf8'),
  },
  'nginx-post-binary.uwsgi': {
    vars: [
      ...params({
        method: 'POST',
        uri: '/upload',
        path: '/upload',
        contentType: 'application/octet-stream',
        contentLength: '256',
      }),
      ['HTTP_HOST', ANY_HOST],
      UA,
      ['HTTP_CONTENT_TYPE', 'application/octet-stream'],
      ['HTTP_CONTENT_LENGTH', '256'],
      CLOSE,
    ],
    body: ALL_BYTES,
  },
  'nginx-post-chunked.uwsgi': {
    vars: [
      // De-chunked by nginx: CONTENT_LENGTH is set, HTTP_TRANSFER_ENCODING still says chunked.
      ...params({
        method: 'POST',
        uri: '/upload/chunked',
        path: '/upload/chunked',
        contentType: 'text/plain',
        contentLength: '11',
      }),
      ['HTTP_HOST', ANY_HOST],
      UA,
      ['HTTP_CONTENT_TYPE', 'text/plain'],
      ['HTTP_TRANSFER_ENCODING', 'chunked'],
      CLOSE,
    ],
    body: bytesOf('hello world'),
  },
  'nginx-post-expect-continue.uwsgi': {
    vars: [
      ...params({ method: 'POST', uri: '/expect', path: '/expect', contentType: 'text/plain', contentLength: '9' }),
      ['HTTP_HOST', ANY_HOST],
      UA,
      ['HTTP_CONTENT_TYPE', 'text/plain'],
      ['HTTP_CONTENT_LENGTH', '9'],
      // nginx answered the 100 Continue itself; the backend must not send another.
      ['HTTP_EXPECT', '100-continue'],
      CLOSE,
    ],
    body: bytesOf('continued'),
  },
  'nginx-post-empty.uwsgi': {
    vars: [
      ...params({ method: 'POST', uri: '/empty', path: '/empty', contentLength: '0' }),
      ['HTTP_HOST', ANY_HOST],
      UA,
      ['HTTP_CONTENT_LENGTH', '0'],
      CLOSE,
    ],
    body: Buffer.alloc(0),
  },
};

const FILES = fixtureFiles();
/** Captured before tools/capture-nginx.mjs existed; everything else comes from it. */
const FROM_CURL = new Set(['nginx-get-query.uwsgi', 'nginx-post-form.uwsgi']);
const SEEDS = [1, 7, 42, 1337, 0xc0ffee];

function bytewise(buf: Buffer): Buffer[] {
  return Array.from({ length: buf.length }, (_, i) => buf.subarray(i, i + 1));
}

/** The thrown error must be this code from the table, with every message placeholder filled. */
function expectCode(fn: () => unknown, code: ErrorCode): UwsgiError {
  const err = thrown(fn);
  if (!isUwsgiError(err)) throw err;
  expect(err.code).toBe(code);
  const spec: ErrorSpec = ERRORS[code];
  expect(err.status).toBe(spec.status);
  expect(err.message).not.toMatch(/\{\w+\}/);
  return err;
}

/** The same error whether the packet arrives whole or a byte at a time. */
function expectCodeInAnyChunking(buf: Buffer, code: ErrorCode, limits?: DecoderLimits): UwsgiError {
  const whole = expectCode(() => decodeChunks([buf], limits), code);
  const bytes = expectCode(() => decodeChunks(bytewise(buf), limits), code);
  expect(bytes.details).toEqual(whole.details);
  return whole;
}

function withByte(buf: Buffer, offset: number, value: number): Buffer {
  const copy = Buffer.from(buf);
  copy[offset] = value;
  return copy;
}

function varsSizeOf(packet: Buffer): number {
  return packet.readUInt16LE(1);
}

describe('golden vectors from nginx', () => {
  it('has an expectation for every captured fixture, and a fixture for every expectation', () => {
    expect(FILES).toEqual(Object.keys(GOLDEN).sort());
  });

  // The ports the tests leave open must still agree with each other: nginx listened where the client connected.
  it.each(FILES.filter((file) => !FROM_CURL.has(file)))('%s names the same port in HTTP_HOST and SERVER_PORT', (file) => {
    const vars = new Map(pairs(decodeChunks([readFixture(file)]).head.vars));
    expect(vars.get('HTTP_HOST')).toBe(`127.0.0.1:${vars.get('SERVER_PORT')}`);
  });

  describe.each(FILES)('%s', (file) => {
    const packet = readFixture(file);
    const golden = GOLDEN[file]!;
    const reference = decodeChunks([packet]);

    it('decodes whole to the exact modifiers, vars in order and body', () => {
      expect(packet[0]).toBe(0);
      expect(reference.head.modifier1).toBe(0);
      expect(reference.head.modifier2).toBe(0);
      expect(pairs(reference.head.vars)).toEqual(golden.vars);
      expect(reference.body).toEqual(golden.body);
      expect(reference.head.contentLength).toBe(golden.body.length);
      expect(reference.excessBytes).toBe(0);
    });

    it('decodes the same one byte at a time', () => {
      expect(decodeChunks(bytewise(packet))).toEqual(reference);
    });

    it('decodes the same split in two at every point', () => {
      for (let cut = 0; cut <= packet.length; cut++) {
        expect(decodeChunks(splitAt(packet, [cut])), `split at ${cut}`).toEqual(reference);
      }
    });

    it('decodes the same when the caller reuses one buffer for every chunk', () => {
      // A reader with a fixed buffer overwrites it after execute() returns: what the decoder keeps must be copies.
      const scratch = Buffer.alloc(64);
      function* reused(): Generator<Buffer> {
        for (const chunk of randomSplit(packet, 3, scratch.length)) {
          chunk.copy(scratch);
          yield scratch.subarray(0, chunk.length);
          scratch.fill(0xaa);
        }
      }
      expect(decodeChunks(reused())).toEqual(reference);
    });

    it.each(SEEDS)('decodes the same in random chunks, seed %i', (seed) => {
      const chunks = randomSplit(packet, seed);
      expect(chunks.length).toBeGreaterThan(1);
      expect(decodeChunks(chunks)).toEqual(reference);
    });
  });
});

describe('modifiers', () => {
  const get = readFixture('nginx-get-query.uwsgi');

  it.each([1, 5, 0x16, 0xff])('refuses modifier1 %i with ERR_UWSGI_MODIFIER', (modifier1) => {
    const err = expectCodeInAnyChunking(withByte(get, 0, modifier1), 'ERR_UWSGI_MODIFIER');
    expect(err.details).toEqual({ modifier1 });
  });

  it('refuses as soon as the 4-byte header is in, before the vars arrive', () => {
    const decoder = new RequestDecoder({ onHead() {}, onBody() {}, onEnd() {} });
    decoder.execute(hex('05 6b 01'));
    expectCode(() => decoder.execute(hex('00')), 'ERR_UWSGI_MODIFIER');
  });

  it('takes a "G" that starts no HTTP method for a modifier, not for HTTP', () => {
    expectCodeInAnyChunking(bytesOf('GXYZ'), 'ERR_UWSGI_MODIFIER');
  });

  it('reports modifier2 as sent (nginx sends 0; it means nothing for modifier1 0)', () => {
    const decoded = decodeChunks([withByte(get, 3, 7)]);
    expect(decoded.head.modifier2).toBe(7);
    expect(decoded.head.vars).toEqual(decodeChunks([get]).head.vars);
  });
});

describe('HTTP sent to the uwsgi socket', () => {
  // Read as a uwsgi header, "GET " is modifier1 71 with a vars size of 21573: uWSGI's "invalid request block size".
  it.each([
    'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
    'POST /form HTTP/1.1\r\nContent-Length: 0\r\n\r\n',
    'HEAD / HTTP/1.0\r\n\r\n',
    'PUT /x HTTP/1.1\r\n\r\n',
    'DELETE /x HTTP/1.1\r\n\r\n',
    'OPTIONS * HTTP/1.1\r\n\r\n',
    'PATCH /x HTTP/1.1\r\n\r\n',
    'CONNECT example.com:443 HTTP/1.1\r\n\r\n',
    'TRACE / HTTP/1.1\r\n\r\n',
    'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n',
  ])('refuses %j with ERR_UWSGI_HTTP_ON_SOCKET', (request) => {
    const err = expectCodeInAnyChunking(bytesOf(request), 'ERR_UWSGI_HTTP_ON_SOCKET');
    expect(err.details).toEqual({ preview: JSON.stringify(request.slice(0, 4)) });
  });

  it('reports a connection closed before 4 bytes as an incomplete head, not as HTTP', () => {
    expectCodeInAnyChunking(bytesOf('GET'), 'ERR_UWSGI_HEAD_INCOMPLETE');
  });
});

describe('limits', () => {
  const get = readFixture('nginx-get-query.uwsgi');
  const size = varsSizeOf(get);
  const count = decodeChunks([get]).head.vars.length / 2;

  it('accepts a vars block of exactly maxVarsSize bytes', () => {
    expect(decodeChunks([get], { maxVarsSize: size, maxVars: 1000 }).head.vars).toHaveLength(count * 2);
  });

  it('refuses a vars block one byte over maxVarsSize with ERR_UWSGI_VARS_TOO_LARGE', () => {
    const err = expectCodeInAnyChunking(get, 'ERR_UWSGI_VARS_TOO_LARGE', { maxVarsSize: size - 1, maxVars: 1000 });
    expect(err.details).toEqual({ size, limit: size - 1 });
  });

  it('refuses an oversized block from its header alone, without buffering the block', () => {
    const decoder = new RequestDecoder({ onHead() {}, onBody() {}, onEnd() {} }, { maxVarsSize: 100, maxVars: 1000 });
    expectCode(() => decoder.execute(get.subarray(0, 4)), 'ERR_UWSGI_VARS_TOO_LARGE');
  });

  it('accepts exactly maxVars vars', () => {
    expect(decodeChunks([get], { maxVarsSize: 65535, maxVars: count }).head.vars).toHaveLength(count * 2);
  });

  it('refuses one var more than maxVars with ERR_UWSGI_TOO_MANY_VARS', () => {
    const err = expectCodeInAnyChunking(get, 'ERR_UWSGI_TOO_MANY_VARS', { maxVarsSize: 65535, maxVars: count - 1 });
    expect(err.details).toEqual({ limit: count - 1 });
  });
});

describe('malformed vars blocks', () => {
  const form = readFixture('nginx-post-form.uwsgi');

  it.each([
    ['a key length past the block end', '00 04 00 00 | 05 00 41 42', 'key longer than the block'],
    ['a value length past the block end', '00 06 00 00 | 01 00 41 | 05 00 78', 'value longer than the block'],
    ['a key length cut by the block end', '00 01 00 00 | 01', 'truncated key length'],
    ['a value length cut by the block end', '00 04 00 00 | 01 00 41 | 01', 'truncated value length'],
    ['a second key of 65535 bytes', '00 09 00 00 | 01 00 41 | 01 00 78 | ff ff 42', 'key longer than the block'],
    ['an empty key', '00 05 00 00 | 00 00 | 01 00 78', 'empty key'],
  ])('refuses %s with ERR_UWSGI_MALFORMED_VARS', (_name, bytes, detail) => {
    const err = expectCodeInAnyChunking(hex(bytes), 'ERR_UWSGI_MALFORMED_VARS');
    expect(err.details.detail).toBe(detail);
  });

  it('refuses a real packet whose vars size ends inside its last value', () => {
    const short = Buffer.from(form);
    short.writeUInt16LE(varsSizeOf(form) - 1, 1);
    expect(expectCodeInAnyChunking(short, 'ERR_UWSGI_MALFORMED_VARS').details.detail).toBe('value longer than the block');
  });

  it('refuses a real packet whose vars size takes in body bytes', () => {
    const long = Buffer.from(form);
    long.writeUInt16LE(varsSizeOf(form) + 2, 1);
    // The body's "ab" reads as a key length of 0x6261.
    expect(expectCodeInAnyChunking(long, 'ERR_UWSGI_MALFORMED_VARS').details.detail).toBe('key longer than the block');
  });

  it('accepts an empty vars block (a request with no vars at all)', () => {
    const decoded = decodeChunks([hex('00 00 00 00')]);
    expect(decoded.head.vars).toEqual([]);
    expect(decoded.head.contentLength).toBe(0);
  });
});

describe('CONTENT_LENGTH', () => {
  const packet = (value: string, body = ''): Buffer =>
    encodeRequest(['REQUEST_METHOD', 'POST', 'CONTENT_LENGTH', value], bytesOf(body));

  it.each(['abc', '-1', '1e3', ' 5', '5 ', '+5', '0x10', '1.5', '1_000'])(
    'refuses %j with ERR_UWSGI_BAD_CONTENT_LENGTH',
    (value) => {
      const err = expectCodeInAnyChunking(packet(value, 'hello'), 'ERR_UWSGI_BAD_CONTENT_LENGTH');
      expect(err.details).toEqual({ value: JSON.stringify(value) });
    },
  );

  it.each([
    ['', 0],
    ['0', 0],
    ['5', 5],
    ['007', 7],
  ])('reads %j as %i body bytes', (value, length) => {
    const body = 'hello, world'.slice(0, length);
    const decoded = decodeChunks([packet(value, body)]);
    expect(decoded.head.contentLength).toBe(length);
    expect(decoded.body.toString('latin1')).toBe(body);
  });

  it('frames by CONTENT_LENGTH alone: HTTP_CONTENT_LENGTH and HTTP_TRANSFER_ENCODING are only headers', () => {
    // What nginx sends with uwsgi_pass_request_body off, minus CONTENT_LENGTH: no body may be read.
    const head = encodeRequest(['HTTP_CONTENT_LENGTH', 'abc', 'HTTP_TRANSFER_ENCODING', 'chunked']);
    const decoded = decodeChunks([Buffer.concat([head, bytesOf('5\r\nhello\r\n0\r\n\r\n')])]);
    expect(decoded.head.contentLength).toBe(0);
    expect(decoded.body).toEqual(Buffer.alloc(0));
    expect(decoded.excessBytes).toBe(15);
  });
});

describe('finish() on a connection closed early', () => {
  const get = readFixture('nginx-get-query.uwsgi');
  const binary = readFixture('nginx-post-binary.uwsgi');
  const headEnd = 4 + varsSizeOf(binary);

  it('throws ERR_UWSGI_HEAD_INCOMPLETE at every cut before the vars block ends', () => {
    for (let cut = 0; cut < 4 + varsSizeOf(get); cut++) {
      const err = expectCode(() => decodeChunks(splitAt(get.subarray(0, cut), [cut >> 1])), 'ERR_UWSGI_HEAD_INCOMPLETE');
      expect(err.details, `cut at ${cut}`).toEqual({ received: cut });
    }
  });

  it('throws ERR_UWSGI_BODY_INCOMPLETE at every cut inside the body', () => {
    for (let cut = headEnd; cut < binary.length; cut++) {
      const err = expectCode(() => decodeChunks([binary.subarray(0, cut)]), 'ERR_UWSGI_BODY_INCOMPLETE');
      expect(err.details, `cut at ${cut}`).toEqual({ received: cut - headEnd, expected: 256 });
    }
  });

  it('has delivered the head and the body so far before the body is cut', () => {
    const seen: string[] = [];
    const decoder = new RequestDecoder({
      onHead: () => seen.push('head'),
      onBody: (chunk) => seen.push(`body ${chunk.length}`),
      onEnd: () => seen.push('end'),
    });
    decoder.execute(binary.subarray(0, headEnd + 10));
    expect(decoder.headComplete).toBe(true);
    expect(decoder.bodyRemainingBytes).toBe(246);
    expectCode(() => decoder.finish(), 'ERR_UWSGI_BODY_INCOMPLETE');
    expect(seen).toEqual(['head', 'body 10']);
  });
});

describe('bytes after the request', () => {
  const form = readFixture('nginx-post-form.uwsgi');
  const get = readFixture('nginx-get-query.uwsgi');

  it('counts a second packet as excess and never decodes it as another request', () => {
    const both = Buffer.concat([form, get]);
    const reference = decodeChunks([both]);
    expect(reference.head).toEqual(decodeChunks([form]).head);
    expect(reference.body).toEqual(bytesOf('abc'));
    expect(reference.excessBytes).toBe(get.length);
    // onHead twice would throw in decodeChunks, in any chunking.
    for (let cut = 0; cut <= both.length; cut++) expect(decodeChunks(splitAt(both, [cut]))).toEqual(reference);
    expect(decodeChunks(bytewise(both))).toEqual(reference);
  });

  it('counts HTTP after a bodiless request as excess, not as ERR_UWSGI_HTTP_ON_SOCKET', () => {
    const decoded = decodeChunks([get, bytesOf('GET / HTTP/1.1\r\n\r\n')]);
    expect(decoded.excessBytes).toBe(18);
  });

  it('is done as soon as the body is complete, before any excess arrives', () => {
    const decoder = new RequestDecoder({ onHead() {}, onBody() {}, onEnd() {} });
    decoder.execute(form);
    expect(decoder.done).toBe(true);
    expect(decoder.excessBytes).toBe(0);
    decoder.execute(bytesOf('xy'));
    decoder.execute(bytesOf('z'));
    expect(decoder.excessBytes).toBe(3);
    decoder.finish();
  });
});

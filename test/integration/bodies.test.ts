// Request and response bodies through a real nginx for each interface: multi-megabyte uploads (sized and
// chunked by the client), a 16 MB streamed download, and a response without Content-Length as HTTP/1.0 and
// HTTP/1.1 clients receive it byte for byte.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeChunked, expectedDownload, httpDigest, httpRequest, parseResponse, rawExchange, seededBytes, sha256, startStack, type Stack } from './nginx.js';

// The apps' payloads (test/fixtures/apps/integration/payload.mjs), computed here independently (the download:
// expectedDownload in nginx.ts).
const STREAM_BYTES = Buffer.from(['alpha\n', 'bravo '.repeat(5000) + '\n', 'charlie\n', 'd'.repeat(100_000) + '\n', 'echo\n'].join(''));

const UPLOAD = seededBytes(0x5eed, 8 * 1024 * 1024 + 13);

describe.each(['wsgi', 'node', 'fetch'] as const)('bodies through nginx, %s interface', (name) => {
  let stack: Stack;
  beforeAll(async () => {
    stack = await startStack({ app: `${name}.mjs` });
  });
  afterAll(async () => {
    await stack?.stop();
  });

  it('receives an 8 MB upload whole: the app hashes its input', async () => {
    const res = await httpRequest(stack.url('/upload'), {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream' },
      body: UPLOAD,
    });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({ length: UPLOAD.length, sha256: sha256(UPLOAD) });
  });

  it('receives a chunked client upload de-chunked by nginx (framed by CONTENT_LENGTH, not Transfer-Encoding)', async () => {
    const pieces = Array.from({ length: 16 }, (_, i) => UPLOAD.subarray(i * 131_072, (i + 1) * 131_072 + (i % 3)));
    const whole = Buffer.concat(pieces);
    const res = await httpRequest(stack.url('/upload'), { method: 'POST', body: pieces });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString('utf8'))).toEqual({ length: whole.length, sha256: sha256(whole) });
  });

  it('streams a 16 MB download without Content-Length: length and hash match', async () => {
    const res = await httpDigest(stack.url('/download'));
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toBe('application/octet-stream');
    // The app sent no length; nginx chunks for this HTTP/1.1 client and the client decodes.
    expect(res.headers['transfer-encoding']).toBe('chunked');
    expect({ length: res.length, sha256: res.sha256 }).toEqual(expectedDownload());
  });

  it('sends an HTTP/1.0 client a close-delimited body with no chunk framing in it', async () => {
    const { raw } = await rawExchange({ port: stack.port }, 'GET /stream HTTP/1.0\r\n\r\n');
    const res = parseResponse(raw);
    expect(res.status).toBe(200);
    expect(res.headers['transfer-encoding']).toBeUndefined();
    expect(res.headers['content-length']).toBeUndefined();
    // Chunk-size lines would show as CRLF pairs: the app's bytes have none.
    expect(res.body.includes('\r\n')).toBe(false);
    expect(res.body.equals(STREAM_BYTES)).toBe(true);
  });

  it("gives an HTTP/1.1 client nginx's own chunking, which decodes to exactly the app's bytes", async () => {
    const { raw } = await rawExchange(
      { port: stack.port },
      `GET /stream HTTP/1.1\r\nHost: 127.0.0.1:${stack.port}\r\nConnection: close\r\n\r\n`,
    );
    const res = parseResponse(raw);
    expect(res.status).toBe(200);
    expect(res.headers['transfer-encoding']).toBe('chunked');
    const decoded = decodeChunked(res.body);
    // A backend that chunked too would decode to its own chunk framing here.
    expect(decoded.data.includes('\r\n')).toBe(false);
    expect(decoded.data.length).toBe(STREAM_BYTES.length);
    expect(decoded.data.equals(STREAM_BYTES)).toBe(true);
  });
});

// Drives the production path (listen -> handleConnection -> adapter) over a real Unix socket, without nginx.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { Writable } from 'node:stream';
import type { ExchangeHandler } from '../../src/exchange.js';
import { DEFAULT_LIMITS, type DecoderLimits } from '../../src/protocol/decoder.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { createServer, type ServerConfig, type UwsgiServer } from '../../src/server/server.js';
import { chooseAccept } from '../../src/server/native.js';

export interface LogRecord {
  level: number;
  msg: string;
  [key: string]: unknown;
}

/** A pino logger whose JSON lines are kept in `records`. */
export function memoryLogger(level = 'debug'): { log: Logger; records: LogRecord[] } {
  const records: LogRecord[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line) records.push(JSON.parse(line));
      cb();
    },
  });
  return { log: pino({ level }, sink), records };
}

export interface TestServer {
  path: string;
  server: UwsgiServer;
  records: LogRecord[];
  /** Sends raw bytes (or the chunks, one write each), reads until the server closes. */
  send(data: Buffer | Buffer[]): Promise<Buffer>;
  /** Encodes a request from vars (flat [name, value, ...]) and body, sends it, parses the raw response. */
  request(vars: string[], body?: Buffer): Promise<RawResponse>;
  close(): Promise<void>;
}

export interface RawResponse {
  raw: Buffer;
  statusLine: string;
  status: number;
  headers: Array<[string, string]>;
  body: Buffer;
  header(name: string): string | undefined;
}

export async function startTestServer(
  handler: ExchangeHandler,
  opts: { limits?: DecoderLimits; accessLog?: boolean; config?: Partial<ServerConfig> } = {},
): Promise<TestServer> {
  const dir = mkdtempSync(join(tmpdir(), 'nu-test-'));
  const path = join(dir, 'app.sock');
  const { log, records } = memoryLogger();
  // NODE_UWSGI_ACCEPT=native runs these servers on the native accept path (the CLI's --accept; here js by default).
  const native = process.env.NODE_UWSGI_ACCEPT === 'native' ? chooseAccept('native').addon : undefined;
  const server = createServer({ handler, log, limits: opts.limits ?? DEFAULT_LIMITS, accessLog: opts.accessLog ?? true, native, ...opts.config });
  await server.listen([{ kind: 'unix', path }]);
  const send = (data: Buffer | Buffer[]): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = net.connect({ path });
      socket.on('data', (c) => chunks.push(c));
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(chunks)));
      socket.on('connect', () => {
        for (const part of Array.isArray(data) ? data : [data]) socket.write(part);
      });
    });
  return {
    path,
    server,
    records,
    send,
    async request(vars, body) {
      const raw = await send(encodeRequest(vars, body));
      return parseRawResponse(raw);
    },
    async close() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function parseRawResponse(raw: Buffer): RawResponse {
  const end = raw.indexOf('\r\n\r\n');
  const headText = raw.subarray(0, end === -1 ? raw.length : end).toString('latin1');
  const [statusLine = '', ...lines] = headText.split('\r\n');
  const headers = lines.map((line): [string, string] => {
    const colon = line.indexOf(':');
    return [line.slice(0, colon), line.slice(colon + 1).trim()];
  });
  return {
    raw,
    statusLine,
    status: Number(statusLine.split(' ')[1]),
    headers,
    body: end === -1 ? Buffer.alloc(0) : raw.subarray(end + 4),
    header(name) {
      const found = headers.find(([n]) => n.toLowerCase() === name.toLowerCase());
      return found?.[1];
    },
  };
}

/** The vars nginx sends for a simple request (uwsgi_params order), with overrides and extra vars appended. */
export function nginxVars(over: Record<string, string> = {}, extra: string[] = []): string[] {
  const base: Record<string, string> = {
    QUERY_STRING: '',
    REQUEST_METHOD: 'GET',
    CONTENT_TYPE: '',
    CONTENT_LENGTH: '',
    REQUEST_URI: '/',
    PATH_INFO: '/',
    DOCUMENT_ROOT: '/srv',
    SERVER_PROTOCOL: 'HTTP/1.1',
    REQUEST_SCHEME: 'http',
    REMOTE_ADDR: '203.0.113.7',
    REMOTE_PORT: '51234',
    SERVER_PORT: '80',
    SERVER_NAME: 'example.test',
    HTTP_HOST: 'example.test',
    ...over,
  };
  return [...Object.entries(base).flat(), ...extra];
}

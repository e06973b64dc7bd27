// The wsgi interface: `application(environ, startResponse)` as PEP 3333 describes it, as far as JavaScript
// allows. The environ is built from the vars (strings, latin1 as PEP 3333's "native strings"), the body is
// streamed from whatever the app returns, and headers go out only with the first non-empty chunk or at the end.
import { STATUS_CODES } from 'node:http';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { UwsgiError } from '../errors.js';
import type { Exchange, ExchangeHandler, HeaderList } from '../exchange.js';
import { getVar, schemeOf } from '../protocol/vars.js';

export type WsgiChunk = string | Uint8Array;
export type WsgiBody = WsgiChunk | Iterable<WsgiChunk> | AsyncIterable<WsgiChunk> | Readable;
/** PEP 3333's write(): a JavaScript twist, it returns a promise that resolves when the socket can take more. */
export type WsgiWrite = (data: WsgiChunk) => Promise<void>;
export type StartResponse = (status: string, headers: Array<[string, string]>, excInfo?: unknown) => WsgiWrite;
export type Environ = Record<string, unknown>;
export type WsgiApp = (environ: Environ, startResponse: StartResponse) => WsgiBody | Promise<WsgiBody>;

// PEP 3333: the server leaves these to CONTENT_TYPE/CONTENT_LENGTH; HTTP_PROXY is dropped against httpoxy
// (CVE-2016-5385), since CGI-minded code reads it as a proxy setting.
const LEFT_OUT = new Set(['HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH', 'HTTP_PROXY']);
const STATUS = /^([0-9]{3})(?: (.*))?$/;
const WSGI_VERSION = Object.freeze([1, 0]);

/** Builds the environ of one request: every var (repeated ones joined; all in order under uwsgi.vars) plus wsgi.*. */
export function buildEnviron(exchange: Pick<Exchange, 'vars' | 'body' | 'log' | 'multiprocess'>): Environ {
  const { vars } = exchange;
  const environ: Environ = {};
  for (let i = 0; i < vars.length; i += 2) {
    const name = vars[i]!;
    const value = vars[i + 1]!;
    if (name.charCodeAt(0) === 72 /* H */ && LEFT_OUT.has(name)) continue;
    const prev = environ[name];
    environ[name] = prev === undefined ? value : `${prev as string}${name === 'HTTP_COOKIE' ? '; ' : ', '}${value}`;
  }
  const scheme = schemeOf(
    environ.HTTPS as string | undefined,
    environ.REQUEST_SCHEME as string | undefined,
    environ.UWSGI_SCHEME as string | undefined,
  );
  // CGI's required vars, for front servers that leave some out (PEP 3333, "environ Variables").
  environ.REQUEST_METHOD ??= 'GET';
  environ.SCRIPT_NAME ??= '';
  environ.PATH_INFO ??= pathOf(environ.REQUEST_URI as string | undefined, environ.SCRIPT_NAME as string);
  environ.QUERY_STRING ??= queryOf(environ.REQUEST_URI as string | undefined);
  environ.SERVER_PROTOCOL ??= 'HTTP/1.1';
  environ.SERVER_NAME ??= hostName(getVar(vars, 'HTTP_HOST')) ?? 'localhost';
  environ.SERVER_PORT ??= scheme === 'https' ? '443' : '80';
  environ['wsgi.version'] = WSGI_VERSION;
  environ['wsgi.url_scheme'] = scheme;
  environ['wsgi.input'] = exchange.body;
  // The body stream ends after exactly CONTENT_LENGTH bytes: reading to the end is safe (the mod_wsgi extension).
  environ['wsgi.input_terminated'] = true;
  environ['wsgi.errors'] = new WsgiErrors(exchange.log);
  // One event loop runs many requests at once, interleaved at each await: the same contract as threads.
  environ['wsgi.multithread'] = true;
  environ['wsgi.multiprocess'] = exchange.multiprocess;
  environ['wsgi.run_once'] = false;
  // Every var as the front server sent it, in order. (A lazy getter here costs more than building the pairs.)
  const pairs: Array<[string, string]> = [];
  for (let i = 0; i < vars.length; i += 2) pairs.push([vars[i]!, vars[i + 1]!]);
  environ['uwsgi.vars'] = pairs;
  return environ;
}

/** wsgi.errors: a file-like object whose lines go to the log (at error level, with the request's bindings). */
export class WsgiErrors {
  private pending = '';
  constructor(private readonly log: Logger) {}

  write(data: string | Uint8Array): number {
    const text = typeof data === 'string' ? data : Buffer.from(data).toString('utf8');
    this.pending += text;
    const nl = this.pending.lastIndexOf('\n');
    if (nl !== -1) {
      for (const line of this.pending.slice(0, nl).split('\n')) this.log.error({ text: line }, 'wsgi.errors');
      this.pending = this.pending.slice(nl + 1);
    }
    return text.length;
  }

  writelines(lines: Iterable<string | Uint8Array>): void {
    for (const line of lines) this.write(line);
  }

  flush(): void {
    if (this.pending !== '') this.log.error({ text: this.pending }, 'wsgi.errors');
    this.pending = '';
  }
}

export function createWsgiHandler(app: WsgiApp): ExchangeHandler {
  return (exchange) => serveWsgi(app, exchange);
}

async function serveWsgi(app: WsgiApp, exchange: Exchange): Promise<void> {
  const environ = buildEnviron(exchange);
  const response = exchange.response;
  let pending: { status: number; reason: string | undefined; headers: HeaderList } | undefined;
  let sent = false;

  const sendHead = (): void => {
    if (sent) return;
    if (pending === undefined) {
      throw new UwsgiError('ERR_WSGI_START_RESPONSE', { detail: 'the body started before startResponse was called' });
    }
    response.writeHead(pending.status, pending.reason, pending.headers);
    sent = true;
  };
  const write = async (data: WsgiChunk): Promise<void> => {
    const bytes = toBytes(data);
    if (bytes.length === 0) return;
    sendHead();
    await response.write(bytes);
  };
  const startResponse: StartResponse = (status, headers, excInfo) => {
    if (excInfo !== undefined && excInfo !== null) {
      // PEP 3333: with exc_info after the headers went out, re-raise; before, replace the status and headers.
      if (sent) throw excInfo;
    } else if (pending !== undefined) {
      throw new UwsgiError('ERR_WSGI_START_RESPONSE', { detail: 'called a second time without excInfo' });
    }
    pending = parseStart(status, headers);
    return write;
  };

  let body: WsgiBody | undefined;
  try {
    const result = await app(environ, startResponse);
    body = result;
    await sendBody(result, write, () => {
      // gunicorn's shortcut: a body known in full gets a Content-Length, so nginx need not wait for the close.
      if (pending !== undefined && !sent) addLength(pending.headers, result);
    });
    if (!sent) sendHead();
    await response.end();
  } finally {
    (environ['wsgi.errors'] as WsgiErrors).flush();
    await closeBody(body);
  }
}

async function sendBody(body: WsgiBody, write: WsgiWrite, beforeFirst: () => void): Promise<void> {
  if (typeof body === 'string' || body instanceof Uint8Array) {
    beforeFirst();
    await write(body);
    return;
  }
  if (body === null || typeof body !== 'object') {
    throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a WSGI app returned ${describe(body)}, not a body (string, bytes, iterable)` });
  }
  beforeFirst();
  if (Symbol.asyncIterator in body) {
    for await (const chunk of body as AsyncIterable<WsgiChunk>) await write(chunk);
  } else if (Symbol.iterator in body) {
    for (const chunk of body) await write(chunk);
  } else {
    throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a WSGI app returned ${describe(body)}, not a body (string, bytes, iterable)` });
  }
}

/** PEP 3333: the iterable's close() is called when the request ends, whatever happened. */
async function closeBody(body: WsgiBody | undefined): Promise<void> {
  const close = (body as { close?: unknown } | undefined)?.close;
  if (typeof close === 'function') await close.call(body);
}

function addLength(headers: HeaderList, body: WsgiBody): void {
  if (headers.some(([name]) => name.toLowerCase() === 'content-length')) return;
  let length: number | undefined;
  if (typeof body === 'string') length = Buffer.byteLength(body);
  else if (body instanceof Uint8Array) length = body.length;
  else if (Array.isArray(body) && body.length === 1) {
    const only: unknown = body[0];
    if (typeof only === 'string') length = Buffer.byteLength(only);
    else if (only instanceof Uint8Array) length = only.length;
  }
  if (length !== undefined) headers.push(['Content-Length', String(length)]);
}

function parseStart(status: unknown, headers: unknown): { status: number; reason: string | undefined; headers: HeaderList } {
  const match = typeof status === 'string' ? splitStatus(status) : null;
  if (match === null) {
    throw new UwsgiError('ERR_WSGI_START_RESPONSE', { detail: `status ${describe(status)} is not a string like "200 OK"` });
  }
  if (!Array.isArray(headers)) {
    throw new UwsgiError('ERR_WSGI_START_RESPONSE', { detail: `headers ${describe(headers)} are not a list of [name, value] pairs` });
  }
  const list: HeaderList = [];
  for (const header of headers as unknown[]) {
    if (!Array.isArray(header) || header.length !== 2 || typeof header[0] !== 'string' || typeof header[1] !== 'string') {
      throw new UwsgiError('ERR_WSGI_START_RESPONSE', { detail: `header ${describe(header)} is not a [name, value] pair of strings` });
    }
    list.push([header[0], header[1]]);
  }
  const code = Number(match[1]);
  return { status: code, reason: match[2] ?? STATUS_CODES[code], headers: list };
}

/** "200 OK" -> ['200 OK', '200', 'OK'] without a regex on the hot path; the regex decides the rare odd case. */
function splitStatus(status: string): [string, string, string | undefined] | null {
  const c0 = status.charCodeAt(0) - 48;
  const c1 = status.charCodeAt(1) - 48;
  const c2 = status.charCodeAt(2) - 48;
  if (c0 >= 0 && c0 <= 9 && c1 >= 0 && c1 <= 9 && c2 >= 0 && c2 <= 9 && status.charCodeAt(3) === 32) {
    return [status, status.slice(0, 3), status.slice(4)];
  }
  const match = STATUS.exec(status);
  return match === null ? null : [match[0], match[1]!, match[2]];
}

function toBytes(data: unknown): Uint8Array {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (data instanceof Uint8Array) return data;
  throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a body chunk is ${describe(data)}, not a string or bytes` });
}

function pathOf(requestUri: string | undefined, scriptName: string): string {
  if (requestUri === undefined) return '';
  const q = requestUri.indexOf('?');
  // CGI's PATH_INFO is decoded: each %XX becomes the byte, kept as a latin1 string like every other var.
  let path = Buffer.from(percentDecode(q === -1 ? requestUri : requestUri.slice(0, q))).toString('latin1');
  if (scriptName !== '' && path.startsWith(scriptName)) path = path.slice(scriptName.length);
  return path;
}

function percentDecode(text: string): Buffer {
  const bytes = Buffer.from(text, 'latin1');
  const out = Buffer.alloc(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const hex = bytes[i] === 0x25 && i + 2 < bytes.length ? bytes.toString('latin1', i + 1, i + 3) : '';
    if (/^[0-9a-fA-F]{2}$/.test(hex)) {
      out[n++] = parseInt(hex, 16);
      i += 2;
    } else {
      out[n++] = bytes[i]!;
    }
  }
  return out.subarray(0, n);
}

function queryOf(requestUri: string | undefined): string {
  const q = requestUri?.indexOf('?') ?? -1;
  return q === -1 ? '' : requestUri!.slice(q + 1);
}

function hostName(host: string | undefined): string | undefined {
  if (host === undefined || host === '') return undefined;
  if (host.startsWith('[')) return host.slice(0, host.indexOf(']') + 1);
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'no prototype'})`;
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  return `${typeof value} ${String(value)}`;
}

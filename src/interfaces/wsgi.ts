// The wsgi interface: `application(environ, startResponse)` as PEP 3333 describes it, as far as JavaScript
// allows. The environ is built from the vars (strings, latin1 as PEP 3333's "native strings"), the body is
// streamed from whatever the app returns, and headers go out only with the first non-empty chunk or at the end.
import { STATUS_CODES } from 'node:http';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { UwsgiError } from '../errors.js';
import type { Exchange, ExchangeHandler, HeaderList } from '../exchange.js';
import { getVar, hostName, joinerOf, percentDecode, schemeOf } from '../protocol/vars.js';
import { describeValue, isThenable } from '../values.js';

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
    environ[name] = prev === undefined ? value : `${prev as string}${joinerOf(name)}${value}`;
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
  // Apache's mod_proxy_uwsgi keeps the whole path as SCRIPT_NAME when PATH_INFO is "/" (/app/ arrives as
  // SCRIPT_NAME=/app/, PATH_INFO=/): the mount point is SCRIPT_NAME without its trailing slash (PEP 3333).
  if ((environ.SCRIPT_NAME as string).endsWith('/') && (environ.PATH_INFO as string).startsWith('/')) {
    environ.SCRIPT_NAME = (environ.SCRIPT_NAME as string).replace(/\/+$/, '');
  }
  environ.QUERY_STRING ??= queryOf(environ.REQUEST_URI as string | undefined);
  environ.SERVER_PROTOCOL ??= 'HTTP/1.1';
  environ.SERVER_NAME ??= hostName(getVar(vars, 'HTTP_HOST') ?? '') || 'localhost';
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
  const handler: ExchangeHandler = (exchange) => new WsgiCall(exchange).serve(app);
  return handler;
}

const RESOLVED = Promise.resolve();

/** One request through a WSGI app. A body known in full (a string, bytes or an array of them, the usual answer)
 * is written without a single await; anything else (promises, generators, streams, backpressure) takes the
 * general asynchronous path. Both keep PEP 3333's order: headers with the first non-empty chunk, close() last. */
class WsgiCall {
  readonly environ: Environ;
  private pending: { status: number; reason: string | undefined; headers: HeaderList } | undefined;
  private sent = false;
  private body: WsgiBody | undefined;

  constructor(private readonly exchange: Exchange) {
    this.environ = buildEnviron(exchange);
  }

  readonly startResponse: StartResponse = (status, headers, excInfo) => {
    if (excInfo !== undefined && excInfo !== null) {
      // PEP 3333: with exc_info after the headers went out, re-raise; before, replace the status and headers.
      if (this.sent) throw excInfo;
    } else if (this.pending !== undefined) {
      throw new UwsgiError('ERR_WSGI_START_RESPONSE', { detail: 'called a second time without excInfo' });
    }
    this.pending = parseStart(status, headers);
    return this.write;
  };

  /** PEP 3333's write(), returned by startResponse; resolves when the socket can take more. */
  readonly write: WsgiWrite = (data) => {
    return this.writeChunk(data) ? RESOLVED : this.exchange.response.drain();
  };

  serve(app: WsgiApp): Promise<void> {
    let result: WsgiBody | Promise<WsgiBody>;
    try {
      result = app(this.environ, this.startResponse);
    } catch (err) {
      return this.cleanup().then(() => Promise.reject(err));
    }
    if (isThenable(result)) return this.serveAsync(result);
    this.body = result;
    if (typeof result === 'string' || result instanceof Uint8Array || Array.isArray(result)) {
      try {
        if (this.pending !== undefined) addLength(this.pending.headers, result);
        const chunks: readonly WsgiChunk[] = Array.isArray(result) ? result : [result as WsgiChunk];
        for (let i = 0; i < chunks.length; i++) {
          if (!this.writeChunk(chunks[i])) return this.finishAsync(chunks, i + 1);
        }
        this.end();
      } catch (err) {
        return this.cleanup().then(() => Promise.reject(err));
      }
      return this.cleanup();
    }
    return this.serveAsync(result);
  }

  /** Writes one chunk; false when the socket wants a drain first. */
  private writeChunk(data: unknown): boolean {
    if (typeof data === 'string') {
      // Encoded by the sink, straight into the buffer it writes.
      if (data.length === 0) return true;
      this.sendHead();
      return this.exchange.response.write(data);
    }
    const bytes = toBytes(data);
    if (bytes.length === 0) return true;
    this.sendHead();
    return this.exchange.response.write(bytes);
  }

  private sendHead(): void {
    if (this.sent) return;
    const pending = this.pending;
    if (pending === undefined) {
      throw new UwsgiError('ERR_WSGI_START_RESPONSE', { detail: 'the body started before startResponse was called' });
    }
    this.exchange.response.writeHead(pending.status, pending.reason, pending.headers);
    this.sent = true;
  }

  private end(): void {
    if (!this.sent) this.sendHead();
    this.exchange.response.end();
  }

  private async finishAsync(chunks: readonly WsgiChunk[], from: number): Promise<void> {
    try {
      await this.exchange.response.drain();
      for (let i = from; i < chunks.length; i++) {
        if (!this.writeChunk(chunks[i])) await this.exchange.response.drain();
      }
      this.end();
    } finally {
      await this.cleanup();
    }
  }

  private async serveAsync(result: WsgiBody | Promise<WsgiBody>): Promise<void> {
    try {
      const body = await result;
      this.body = body;
      if (typeof body === 'string' || body instanceof Uint8Array) {
        if (this.pending !== undefined && !this.sent) addLength(this.pending.headers, body);
        await this.write(body);
      } else if (body === null || typeof body !== 'object') {
        throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a WSGI app returned ${describeValue(body)}, not a body (string, bytes, iterable)` });
      } else {
        // gunicorn's shortcut: a body known in full gets a Content-Length, so nginx need not wait for the close.
        if (this.pending !== undefined && !this.sent) addLength(this.pending.headers, body);
        if (Symbol.asyncIterator in body) {
          for await (const chunk of body as AsyncIterable<WsgiChunk>) await this.write(chunk);
        } else if (Symbol.iterator in body) {
          for (const chunk of body) await this.write(chunk);
        } else {
          throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a WSGI app returned ${describeValue(body)}, not a body (string, bytes, iterable)` });
        }
      }
      this.end();
    } finally {
      await this.cleanup();
    }
  }

  /** wsgi.errors flushed, and PEP 3333: the iterable's close() is called when the request ends, whatever happened. */
  private cleanup(): Promise<void> {
    (this.environ['wsgi.errors'] as WsgiErrors).flush();
    const body = this.body;
    const close = (body as { close?: unknown } | undefined)?.close;
    if (typeof close !== 'function') return RESOLVED;
    try {
      const done: unknown = close.call(body);
      return isThenable(done) ? Promise.resolve(done).then(() => undefined) : RESOLVED;
    } catch (err) {
      return Promise.reject(err);
    }
  }
}


function addLength(headers: HeaderList, body: WsgiBody): void {
  for (let i = 0; i < headers.length; i++) if (headers[i]![0].toLowerCase() === 'content-length') return;
  let length = 0;
  if (typeof body === 'string') length = Buffer.byteLength(body);
  else if (body instanceof Uint8Array) length = body.length;
  else if (Array.isArray(body) && body.length <= 16) {
    for (const item of body as unknown[]) {
      if (typeof item === 'string') length += Buffer.byteLength(item);
      else if (item instanceof Uint8Array) length += item.length;
      else return;
    }
  } else return;
  headers.push(['Content-Length', String(length)]);
}

function parseStart(status: unknown, headers: unknown): { status: number; reason: string | undefined; headers: HeaderList } {
  const match = typeof status === 'string' ? splitStatus(status) : null;
  if (match === null) {
    throw new UwsgiError('ERR_WSGI_START_RESPONSE', { detail: `status ${describeValue(status)} is not a string like "200 OK"` });
  }
  if (!Array.isArray(headers)) {
    throw new UwsgiError('ERR_WSGI_START_RESPONSE', { detail: `headers ${describeValue(headers)} are not a list of [name, value] pairs` });
  }
  const list: HeaderList = [];
  for (const header of headers as unknown[]) {
    if (!Array.isArray(header) || header.length !== 2 || typeof header[0] !== 'string' || typeof header[1] !== 'string') {
      throw new UwsgiError('ERR_WSGI_START_RESPONSE', { detail: `header ${describeValue(header)} is not a [name, value] pair of strings` });
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
  throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a body chunk is ${describeValue(data)}, not a string or bytes` });
}

function pathOf(requestUri: string | undefined, scriptName: string): string {
  if (requestUri === undefined) return '';
  const q = requestUri.indexOf('?');
  // CGI's PATH_INFO is decoded: each %XX becomes the byte, kept as a latin1 string like every other var.
  let path = percentDecode(q === -1 ? requestUri : requestUri.slice(0, q));
  if (scriptName !== '' && path.startsWith(scriptName)) path = path.slice(scriptName.length);
  return path;
}

function queryOf(requestUri: string | undefined): string {
  const q = requestUri?.indexOf('?') ?? -1;
  return q === -1 ? '' : requestUri!.slice(q + 1);
}


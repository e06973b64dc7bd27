// The fetch interface: `fetch(request) => Response`, or an object with a `fetch` method (Hono,
// `export default { fetch }`). The Request's URL comes from the scheme, Host and REQUEST_URI; its body streams
// from the connection and its signal aborts when the peer goes away; the Response body streams back with
// backpressure.
import { Readable } from 'node:stream';
import { UwsgiError } from '../errors.js';
import type { Exchange, ExchangeHandler, HeaderList } from '../exchange.js';
import { requestLineOf } from '../protocol/vars.js';
import { lightParts, TEXT, type LightParts } from './fetch-response.js';

type FetchFunction = (request: Request) => Response | Promise<Response>;
export type FetchApp = FetchFunction | { fetch: FetchFunction };

export function createFetchHandler(app: FetchApp): ExchangeHandler {
  const call: FetchFunction = typeof app === 'function' ? app : (request) => app.fetch(request);
  const handler: ExchangeHandler = (exchange) => serveFetch(call, exchange);
  return handler;
}

/** What a served Request's signal comes from: the exchange's, made on first use. */
type SignalSource = Pick<Exchange, 'signal'>;
const kSource = Symbol('uwsgi.exchange');

/**
 * The Request apps get: a real WHATWG Request (so `new Request(request)`, `fetch(request)` and `clone()` work),
 * constructed without a `signal` in its init. A Request given a signal makes one of its own that follows it
 * (a listener, a WeakRef and a FinalizationRegistry entry): 11 µs of the 16 µs a Request cost, Node 24
 * (bench/README.md, "Fetch adapter"). Its `signal` is the exchange's own, made only when read, aborted when the
 * peer goes away. Copies (`new Request(request)`, `clone()`) get a signal of their own that does not follow.
 */
class ServedRequest extends Request {
  declare [kSource]: SignalSource;
}
Object.defineProperty(ServedRequest.prototype, 'signal', {
  get(this: ServedRequest): AbortSignal {
    return this[kSource].signal;
  },
  enumerable: true,
  configurable: true,
});
// As Node prints and names a Request: apps and their logs see no other class.
Object.defineProperty(ServedRequest, 'name', { value: 'Request' });

/** The Request a fetch handler sees for this exchange. */
export function buildRequest(exchange: Pick<Exchange, 'vars' | 'contentLength' | 'body' | 'signal' | 'log'>): Request {
  const line = requestLineOf(exchange.vars, exchange.contentLength);
  const url = urlOf(line.scheme, line.host, line.target);
  const headers = new Headers();
  for (let i = 0; i < line.headers.length; i += 2) {
    try {
      headers.append(line.headers[i]!, line.headers[i + 1]!);
    } catch (err) {
      // A name or value Headers refuses (nginx passes some odd ones with ignore_invalid_headers off): not fatal.
      exchange.log.debug({ err, header: line.headers[i] }, 'request header left out of the fetch Request');
    }
  }
  const init: RequestInit & { duplex?: 'half' } = { method: line.method, headers };
  if (line.method !== 'GET' && line.method !== 'HEAD' && exchange.contentLength > 0) {
    init.body = Readable.toWeb(exchange.body) as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  let request: ServedRequest;
  try {
    request = new ServedRequest(url, init);
  } catch (err) {
    // The Request refuses a method (CONNECT, TRACE) as it refuses a URL: only the URL is the client's fault.
    if (!URL.canParse(url)) throw badTarget(line.host, line.target, err);
    throw err;
  }
  request[kSource] = exchange;
  return request;
}

/** The Request's URL: an origin-form target (every request nginx passes on) is appended to the origin unparsed,
 * as the Request parses it; an absolute-form one (a client talking to nginx as to a proxy) keeps its own
 * authority. */
function urlOf(scheme: string, host: string, target: string): string {
  const base = `${scheme}://${host}`;
  if (target.startsWith('/')) return base + target;
  try {
    return new URL(target, base).href;
  } catch (cause) {
    throw badTarget(host, target, cause);
  }
}

function badTarget(host: string, target: string, cause: unknown): UwsgiError {
  return new UwsgiError('ERR_UWSGI_BAD_TARGET', { target: JSON.stringify(target), host: JSON.stringify(host) }, { cause });
}

async function serveFetch(call: FetchFunction, exchange: Exchange): Promise<void> {
  const request = buildRequest(exchange);
  const response: unknown = await call(request);
  if (!(response instanceof Response)) {
    throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a fetch handler returned ${typeName(response)}, not a Response` });
  }
  const parts = lightParts(response);
  if (parts !== undefined) {
    writeLight(parts, exchange);
    return;
  }
  // Headers' iterator yields each Set-Cookie on its own (Fetch, "sort and combine"): joining them with ", "
  // would break cookies that carry an Expires date.
  const headers: HeaderList = [...response.headers];
  exchange.response.writeHead(response.status, response.statusText || undefined, headers);
  if (response.body !== null) await pump(response.body, exchange);
  exchange.response.end();
}

/** node-uwsgi's own Response with its body in hand (fetch-response.ts): head and body in one write, no stream.
 * The body is in memory already, so there is nothing to hold back for the socket's sake. */
function writeLight(parts: LightParts, exchange: Exchange): void {
  const init = parts.headers;
  const headers: HeaderList = [];
  let typed = typeof parts.body !== 'string';
  if (init instanceof Headers) {
    for (const pair of init) headers.push(pair);
    typed ||= init.has('content-type');
  } else if (Array.isArray(init)) {
    for (const pair of init) {
      if (pair.length !== 2) throw new UwsgiError('ERR_APP_BAD_HEADER', { name: JSON.stringify(pair[0]) });
      const name = String(pair[0]);
      headers.push([name, String(pair[1])]);
      typed ||= name.length === 12 && name.toLowerCase() === 'content-type';
    }
  } else if (init !== undefined) {
    for (const name in init) {
      headers.push([name, String((init as Record<string, unknown>)[name])]);
      typed ||= name.length === 12 && name.toLowerCase() === 'content-type';
    }
  }
  // As the Fetch standard's Response does for a string body without one.
  if (!typed) headers.push(['content-type', TEXT]);
  exchange.response.writeHead(parts.status, parts.statusText || undefined, headers);
  if (parts.body !== null) exchange.response.write(parts.body);
  exchange.response.end();
}

async function pump(body: ReadableStream<Uint8Array>, exchange: Exchange): Promise<void> {
  const reader = body.getReader();
  const onAbort = (): void => {
    reader.cancel(exchange.signal.reason).catch(() => {});
  };
  exchange.signal.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return;
      if (exchange.signal.aborted) return;
      if (!(value instanceof Uint8Array)) {
        throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a Response body chunk is ${typeName(value)}, not bytes` });
      }
      if (!exchange.response.write(value)) await exchange.response.drain();
    }
  } catch (err) {
    await reader.cancel(err).catch(() => {});
    throw err;
  } finally {
    exchange.signal.removeEventListener('abort', onAbort);
    reader.releaseLock();
  }
}

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'object') return `an object (${value.constructor?.name ?? 'no prototype'})`;
  return typeof value;
}

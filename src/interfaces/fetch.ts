// The fetch interface: `fetch(request) => Response`, or an object with a `fetch` method (Hono,
// `export default { fetch }`). The Request's URL comes from the scheme, Host and REQUEST_URI; its body streams
// from the connection and its signal aborts when the peer goes away; the Response body streams back with
// backpressure.
import { UwsgiError } from '../errors.js';
import type { Exchange, ExchangeHandler, HeaderList } from '../exchange.js';
import { queuedBody } from '../node-internals.js';
import { requestLineOf } from '../protocol/vars.js';
import { describeValue } from '../values.js';
import { headersOf, LIGHT_METHODS, lightRequest, lightRequestsAccepted, realRequest, type RequestSource } from './fetch-request.js';
import { lightParts, TEXT, type LightParts } from './fetch-response.js';

type FetchFunction = (request: Request) => Response | Promise<Response>;
export type FetchApp = FetchFunction | { fetch: FetchFunction };

export function createFetchHandler(app: FetchApp): ExchangeHandler {
  const call: FetchFunction = typeof app === 'function' ? app : (request) => app.fetch(request);
  // Light requests only while the global Request and fetch take them (fetch-request.ts).
  const light = lightRequestsAccepted();
  const handler: ExchangeHandler = (exchange) => serveFetch(call, exchange, light);
  return handler;
}

/** The Request a fetch handler sees for this exchange: a light one (fetch-request.ts) where `light` and the
 * request allows (a method the platform keeps as it is, an origin-form target: what nginx passes on), else a real
 * one. */
export function buildRequest(exchange: RequestSource & Pick<Exchange, 'vars'>, light = false): Request {
  const line = requestLineOf(exchange.vars, exchange.contentLength);
  if (light && LIGHT_METHODS.has(line.method) && line.target.startsWith('/')) {
    let url: URL;
    try {
      url = new URL(`${line.scheme}://${line.host}${line.target}`);
    } catch (err) {
      throw badTarget(line.host, line.target, err);
    }
    // A Host with credentials: the real Request refuses it, with its own message.
    if (url.username === '' && url.password === '') return lightRequest(exchange, url.href, line.method, line.headers);
  }
  const url = urlOf(line.scheme, line.host, line.target);
  try {
    return realRequest(exchange, url, line.method, headersOf(line.headers, exchange.log));
  } catch (err) {
    // The Request refuses a method (CONNECT, TRACE) as it refuses a URL: only the URL is the client's fault.
    if (!URL.canParse(url)) throw badTarget(line.host, line.target, err);
    throw err;
  }
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

async function serveFetch(call: FetchFunction, exchange: Exchange, light: boolean): Promise<void> {
  const request = buildRequest(exchange, light);
  const response: unknown = await call(request);
  if (!(response instanceof Response)) {
    throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a fetch handler returned ${describeValue(response)}, not a Response` });
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
  const body = response.body;
  if (body !== null) {
    const bytes = queuedBody(body);
    if (bytes === undefined) await pump(body, exchange);
    else if (bytes.length > 0) exchange.response.write(bytes);
  }
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
        throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a Response body chunk is ${describeValue(value)}, not bytes` });
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

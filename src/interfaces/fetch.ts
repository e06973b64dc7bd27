// The fetch interface: `fetch(request) => Response`, or an object with a `fetch` method (Hono,
// `export default { fetch }`). The Request's URL comes from the scheme, Host and REQUEST_URI; its body streams
// from the connection and its signal aborts when the peer goes away; the Response body streams back with
// backpressure.
import { Readable } from 'node:stream';
import { UwsgiError } from '../errors.js';
import { socketlessHandlers, type Exchange, type ExchangeHandler, type HeaderList } from '../exchange.js';
import { requestLineOf } from '../protocol/vars.js';

type FetchFunction = (request: Request) => Response | Promise<Response>;
export type FetchApp = FetchFunction | { fetch: FetchFunction };

export function createFetchHandler(app: FetchApp): ExchangeHandler {
  const call: FetchFunction = typeof app === 'function' ? app : (request) => app.fetch(request);
  const handler: ExchangeHandler = (exchange) => serveFetch(call, exchange);
  socketlessHandlers.add(handler);
  return handler;
}

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
  const init: RequestInit & { duplex?: 'half' } = { method: line.method, headers, signal: exchange.signal };
  if (line.method !== 'GET' && line.method !== 'HEAD' && exchange.contentLength > 0) {
    init.body = Readable.toWeb(exchange.body) as ReadableStream<Uint8Array>;
    init.duplex = 'half';
  }
  return new Request(url, init);
}

function urlOf(scheme: string, host: string, target: string): string {
  const base = `${scheme}://${host}`;
  try {
    // An absolute-form target (a client talking to nginx as to a proxy) keeps its own authority.
    return target.startsWith('/') ? new URL(base + target).href : new URL(target, base).href;
  } catch (cause) {
    throw new UwsgiError('ERR_UWSGI_BAD_TARGET', { target: JSON.stringify(target), host: JSON.stringify(host) }, { cause });
  }
}

async function serveFetch(call: FetchFunction, exchange: Exchange): Promise<void> {
  const request = buildRequest(exchange);
  const response: unknown = await call(request);
  if (!(response instanceof Response)) {
    throw new UwsgiError('ERR_APP_BAD_RESPONSE', { detail: `a fetch handler returned ${typeName(response)}, not a Response` });
  }
  const headers: HeaderList = [];
  for (const [name, value] of response.headers) if (name !== 'set-cookie') headers.push([name, value]);
  // Each Set-Cookie on its own line: joining them with ", " would break cookies that carry an Expires date.
  for (const cookie of response.headers.getSetCookie()) headers.push(['set-cookie', cookie]);
  exchange.response.writeHead(response.status, response.statusText || undefined, headers);
  if (response.body !== null) await pump(response.body, exchange);
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

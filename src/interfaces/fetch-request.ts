// The Request a fetch app gets: by default a light one (`instanceof Request`) whose url, method, headers and
// signal come straight from the vars and the exchange, whose text(), json(), arrayBuffer() and bytes() read the
// connection's stream directly, and which builds the real platform Request only when asked for anything else
// (body, blob(), clone()...): less CPU per GET and more per JSON POST saved (bench/README.md, "Fetch adapter"). A light request is no platform object, so the platform's own
// `new Request(request)` and `fetch(request)` cannot read it: node-uwsgi's global Request and fetch (installed by
// the worker unless --real-request, src/worker/main.ts) take it, and the adapter makes light requests only while
// they are installed. After @hono/node-server's src/request.ts.
import { Readable } from 'node:stream';
import type { Exchange } from '../exchange.js';
import { forwardToReal } from './fetch-response.js';

const PlatformRequest: typeof globalThis.Request = globalThis.Request;
const platformFetch = globalThis.fetch;

/** What a served request reads: the exchange's body (whole in bodyBytes when it came with the head), signal (made
 * on first use) and logger. */
export type RequestSource = Pick<Exchange, 'contentLength' | 'body' | 'bodyBytes' | 'signal' | 'log'>;

const kSource = Symbol('uwsgi.exchange');

/**
 * The real Request, constructed without a `signal` in its init. A Request given a signal makes one of its own that
 * follows it (a listener, a WeakRef and a FinalizationRegistry entry): most of what a Request costs
 * (bench/README.md, "Fetch adapter"). Its `signal` is the exchange's own, made only when read, aborted when the
 * peer goes away. Copies (`new Request(request)`, `clone()`) get a signal of their own that does not follow.
 */
class ServedRequest extends PlatformRequest {
  declare [kSource]: RequestSource;
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

/** The request headers as a Headers; a name or value Headers refuses (nginx passes some odd ones with
 * ignore_invalid_headers off) is left out, not fatal. */
export function headersOf(pairs: readonly string[], log: RequestSource['log']): Headers {
  const headers = new Headers();
  for (let i = 0; i < pairs.length; i += 2) {
    try {
      headers.append(pairs[i]!, pairs[i + 1]!);
    } catch (err) {
      log.debug({ err, header: pairs[i] }, 'request header left out of the fetch Request');
    }
  }
  return headers;
}

/** Whether the request carries a body, as the Request takes one: never for GET and HEAD. */
function hasBody(method: string, source: RequestSource): boolean {
  return method !== 'GET' && method !== 'HEAD' && source.contentLength > 0;
}

/** A real Request for the exchange; throws what the platform's constructor throws (a URL or method it refuses).
 * `bodyRead`: the body was read already (a light request's text()...): the Request's body is used, as after its
 * own text(). */
export function realRequest(source: RequestSource, url: string, method: string, headers: Headers, bodyRead = false): Request {
  const init: RequestInit & { duplex?: 'half' } = { method, headers };
  let used: ReadableStream<Uint8Array> | undefined;
  if (hasBody(method, source)) {
    if (bodyRead) {
      used = new ReadableStream<Uint8Array>({ start: (controller) => controller.close() });
      init.body = used;
    } else {
      init.body = source.bodyBytes ?? (Readable.toWeb(source.body) as ReadableStream<Uint8Array>);
    }
    init.duplex = 'half';
  }
  const request = new ServedRequest(url, init);
  request[kSource] = source;
  // A read disturbs the stream at once: bodyUsed, clone() and new Request(request) then answer as after a read.
  if (used !== undefined) used.getReader().read().catch(() => {});
  return request;
}

const kUrl = Symbol('uwsgi.url');
const kMethod = Symbol('uwsgi.method');
const kPairs = Symbol('uwsgi.headerPairs');
const kHeaders = Symbol('uwsgi.headers');
const kReal = Symbol('uwsgi.request');
const kBodyRead = Symbol('uwsgi.bodyRead');

/** The light request. Its fields are what the real one would answer: `url` already serialized by the URL parser,
 * `method` one the platform keeps as it is (see LIGHT_METHODS). */
class LightRequest {
  [kSource]: RequestSource;
  [kUrl]: string;
  [kMethod]: string;
  [kPairs]: readonly string[];
  [kHeaders]: Headers | undefined;
  [kReal]: Request | undefined;
  [kBodyRead]: boolean;
  constructor(source: RequestSource, url: string, method: string, pairs: readonly string[]) {
    this[kSource] = source;
    this[kUrl] = url;
    this[kMethod] = method;
    this[kPairs] = pairs;
    this[kHeaders] = undefined;
    this[kReal] = undefined;
    this[kBodyRead] = false;
  }
}

/** Methods the platform's Request keeps as given (its normalisation maps them to themselves, none is forbidden):
 * the others take the real Request at once, with its checks and messages. */
export const LIGHT_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH']);

/** A light request for the exchange; `url` must be a serialized URL without credentials, `method` in
 * LIGHT_METHODS. */
export function lightRequest(source: RequestSource, url: string, method: string, pairs: readonly string[]): Request {
  return new LightRequest(source, url, method, pairs) as unknown as Request;
}

function headers(self: LightRequest): Headers {
  return (self[kHeaders] ??= headersOf(self[kPairs], self[kSource].log));
}

/** The real Request a light one stands for, made on first use. */
function realOf(self: LightRequest): Request {
  return (self[kReal] ??= realRequest(self[kSource], self[kUrl], self[kMethod], headers(self), self[kBodyRead]));
}

const utf8 = new TextDecoder();

/**
 * The body as one Buffer, read from the connection's stream without a real Request (its web stream, Readable.toWeb's
 * adapter and their promises per chunk); undefined where the real Request answers: no body, or the real one made.
 */
function readBody(self: LightRequest): Promise<Buffer> | undefined {
  if (self[kReal] !== undefined || !hasBody(self[kMethod], self[kSource])) return undefined;
  if (self[kBodyRead]) return Promise.reject(new TypeError('Body is unusable: Body has already been read'));
  self[kBodyRead] = true;
  const whole = self[kSource].bodyBytes;
  return whole === undefined ? collect(self[kSource].body) : Promise.resolve(whole);
}

async function collect(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

/** A copy in an ArrayBuffer of its own, as the platform's arrayBuffer() gives. */
function arrayBufferOf(bytes: Buffer): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

// What the app reads without the real Request; the rest of Request.prototype, below, asks the real one.
const prototype = LightRequest.prototype as unknown as Record<PropertyKey, unknown>;
Object.defineProperties(prototype, {
  method: {
    get(this: LightRequest) {
      return this[kMethod];
    },
    configurable: true,
  },
  url: {
    get(this: LightRequest) {
      return this[kUrl];
    },
    configurable: true,
  },
  headers: {
    get(this: LightRequest) {
      return headers(this);
    },
    configurable: true,
  },
  signal: {
    get(this: LightRequest) {
      return this[kSource].signal;
    },
    configurable: true,
  },
  body: {
    get(this: LightRequest) {
      const real = this[kReal];
      if (real === undefined && !hasBody(this[kMethod], this[kSource])) return null;
      return (real ?? realOf(this)).body;
    },
    configurable: true,
  },
  bodyUsed: {
    get(this: LightRequest) {
      return this[kBodyRead] || (this[kReal]?.bodyUsed ?? false);
    },
    configurable: true,
  },
  text: {
    value(this: LightRequest) {
      return readBody(this)?.then((bytes) => utf8.decode(bytes)) ?? realOf(this).text();
    },
    writable: true,
    configurable: true,
  },
  json: {
    value(this: LightRequest) {
      return readBody(this)?.then((bytes) => JSON.parse(utf8.decode(bytes)) as unknown) ?? realOf(this).json();
    },
    writable: true,
    configurable: true,
  },
  arrayBuffer: {
    value(this: LightRequest) {
      return readBody(this)?.then(arrayBufferOf) ?? realOf(this).arrayBuffer();
    },
    writable: true,
    configurable: true,
  },
  bytes: {
    value(this: LightRequest) {
      return readBody(this)?.then((bytes) => new Uint8Array(arrayBufferOf(bytes))) ?? (realOf(this) as Request & { bytes(): Promise<Uint8Array> }).bytes();
    },
    writable: true,
    configurable: true,
  },
});
forwardToReal(prototype, PlatformRequest.prototype, realOf);
Object.defineProperty(prototype, Symbol.for('nodejs.util.inspect.custom'), {
  value(this: LightRequest, _depth: number, options: object, inspect: (value: unknown, options: object) => string) {
    return `Request ${inspect({ method: this[kMethod], url: this[kUrl], headers: headers(this) }, options)}`;
  },
});
/**
 * node-uwsgi's global Request: the platform's, except that it also copies a light request
 * (`new Request(request)`, `new Request(request, init)`). What it constructs are platform Requests, and every
 * platform Request is `instanceof` it.
 */
const OwnRequest = class Request extends PlatformRequest {
  constructor(...args: ConstructorParameters<typeof PlatformRequest>) {
    if (args[0] instanceof LightRequest) args[0] = realOf(args[0]);
    super(...args);
  }

  static override [Symbol.hasInstance](value: unknown): boolean {
    // A subclass an app derives keeps the ordinary check.
    return Function.prototype[Symbol.hasInstance].call(this === OwnRequest ? PlatformRequest : this, value);
  }
};
Object.defineProperty(prototype, 'constructor', { value: OwnRequest, writable: true, configurable: true });
// `request instanceof Request` holds, for the platform's Request and node-uwsgi's, and what an app adds to the
// global Request.prototype reaches light requests too.
Object.setPrototypeOf(prototype, OwnRequest.prototype);

/** node-uwsgi's global fetch: the platform's, given the real Request for a light one. */
function fetch(...args: Parameters<typeof platformFetch>): ReturnType<typeof platformFetch> {
  if (args[0] instanceof LightRequest) args[0] = realOf(args[0]);
  return platformFetch(...args);
}

/** Makes node-uwsgi's Request and fetch the global ones (the worker does, unless --real-request; a patch of the
 * platform). Returns what puts the platform's back. */
export function installOwnRequest(): () => void {
  const before = { Request: globalThis.Request, fetch: globalThis.fetch };
  globalThis.Request = OwnRequest;
  globalThis.fetch = fetch;
  return () => {
    globalThis.Request = before.Request;
    globalThis.fetch = before.fetch;
  };
}

/** Whether the global Request and fetch take light requests: the adapter makes them only then. */
export function lightRequestsAccepted(): boolean {
  return globalThis.Request === OwnRequest && globalThis.fetch === fetch;
}

/** What a request the adapter made is: 'light', 'light, real made' once it made its real Request, or 'real'. */
export function requestKindOf(request: Request): 'light' | 'light, real made' | 'real' {
  if (!(request instanceof LightRequest)) return 'real';
  return request[kReal] === undefined ? 'light' : 'light, real made';
}

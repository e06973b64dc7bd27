// node-uwsgi's own Response for fetch apps (`import { Response } from 'node-uwsgi'`): a Response of a string,
// bytes or no body with plain headers keeps what it was given, and the fetch adapter writes that without a
// WHATWG stream; anything else, or any use beyond status and headers, makes the real Response it stands for.
// A fetch app's workers make it the global Response unless --real-response (src/worker/main.ts). After
// @hono/node-server's src/response.ts.

const PlatformResponse = globalThis.Response;
type HeadersInit = ConstructorParameters<typeof Headers>[0];
type BodyInit = ConstructorParameters<typeof PlatformResponse>[0];

/** What a light Response was given, while no real Response exists. `headers` becomes a Headers once read. */
export interface LightParts {
  status: number;
  statusText: string | undefined;
  body: string | Uint8Array | null;
  headers: HeadersInit | undefined;
}

// Registered: an app that imports another copy of node-uwsgi than the one serving it still takes the fast path.
export const kParts = Symbol.for('node-uwsgi.response.parts');
const kReal = Symbol('uwsgi.response.real');

// As the Fetch standard's Response constructor: a null body status takes no body; status in 200-599; a reason
// phrase of HTTP's reason-phrase characters. Anything outside that goes to the real constructor, which throws.
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
const REASON = /^[\t\x20-\x7e\x80-\xff]*$/;

interface Light {
  [kParts]: LightParts | undefined;
  [kReal]: globalThis.Response | undefined;
}

function plainHeaders(headers: unknown): headers is HeadersInit | undefined {
  if (headers === undefined) return true;
  if (typeof headers !== 'object' || headers === null) return false;
  return headers instanceof Headers || Array.isArray(headers) || Object.getPrototypeOf(headers) === Object.prototype;
}

function lightInit(body: unknown, init: ResponseInit | undefined): LightParts | undefined {
  if (body !== null && body !== undefined && typeof body !== 'string' && !(body instanceof Uint8Array)) return undefined;
  // Bytes are copied, as the standard's constructor does: the app may reuse its buffer once the Response exists.
  const kept = body instanceof Uint8Array ? new Uint8Array(body) : ((body ?? null) as string | null);
  if (init === undefined) return { status: 200, statusText: undefined, body: kept, headers: undefined };
  if (typeof init !== 'object' || init === null) return undefined;
  const status = init.status ?? 200;
  const statusText = init.statusText;
  if (!Number.isInteger(status) || status < 200 || status > 599) return undefined;
  if ((body ?? null) !== null && NULL_BODY_STATUS.has(status)) return undefined;
  if (statusText !== undefined && (typeof statusText !== 'string' || !REASON.test(statusText))) return undefined;
  if (!plainHeaders(init.headers)) return undefined;
  return { status, statusText, body: kept, headers: init.headers };
}

function real(self: Light): globalThis.Response {
  let response = self[kReal];
  if (response === undefined) {
    const parts = self[kParts]!;
    response = new PlatformResponse(parts.body as BodyInit | null, { status: parts.status, statusText: parts.statusText, headers: parts.headers });
    self[kReal] = response;
    self[kParts] = undefined;
  }
  return response;
}

function LightResponse(this: Light, body?: BodyInit | null, init?: ResponseInit): void {
  if (new.target === undefined) throw new TypeError("Class constructor Response cannot be invoked without 'new'");
  const parts = lightInit(body, init);
  this[kParts] = parts;
  this[kReal] = parts === undefined ? new PlatformResponse(body, init) : undefined;
}

const prototype = Object.create(PlatformResponse.prototype) as Record<PropertyKey, unknown>;
Object.defineProperties(prototype, {
  constructor: { value: LightResponse, writable: true, configurable: true },
  status: {
    get(this: Light) {
      return this[kParts]?.status ?? real(this).status;
    },
    configurable: true,
  },
  ok: {
    get(this: Light) {
      const status = this[kParts]?.status ?? real(this).status;
      return status >= 200 && status <= 299;
    },
    configurable: true,
  },
  statusText: {
    get(this: Light) {
      const parts = this[kParts];
      return parts === undefined ? real(this).statusText : (parts.statusText ?? '');
    },
    configurable: true,
  },
  headers: {
    get(this: Light) {
      const parts = this[kParts];
      if (parts === undefined) return real(this).headers;
      if (!(parts.headers instanceof Headers)) {
        const headers = new Headers(parts.headers);
        if (typeof parts.body === 'string' && !headers.has('content-type')) headers.set('content-type', TEXT);
        parts.headers = headers;
      }
      return parts.headers;
    },
    configurable: true,
  },
});
// Everything else is the real Response's: made on first use, then every member answers from it.
forwardToReal(prototype, PlatformResponse.prototype, real);
Object.defineProperty(prototype, Symbol.for('nodejs.util.inspect.custom'), {
  value(this: Light, _depth: number, options: object, inspect: (value: unknown, options: object) => string) {
    const parts = this[kParts];
    return `Response ${inspect(parts ?? real(this), options)}`;
  },
});
LightResponse.prototype = prototype;
Object.setPrototypeOf(LightResponse, PlatformResponse);
Object.defineProperty(LightResponse, 'name', { value: 'Response' });
// Every Response is one: `response instanceof Response` holds for what fetch() returns too, whichever is imported.
Object.defineProperty(LightResponse, Symbol.hasInstance, { value: (value: unknown) => value instanceof PlatformResponse });

/** Fetch's default type for a string body. */
export const TEXT = 'text/plain;charset=UTF-8';

/** The light Response's parts while no real Response exists (the adapter's fast path), else undefined. */
export function lightParts(response: object): LightParts | undefined {
  return (response as Partial<Light>)[kParts];
}

/**
 * A Response (instanceof the global Response, statics included) that the fetch adapter writes without streams
 * when its body is a string, bytes or null and its headers a plain object, pairs or Headers.
 */
export const Response = LightResponse as unknown as typeof globalThis.Response;

/** Gives `prototype` every member of `platform` (the platform's Request or Response prototype) that it has not
 * defined itself: methods and getters that answer from the real object `realOf` returns. Shared by the light
 * Request and the light Response; run once at load, not per request. */
export function forwardToReal<T>(
  prototype: Record<PropertyKey, unknown>,
  platform: object,
  realOf: (self: T) => object,
): void {
  for (const name of Object.getOwnPropertyNames(platform)) {
    if (name === 'constructor' || Object.prototype.hasOwnProperty.call(prototype, name)) continue;
    const descriptor = Object.getOwnPropertyDescriptor(platform, name)!;
    if (typeof descriptor.value === 'function') {
      Object.defineProperty(prototype, name, {
        value: function (this: T, ...args: unknown[]) {
          const target = realOf(this) as unknown as Record<string, (...a: unknown[]) => unknown>;
          return target[name]!(...args);
        },
        writable: true,
        configurable: true,
      });
    } else if (descriptor.get !== undefined) {
      Object.defineProperty(prototype, name, {
        get(this: T) {
          return (realOf(this) as unknown as Record<string, unknown>)[name];
        },
        configurable: true,
      });
    }
  }
}

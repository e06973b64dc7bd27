// validator(app): WSGI middleware in the spirit of Python's wsgiref.validate. It sits between the server and an
// app (or between two middlewares) and turns every breach of the interface into ERR_WSGI_VALIDATION, naming it,
// so a broken app fails loudly in development instead of half-working behind nginx.
import { Readable } from 'node:stream';
import { UwsgiError } from '../errors.js';
import { HOP_BY_HOP, TOKEN } from '../protocol/headers.js';
import { describeValue } from '../values.js';
import { type Environ, type StartResponse, type WsgiApp, type WsgiBody, type WsgiChunk, type WsgiWrite } from './wsgi.js';

const REQUIRED = ['REQUEST_METHOD', 'SCRIPT_NAME', 'PATH_INFO', 'SERVER_NAME', 'SERVER_PORT', 'SERVER_PROTOCOL'];
const WSGI_KEYS = ['wsgi.version', 'wsgi.url_scheme', 'wsgi.input', 'wsgi.errors', 'wsgi.multithread', 'wsgi.multiprocess', 'wsgi.run_once'];

function fail(detail: string): never {
  throw new UwsgiError('ERR_WSGI_VALIDATION', { detail });
}

export function validator(app: WsgiApp): WsgiApp {
  if (typeof app !== 'function') fail(`validator() needs a WSGI app function, got ${describeValue(app)}`);
  return async (environ, startResponse) => {
    checkEnviron(environ);
    let started = false;
    const checkedStart: StartResponse = (status, headers, excInfo) => {
      if (started && (excInfo === undefined || excInfo === null)) {
        fail('startResponse called a second time without excInfo');
      }
      checkStatus(status);
      checkHeaders(headers, status);
      started = true;
      const write = startResponse(status, headers, excInfo);
      const checkedWrite: WsgiWrite = (data) => {
        checkChunk(data, 'write()');
        return write(data);
      };
      return checkedWrite;
    };
    const body = await app(environ, checkedStart);
    if (body === undefined || body === null) fail(`the app returned ${describeValue(body)}: return a body (an empty list for none)`);
    if (typeof body !== 'string' && !(body instanceof Uint8Array) && typeof body === 'object') {
      if (!(Symbol.iterator in body) && !(Symbol.asyncIterator in body)) fail(`the app returned ${describeValue(body)}, which is not iterable`);
    }
    return checkBody(body, () => started);
  };
}

function checkEnviron(environ: Environ): void {
  if (environ === null || typeof environ !== 'object') fail(`environ is ${describeValue(environ)}, not an object`);
  for (const key of REQUIRED) {
    if (typeof environ[key] !== 'string') fail(`environ.${key} is ${describeValue(environ[key])}, not a string`);
  }
  for (const key of WSGI_KEYS) if (!(key in environ)) fail(`environ lacks ${key}`);
  for (const key of ['HTTP_CONTENT_TYPE', 'HTTP_CONTENT_LENGTH']) {
    if (key in environ) fail(`environ has ${key}: it belongs in ${key.slice(5)} (PEP 3333)`);
  }
  for (const [key, value] of Object.entries(environ)) {
    if (!key.includes('.') && typeof value !== 'string') fail(`environ.${key} is ${describeValue(value)}: CGI variables are strings`);
  }
  const version = environ['wsgi.version'];
  if (!Array.isArray(version) || version[0] !== 1) fail(`wsgi.version is ${describeValue(version)}, not [1, 0]`);
  const scheme = environ['wsgi.url_scheme'];
  if (scheme !== 'http' && scheme !== 'https') fail(`wsgi.url_scheme is ${describeValue(scheme)}, not "http" or "https"`);
  if (!(environ['wsgi.input'] instanceof Readable)) fail('wsgi.input is not a Readable');
  const errors = environ['wsgi.errors'] as { write?: unknown } | undefined;
  if (typeof errors?.write !== 'function') fail('wsgi.errors has no write()');
  const script = environ.SCRIPT_NAME as string;
  const path = environ.PATH_INFO as string;
  if (script !== '' && !script.startsWith('/')) fail(`SCRIPT_NAME ${JSON.stringify(script)} must be empty or start with /`);
  if (path !== '' && !path.startsWith('/')) fail(`PATH_INFO ${JSON.stringify(path)} must be empty or start with /`);
  if (script === '/') fail('SCRIPT_NAME must not be "/": mount at the root with an empty SCRIPT_NAME');
}

function checkStatus(status: unknown): void {
  if (typeof status !== 'string') fail(`status ${describeValue(status)} is not a string`);
  const match = /^([0-9]{3}) (.+)$/.exec(status);
  if (match === null) fail(`status ${JSON.stringify(status)} is not "NNN Reason" (three digits, a space, a reason)`);
  if (Number(match[1]) < 200) fail(`status ${match[1]} is a 1xx: a final status is required`);
}

function checkHeaders(headers: unknown, status: string): void {
  if (!Array.isArray(headers)) fail(`headers ${describeValue(headers)} are not an array of [name, value] pairs`);
  let contentType = false;
  for (const header of headers as unknown[]) {
    if (!Array.isArray(header) || header.length !== 2) fail(`header ${describeValue(header)} is not a [name, value] pair`);
    const [name, value] = header as unknown[];
    if (typeof name !== 'string' || typeof value !== 'string') fail(`header ${describeValue(header)} must be two strings`);
    if (!TOKEN.test(name)) fail(`header name ${JSON.stringify(name)} is not a token`);
    if (name.toLowerCase() === 'status') fail('a "Status" header is not allowed: the status goes in startResponse');
    if (HOP_BY_HOP.has(name.toLowerCase())) fail(`header ${name} is hop-by-hop: the server owns it (PEP 3333)`);
    if (/[\r\n\0]/.test(value)) fail(`header ${name} has CR, LF or NUL in its value`);
    if (name.toLowerCase() === 'content-type') contentType = true;
  }
  const code = Number(status.slice(0, 3));
  if (code === 204 || code === 304) {
    if (contentType) fail(`a ${code} response must not have a Content-Type`);
  }
}

function checkChunk(data: unknown, where: string): asserts data is WsgiChunk {
  if (typeof data !== 'string' && !(data instanceof Uint8Array)) fail(`${where} got ${describeValue(data)}, not a string or bytes`);
}

/** Wraps the body so each chunk is checked and startResponse is known to have come first. */
function checkBody(body: WsgiBody, started: () => boolean): WsgiBody {
  if (typeof body === 'string' || body instanceof Uint8Array) {
    if (!started()) fail('the app returned a body without calling startResponse');
    return body;
  }
  const source = body;
  const wrapped: AsyncIterable<WsgiChunk> & { close(): Promise<void> } = {
    async *[Symbol.asyncIterator]() {
      const iterable = source as AsyncIterable<WsgiChunk> | Iterable<WsgiChunk>;
      for await (const chunk of iterable) {
        checkChunk(chunk, 'the body');
        if (!started()) fail('the body yielded a chunk before startResponse was called');
        yield chunk;
      }
      if (!started()) fail('the body ended without startResponse being called');
    },
    async close() {
      const close = (source as { close?: unknown }).close;
      if (typeof close === 'function') await close.call(source);
    },
  };
  return wrapped;
}

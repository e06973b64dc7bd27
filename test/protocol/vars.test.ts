// What the vars say about a request: scheme, host, headers and the one-value view of repeated vars, on nginx's
// packets and on the vars a front server configured otherwise might send.
import { describe, expect, it } from 'vitest';
import { getVar, requestLineOf, schemeOf, varsToRecord } from '../../src/protocol/index.js';
import { hostName, percentDecode } from '../../src/protocol/vars.js';
import { decodeChunks, pairs, readFixture } from './helpers.js';

function fixtureHead(file: string): { vars: string[]; contentLength: number } {
  return decodeChunks([readFixture(file)]).head;
}

function lineOf(file: string): ReturnType<typeof requestLineOf> {
  const { vars, contentLength } = fixtureHead(file);
  return requestLineOf(vars, contentLength);
}

describe('schemeOf', () => {
  it.each([
    [undefined, undefined, undefined, 'http'],
    ['on', undefined, undefined, 'https'],
    ['ON', undefined, undefined, 'https'],
    ['1', undefined, undefined, 'https'],
    ['off', undefined, undefined, 'http'],
    ['0', undefined, undefined, 'http'],
    ['', undefined, undefined, 'http'],
    [undefined, 'https', undefined, 'https'],
    [undefined, 'HTTPS', undefined, 'https'],
    [undefined, 'http', undefined, 'http'],
    // HTTPS=on (what nginx sends over TLS) wins over REQUEST_SCHEME...
    ['on', 'http', undefined, 'https'],
    // ...but only on/1 assert anything: "off" leaves the decision to REQUEST_SCHEME.
    ['off', 'https', undefined, 'https'],
    // UWSGI_SCHEME is set by the front server's configuration and wins over both.
    ['on', 'https', 'http', 'http'],
    [undefined, 'http', 'https', 'https'],
    [undefined, undefined, 'HTTPS', 'https'],
    // A value that names no scheme is ignored, not taken for http.
    ['on', undefined, 'ftp', 'https'],
  ] as const)('HTTPS=%j REQUEST_SCHEME=%j UWSGI_SCHEME=%j -> %s', (https, requestScheme, uwsgiScheme, expected) => {
    expect(schemeOf(https, requestScheme, uwsgiScheme)).toBe(expected);
  });

  it('is read from the vars by requestLineOf', () => {
    expect(requestLineOf(['HTTPS', 'on'], 0).scheme).toBe('https');
    expect(requestLineOf(['REQUEST_SCHEME', 'https'], 0).scheme).toBe('https');
    expect(requestLineOf(['HTTPS', 'on', 'UWSGI_SCHEME', 'http'], 0).scheme).toBe('http');
    expect(requestLineOf(['REQUEST_SCHEME', 'http'], 0).scheme).toBe('http');
  });
});

describe('host', () => {
  it('is HTTP_HOST as the client sent it, port included, over SERVER_NAME and SERVER_PORT', () => {
    const vars = ['SERVER_NAME', 'example.com', 'SERVER_PORT', '80', 'HTTP_HOST', 'www.example.com:8080'];
    expect(requestLineOf(vars, 0).host).toBe('www.example.com:8080');
  });

  it.each([
    ['http', '80', 'example.com'],
    ['http', '8080', 'example.com:8080'],
    ['http', '443', 'example.com:443'],
    ['https', '443', 'example.com'],
    ['https', '80', 'example.com:80'],
    ['https', '', 'example.com'],
  ])('without HTTP_HOST is SERVER_NAME:SERVER_PORT, the %s default port omitted (port %j -> %s)', (scheme, port, host) => {
    const vars = ['REQUEST_SCHEME', scheme, 'SERVER_NAME', 'example.com', 'SERVER_PORT', port];
    expect(requestLineOf(vars, 0).host).toBe(host);
  });

  it('falls back from an empty HTTP_HOST (an HTTP/1.0 client sends none)', () => {
    const vars = ['SERVER_NAME', 'example.com', 'SERVER_PORT', '8080', 'HTTP_HOST', ''];
    expect(requestLineOf(vars, 0).host).toBe('example.com:8080');
  });

  it('is localhost when nginx has no server_name either (it sends SERVER_NAME empty)', () => {
    expect(requestLineOf(['SERVER_NAME', '', 'SERVER_PORT', '9080'], 0).host).toBe('localhost:9080');
  });
});

describe('headers', () => {
  it('carry content-type and content-length once, though nginx sends CONTENT_* and HTTP_CONTENT_*', () => {
    expect(pairs(lineOf('nginx-post-form.uwsgi').headers)).toEqual([
      ['host', '127.0.0.1'],
      ['user-agent', 'curl/7.88.1'],
      ['accept', '*/*'],
      ['content-type', 'application/x-www-form-urlencoded'],
      ['content-length', '3'],
    ]);
  });

  it('drop transfer-encoding after nginx de-chunked the body, and give its length instead', () => {
    const headers = pairs(lineOf('nginx-post-chunked.uwsgi').headers);
    expect(headers.map(([name]) => name)).toEqual(['host', 'user-agent', 'connection', 'content-type', 'content-length']);
    expect(headers.slice(3)).toEqual([
      ['content-type', 'text/plain'],
      ['content-length', '11'],
    ]);
  });

  it('never take HTTP_CONTENT_LENGTH for the length: no CONTENT_LENGTH, no content-length', () => {
    const { headers } = requestLineOf(['HTTP_CONTENT_LENGTH', '5', 'HTTP_TRANSFER_ENCODING', 'chunked'], 0);
    expect(headers).toEqual([]);
  });

  it('give content-length as the decoder read it', () => {
    expect(requestLineOf(['CONTENT_LENGTH', '007'], 7).headers).toEqual(['content-length', '7']);
    // Empty CONTENT_LENGTH is what nginx sends for a GET: no body, and no header claiming one.
    expect(requestLineOf(['CONTENT_LENGTH', ''], 0).headers).toEqual([]);
  });

  it('take content-type from HTTP_CONTENT_TYPE when CONTENT_TYPE is absent or empty', () => {
    expect(requestLineOf(['HTTP_CONTENT_TYPE', 'text/plain'], 0).headers).toEqual(['content-type', 'text/plain']);
    expect(requestLineOf(['CONTENT_TYPE', '', 'HTTP_CONTENT_TYPE', 'text/plain'], 0).headers).toEqual([
      'content-type',
      'text/plain',
    ]);
    expect(requestLineOf(['HTTP_CONTENT_TYPE', 'text/plain', 'CONTENT_TYPE', 'text/csv'], 0).headers).toEqual([
      'content-type',
      'text/csv',
    ]);
  });

  it('keep repeated cookies as separate headers, in arrival order', () => {
    const { headers } = lineOf('nginx-get-cookies.uwsgi');
    expect(pairs(headers).filter(([name]) => name === 'cookie')).toEqual([
      ['cookie', 'a=1'],
      ['cookie', 'b=2; c=3'],
    ]);
    expect(headers.indexOf('user-agent')).toBeGreaterThan(headers.indexOf('a=1'));
    expect(headers.indexOf('user-agent')).toBeLessThan(headers.indexOf('b=2; c=3'));
  });
});

describe('one value per var', () => {
  const { vars } = fixtureHead('nginx-get-cookies.uwsgi');

  it('joins repeated HTTP_COOKIE vars with "; " as nginx 1.23+ does', () => {
    expect(getVar(vars, 'HTTP_COOKIE')).toBe('a=1; b=2; c=3');
    expect(varsToRecord(vars).HTTP_COOKIE).toBe('a=1; b=2; c=3');
  });

  it('joins any other repeated var with ", "', () => {
    const accept = ['HTTP_ACCEPT', 'text/html', 'HTTP_ACCEPT', '*/*'];
    expect(getVar(accept, 'HTTP_ACCEPT')).toBe('text/html, */*');
    expect(varsToRecord(accept)).toEqual({ HTTP_ACCEPT: 'text/html, */*' });
  });

  it('tells an absent var from an empty one', () => {
    expect(getVar(vars, 'HTTP_REFERER')).toBeUndefined();
    expect(getVar(vars, 'QUERY_STRING')).toBe('');
    expect(varsToRecord(vars).QUERY_STRING).toBe('');
  });

  it('keeps every var of a fixture in the record', () => {
    const record = varsToRecord(vars);
    expect(Object.keys(record)).toEqual([...new Set(pairs(vars).map(([name]) => name))]);
    expect(record.REQUEST_URI).toBe('/cookies');
  });

  it('holds var names that collide with Object.prototype as plain data', () => {
    const record = varsToRecord(['__proto__', 'x', 'HTTP_HOST', 'h']);
    expect(Object.getPrototypeOf(record)).toBeNull();
    expect(record['__proto__']).toBe('x');
    expect(record.constructor).toBeUndefined();
  });
});

describe('requestLineOf', () => {
  it('reads a whole nginx packet', () => {
    expect(lineOf('nginx-get-query.uwsgi')).toEqual({
      method: 'GET',
      target: '/hello?x=1',
      httpVersion: '1.1',
      scheme: 'http',
      host: '127.0.0.1',
      remoteAddress: '127.0.0.1',
      remotePort: 36710,
      headers: ['host', '127.0.0.1', 'user-agent', 'curl/7.88.1', 'accept', '*/*', 'x-custom', 'a'],
    });
  });

  it('targets the raw REQUEST_URI, not the decoded PATH_INFO', () => {
    expect(lineOf('nginx-get-query-encoded.uwsgi').target).toBe('/caf%C3%A9/./docs/../menu?q=caf%C3%A9&a=1&a=2&empty=');
    expect(lineOf('nginx-head.uwsgi').method).toBe('HEAD');
  });

  it("uses CGI's defaults for vars a location without uwsgi_params does not send", () => {
    expect(requestLineOf(['HTTP_HOST', 'example.com'], 0)).toEqual({
      method: 'GET',
      target: '/',
      httpVersion: '1.1',
      scheme: 'http',
      host: 'example.com',
      remoteAddress: undefined,
      remotePort: undefined,
      headers: ['host', 'example.com'],
    });
  });

  it('builds the target from SCRIPT_NAME, PATH_INFO and QUERY_STRING without REQUEST_URI', () => {
    expect(requestLineOf(['PATH_INFO', '/a', 'QUERY_STRING', 'b=1'], 0).target).toBe('/a?b=1');
    expect(requestLineOf(['SCRIPT_NAME', '/app', 'PATH_INFO', '/x'], 0).target).toBe('/app/x');
    expect(requestLineOf(['QUERY_STRING', 'b=1'], 0).target).toBe('/?b=1');
  });

  it('reads the HTTP version and the peer', () => {
    const line = requestLineOf(['SERVER_PROTOCOL', 'HTTP/1.0', 'REMOTE_ADDR', '::1', 'REMOTE_PORT', 'x'], 0);
    expect(line.httpVersion).toBe('1.0');
    expect(line.remoteAddress).toBe('::1');
    expect(line.remotePort).toBeUndefined();
  });
});

describe('hostName', () => {
  it.each([
    ['example.org', 'example.org'],
    ['example.org:8080', 'example.org'],
    ['[::1]', '[::1]'],
    ['[::1]:8080', '[::1]'],
    ['[2001:db8::1]:443', '[2001:db8::1]'],
    // A bracket never closed is kept whole: no name is cut out of it (the wsgi copy gave '' here).
    ['[::1', '[::1'],
    ['', ''],
    [':8080', ''],
  ])('%j -> %j', (host, name) => {
    expect(hostName(host)).toBe(name);
  });
});

describe('percentDecode', () => {
  it.each([
    ['/plain', '/plain'],
    ['/a%20b', '/a b'],
    ['/%41%6a', '/Aj'],
    // UTF-8 bytes stay bytes, as a latin1 string (é is C3 A9).
    ['/caf%C3%A9', '/caf\u00c3\u00a9'],
    ['/bad%zz%4', '/bad%zz%4'],
    ['/%2F%25', '/\u002f%'],
  ])('%j -> %j', (text, decoded) => {
    expect(percentDecode(text)).toBe(decoded);
  });
});

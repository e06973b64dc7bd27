// The vars the --http listener and `node-uwsgi request` build, as nginx builds them from nginx/uwsgi_params.
import { describe, expect, it } from 'vitest';
import { cgiVars, documentUri } from '../../src/protocol/cgi.js';

describe('documentUri (nginx $document_uri)', () => {
  it.each([
    ['/', '/'],
    ['/a/b', '/a/b'],
    ['/a//b///c', '/a/b/c'],
    ['/a/./b/.', '/a/b/'],
    ['/a/b/../c', '/a/c'],
    ['/../../etc/passwd', '/etc/passwd'],
    ['/a/..', '/'],
    ['/dir/', '/dir/'],
    ['/caf%C3%A9%20x', '/caf\u00c3\u00a9 x'],
    ['/100%/%zz', '/100%/%zz'],
  ])('%s -> %j', (path, expected) => {
    expect(documentUri(path)).toBe(expected);
  });
});

describe('cgiVars', () => {
  const base = {
    method: 'POST',
    httpVersion: '1.1',
    contentLength: 3,
    remoteAddress: '127.0.0.1',
    remotePort: 5000,
    serverName: 'example.org',
    serverPort: '8000',
  };

  it("sends uwsgi_params' vars in its order, then the headers, without HTTPS", () => {
    const vars = cgiVars({
      ...base,
      target: '/p%61th/?q=1&r',
      headers: [
        ['Host', 'example.org:8000'],
        ['Content-Type', 'text/plain'],
        ['Content-Length', '3'],
        ['X_Spoof', 'dropped'],
        ['X-Real', 'kept'],
      ],
    });
    expect(vars).toEqual([
      'QUERY_STRING', 'q=1&r',
      'REQUEST_METHOD', 'POST',
      'CONTENT_TYPE', 'text/plain',
      'CONTENT_LENGTH', '3',
      'REQUEST_URI', '/p%61th/?q=1&r',
      'PATH_INFO', '/path/',
      'SERVER_PROTOCOL', 'HTTP/1.1',
      'REQUEST_SCHEME', 'http',
      'REMOTE_ADDR', '127.0.0.1',
      'REMOTE_PORT', '5000',
      'SERVER_PORT', '8000',
      'SERVER_NAME', 'example.org',
      'HTTP_HOST', 'example.org:8000',
      'HTTP_CONTENT_TYPE', 'text/plain',
      'HTTP_CONTENT_LENGTH', '3',
      'HTTP_X_REAL', 'kept',
    ]);
  });

  it('reduces an absolute-form target to its path, and sends empty CONTENT_* without a body', () => {
    const vars = cgiVars({ ...base, method: 'GET', contentLength: undefined, target: 'http://other.example/x?y', headers: [] });
    const record = Object.fromEntries(Array.from({ length: vars.length / 2 }, (_, i) => [vars[2 * i], vars[2 * i + 1]]));
    expect(record).toMatchObject({ PATH_INFO: '/x', QUERY_STRING: 'y', CONTENT_LENGTH: '', CONTENT_TYPE: '' });
  });
});

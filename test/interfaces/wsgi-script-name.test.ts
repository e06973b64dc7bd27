// SCRIPT_NAME and PATH_INFO as a WSGI app sees them behind Apache's mod_proxy_uwsgi, from the vars Apache 2.4.71
// (Debian) sent for `ProxyPass "/app" "uwsgi://127.0.0.1:3031"` and `ProxyPass "/" "uwsgi://127.0.0.1:3031/"`.
// mod_proxy_uwsgi.c (uwsgi_send_headers) cuts PATH_INFO off SCRIPT_NAME, except when PATH_INFO is "/": then
// SCRIPT_NAME keeps the whole path, /app/ for a request of /app/.
import { Readable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { buildEnviron } from '../../src/interfaces/wsgi.js';

/** The CGI vars of Apache's packet that decide the mount, in its order (headers and server vars left out). */
function apacheVars(pathInfo: string, requestUri: string, scriptName: string): string[] {
  return ['PATH_INFO', pathInfo, 'HTTP_HOST', '127.0.0.1:8080', 'REQUEST_METHOD', 'GET', 'QUERY_STRING', '', 'REQUEST_URI', requestUri, 'SCRIPT_NAME', scriptName];
}

function environOf(vars: string[]): Record<string, unknown> {
  return buildEnviron({ vars, body: Readable.from([]), log: pino({ level: 'silent' }), multiprocess: false });
}

describe('SCRIPT_NAME from Apache mod_proxy_uwsgi', () => {
  it.each([
    // [request, PATH_INFO sent, SCRIPT_NAME sent, SCRIPT_NAME the app sees]
    ['/app/', '/', '/app/', '/app'],
    ['/app', '/', '/app', '/app'],
    ['/app/rest', '/rest', '/app', '/app'],
    ['/', '/', '', ''],
    ['/hello', '/hello', '', ''],
  ])('a request of %s (PATH_INFO=%s, SCRIPT_NAME=%s) gives the app SCRIPT_NAME=%s', (uri, pathInfo, sent, seen) => {
    const environ = environOf(apacheVars(pathInfo, uri, sent));
    expect(environ.SCRIPT_NAME).toBe(seen);
    expect(environ.PATH_INFO).toBe(pathInfo);
    // What Apache sent stays available as it was.
    expect(environ['uwsgi.vars']).toContainEqual(['SCRIPT_NAME', sent]);
  });

  it('takes a lone "/" SCRIPT_NAME as the root', () => {
    expect(environOf(apacheVars('/x', '/x', '/')).SCRIPT_NAME).toBe('');
  });

  it('leaves a trailing slash alone when PATH_INFO is empty (nothing would join it twice)', () => {
    expect(environOf(apacheVars('', '/app/', '/app/')).SCRIPT_NAME).toBe('/app/');
  });
});

// The uwsgi vars of an HTTP request, as nginx builds them with the shipped uwsgi_params: for the --http listener
// (src/server/http.ts) and the `request` command (src/commands/request.ts). Pure, beside the codec.
import { percentDecode } from './vars.js';

/** A request as the client sent it, from which the uwsgi vars are built. Strings are latin1 (one char a byte). */
export interface HttpRequestShape {
  readonly method: string;
  /** The request target: origin-form (/path?query), absolute-form or `*`. */
  readonly target: string;
  /** "1.1", "1.0". */
  readonly httpVersion: string;
  /** Header lines in arrival order, names as sent. */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  /** The body's length, or undefined for a request without one. */
  readonly contentLength: number | undefined;
  readonly remoteAddress?: string | undefined;
  readonly remotePort?: number | undefined;
  readonly serverName: string;
  readonly serverPort: string;
}

/**
 * The vars nginx sends for such a request with the shipped uwsgi_params, in its order: QUERY_STRING,
 * REQUEST_METHOD, CONTENT_TYPE, CONTENT_LENGTH, REQUEST_URI, PATH_INFO (decoded, normalised), SERVER_PROTOCOL,
 * REQUEST_SCHEME, REMOTE_ADDR, REMOTE_PORT, SERVER_PORT, SERVER_NAME, then every header as HTTP_<NAME>. HTTPS
 * is absent (plain HTTP; if_not_empty). Header names with an underscore are dropped, as nginx's
 * ignore_invalid_headers does: X_Forwarded_For and X-Forwarded-For would otherwise both become one var.
 */
export function cgiVars(req: HttpRequestShape): string[] {
  const { path, query } = splitTarget(req.target);
  let contentType = '';
  for (const [name, value] of req.headers) {
    if (contentType === '' && name.length === 12 && name.toLowerCase() === 'content-type') contentType = value;
  }
  const vars = [
    'QUERY_STRING', query,
    'REQUEST_METHOD', req.method,
    'CONTENT_TYPE', contentType,
    'CONTENT_LENGTH', req.contentLength === undefined ? '' : String(req.contentLength),
    'REQUEST_URI', req.target,
    'PATH_INFO', documentUri(path),
    'SERVER_PROTOCOL', `HTTP/${req.httpVersion}`,
    'REQUEST_SCHEME', 'http',
  ];
  if (req.remoteAddress !== undefined) vars.push('REMOTE_ADDR', req.remoteAddress);
  if (req.remotePort !== undefined) vars.push('REMOTE_PORT', String(req.remotePort));
  vars.push('SERVER_PORT', req.serverPort, 'SERVER_NAME', req.serverName);
  for (const [name, value] of req.headers) {
    if (!HEADER_NAME.test(name)) continue;
    vars.push('HTTP_' + name.toUpperCase().replaceAll('-', '_'), value);
  }
  return vars;
}

// What nginx accepts as a header name by default (ignore_invalid_headers on, underscores_in_headers off).
const HEADER_NAME = /^[A-Za-z0-9-]+$/;

/** Path and query of a request target; absolute-form (a proxy-style request) is reduced to its path. */
function splitTarget(target: string): { path: string; query: string } {
  let rest = target;
  if (!rest.startsWith('/')) {
    const match = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i.exec(rest);
    rest = match ? rest.slice(match[0].length) || '/' : '/';
  }
  const hash = rest.indexOf('#');
  if (hash !== -1) rest = rest.slice(0, hash);
  const mark = rest.indexOf('?');
  return mark === -1 ? { path: rest, query: '' } : { path: rest.slice(0, mark), query: rest.slice(mark + 1) };
}

/**
 * nginx's $document_uri: the path percent-decoded to bytes (a latin1 string), slashes merged, `.` and `..`
 * segments resolved (never above the root). Invalid escapes are kept as they are.
 */
export function documentUri(path: string): string {
  const decoded = percentDecode(path);
  const out: string[] = [];
  const segments = decoded.split('/');
  for (let i = 1; i < segments.length; i++) {
    const segment = segments[i]!;
    const last = i === segments.length - 1;
    if (segment === '' || segment === '.') {
      if (last) out.push('');
      continue;
    }
    if (segment === '..') {
      out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(segment);
  }
  return '/' + out.join('/');
}

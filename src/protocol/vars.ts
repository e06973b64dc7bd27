// What the CGI-style vars say about the request: method, target, scheme, host and HTTP headers, with CGI's
// defaults for vars a front server did not send. Pure; shared by every app interface.
// Facts: ../../../shared/PROTOCOL.md ("What nginx sends").

/** The value of a var, repeated vars joined as nginx >= 1.23 joins repeated headers; undefined when absent. */
export function getVar(vars: readonly string[], name: string): string | undefined {
  let found: string | undefined;
  for (let i = 0; i < vars.length; i += 2) {
    if (vars[i] === name) found = found === undefined ? vars[i + 1]! : found + joinerOf(name) + vars[i + 1]!;
  }
  return found;
}

/** nginx 1.23+ joins a repeated Cookie with "; " and any other repeated header with ", ". */
export function joinerOf(varName: string): string {
  return varName === 'HTTP_COOKIE' ? '; ' : ', ';
}

/** Every var as one string per name, repeated vars joined in arrival order (what an environ holds). */
export function varsToRecord(vars: readonly string[]): Record<string, string> {
  const out: Record<string, string> = Object.create(null);
  for (let i = 0; i < vars.length; i += 2) {
    const name = vars[i]!;
    const value = vars[i + 1]!;
    const prev = out[name];
    out[name] = prev === undefined ? value : prev + joinerOf(name) + value;
  }
  return out;
}

const headerNames = new Map<string, string>();

/** HTTP_USER_AGENT -> user-agent (the lower-case form node's http and fetch use). */
export function headerNameOf(varName: string): string {
  let name = headerNames.get(varName);
  if (name === undefined) {
    name = varName.slice(5).toLowerCase().replaceAll('_', '-');
    if (headerNames.size < 1024) headerNames.set(varName, name);
  }
  return name;
}

// Framing comes from CONTENT_LENGTH alone: nginx forwards HTTP_TRANSFER_ENCODING after de-chunking and sends
// HTTP_CONTENT_LENGTH even with uwsgi_pass_request_body off, so none of these three become request headers.
const FRAMING_VARS = new Set(['HTTP_CONTENT_LENGTH', 'HTTP_CONTENT_TYPE', 'HTTP_TRANSFER_ENCODING']);

export interface RequestLine {
  method: string;
  /** The request target as the client sent it, with its query: REQUEST_URI, else PATH_INFO?QUERY_STRING. */
  target: string;
  /** "1.1", "1.0", "2.0"... from SERVER_PROTOCOL (default 1.1). */
  httpVersion: string;
  scheme: 'http' | 'https';
  /** Host (and port, when not the scheme's default) as the client addressed it. */
  host: string;
  remoteAddress: string | undefined;
  remotePort: number | undefined;
  /** Flat [name, value, ...] request headers in lower case, in arrival order, repeated ones kept. */
  headers: string[];
}

/** Reads the request line, scheme, host and headers from the vars; `contentLength` is the decoder's. */
export function requestLineOf(vars: readonly string[], contentLength: number): RequestLine {
  let method = 'GET';
  let requestUri: string | undefined;
  let pathInfo: string | undefined;
  let scriptName = '';
  let query = '';
  let protocol = 'HTTP/1.1';
  let https: string | undefined;
  let requestScheme: string | undefined;
  let uwsgiScheme: string | undefined;
  let host: string | undefined;
  let serverName = '';
  let serverPort = '';
  let remoteAddress: string | undefined;
  let remotePort: string | undefined;
  let contentType = '';
  let hasContentLength = false;
  const headers: string[] = [];
  for (let i = 0; i < vars.length; i += 2) {
    const name = vars[i]!;
    const value = vars[i + 1]!;
    if (name.startsWith('HTTP_')) {
      if (FRAMING_VARS.has(name)) {
        if (name === 'HTTP_CONTENT_TYPE' && contentType === '') contentType = value;
        continue;
      }
      if (name === 'HTTP_HOST') host = host === undefined ? value : host;
      headers.push(headerNameOf(name), value);
      continue;
    }
    switch (name) {
      case 'REQUEST_METHOD': if (value !== '') method = value; break;
      case 'REQUEST_URI': requestUri = value; break;
      case 'PATH_INFO': pathInfo = value; break;
      case 'SCRIPT_NAME': scriptName = value; break;
      case 'QUERY_STRING': query = value; break;
      case 'SERVER_PROTOCOL': if (value !== '') protocol = value; break;
      case 'HTTPS': https = value; break;
      case 'REQUEST_SCHEME': requestScheme = value; break;
      case 'UWSGI_SCHEME': uwsgiScheme = value; break;
      case 'SERVER_NAME': serverName = value; break;
      case 'SERVER_PORT': serverPort = value; break;
      case 'REMOTE_ADDR': remoteAddress = value; break;
      case 'REMOTE_PORT': remotePort = value; break;
      case 'CONTENT_TYPE': if (value !== '') contentType = value; break;
      case 'CONTENT_LENGTH': hasContentLength = value !== ''; break;
    }
  }
  if (contentType !== '') headers.push('content-type', contentType);
  if (hasContentLength) headers.push('content-length', String(contentLength));
  const scheme = schemeOf(https, requestScheme, uwsgiScheme);
  if (host === undefined || host === '') {
    const name = serverName === '' ? 'localhost' : serverName;
    const defaultPort = scheme === 'https' ? '443' : '80';
    host = serverPort === '' || serverPort === defaultPort ? name : `${name}:${serverPort}`;
  }
  let target = requestUri;
  if (target === undefined || target === '') {
    target = (scriptName + (pathInfo ?? '')) || '/';
    if (query !== '') target += '?' + query;
  }
  const slash = protocol.indexOf('/');
  const port = remotePort === undefined ? NaN : Number(remotePort);
  return {
    method,
    target,
    httpVersion: slash === -1 ? '1.1' : protocol.slice(slash + 1),
    scheme,
    host,
    remoteAddress: remoteAddress === '' ? undefined : remoteAddress,
    remotePort: Number.isInteger(port) ? port : undefined,
    headers,
  };
}

/** UWSGI_SCHEME (set by the front server's configuration) wins, then HTTPS=on|1, then REQUEST_SCHEME. */
export function schemeOf(
  https: string | undefined,
  requestScheme: string | undefined,
  uwsgiScheme: string | undefined,
): 'http' | 'https' {
  const explicit = uwsgiScheme?.toLowerCase();
  if (explicit === 'https' || explicit === 'http') return explicit;
  if (https !== undefined && /^(on|1|yes|true)$/i.test(https)) return 'https';
  return requestScheme?.toLowerCase() === 'https' ? 'https' : 'http';
}

/**
 * The name part of a Host header: `[v6]` up to its bracket (kept, as nginx's $host keeps it; a bracket never closed
 * is kept whole), else up to the first colon.
 */
export function hostName(host: string): string {
  if (host.startsWith('[')) {
    const end = host.indexOf(']');
    return end === -1 ? host : host.slice(0, end + 1);
  }
  const colon = host.indexOf(':');
  return colon === -1 ? host : host.slice(0, colon);
}

const ESCAPE = /%([0-9A-Fa-f]{2})/g;

function byteOf(_whole: string, hex: string): string {
  return String.fromCharCode(parseInt(hex, 16));
}

/** Each valid %XX as its byte, kept as a latin1 string like every var (CGI's PATH_INFO, nginx's $document_uri);
 * an invalid escape stays as it is. */
export function percentDecode(text: string): string {
  return text.includes('%') ? text.replace(ESCAPE, byteOf) : text;
}

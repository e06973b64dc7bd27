// Listening addresses (--socket, --http, --stats...): the type, its parser and its printed form. Pure, below the
// options table and the server, so that both take it from here.
import { UwsgiError } from './errors.js';

export type SocketAddress =
  | { kind: 'unix'; path: string }
  | { kind: 'tcp'; host: string; port: number }
  | { kind: 'fd'; fd: number };

/** One --ssl-socket: a uwsgi listener over TLS (uWSGI's ADDR,CERT,KEY[,CA]); with `ca`, peers need a client
 * certificate it signed (mutual TLS: nginx's uwsgi_ssl_certificate). Paths as given, resolved from the cwd. */
export interface SslSocket {
  address: SocketAddress;
  cert: string;
  key: string;
  ca?: string | undefined;
}

/** Parses `unix:/path`, `/abs/path`, `host:port`, `[::1]:port`, `:port` or `fd://N`. */
export function parseSocketAddress(raw: string): SocketAddress {
  if (raw.startsWith('unix:')) {
    const path = raw.slice(5);
    if (path === '') throw new UwsgiError('ERR_SOCKET_ADDRESS', { value: JSON.stringify(raw) });
    return { kind: 'unix', path };
  }
  if (raw.startsWith('/') || raw.startsWith('./')) return { kind: 'unix', path: raw };
  if (raw.startsWith('fd://')) {
    const fd = Number(raw.slice(5));
    if (!Number.isInteger(fd) || fd < 0 || raw.length === 5) {
      throw new UwsgiError('ERR_SOCKET_ADDRESS', { value: JSON.stringify(raw) });
    }
    return { kind: 'fd', fd };
  }
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(raw);
  const port = match ? Number(match[3]) : NaN;
  if (!match || port > 65535) throw new UwsgiError('ERR_SOCKET_ADDRESS', { value: JSON.stringify(raw) });
  const host = match[1] ?? (match[2] === '' ? '127.0.0.1' : match[2]!);
  return { kind: 'tcp', host, port };
}

export function formatSslSocket(ssl: SslSocket): string {
  return [formatSocketAddress(ssl.address), ssl.cert, ssl.key, ...(ssl.ca === undefined ? [] : [ssl.ca])].join(',');
}

export function formatSocketAddress(address: SocketAddress): string {
  switch (address.kind) {
    case 'unix': return `unix:${address.path}`;
    case 'fd': return `fd://${address.fd}`;
    case 'tcp': return address.host.includes(':') ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
  }
}

/** localhost, ::1 or 127.0.0.0/8: the hosts whose TCP sockets only this machine reaches. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

// uwsgi over TLS (--ssl-socket, as uWSGI's and nginx's `uwsgi_pass suwsgi://`): reading and checking the
// certificate files, the handshake in front of the one uwsgi connection handler (connection.ts), and what a failed
// handshake logs. TLS stays on the JavaScript path: the native addon moves plain bytes only.
// https://nginx.org/en/docs/http/ngx_http_uwsgi_module.html#uwsgi_ssl_certificate
import { X509Certificate, createPrivateKey, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { UwsgiError } from '../errors.js';
import { tlsPeerAddress } from '../node-internals.js';
import { formatSocketAddress, type SslSocket } from '../address.js';

const MIN_TLS_VERSION = 'TLSv1.2';
/** A certificate that expires within this many days is a warning at start and at each reload: two weeks leave
 * room for a renewal job that runs weekly (certbot's timer runs twice a day, and renews 30 days ahead). */
export const EXPIRY_WARNING_DAYS = 14;
const DAY_MS = 24 * 3600 * 1000;
/** Without --header-timeout, how long a peer may take over its handshake (Node's own default). */
const DEFAULT_HANDSHAKE_TIMEOUT = 120_000;

/** One --ssl-socket's files, read and checked: what a worker's secure context is made of. Plain data, so that the
 * master reads the files once and hands the same bytes to every worker over IPC (never in the environment, which
 * the app's child processes inherit). */
export interface TlsMaterial {
  /** The --ssl-socket address as the user wrote it (a worker may listen on the fd the master bound for it). */
  address: string;
  cert: string;
  key: string;
  ca?: string | undefined;
  /** The leaf certificate's serial number (hex) and notAfter, for the logs. */
  serial: string;
  notAfter: string;
  /** Session ticket keys (48 bytes, base64) shared by every worker, so that nginx's uwsgi_ssl_session_reuse
   * resumes a session whichever worker accepts the next connection; new ones at each reload. */
  ticketKeys: string;
}

/** Reads and checks one --ssl-socket's files: readable, PEM, the key the certificate's, a context OpenSSL
 * accepts. Throws ERR_TLS_FILE or ERR_TLS_KEY_MISMATCH naming the file. */
export function loadTlsMaterial(ssl: SslSocket): TlsMaterial {
  const address = formatSocketAddress(ssl.address);
  const fail = (what: string, file: string, detail: string, cause?: unknown): never => {
    throw new UwsgiError('ERR_TLS_FILE', { what, file, address, detail }, { cause });
  };
  const read = (what: string, file: string): string => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      return fail(what, file, (err as Error).message, err);
    }
  };
  const cert = read('certificate', ssl.cert);
  const key = read('key', ssl.key);
  const ca = ssl.ca === undefined ? undefined : read('CA', ssl.ca);
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (err) {
    return fail('certificate', ssl.cert, `not a PEM certificate (${(err as Error).message})`, err);
  }
  let keyObject;
  try {
    keyObject = createPrivateKey(key);
  } catch (err) {
    return fail('key', ssl.key, `not an unencrypted PEM private key (${(err as Error).message})`, err);
  }
  if (!leaf.checkPrivateKey(keyObject)) throw new UwsgiError('ERR_TLS_KEY_MISMATCH', { key: ssl.key, cert: ssl.cert, address });
  if (ca !== undefined) {
    try {
      new X509Certificate(ca);
    } catch (err) {
      fail('CA', ssl.ca!, `not a PEM certificate (${(err as Error).message})`, err);
    }
  }
  const material: TlsMaterial = {
    address,
    cert,
    key,
    ca,
    serial: leaf.serialNumber,
    notAfter: new Date(leaf.validTo).toISOString(),
    ticketKeys: randomBytes(48).toString('base64'),
  };
  try {
    tls.createSecureContext(contextOptions(material));
  } catch (err) {
    fail('certificate', ssl.cert, (err as Error).message, err);
  }
  return material;
}

/** ERR_TLS_CERT_EXPIRED or ERR_TLS_CERT_EXPIRING for a certificate past or within EXPIRY_WARNING_DAYS of its
 * notAfter; undefined otherwise. */
export function expiryWarning(ssl: SslSocket, material: TlsMaterial, now = Date.now()): UwsgiError | undefined {
  const notAfter = Date.parse(material.notAfter);
  const details = { file: ssl.cert, address: formatSocketAddress(ssl.address), notAfter: material.notAfter };
  if (notAfter <= now) return new UwsgiError('ERR_TLS_CERT_EXPIRED', details);
  const left = notAfter - now;
  if (left >= EXPIRY_WARNING_DAYS * DAY_MS) return undefined;
  const days = Math.floor(left / DAY_MS);
  const hours = Math.max(1, Math.floor(left / (DAY_MS / 24)));
  return new UwsgiError('ERR_TLS_CERT_EXPIRING', { ...details, days, left: days >= 2 ? `${days} days` : `${hours} hour${hours === 1 ? '' : 's'}` });
}

/** The secure context of one --ssl-socket (tls.createSecureContext's and tls.Server's setSecureContext options). */
function contextOptions(material: TlsMaterial): tls.SecureContextOptions {
  return {
    cert: material.cert,
    key: material.key,
    ...(material.ca === undefined ? {} : { ca: material.ca }),
    minVersion: MIN_TLS_VERSION,
    ticketKeys: Buffer.from(material.ticketKeys, 'base64'),
  };
}

/**
 * The TLS side of one --ssl-socket in a worker: a tls.Server that never listens itself. The listening net.Server
 * (server.ts) checks --allow-from on the plain connection, before any handshake, and hands it over with
 * emit('connection'), which tls.Server documents for injected connections; its 'secureConnection' goes to the
 * uwsgi connection handler. update() swaps the secure context: connections from then on get it, one in flight
 * keeps the one it started with.
 */
export class TlsFront {
  readonly server: tls.Server;
  /** Handshakes that failed (not a peer that connected and hung up without a word). */
  failures = 0;
  private readonly logged = new WeakSet<Socket>();

  private readonly address: string;

  constructor(
    material: TlsMaterial,
    private readonly log: Logger,
    mutual: boolean,
    handshakeTimeout: number,
    onSecure: (socket: tls.TLSSocket) => void,
  ) {
    this.address = material.address;
    this.server = tls.createServer({
      ...contextOptions(material),
      requestCert: mutual,
      rejectUnauthorized: mutual,
      handshakeTimeout: handshakeTimeout || DEFAULT_HANDSHAKE_TIMEOUT,
    });
    this.server.on('secureConnection', onSecure);
    this.server.on('tlsClientError', (err, socket) => this.handshakeFailed(err, socket));
  }

  /** Hands a connection (already admitted by --allow-from) to the handshake. */
  accept(socket: Socket): void {
    this.server.emit('connection', socket);
  }

  update(material: TlsMaterial): void {
    this.server.setSecureContext(contextOptions(material));
  }

  /** Logged once per connection, with its cause; never more than the connection is lost. */
  private handshakeFailed(err: NodeJS.ErrnoException, socket: tls.TLSSocket): void {
    if (this.logged.has(socket)) return;
    this.logged.add(socket);
    const peer = tlsPeerAddress(socket);
    const { cause, quiet } = handshakeCause(err, socket.authorizationError as unknown as string | null | undefined);
    if (quiet) {
      this.log.debug({ peer, address: this.address, tlsError: err.code }, 'the peer closed the connection before its TLS handshake');
      return;
    }
    this.failures++;
    const failure = new UwsgiError('ERR_TLS_HANDSHAKE', { peer: peer ?? 'a peer', address: this.address, cause });
    this.log.warn({ code: failure.code, peer, address: this.address, cause, tlsError: (socket.authorizationError as unknown as string | null) ?? err.code }, failure.message);
  }
}

/** The cause of a failed handshake in words: what the operator should look at. `quiet`: nothing went wrong but
 * a peer that connected and left (a TCP health check, a port scan), which is not worth a warning. */
export function handshakeCause(err: NodeJS.ErrnoException, authorizationError: string | null | undefined): { cause: string; quiet: boolean } {
  // rejectUnauthorized: Node checks the client certificate after OpenSSL's handshake and destroys the socket,
  // which reports a plain ECONNRESET; the verdict is in authorizationError.
  if (authorizationError) {
    return { cause: `the client certificate was refused (${authorizationError}): it is not signed by the --ssl-socket CA, or has expired`, quiet: false };
  }
  switch (err.code) {
    case 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE':
      return { cause: 'the peer sent no client certificate, and this socket requires one (nginx: uwsgi_ssl_certificate and uwsgi_ssl_certificate_key)', quiet: false };
    case 'ERR_SSL_WRONG_VERSION_NUMBER':
    case 'ERR_SSL_HTTP_REQUEST':
    case 'ERR_SSL_UNEXPECTED_MESSAGE':
      return { cause: `the peer does not speak TLS (${err.code}): plain uwsgi or HTTP sent to a TLS socket; nginx needs uwsgi_pass suwsgi://`, quiet: false };
    case 'ERR_SSL_UNSUPPORTED_PROTOCOL':
    case 'ERR_SSL_NO_PROTOCOLS_AVAILABLE':
    case 'ERR_SSL_VERSION_TOO_LOW':
      return { cause: `the peer offered no protocol version this socket accepts (${err.code}): TLS 1.2 or 1.3 is required`, quiet: false };
    case 'ERR_TLS_HANDSHAKE_TIMEOUT':
      return { cause: 'the handshake was not complete after --header-timeout', quiet: false };
    case 'ECONNRESET':
      return { cause: 'the peer closed the connection during the handshake', quiet: true };
    default:
      return { cause: `${err.code ?? 'error'}: ${String(err.message).split('\n')[0]}`, quiet: false };
  }
}


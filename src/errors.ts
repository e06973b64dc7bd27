// The one error table: every error node-uwsgi raises has a stable code, a message that says what to do, and,
// where a request is concerned, the HTTP status it maps to. README.md's "Errors" table is checked against it.

export interface ErrorSpec {
  /** HTTP status when the error concerns a request; undefined for start-up and configuration errors. */
  readonly status?: number;
  /** Message template; `{name}` placeholders are filled from the details. Says what to do. */
  readonly message: string;
}

export const ERRORS = {
  // uwsgi protocol (src/protocol)
  ERR_UWSGI_MODIFIER: { status: 400, message: 'unsupported uwsgi packet modifier1={modifier1}: only 0 (a WSGI-style request, what nginx and Apache send) is served; remove uwsgi_modifier1 from the front server configuration' },
  ERR_UWSGI_HTTP_ON_SOCKET: { status: 400, message: 'plain HTTP arrived on the uwsgi socket ({preview}): the front server must use uwsgi_pass (nginx) or uwsgi:// (Apache), not proxy_pass/http://' },
  ERR_UWSGI_VARS_TOO_LARGE: { status: 431, message: 'uwsgi vars block of {size} bytes exceeds --max-vars-size {limit}: raise --max-vars-size or send smaller headers' },
  ERR_UWSGI_TOO_MANY_VARS: { status: 431, message: 'uwsgi vars block has more than --max-vars {limit} variables: raise --max-vars or send fewer headers' },
  ERR_UWSGI_MALFORMED_VARS: { status: 400, message: 'malformed uwsgi vars block: {detail} at offset {offset}; the peer does not speak the uwsgi protocol' },
  ERR_UWSGI_BAD_CONTENT_LENGTH: { status: 400, message: 'CONTENT_LENGTH {value} is not a non-negative integer of at most 15 digits: the front server sent an invalid request length' },
  ERR_UWSGI_HEAD_INCOMPLETE: { status: 400, message: 'the peer closed the connection after {received} bytes, before the uwsgi header and vars were complete' },
  ERR_UWSGI_BODY_INCOMPLETE: { status: 400, message: 'the request body ended after {received} of {expected} bytes (CONTENT_LENGTH): the peer closed early' },

  ERR_UWSGI_LENGTH_MISMATCH: { status: 400, message: 'CONTENT_LENGTH {length} and the Content-Length header {header} disagree: the body framing is ambiguous, the request is refused' },
  ERR_BODY_TOO_LARGE: { status: 413, message: 'the request body of {length} bytes exceeds --max-body-size {limit}: raise --max-body-size (and nginx\'s client_max_body_size)' },
  ERR_HEADER_TIMEOUT: { status: 408, message: 'the uwsgi header and vars were not complete after --header-timeout {seconds}s ({received} bytes): connection closed' },
  ERR_BODY_TIMEOUT: { status: 408, message: 'no request body bytes for --body-timeout {seconds}s ({received} of {expected} received): the request is abandoned' },
  ERR_UWSGI_BAD_TARGET: { status: 400, message: 'the request target {target} with Host {host} does not make a valid URL for a fetch Request' },

  // Apps and their responses
  ERR_APP_EXCEPTION: { status: 500, message: 'the app threw: {detail}' },
  ERR_APP_BAD_RESPONSE: { status: 500, message: 'the app returned an invalid response: {detail}' },
  ERR_APP_BAD_STATUS: { status: 500, message: 'the app set status {value}: a final status from 200 to 999 is required (1xx would end the front server\'s response)' },
  ERR_APP_BAD_HEADER: { status: 500, message: 'the app set an invalid header {name}: names are tokens and values carry no CR, LF or NUL' },
  ERR_WSGI_START_RESPONSE: { status: 500, message: 'start_response misuse: {detail} (PEP 3333)' },
  ERR_WSGI_VALIDATION: { status: 500, message: 'WSGI validator: {detail}' },

  ERR_REQUEST_TIMEOUT: { status: 504, message: 'the app had not started its response after --request-timeout {seconds}s: answered 504' },
  ERR_SEND_TIMEOUT: { message: 'the peer read nothing of the response for --send-timeout {seconds}s ({pending} bytes waiting): connection closed' },

  ERR_WORKER_BLOCKED: { message: 'a worker\'s event loop was blocked longer than --harakiri {seconds}s: it was killed and replaced' },
  ERR_LISTEN_QUEUE_FULL: { message: 'the listen queue of {address} holds {queue} of its {backlog} connections: the workers do not accept fast enough, and past the backlog connections are refused (nginx: connect() failed (11: Resource temporarily unavailable), 502); add workers, or raise --backlog and net.core.somaxconn for bursts' },
  ERR_FD_LIMIT: { message: 'a worker is out of file descriptors ({errno}, limit {limit}): new connections are closed unserved until some close; raise LimitNOFILE= (systemd) or ulimit -n' },

  // Loading the app (src/app-loader)
  ERR_APP_NOT_FOUND: { message: 'cannot find the app module {spec} (resolved from {cwd}): give a path such as ./app.js or an installed package name' },
  ERR_APP_IMPORT_FAILED: { message: 'importing the app module {file} failed: {detail}' },
  ERR_APP_EXPORT_MISSING: { message: 'the app module {file} has no export "{name}"; exports found: {exports}. Name one with {spec}:<export>{hint}' },
  ERR_APP_FACTORY_FAILED: { message: 'the app factory {file}:{name}() threw or rejected: {detail}' },
  ERR_APP_INTERFACE_UNKNOWN: { message: 'cannot tell which interface the app {file}:{name} speaks ({detail}); {fix}' },

  ERR_APP_LISTEN: { message: 'the app called listen() on {address}: nothing was opened there, node-uwsgi serves the app on its own sockets (--socket, --http); the call may stay for running the app without node-uwsgi' },

  ERR_APP_INTERFACE_MISMATCH: { message: 'the app {file}:{name} cannot be served as --interface {interface}: {detail}; drop --interface to detect it, or export the right shape' },

  // Configuration and sockets
  ERR_OPTION_INVALID: { message: 'invalid value {value} for {option}: {detail}' },
  ERR_ALLOW_FROM_REQUIRED: { message: 'listening on {address}, which is not loopback, needs --allow-from: the uwsgi protocol has no authentication, so list the front servers\' addresses or CIDRs (loopback is always allowed)' },
  ERR_PEER_NOT_ALLOWED: { message: 'a connection from {peer}, which --allow-from does not list, was closed unserved' },
  ERR_SOCKET_ADDRESS: { message: 'invalid socket address {value}: use unix:/path, /abs/path, host:port, [::1]:port or fd://N' },
  ERR_SOCKET_IN_USE: { message: 'socket {address} is in use by a live server: stop it, or choose another address' },
  ERR_SOCKET_LISTEN: { message: 'cannot listen on {address}: {detail}' },
  // --ssl-socket (src/server/tls.ts)
  ERR_TLS_FILE: { message: 'cannot use the {what} file {file} of --ssl-socket {address}: {detail}' },
  ERR_TLS_KEY_MISMATCH: { message: 'the key {key} does not belong to the certificate {cert} (--ssl-socket {address}): give the key the certificate was issued for' },
  ERR_TLS_RELOAD: { message: 'the certificates of --ssl-socket {address} were not reloaded: {detail}; the previous ones stay in use until the files are mended and SIGHUP sent again' },
  ERR_TLS_CERT_EXPIRED: { message: 'the certificate {file} of --ssl-socket {address} expired on {notAfter}: peers that verify it (nginx\'s uwsgi_ssl_verify) refuse it; renew it, then send SIGHUP' },
  ERR_TLS_CERT_EXPIRING: { message: 'the certificate {file} of --ssl-socket {address} expires on {notAfter}, in {left}: renew it, then send SIGHUP' },
  ERR_TLS_HANDSHAKE: { message: 'TLS handshake with {peer} on {address} failed: {cause}; the connection was closed unserved' },
  ERR_NATIVE_ACCEPT: { message: '--accept native: {detail}; use --accept auto or js' },

  // The config file, NODE_UWSGI_* and the logs (src/config.ts, src/log.ts)
  ERR_CONFIG_FILE: { message: 'cannot read the config file {file}: {detail}' },
  ERR_CONFIG_PARSE: { message: 'the config file {file} is not valid TOML at line {line}, column {column}: {detail}' },
  ERR_CONFIG_UNKNOWN_KEY: { message: 'unknown option {key} in {source}: {hint}' },
  ERR_CONFIG_VALUE: { message: 'invalid {key} in {source}: {detail}' },
  ERR_CONFIG_NO_APP: { message: 'no app given: pass it as the first argument (node-uwsgi ./app.js), as app = "./app.js" in the config file, or in NODE_UWSGI_APP' },
  ERR_LOG_FILE: { message: 'cannot open the log file {file}: {detail}' },
  ERR_LOG_WRITE: { message: 'cannot write to the log file {file} ({detail}): {outcome}; free space on its filesystem, or mend the file' },

  // Stats (src/ops/stats.ts, src/commands/top.ts)
  ERR_STATS_UNAVAILABLE: { message: 'cannot read stats from {address}: {detail}; is node-uwsgi running with --stats {address}?' },
  ERR_APP_METRICS: { message: "cannot aggregate the app's prom-client metrics over the workers ({detail}): /metrics shows node-uwsgi's own; give a metric one name and one type in every worker" },

  // systemd (src/ops/activation.ts, src/ops/systemd.ts)
  ERR_LISTEN_FDS: { message: 'socket activation: {detail}; check the ListenStream= lines of the socket unit (LISTEN_FDS, LISTEN_FDNAMES)' },
  ERR_SYSTEMD_NOTIFY: { message: 'cannot notify systemd: {detail}; systemd-notify (package systemd) must be on PATH and the unit needs NotifyAccess=all' },

  // The uwsgi client, node-uwsgi request (src/commands/request.ts)
  ERR_CLIENT_CONNECT: { message: 'cannot connect to {address}: {detail}; is node-uwsgi running with --socket {address}?' },
  ERR_CLIENT_TIMEOUT: { message: 'no complete response from {address} within --timeout {seconds}s ({received} bytes received)' },
  ERR_CLIENT_BAD_RESPONSE: { message: 'the answer from {address} is not an HTTP response ({preview}): is it a uwsgi socket served by node-uwsgi?' },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERRORS;

/** An error from the table: `code` is stable, `status` the HTTP status where a request is concerned. */
export class UwsgiError extends Error {
  readonly code: ErrorCode;
  readonly status: number | undefined;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, details: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    const spec: ErrorSpec = ERRORS[code];
    super(formatMessage(spec.message, details), options);
    this.name = 'UwsgiError';
    this.code = code;
    this.status = spec.status;
    this.details = details;
  }
}

function formatMessage(template: string, details: Record<string, unknown>): string {
  return template.replace(/\{(\w+)\}/g, (whole, key: string) =>
    key in details ? String(details[key]) : whole,
  );
}

/** The HTTP status to answer for an error: the table's, else 500 (an app's own exception). */
export function statusOf(err: unknown): number {
  if (err instanceof UwsgiError && err.status !== undefined) return err.status;
  return 500;
}

/** The code to log for an error: the table's, else ERR_APP_EXCEPTION (an app's own exception). */
export function codeOf(err: unknown): string {
  return err instanceof UwsgiError ? err.code : 'ERR_APP_EXCEPTION';
}

export function isUwsgiError(err: unknown, code?: ErrorCode): err is UwsgiError {
  return err instanceof UwsgiError && (code === undefined || err.code === code);
}

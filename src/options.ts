// The one options table: each option is declared once, as data (flag, environment variable, default, check,
// help), and feeds the CLI, the docs and the config file (config.ts). Unknown or invalid values are errors.
import { UwsgiError } from './errors.js';
import { isIP } from 'node:net';
import { MAX_VARS_SIZE, DEFAULT_MAX_VARS } from './protocol/decoder.js';
import { isLoopbackHost, parseSocketAddress, type SocketAddress, type SslSocket } from './address.js';

export { parseSocketAddress } from './address.js';

export const INTERFACES = ['auto', 'wsgi', 'node', 'fetch'] as const;
export type InterfaceName = (typeof INTERFACES)[number];
export const ACCEPT_MODES = ['auto', 'native', 'js'] as const;
export type AcceptMode = (typeof ACCEPT_MODES)[number];
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
/** --log-buffer's default: 16 MiB of lines held while --log-file cannot be written or falls behind (some 80,000 access
 * lines): a burst on a slow but healthy disk drops nothing (a 4 MiB buffer dropped lines: bench/README.md, "Log file"). */
export const DEFAULT_LOG_BUFFER = 16 * 1024 ** 2;
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface Options {
  socket: SocketAddress[];
  sslSocket: SslSocket[];
  chmodSocket: number | undefined;
  backlog: number | undefined;
  interface: InterfaceName;
  realResponse: boolean;
  realRequest: boolean;
  accept: AcceptMode;
  logLevel: LogLevel;
  accessLog: boolean;
  maxVarsSize: number;
  maxVars: number;
  workers: number | 'auto';
  gracefulTimeout: number;
  requestTimeout: number;
  harakiri: number;
  maxRequests: number;
  maxRequestsJitter: number;
  maxRss: number;
  reloadBatch: number;
  maxBodySize: number;
  headerTimeout: number;
  bodyTimeout: number;
  allowFrom: string[] | undefined;
  sendTimeout: number;
  http: SocketAddress[];
  stats: SocketAddress | undefined;
  metrics: SocketAddress | undefined;
  metricsProcess: boolean;
  config: string | undefined;
  printConfig: boolean;
  logFile: string | undefined;
  logBuffer: number;
  logFormat: LogFormat;
  reloadOnChange: boolean;
}

export interface OptionSpec<K extends keyof Options = keyof Options> {
  readonly name: K;
  /** The long flag without dashes, also the config file key. */
  readonly flag: string;
  /** Placeholder for the value in --help; absent for boolean switches. */
  readonly arg?: string;
  readonly help: string;
  readonly default: Options[K];
  /** Parses one raw value; for repeatable options `previous` holds the values parsed so far. */
  readonly parse: (raw: string, previous: Options[K]) => Options[K];
  readonly repeatable?: boolean;
  /** What separates a repeatable option's values in its environment variable (`,` unless given). */
  readonly envSeparator?: string;
}

function option<K extends keyof Options>(spec: OptionSpec<K>): OptionSpec<K> {
  return spec;
}

export const OPTIONS = [
  option<'socket'>({
    name: 'socket',
    flag: 'socket',
    arg: 'addr',
    help: 'where to listen: unix:/path, /abs/path, host:port, [::1]:port or fd://N (repeatable); none by default when --ssl-socket is given',
    default: [{ kind: 'tcp', host: '127.0.0.1', port: 3031 }],
    repeatable: true,
    parse: (raw, previous) => [...previous, parseSocketAddress(raw)],
  }),
  option<'sslSocket'>({
    name: 'sslSocket',
    flag: 'ssl-socket',
    arg: 'addr,cert,key[,ca]',
    help: 'also listen for uwsgi over TLS (1.2+, nginx\'s uwsgi_pass suwsgi://): the address as --socket, then PEM certificate and key files; with a CA file, peers need a client certificate it signed (mutual TLS). Files are re-read on SIGHUP (repeatable; ; separates them in the environment)',
    default: [],
    repeatable: true,
    envSeparator: ';',
    parse: (raw, previous) => [...previous, parseSslSocket(raw)],
  }),
  option<'chmodSocket'>({
    name: 'chmodSocket',
    flag: 'chmod-socket',
    arg: 'mode',
    help: 'octal permissions for Unix sockets, e.g. 660 so that nginx\'s group can connect; by default the umask\'s, without access for others',
    default: undefined,
    parse: (raw) => {
      if (!/^0?[0-7]{3}$/.test(raw)) invalid('--chmod-socket', raw, 'an octal mode such as 660');
      return parseInt(raw, 8);
    },
  }),
  option<'backlog'>({
    name: 'backlog',
    flag: 'backlog',
    arg: 'n',
    help: 'listen queue of each uwsgi and --http socket (uWSGI\'s --listen); the kernel caps it at net.core.somaxconn, which is also the default (511 where it cannot be read); inherited sockets (systemd) get it too',
    default: undefined,
    parse: (raw) => integer('--backlog', raw, 1, 2 ** 31 - 1),
  }),
  option<'interface'>({
    name: 'interface',
    flag: 'interface',
    arg: 'kind',
    help: 'the app interface: auto (detect), wsgi, node or fetch',
    default: 'auto',
    parse: (raw) => oneOf('--interface', raw, INTERFACES),
  }),
  option<'realResponse'>({
    name: 'realResponse',
    flag: 'real-response',
    help: "fetch apps: the global Response is the platform's (by default node-uwsgi's own, written without a stream when its body is a string or bytes: it replaces globalThis.Response)",
    default: false,
    parse: () => true,
  }),
  option<'realRequest'>({
    name: 'realRequest',
    flag: 'real-request',
    help: "fetch apps: the Request is a real one and the global Request and fetch the platform's (by default node-uwsgi's light Request, which its global Request and fetch take: they replace globalThis.Request and fetch)",
    default: false,
    parse: () => true,
  }),
  option<'logLevel'>({
    name: 'logLevel',
    flag: 'log-level',
    arg: 'level',
    help: 'trace, debug, info, warn, error, fatal or silent',
    default: 'info',
    parse: (raw) => oneOf('--log-level', raw, LOG_LEVELS),
  }),
  option<'accessLog'>({
    name: 'accessLog',
    flag: 'access-log',
    help: 'log one line per request (method, uri, status, bytes, duration, remote)',
    default: false,
    parse: () => true,
  }),
  option<'maxVarsSize'>({
    name: 'maxVarsSize',
    flag: 'max-vars-size',
    arg: 'bytes',
    help: `largest uwsgi vars block (request headers) accepted; the protocol allows ${MAX_VARS_SIZE}`,
    default: MAX_VARS_SIZE,
    parse: (raw) => integer('--max-vars-size', raw, 4, MAX_VARS_SIZE),
  }),
  option<'maxVars'>({
    name: 'maxVars',
    flag: 'max-vars',
    arg: 'count',
    help: 'most variables (CGI vars and headers) in one request',
    default: DEFAULT_MAX_VARS,
    parse: (raw) => integer('--max-vars', raw, 1, 65535),
  }),
  option<'workers'>({
    name: 'workers',
    flag: 'workers',
    arg: 'n',
    help: 'worker processes serving the app, or auto (one per available CPU); the master runs no app code',
    default: 1,
    parse: (raw) => (raw === 'auto' ? 'auto' : integer('--workers', raw, 1, 1024)),
  }),
  option<'gracefulTimeout'>({
    name: 'gracefulTimeout',
    flag: 'graceful-timeout',
    arg: 'seconds',
    help: 'on stop, reload or recycling, how long a worker may finish its in-flight requests before it is killed',
    default: 30,
    parse: (raw) => seconds('--graceful-timeout', raw, false),
  }),
  option<'requestTimeout'>({
    name: 'requestTimeout',
    flag: 'request-timeout',
    arg: 'seconds',
    help: 'answer 504 to a request whose response has not started after this long; 0 disables',
    default: 0,
    parse: (raw) => seconds('--request-timeout', raw, true),
  }),
  option<'harakiri'>({
    name: 'harakiri',
    flag: 'harakiri',
    arg: 'seconds',
    help: 'kill and replace a worker whose event loop is blocked this long, logging its in-flight requests; 0 disables',
    default: 0,
    parse: (raw) => seconds('--harakiri', raw, true),
  }),
  option<'maxRequests'>({
    name: 'maxRequests',
    flag: 'max-requests',
    arg: 'n',
    help: 'recycle a worker after this many requests (replacement first); 0 disables',
    default: 0,
    parse: (raw) => integer('--max-requests', raw, 0, Number.MAX_SAFE_INTEGER),
  }),
  option<'maxRequestsJitter'>({
    name: 'maxRequestsJitter',
    flag: 'max-requests-jitter',
    arg: 'n',
    help: 'add 0..n to each worker\'s --max-requests so that workers do not recycle together',
    default: 0,
    parse: (raw) => integer('--max-requests-jitter', raw, 0, Number.MAX_SAFE_INTEGER),
  }),
  option<'maxRss'>({
    name: 'maxRss',
    flag: 'max-rss',
    arg: 'MiB',
    help: 'recycle a worker whose resident memory stays above this many MiB (3 samples, 0.05 s apart), at once past twice that; 0 disables',
    default: 0,
    parse: (raw) => integer('--max-rss', raw, 0, 1024 * 1024),
  }),
  option<'reloadBatch'>({
    name: 'reloadBatch',
    flag: 'reload-batch',
    arg: 'n',
    help: 'on SIGHUP, how many workers are replaced at a time',
    default: 1,
    parse: (raw) => integer('--reload-batch', raw, 1, 1024),
  }),
  option<'maxBodySize'>({
    name: 'maxBodySize',
    flag: 'max-body-size',
    arg: 'bytes',
    help: 'largest request body accepted (k, m, g suffixes); a bigger one gets 413 before the app runs; 0 disables',
    default: 1024 ** 3,
    parse: (raw) => byteSize('--max-body-size', raw),
  }),
  option<'headerTimeout'>({
    name: 'headerTimeout',
    flag: 'header-timeout',
    arg: 'seconds',
    help: 'time a peer has to send the whole uwsgi header and vars block (slow-loris); 0 disables',
    default: 60,
    parse: (raw) => seconds('--header-timeout', raw, true),
  }),
  option<'bodyTimeout'>({
    name: 'bodyTimeout',
    flag: 'body-timeout',
    arg: 'seconds',
    help: 'longest pause between two pieces of a request body; 0 disables',
    default: 60,
    parse: (raw) => seconds('--body-timeout', raw, true),
  }),
  option<'allowFrom'>({
    name: 'allowFrom',
    flag: 'allow-from',
    arg: 'addr',
    help: 'who may connect to a TCP socket: addresses or CIDRs, repeatable or comma-separated; loopback always may. Required for a non-loopback TCP socket or --http address',
    default: undefined,
    repeatable: true,
    parse: (raw, previous) => [...(previous ?? []), ...raw.split(',').filter((e) => e.trim() !== '').map(parseAllowEntry)],
  }),
  option<'accept'>({
    name: 'accept',
    flag: 'accept',
    arg: 'mode',
    help: 'who accepts and reads uwsgi connections: native (the C addon), js (node:net), or auto (native where the addon loads)',
    default: 'auto',
    parse: (raw) => oneOf('--accept', raw, ACCEPT_MODES),
  }),
  option<'sendTimeout'>({
    name: 'sendTimeout',
    flag: 'send-timeout',
    arg: 'seconds',
    help: 'longest a response write may stall (the peer reads nothing) before the connection is closed; 0 disables',
    default: 60,
    parse: (raw) => seconds('--send-timeout', raw, true),
  }),
  option<'http'>({
    name: 'http',
    flag: 'http',
    arg: 'addr',
    help: 'also serve plain HTTP/1.1 here (host:port or unix:/path), for development and health checks; not an edge server: a non-loopback address needs --allow-from (repeatable)',
    default: [],
    repeatable: true,
    parse: (raw, previous) => [...previous, parseSocketAddress(raw)],
  }),
  option<'stats'>({
    name: 'stats',
    flag: 'stats',
    arg: 'addr',
    help: 'serve uWSGI-style stats JSON here (a Unix socket or a loopback host:port), one document per connection, for uwsgitop and node-uwsgi top',
    default: undefined,
    parse: (raw) => localAddress('--stats', raw),
  }),
  option<'metrics'>({
    name: 'metrics',
    flag: 'metrics',
    arg: 'addr',
    help: 'serve HTTP /metrics (Prometheus) and /health here (a Unix socket or a loopback host:port)',
    default: undefined,
    parse: (raw) => localAddress('--metrics', raw),
  }),
  option<'metricsProcess'>({
    name: 'metricsProcess',
    flag: 'metrics-process',
    help: "--metrics: add Node's default process metrics of each worker (prom-client's collectDefaultMetrics: event-loop lag, heap, GC, CPU), labelled by worker",
    default: false,
    parse: () => true,
  }),
  option<'config'>({
    name: 'config',
    flag: 'config',
    arg: 'file',
    help: 'read options from this TOML file (keys are the long option names); the command line and NODE_UWSGI_* override it',
    default: undefined,
    parse: (raw) => raw,
  }),
  option<'printConfig'>({
    name: 'printConfig',
    flag: 'print-config',
    help: 'print every effective option with where it came from (default, file, environment, command line) and exit',
    default: false,
    parse: () => true,
  }),
  option<'logFile'>({
    name: 'logFile',
    flag: 'log-file',
    arg: 'path',
    help: 'write logs to this file instead of stdout; reopened on SIGUSR1 (logrotate)',
    default: undefined,
    parse: (raw) => raw,
  }),
  option<'logBuffer'>({
    name: 'logBuffer',
    flag: 'log-buffer',
    arg: 'bytes',
    help: 'with --log-file: most log lines held in memory while the file cannot be written (a full disk), at least 64k; lines beyond are dropped and counted',
    default: DEFAULT_LOG_BUFFER,
    parse: (raw) => {
      const value = byteSize('--log-buffer', raw);
      if (value < 64 * 1024) invalid('--log-buffer', raw, 'a size of at least 64k');
      return value;
    },
  }),
  option<'logFormat'>({
    name: 'logFormat',
    flag: 'log-format',
    arg: 'format',
    help: 'json, pretty, or auto (pretty on a terminal, JSON otherwise)',
    default: 'auto',
    parse: (raw) => oneOf('--log-format', raw, LOG_FORMATS),
  }),
  option<'reloadOnChange'>({
    name: 'reloadOnChange',
    flag: 'reload-on-change',
    help: 'development: reload the workers when a file under the app\'s directory changes',
    default: false,
    parse: () => true,
  }),
] as const satisfies ReadonlyArray<OptionSpec<any>>;

export function defaultOptions(): Options {
  const out: Record<string, unknown> = {};
  for (const spec of OPTIONS) out[spec.name] = spec.default;
  return out as unknown as Options;
}

/** Parses --ssl-socket's `ADDR,CERT,KEY[,CA]`. */
export function parseSslSocket(raw: string): SslSocket {
  const parts = raw.split(',').map((part) => part.trim());
  if (parts.length < 3 || parts.length > 4 || parts.some((part) => part === '')) {
    invalid('--ssl-socket', raw, 'ADDR,CERT,KEY or ADDR,CERT,KEY,CA: an address as --socket takes, then the PEM certificate, key and (for client certificates) CA files');
  }
  const [address, cert, key, ca] = parts as [string, string, string, string | undefined];
  return { address: parseSocketAddress(address), cert, key, ...(ca === undefined ? {} : { ca }) };
}

/** A Unix socket or a loopback TCP address: the stats and metrics listeners have no access control of their own. */
function localAddress(option: string, raw: string): SocketAddress {
  const address = parseSocketAddress(raw);
  if (address.kind === 'tcp' && !isLoopbackHost(address.host)) {
    invalid(option, raw, 'a Unix socket or a loopback address (127.0.0.1:port, [::1]:port): it has no access control');
  }
  return address;
}

/** ERR_OPTION_INVALID for `option`'s `value`, which should have been `detail`. */
export function invalid(option: string, value: string, detail: string): never {
  throw new UwsgiError('ERR_OPTION_INVALID', { option, value: JSON.stringify(value), detail: `expected ${detail}` });
}

function oneOf<T extends string>(option: string, raw: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(raw)) invalid(option, raw, `one of ${choices.join(', ')}`);
  return raw as T;
}

/** Checks one --allow-from entry (an address or a CIDR); returns it normalised. */
export function parseAllowEntry(raw: string): string {
  const entry = raw.trim();
  const slash = entry.indexOf('/');
  const address = slash === -1 ? entry : entry.slice(0, slash);
  const family = isIP(address);
  const prefix = slash === -1 ? undefined : Number(entry.slice(slash + 1));
  const maxPrefix = family === 6 ? 128 : 32;
  if (family === 0 || (prefix !== undefined && (!Number.isInteger(prefix) || prefix < 0 || prefix > maxPrefix || !/^\d+$/.test(entry.slice(slash + 1))))) {
    throw new UwsgiError('ERR_OPTION_INVALID', {
      option: '--allow-from',
      value: JSON.stringify(raw),
      detail: 'expected an IPv4 or IPv6 address, or a CIDR such as 10.0.0.0/8',
    });
  }
  return entry;
}

/** Bytes with an optional k, m or g suffix (powers of 1024), as nginx's client_max_body_size. */
function byteSize(option: string, raw: string): number {
  const match = /^(\d+)([kmg]?)$/i.exec(raw);
  if (match === null) invalid(option, raw, 'a size in bytes, with an optional k, m or g suffix (0 disables)');
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const value = Number(match[1]) * unit;
  if (!Number.isSafeInteger(value)) invalid(option, raw, 'a size below 2^53 bytes');
  return value;
}

/** Seconds, fractions allowed (0.5); `zero` allows 0, which means "off". */
function seconds(option: string, raw: string, zero: boolean): number {
  const value = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw) || (!zero && value === 0) || value > 365 * 24 * 3600) {
    invalid(option, raw, `a number of seconds${zero ? ' (0 disables)' : ' above 0'}, fractions allowed`);
  }
  return value;
}

function integer(option: string, raw: string, min: number, max: number): number {
  const value = Number(raw);
  if (!/^\d+$/.test(raw) || value < min || value > max) invalid(option, raw, `an integer from ${min} to ${max}`);
  return value;
}

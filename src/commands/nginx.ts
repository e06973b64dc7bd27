// `node-uwsgi nginx`: prints an nginx server block for the options given, made from the site files shipped in
// nginx/ (the ones the integration tests load) with the same marked lines replaced, so that what it prints is
// what the tests run. https://nginx.org/en/docs/http/ngx_http_uwsgi_module.html
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { UwsgiError } from '../errors.js';
import { OPTIONS, invalid } from '../options.js';
import { formatSocketAddress, parseSocketAddress, type SocketAddress } from '../address.js';

/** nginx/ of this installed package (dist/commands/ and src/commands/ are both two levels down). */
const SHIPPED = fileURLToPath(new URL('../../nginx/', import.meta.url));

// The shipped files' marked lines, as test/integration/nginx.ts siteConfig() finds them.
const LISTEN = /^([ \t]*listen[ \t]+)80;/m;
const SERVER_NAME = /^([ \t]*server_name[ \t]+)example\.com;/m;
const BODY_SIZE = /^([ \t]*client_max_body_size[ \t]+)[^;\s]+;/m;
const INCLUDE = /^([ \t]*include[ \t]+)\/etc\/nginx\/node-uwsgi\/uwsgi_params;/m;
const UPSTREAM = {
  unix: /^([ \t]*uwsgi_pass[ \t]+)unix:\/run\/app\/app\.sock;/m,
  tcp: /^([ \t]*uwsgi_pass[ \t]+)127\.0\.0\.1:3031;/m,
} as const;
const WS_LOCATION = /^([ \t]*)location[ \t]+\/ws\/[ \t]*\{[ \t]*$/m;
const FIRST_LOCATION = /^([ \t]*)location[ \t]+\/[ \t]*\{[ \t]*$/m;

/** Where --ssl's files are by default: the client certificate nginx shows the hosts, and the CA that signed
 * theirs (README, "Several hosts"). */
const NGINX_TLS_DEFAULTS = {
  certificate: '/etc/nginx/node-uwsgi/client.crt',
  key: '/etc/nginx/node-uwsgi/client.key',
  trusted: '/etc/nginx/node-uwsgi/ca.crt',
  name: 'node-uwsgi',
} as const;

/** Several node-uwsgi hosts behind one nginx upstream (--upstream). */
export interface UpstreamOptions {
  /** host:port of each node-uwsgi host. */
  servers: Array<Extract<SocketAddress, { kind: 'tcp' }>>;
  /** The upstream block's name. */
  name: string;
  maxFails: number;
  /** Seconds. */
  failTimeout: number;
  /** uwsgi over TLS (suwsgi://) with nginx's client certificate; undefined: plain uwsgi. */
  ssl?: { certificate: string; key: string; trusted: string; name: string } | undefined;
}

export interface NginxSiteOptions {
  /** Where node-uwsgi listens: a Unix socket or host:port. */
  socket: SocketAddress;
  /** nginx's server_name (one or more names, space-separated). */
  serverName: string;
  /** client_max_body_size in bytes; undefined keeps the shipped file's. */
  maxBodySize: number | undefined;
  /** The location that tunnels WebSocket upgrades; undefined leaves it out. */
  websocket: string | undefined;
  /** nginx's listen: a port or address:port. */
  listen: string;
  /** The uwsgi_params file to include; defaults to the one shipped in this package. */
  params?: string;
  /** Several hosts: an upstream block in place of the one --socket. */
  upstream?: UpstreamOptions | undefined;
}

function program(): Command {
  const maxBody = OPTIONS.find((spec) => spec.name === 'maxBodySize')!;
  return new Command('node-uwsgi nginx')
    .description('print an nginx server block that passes requests to node-uwsgi (made from the files in nginx/)')
    .addOption(new Option('--socket <addr>', 'where node-uwsgi listens: unix:/path or host:port').default('127.0.0.1:3031'))
    .addOption(new Option('--server-name <names>', "nginx's server_name, e.g. 'example.com www.example.com'").default('_'))
    .addOption(
      new Option('--max-body-size <bytes>', "nginx's client_max_body_size (k, m, g suffixes; 0 disables); pass the same to node-uwsgi").argParser(
        (raw: string) => maxBody.parse(raw, maxBody.default as never) as number,
      ),
    )
    .addOption(new Option('--websocket <path>', 'add a location for WebSocket upgrades at this path prefix, e.g. /ws/'))
    .addOption(new Option('--listen <port>', "nginx's listen: a port or address:port").default('80'))
    .addOption(new Option('--upstream <hosts>', 'several node-uwsgi hosts, host:port,host:port...: an upstream block in place of --socket'))
    .addOption(new Option('--upstream-name <name>', "the upstream block's name").default('node_uwsgi'))
    .addOption(new Option('--max-fails <n>', 'with --upstream: failed attempts that take a host out for --fail-timeout').default('1'))
    .addOption(new Option('--fail-timeout <seconds>', 'with --upstream: how long a failed host stays out').default('10'))
    .addOption(new Option('--ssl', 'with --upstream: uwsgi over TLS (suwsgi://) to hosts running --ssl-socket, nginx showing a client certificate'))
    .addOption(new Option('--ssl-certificate <file>', "with --ssl: nginx's client certificate").default(NGINX_TLS_DEFAULTS.certificate))
    .addOption(new Option('--ssl-certificate-key <file>', "with --ssl: its key").default(NGINX_TLS_DEFAULTS.key))
    .addOption(new Option('--ssl-trusted-certificate <file>', "with --ssl: the CA that signed the hosts' certificates").default(NGINX_TLS_DEFAULTS.trusted))
    .addOption(new Option('--ssl-name <name>', "with --ssl: the name every host's certificate carries in its subjectAltName").default(NGINX_TLS_DEFAULTS.name))
    .addHelpText(
      'after',
      `
The block goes in nginx's http context (e.g. /etc/nginx/sites-available/app.conf, linked from sites-enabled/);
check it with \`nginx -t\`. It includes the uwsgi_params shipped in this package by its absolute path.

Example:
  node-uwsgi nginx --socket unix:/run/app/app.sock --server-name example.com --websocket /ws/ > app.conf
  node-uwsgi nginx --upstream 10.0.0.11:3031,10.0.0.12:3031,10.0.0.13:3031 --ssl --server-name example.com > app.conf`,
    )
    .showHelpAfterError()
    .exitOverride((err) => {
      throw err.exitCode === 1 ? new CommanderError(2, err.code, err.message) : err;
    });
}

export async function run(args: string[]): Promise<number> {
  const cmd = program();
  cmd.parse(args, { from: 'user' });
  const opts = cmd.opts<{
    socket: string;
    serverName: string;
    maxBodySize?: number;
    websocket?: string;
    listen: string;
    upstream?: string;
    upstreamName: string;
    maxFails: string;
    failTimeout: string;
    ssl?: boolean;
    sslCertificate: string;
    sslCertificateKey: string;
    sslTrustedCertificate: string;
    sslName: string;
  }>();
  let site: string;
  try {
    if (opts.ssl && opts.upstream === undefined) invalid('--ssl', 'true', '--upstream with it (one host on loopback or a Unix socket needs no TLS)');
    site = nginxSite({
      socket: parseSocketAddress(opts.socket),
      serverName: opts.serverName,
      maxBodySize: opts.maxBodySize,
      websocket: opts.websocket,
      listen: opts.listen,
      upstream:
        opts.upstream === undefined
          ? undefined
          : {
              servers: parseUpstreams(opts.upstream),
              name: opts.upstreamName,
              maxFails: count('--max-fails', opts.maxFails),
              failTimeout: count('--fail-timeout', opts.failTimeout),
              ssl: opts.ssl
                ? { certificate: opts.sslCertificate, key: opts.sslCertificateKey, trusted: opts.sslTrustedCertificate, name: opts.sslName }
                : undefined,
            },
    }, args);
  } catch (err) {
    const code = err instanceof UwsgiError ? `${err.code}: ` : '';
    process.stderr.write(`node-uwsgi nginx: ${code}${(err as Error).message}\n`);
    return 2;
  }
  process.stdout.write(site);
  return 0;
}

/** The server block for `options`; `argv` is quoted in its header comment. */
export function nginxSite(options: NginxSiteOptions, argv: readonly string[] = []): string {
  const { socket, upstream: several } = options;
  if (socket.kind === 'fd') invalid('--socket', formatSocketAddress(socket), 'unix:/path or host:port (nginx connects to it)');
  const transport = several === undefined ? socket.kind : 'tcp';
  if (several !== undefined) checkUpstream(several);
  if (!/^[A-Za-z0-9.*_~-]+( [A-Za-z0-9.*_~-]+)*$/.test(options.serverName)) {
    invalid('--server-name', options.serverName, 'host names separated by spaces');
  }
  if (!/^(\d{1,5}|[A-Za-z0-9.-]+:\d{1,5}|\[[0-9A-Fa-f:.]+\]:\d{1,5})$/.test(options.listen)) {
    invalid('--listen', options.listen, 'a port, or address:port');
  }
  if (options.websocket !== undefined && !/^\/[^\s;{}'"#\\]+$/.test(options.websocket)) {
    invalid('--websocket', options.websocket, 'a path prefix other than /, e.g. /ws/ (the / location tunnels upgrades already)');
  }

  const file = `site-${transport}.conf`;
  const template = readFileSync(`${SHIPPED}${file}`, 'utf8');
  const shippedParams = `${SHIPPED}uwsgi_params`;
  const params = options.params ?? (existsSync(shippedParams) ? shippedParams : undefined);
  const upstream =
    several !== undefined
      ? `${several.ssl === undefined ? 'uwsgi' : 'suwsgi'}://${several.name}`
      : socket.kind === 'unix'
        ? `unix:${isAbsolute(socket.path) ? socket.path : resolve(socket.path)}`
        : formatSocketAddress(socket);

  // The server block, without the file's own install notes above it (this command's header replaces them).
  let site = template.slice(template.search(/^server[ \t]*\{/m));
  site = replaceMarked(site, file, LISTEN, quote(options.listen), 'once');
  site = replaceMarked(site, file, SERVER_NAME, options.serverName, 'once');
  if (options.maxBodySize !== undefined) site = replaceMarked(site, file, BODY_SIZE, nginxSize(options.maxBodySize), 'once');
  if (params !== undefined) site = replaceMarked(site, file, INCLUDE, quote(params), 'each');
  site = replaceMarked(site, file, UPSTREAM[transport], quote(upstream), 'each');
  site = websocketLocation(site, options.websocket, params ?? '/etc/nginx/node-uwsgi/uwsgi_params', upstream);
  if (several !== undefined) site = upstreamDirectives(site, several);
  // The filled-in lines need no editing any more.
  site = site.replace(/[ \t]+# EDIT\b.*$/gm, '');
  if (several !== undefined) site = `\n${upstreamBlock(several)}\n${site}`;

  const run = ['node-uwsgi', './app.js'];
  if (several === undefined) run.push('--socket', formatSocketAddress(socket));
  else if (several.ssl === undefined) run.push('--socket', '0.0.0.0:PORT', '--allow-from', 'NGINX_ADDRESS');
  else run.push('--ssl-socket', '0.0.0.0:PORT,/etc/node-uwsgi/server.crt,/etc/node-uwsgi/server.key,/etc/node-uwsgi/ca.crt', '--allow-from', 'NGINX_ADDRESS');
  if (socket.kind === 'unix' && several === undefined) run.push('--chmod-socket', '660');
  if (options.maxBodySize !== undefined) run.push('--max-body-size', nginxSize(options.maxBodySize));
  const header = [
    `# Generated by: node-uwsgi nginx ${argv.map(shellQuote).join(' ')}`.replace(/[\r\n]/g, ' ').trimEnd(),
    `# from ${file} of node-uwsgi. A server block for nginx's http context: save it as, e.g.,`,
    '# /etc/nginx/sites-available/app.conf, link it from sites-enabled/, then `nginx -t && systemctl reload nginx`.',
    several === undefined ? '# Serve the app with:' : '# Serve the app on each host with (PORT as in the upstream block, NGINX_ADDRESS: where nginx connects from):',
    `#   ${run.join(' ')}`,
    ...(several !== undefined
      ? several.ssl === undefined
        ? ['# Plain uwsgi crosses the network in clear, unauthenticated but for --allow-from: prefer --ssl between hosts.']
        : ['# README.md, "Several hosts", makes the certificates (a private CA, one per host, one for nginx).']
      : socket.kind === 'unix'
      ? [
          "# nginx's user (www-data on Debian) needs search permission on the socket's directory and read/write on",
          '# the socket (a group it shares with the app and --chmod-socket 660); nobody else should have either.',
        ]
      : ['# Keep the uwsgi port on loopback or firewalled: whoever reaches it can claim any client address and scheme.']),
    ...(params === undefined
      ? ['# Copy uwsgi_params from the nginx/ folder of node-uwsgi to /etc/nginx/node-uwsgi/uwsgi_params.']
      : [`# uwsgi_params is included from this node-uwsgi install; copy it to /etc/nginx/ to keep it across upgrades.`]),
    '',
  ];
  return header.join('\n') + site;
}

function replaceMarked(site: string, file: string, pattern: RegExp, value: string, times: 'once' | 'each'): string {
  const all = new RegExp(pattern.source, 'gm');
  const count = site.match(all)?.length ?? 0;
  if (times === 'once' ? count !== 1 : count < 1) {
    throw new Error(`nginx/${file} has ${count} lines matching ${pattern}: this node-uwsgi install is damaged or its template changed`);
  }
  return site.replace(all, (_whole, directive: string) => `${directive}${value};`);
}

/** Keeps the shipped WebSocket location (at `path`), or drops it with its comment; a template if it is absent. */
function websocketLocation(site: string, path: string | undefined, params: string, upstream: string): string {
  const lines = site.split('\n');
  const at = lines.findIndex((line) => WS_LOCATION.test(line));
  if (at === -1) {
    if (path === undefined) return site;
    const close = site.lastIndexOf('}');
    return `${site.slice(0, close)}${wsTemplate(path, params, upstream)}${site.slice(close)}`;
  }
  const indent = WS_LOCATION.exec(lines[at]!)![1]!;
  let end = at + 1;
  while (end < lines.length && lines[end] !== `${indent}}`) end++;
  if (path !== undefined) {
    lines[at] = lines[at]!.replace('/ws/', path);
    for (let i = at - 1; i >= 0 && /^[ \t]*#/.test(lines[i]!); i--) {
      lines[i] = lines[i]!.replace(/ EDIT the path to where your app accepts WebSockets\./, '');
    }
    return lines.join('\n');
  }
  let start = at;
  while (start > 0 && /^[ \t]*#/.test(lines[start - 1]!)) start--;
  if (start > 0 && lines[start - 1]!.trim() === '') start--;
  lines.splice(start, end - start + 1);
  return lines.join('\n');
}

/** Used only if the shipped site file has no WebSocket location. */
function wsTemplate(path: string, params: string, upstream: string): string {
  return `
    # WebSocket: nginx passes the client's Upgrade and Connection headers (HTTP_UPGRADE, HTTP_CONNECTION), relays
    # the app's 101 and tunnels bytes both ways; an idle tunnel is closed after uwsgi_read_timeout.
    location ${path} {
        include ${quote(params)};
        uwsgi_pass ${quote(upstream)};
        uwsgi_read_timeout 1h;
        uwsgi_send_timeout 1h;
    }
`;
}

/** Bytes as nginx writes sizes: the largest exact k, m or g unit. */
export function nginxSize(bytes: number): string {
  if (bytes === 0) return '0';
  for (const [unit, size] of [['g', 1024 ** 3], ['m', 1024 ** 2], ['k', 1024]] as const) {
    if (bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return String(bytes);
}

/** nginx needs quotes around a value with spaces or its special characters. */
function quote(value: string): string {
  return /^[^\s;{}'"#\\$]+$/.test(value) ? value : JSON.stringify(value);
}

function shellQuote(arg: string): string {
  return /^[A-Za-z0-9_./:=@%+,-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

/** --upstream's `host:port,host:port...`. */
function parseUpstreams(raw: string): UpstreamOptions['servers'] {
  const servers = raw.split(',').map((entry) => entry.trim()).filter((entry) => entry !== '').map((entry) => {
    let address: SocketAddress;
    try {
      address = parseSocketAddress(entry);
    } catch {
      return invalid('--upstream', entry, 'host:port (or [v6]:port) of each node-uwsgi host, separated by commas');
    }
    if (address.kind !== 'tcp' || !/:\d+$/.test(entry)) return invalid('--upstream', entry, 'host:port of each node-uwsgi host: nginx connects to them over TCP');
    return address;
  });
  if (servers.length === 0) invalid('--upstream', raw, 'at least one host:port');
  return servers;
}

function count(option: string, raw: string): number {
  if (!/^\d{1,6}$/.test(raw)) invalid(option, raw, 'a whole number');
  return Number(raw);
}

function checkUpstream(upstream: UpstreamOptions): void {
  if (!/^[A-Za-z0-9_-]+$/.test(upstream.name)) invalid('--upstream-name', upstream.name, 'letters, digits, _ and -');
  for (const server of upstream.servers) {
    if (!/^[A-Za-z0-9.:_-]+$/.test(server.host)) invalid('--upstream', formatSocketAddress(server), 'host:port');
  }
  const ssl = upstream.ssl;
  if (ssl === undefined) return;
  for (const [option, file] of [['--ssl-certificate', ssl.certificate], ['--ssl-certificate-key', ssl.key], ['--ssl-trusted-certificate', ssl.trusted]] as const) {
    if (!/^[^\s;{}'"#\\$]+$/.test(file)) invalid(option, file, 'a file path without spaces, quotes or ; { } # $ \\');
  }
  if (!/^[A-Za-z0-9.-]+$/.test(ssl.name)) invalid('--ssl-name', ssl.name, 'a host name (the subjectAltName every host certificate carries)');
}

/** The upstream block: one server line per host, passive health checks (max_fails, fail_timeout), no keepalive. */
function upstreamBlock(upstream: UpstreamOptions): string {
  const lines = [
    '# Several node-uwsgi hosts: nginx spreads requests over them (round robin) and, after --max-fails failed',
    '# attempts (a refused or timed-out connect, a reset before the response), leaves a host out for fail_timeout.',
    '# These are the only health checks nginx OSS makes, and only on real requests: it sends no probes (active',
    '# checks are nginx Plus\'s health_check, or a third-party module). No keepalive: node-uwsgi, as uWSGI, closes',
    '# the connection after each response.',
    `upstream ${upstream.name} {`,
    ...upstream.servers.map((server) => `    server ${formatSocketAddress(server)} max_fails=${upstream.maxFails} fail_timeout=${upstream.failTimeout}s;`),
    '}',
    '',
  ];
  return lines.join('\n');
}

/** Server-level directives for the upstream (every location inherits them), before the first location. */
function upstreamDirectives(site: string, upstream: UpstreamOptions): string {
  const match = FIRST_LOCATION.exec(site);
  if (match === null) throw new Error('nginx/site-tcp.conf has no `location / {` line: this node-uwsgi install is damaged or its template changed');
  const indent = match[1]!;
  const lines = [
    '# A request whose connect fails or times out goes to the next host: for idempotent methods only (nginx\'s',
    '# default; a POST is never sent twice, so do not add non_idempotent). A stopping host drops new connects',
    '# (its queue is served, nothing joins it), a gone one does not answer: either times out after',
    '# uwsgi_connect_timeout and goes to the next host; a stopped one refuses at once.',
    'uwsgi_next_upstream error timeout;',
    'uwsgi_connect_timeout 1s;',
  ];
  const ssl = upstream.ssl;
  if (ssl !== undefined) {
    lines.push(
      '',
      '# uwsgi over TLS (node-uwsgi --ssl-socket): nginx shows its client certificate (hosts given the CA file',
      '# require one) and checks theirs against the private CA, under the one name every host certificate carries.',
      `uwsgi_ssl_certificate ${ssl.certificate};`,
      `uwsgi_ssl_certificate_key ${ssl.key};`,
      `uwsgi_ssl_trusted_certificate ${ssl.trusted};`,
      'uwsgi_ssl_verify on;',
      `uwsgi_ssl_name ${ssl.name};`,
      'uwsgi_ssl_session_reuse on;',
      'uwsgi_ssl_protocols TLSv1.2 TLSv1.3;',
    );
  }
  const block = lines.map((line) => (line === '' ? '' : `${indent}${line}`)).join('\n');
  return `${site.slice(0, match.index)}${block}\n\n${site.slice(match.index)}`;
}

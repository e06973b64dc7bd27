// `node-uwsgi nginx`: prints an nginx server block for the options given, made from the site files shipped in
// nginx/ (the ones the integration tests load) with the same marked lines replaced, so that what it prints is
// what the tests run. https://nginx.org/en/docs/http/ngx_http_uwsgi_module.html
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { UwsgiError } from '../errors.js';
import { OPTIONS, formatSocketAddress, parseSocketAddress, type SocketAddress } from '../options.js';

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
    .addHelpText(
      'after',
      `
The block goes in nginx's http context (e.g. /etc/nginx/sites-available/app.conf, linked from sites-enabled/);
check it with \`nginx -t\`. It includes the uwsgi_params shipped in this package by its absolute path.

Example:
  node-uwsgi nginx --socket unix:/run/app/app.sock --server-name example.com --websocket /ws/ > app.conf`,
    )
    .showHelpAfterError()
    .exitOverride((err) => {
      throw err.exitCode === 1 ? new CommanderError(2, err.code, err.message) : err;
    });
}

export async function run(args: string[]): Promise<number> {
  const cmd = program();
  cmd.parse(args, { from: 'user' });
  const opts = cmd.opts<{ socket: string; serverName: string; maxBodySize?: number; websocket?: string; listen: string }>();
  let site: string;
  try {
    site = nginxSite({
      socket: parseSocketAddress(opts.socket),
      serverName: opts.serverName,
      maxBodySize: opts.maxBodySize,
      websocket: opts.websocket,
      listen: opts.listen,
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
  const { socket } = options;
  if (socket.kind === 'fd') invalid('--socket', formatSocketAddress(socket), 'unix:/path or host:port (nginx connects to it)');
  const transport = socket.kind;
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
    socket.kind === 'unix' ? `unix:${isAbsolute(socket.path) ? socket.path : resolve(socket.path)}` : formatSocketAddress(socket);

  // The server block, without the file's own install notes above it (this command's header replaces them).
  let site = template.slice(template.search(/^server[ \t]*\{/m));
  site = replaceMarked(site, file, LISTEN, quote(options.listen), 'once');
  site = replaceMarked(site, file, SERVER_NAME, options.serverName, 'once');
  if (options.maxBodySize !== undefined) site = replaceMarked(site, file, BODY_SIZE, nginxSize(options.maxBodySize), 'once');
  if (params !== undefined) site = replaceMarked(site, file, INCLUDE, quote(params), 'each');
  site = replaceMarked(site, file, UPSTREAM[transport], quote(upstream), 'each');
  site = websocketLocation(site, options.websocket, params ?? '/etc/nginx/node-uwsgi/uwsgi_params', upstream);
  // The filled-in lines need no editing any more.
  site = site.replace(/[ \t]+# EDIT\b.*$/gm, '');

  const run = ['node-uwsgi', './app.js', '--socket', formatSocketAddress(socket)];
  if (socket.kind === 'unix') run.push('--chmod-socket', '660');
  if (options.maxBodySize !== undefined) run.push('--max-body-size', nginxSize(options.maxBodySize));
  const header = [
    `# Generated by: node-uwsgi nginx ${argv.map(shellQuote).join(' ')}`.replace(/[\r\n]/g, ' ').trimEnd(),
    `# from ${file} of node-uwsgi. A server block for nginx's http context: save it as, e.g.,`,
    '# /etc/nginx/sites-available/app.conf, link it from sites-enabled/, then `nginx -t && systemctl reload nginx`.',
    '# Serve the app with:',
    `#   ${run.join(' ')}`,
    ...(socket.kind === 'unix'
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

function invalid(option: string, value: string, detail: string): never {
  throw new UwsgiError('ERR_OPTION_INVALID', { option, value: JSON.stringify(value), detail: `expected ${detail}` });
}

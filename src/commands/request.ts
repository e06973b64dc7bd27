// `node-uwsgi request`: one HTTP-shaped request over a uwsgi socket, without a front server, for health checks
// (systemd ExecStartPost, Kubernetes exec probes) and debugging. The vars are the ones nginx would send with the
// shipped uwsgi_params (src/protocol/cgi.ts cgiVars), encoded with the project's codec.
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { Command, CommanderError, Option } from 'commander';
import { UwsgiError } from '../errors.js';
import { invalid } from '../options.js';
import { formatSocketAddress, parseSocketAddress, type SocketAddress } from '../address.js';
import { encodeRequestHead } from '../protocol/encoder.js';
import { cgiVars } from '../protocol/cgi.js';

/** Exit codes, curl's where curl has one, so that scripts written for `curl -f` read them the same. */
export const EXIT = {
  ok: 0,
  usage: 2,
  connect: 7,
  badResponse: 8,
  httpError: 22,
  timeout: 28,
} as const;

/** A response head must fit in this many bytes (the server's own heads are far smaller). */
const MAX_HEAD = 64 * 1024;

interface Parsed {
  address: SocketAddress;
  label: string;
  method: string;
  target: string;
  headers: Array<[string, string]>;
  body: Buffer | undefined;
  include: boolean;
  timeoutMs: number;
}

function program(): Command {
  return new Command('node-uwsgi request')
    .description('send one HTTP-shaped request over a uwsgi socket (no front server) and print the response body')
    .argument('<addr>', 'the uwsgi socket: unix:/path, /abs/path or host:port')
    .argument('<path>', 'the request target, e.g. /health or /search?q=x')
    .addOption(new Option('-X, --request <method>', 'the request method (default GET, or POST with -d)'))
    .addOption(
      new Option('-H, --header <line>', "a request header 'Name: value' (repeatable); Host defaults to localhost").argParser(
        (raw: string, previous: string[] | undefined) => [...(previous ?? []), raw],
      ),
    )
    .addOption(new Option('-d, --data <data>', 'the request body: text, @file or @- (stdin), sent byte for byte'))
    .addOption(new Option('-i, --include', 'print the response status line and headers before the body'))
    .addOption(new Option('--timeout <seconds>', 'give up after this long (connect, send and receive)').default('10'))
    .addHelpText(
      'after',
      `
Exit codes (curl's): 0 for a 1xx, 2xx or 3xx response; 22 for a status of 400 or more (the body is still
printed); 7 when the socket cannot be reached; 28 on --timeout; 8 when the answer is not HTTP; 2 for bad usage.

Examples:
  node-uwsgi request unix:/run/app/app.sock /health
  node-uwsgi request 127.0.0.1:3031 /items -X PUT -H 'Content-Type: application/json' -d @item.json -i`,
    )
    .showHelpAfterError()
    .exitOverride((err) => {
      // Commander's usage errors exit 1; ours say 2, as the server's do, so that 1 never means "bad usage".
      throw err.exitCode === 1 ? new CommanderError(EXIT.usage, err.code, err.message) : err;
    });
}

export async function run(args: string[]): Promise<number> {
  const cmd = program();
  cmd.parse(args, { from: 'user' });
  let parsed: Parsed;
  try {
    parsed = await parse(cmd);
  } catch (err) {
    return fail(err, EXIT.usage);
  }
  try {
    const status = await send(parsed);
    if (status >= 400) {
      process.stderr.write(`node-uwsgi request: the app answered ${status} (exit code ${EXIT.httpError})\n`);
      return EXIT.httpError;
    }
    return EXIT.ok;
  } catch (err) {
    const code = (err as UwsgiError).code;
    return fail(err, code === 'ERR_CLIENT_TIMEOUT' ? EXIT.timeout : code === 'ERR_CLIENT_CONNECT' ? EXIT.connect : EXIT.badResponse);
  }
}

function fail(err: unknown, exitCode: number): number {
  const code = err instanceof UwsgiError ? `${err.code}: ` : '';
  process.stderr.write(`node-uwsgi request: ${code}${(err as Error).message}\n`);
  return exitCode;
}

async function parse(cmd: Command): Promise<Parsed> {
  const [addr, path] = cmd.args as [string, string];
  const opts = cmd.opts<{ request?: string; header?: string[]; data?: string; include?: boolean; timeout: string }>();
  const address = parseSocketAddress(addr);
  if (address.kind === 'fd') invalid('<addr>', addr, 'a Unix socket path or host:port to connect to');
  if (!path.startsWith('/') && path !== '*') invalid('<path>', path, 'a request target starting with /');
  const timeout = Number(opts.timeout);
  if (!/^\d+(\.\d+)?$/.test(opts.timeout) || timeout <= 0) invalid('--timeout', opts.timeout, 'a number of seconds above 0');
  const method = opts.request ?? (opts.data === undefined ? 'GET' : 'POST');
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(method)) invalid('-X', method, 'a method token such as GET or POST');

  const headers: Array<[string, string]> = [];
  for (const line of opts.header ?? []) {
    const colon = line.indexOf(':');
    const name = colon === -1 ? '' : line.slice(0, colon).trim();
    if (!/^[A-Za-z0-9-]+$/.test(name)) invalid('-H', line, "'Name: value', the name made of letters, digits and '-'");
    const value = latin1(line.slice(colon + 1).trim());
    if (/[\r\n\0]/.test(value)) invalid('-H', line, 'a value without CR, LF or NUL');
    headers.push([name, value]);
  }
  const has = (name: string): boolean => headers.some(([n]) => n.toLowerCase() === name);
  if (!has('host')) headers.unshift(['Host', 'localhost']);

  let body: Buffer | undefined;
  if (opts.data !== undefined) {
    body = await readData(opts.data);
    if (!has('content-type')) headers.push(['Content-Type', 'application/x-www-form-urlencoded']);
    headers.push(['Content-Length', String(body.length)]);
  }
  return {
    address,
    label: formatSocketAddress(address),
    method,
    // Bytes outside printable ASCII are percent-encoded, as a browser or curl's URL parser would send them.
    target: path.replace(/[^\x21-\x7e]+/gu, (run) => encodeURIComponent(run)),
    headers,
    body,
    include: opts.include === true,
    timeoutMs: timeout * 1000,
  };
}

async function readData(data: string): Promise<Buffer> {
  if (!data.startsWith('@')) return Buffer.from(data, 'utf8');
  const file = data.slice(1);
  if (file === '-') {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }
  try {
    return await readFile(file);
  } catch (err) {
    return invalid('-d', data, `a readable file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Sends the request, prints the response as it arrives; resolves with its status. */
function send(req: Parsed): Promise<number> {
  return new Promise((resolve, reject) => {
    const { address, label } = req;
    const socket = address.kind === 'unix' ? net.connect({ path: address.path }) : net.connect({ host: (address as { host: string }).host, port: (address as { port: number }).port });
    let connected = false;
    let head: Buffer | undefined = Buffer.alloc(0);
    let status = 0;
    let received = 0;
    let settled = false;
    const settle = (err: UwsgiError | undefined): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err !== undefined) return reject(err);
      // Whatever is still queued for stdout goes out before the exit code.
      process.stdout.write('', () => resolve(status));
    };
    const timer = setTimeout(() => {
      settle(new UwsgiError('ERR_CLIENT_TIMEOUT', { address: label, seconds: req.timeoutMs / 1000, received }));
    }, req.timeoutMs);

    socket.once('connect', () => {
      connected = true;
      const port = address.kind === 'tcp' ? address.port : undefined;
      const host = req.headers.find(([n]) => n.toLowerCase() === 'host')![1];
      const vars = cgiVars({
        method: req.method,
        target: req.target,
        httpVersion: '1.1',
        headers: req.headers,
        contentLength: req.body?.length,
        remoteAddress: '127.0.0.1',
        remotePort: socket.localPort,
        serverName: host.replace(/:\d+$/, ''),
        serverPort: port === undefined ? '80' : String(port),
      });
      let packet: Buffer;
      try {
        packet = encodeRequestHead(vars);
      } catch (err) {
        return settle(new UwsgiError('ERR_OPTION_INVALID', { option: '-H', value: `(${(err as Error).message})`, detail: 'fewer or smaller headers' }));
      }
      // No half-close after the body: nginx never does, and the server takes a FIN for a client gone away.
      socket.write(req.body === undefined || req.body.length === 0 ? packet : Buffer.concat([packet, req.body]));
    });

    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (head === undefined) {
        write(chunk);
        return;
      }
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) {
        if (head.length > MAX_HEAD || !looksLikeHttp(head)) settle(badResponse(label, head));
        return;
      }
      const match = /^HTTP\/\d\.\d (\d{3})(?: |\r)/.exec(head.subarray(0, Math.min(end + 2, 64)).toString('latin1'));
      if (match === null) return settle(badResponse(label, head));
      status = Number(match[1]);
      const rest = head.subarray(end + 4);
      if (req.include) write(head.subarray(0, end + 4));
      head = undefined;
      if (rest.length > 0) write(rest);
    });

    const write = (data: Buffer): void => {
      if (!process.stdout.write(data)) {
        socket.pause();
        process.stdout.once('drain', () => socket.resume());
      }
    };

    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected) {
        settle(new UwsgiError('ERR_CLIENT_CONNECT', { address: label, detail: err.message }, { cause: err }));
      } else if (head !== undefined) {
        settle(badResponse(label, head, err.code));
      }
      // A reset after the whole head: the body ends there (the server closed with our bytes unread).
    });
    socket.on('close', () => {
      if (head !== undefined) settle(badResponse(label, head));
      else settle(undefined);
    });
  });
}

function looksLikeHttp(head: Buffer): boolean {
  const prefix = head.subarray(0, 5).toString('latin1');
  return 'HTTP/'.startsWith(prefix);
}

function badResponse(address: string, head: Buffer, code?: string): UwsgiError {
  const preview =
    head.length === 0
      ? `the connection closed with no answer${code ? ` (${code})` : ''}`
      : JSON.stringify(head.subarray(0, 40).toString('latin1'));
  return new UwsgiError('ERR_CLIENT_BAD_RESPONSE', { address, preview });
}

function latin1(value: string): string {
  return Buffer.from(value, 'utf8').toString('latin1');
}

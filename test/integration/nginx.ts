// The integration harness: a real nginx (the Debian package) configured from the shipped nginx/site-*.conf and
// nginx/uwsgi_params, in front of the real CLI (dist/cli.js) in a child process, each in its own temp prefix.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, watch, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { connects } from '../helpers/wait.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const CLI = join(ROOT, 'dist/cli.js');
export const APPS = join(ROOT, 'test/fixtures/apps/integration');
export const NGINX_BIN = process.env.NGINX_BIN ?? '/usr/sbin/nginx';

/** TEST_TIME_SCALE multiplies the harness's waits: scripts/asan.sh sets it, as the sanitizers' runtime makes every
 * Node process start several times slower. */
export const TIME_SCALE = Number(process.env.TEST_TIME_SCALE ?? 1) || 1;
const SERVER_READY_TIMEOUT = 20_000 * TIME_SCALE;
const NGINX_READY_TIMEOUT = 15_000 * TIME_SCALE;
const STOP_TIMEOUT = 10_000 * TIME_SCALE;
const IO_TIMEOUT = 30_000 * TIME_SCALE;

// The shipped site files' placeholders: the listen port exactly once; the include and the upstream in every
// location (at least once), or the test config would silently drift from what users copy.
const LISTEN = /^([ \t]*listen[ \t]+)80;/m;
const INCLUDE = /^([ \t]*include[ \t]+)\/etc\/nginx\/node-uwsgi\/uwsgi_params;/m;
const UPSTREAM = {
  unix: /^([ \t]*uwsgi_pass[ \t]+)unix:\/run\/app\/app\.sock;/m,
  tcp: /^([ \t]*uwsgi_pass[ \t]+)127\.0\.0\.1:3031;/m,
} as const;

export type Transport = keyof typeof UPSTREAM;

export interface LogLine {
  msg?: string;
  level?: number;
  [key: string]: unknown;
}

/** Fails, never skips, when the real peer is missing. */
export function requireNginx(): void {
  if (!existsSync(NGINX_BIN)) {
    throw new Error(
      `nginx not found at ${NGINX_BIN}: the integration tests need a real nginx. Install it with ` +
        '`sudo apt-get install nginx-light` (Debian/Ubuntu; .ci/run does it), or point NGINX_BIN at an nginx binary.',
    );
  }
  requireCli();
}

/** Fails when dist/cli.js is not built; the server alone needs nothing else (unit tests start it too). */
export function requireCli(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (\`npm test\` builds).`);
}

/** A free TCP port on 127.0.0.1 (the OS picks; a clash with a parallel worker is retried by the callers). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Rejects after `ms` with `message()` unless `promise` settles first. */
function withTimeout<T>(promise: Promise<T>, ms: number, message: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message())), ms);
    // A guard, not a wait: it must not keep the process alive on its own.
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** SIGTERM, then SIGKILL if the process outlives STOP_TIMEOUT; resolves with the exit code (null if killed). */
async function stopChild(child: ChildProcess): Promise<number | null> {
  const done = exited(child);
  if (child.exitCode !== null || child.signalCode !== null) return done;
  child.kill('SIGTERM');
  try {
    return await withTimeout(done, STOP_TIMEOUT, () => 'did not stop');
  } catch {
    child.kill('SIGKILL');
    return done;
  }
}

/** Resolves once `file` exists (watching its directory, no polling); rejects if `child` exits first. */
function waitForFile(file: string, dir: string, child: ChildProcess, what: () => string): Promise<void> {
  return withTimeout(
    new Promise<void>((resolve, reject) => {
      const watcher = watch(dir, () => check());
      const onExit = (code: number | null): void => {
        watcher.close();
        reject(new Error(`exited (code ${code}) before ${file} appeared`));
      };
      function check(): void {
        if (!existsSync(file)) return;
        watcher.close();
        child.off('exit', onExit);
        resolve();
      }
      child.once('exit', onExit);
      check();
    }),
    NGINX_READY_TIMEOUT,
    () => `timed out after ${NGINX_READY_TIMEOUT} ms waiting for ${file}`,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${what()}`);
  });
}

// --- the server under test -------------------------------------------------------------------------------

export interface ServerProcess {
  readonly child: ChildProcess;
  /** What was passed to --socket. */
  readonly address: string;
  /** Parsed JSON log lines from stdout, in order (non-JSON lines as { raw }). */
  readonly logs: LogLine[];
  /** How readiness was seen: the 'ready' log line, or the Unix socket accepting a connection. */
  readonly readyBy: 'log' | 'socket';
  stdout(): string;
  stderr(): string;
  alive(): boolean;
  /** Resolves with the first log line (past or future) that matches, or rejects after `timeout` ms. */
  waitForLog(match: (line: LogLine) => boolean, timeout?: number): Promise<LogLine>;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

export interface ServerOptions {
  /** App spec: a file under test/fixtures/apps/integration/ or an absolute path, with an optional :export. */
  app: string;
  /** `unix:/path` or `host:port`. */
  socket: string;
  /** The listening arguments in place of `--socket <socket>` (e.g. `--ssl-socket ...`); `socket` then only names
   * the server in messages. */
  listenArgs?: string[];
  args?: string[];
  /** Added to this process's environment (the workers inherit it). */
  env?: Record<string, string>;
  /** A command that execs node with the rest of the arguments, e.g. ['prlimit', '--nofile=256:256', '--']. */
  wrapper?: string[];
  /** The CLI to run (dist/cli.js of this checkout by default; an installed package's in the package test). */
  cli?: string;
  /** The server's working directory (the checkout by default). */
  cwd?: string;
  /** Descriptors the server inherits as fds 3, 4...: sockets for socket activation (LISTEN_FDS). */
  fds?: number[];
}

export interface LaunchedServer extends Omit<ServerProcess, 'readyBy'> {
  /** Resolves with the exit code (null if killed by a signal) when the server exits. */
  readonly exited: Promise<number | null>;
  describe(): string;
}

/** Reads a server's stdout as log lines (JSON, else { raw }), calling `onLine` for each complete non-empty line;
 * returns a reader of the whole text so far. */
export function readLogLines(stream: Readable, onLine: (line: LogLine) => void): () => string {
  let text = '';
  let partial = '';
  stream.setEncoding('utf8').on('data', (chunk: string) => {
    text += chunk;
    partial += chunk;
    let nl: number;
    while ((nl = partial.indexOf('\n')) !== -1) {
      const raw = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      if (raw.trim() === '') continue;
      let line: LogLine;
      try {
        line = JSON.parse(raw) as LogLine;
      } catch {
        line = { raw };
      }
      onLine(line);
    }
  });
  return () => text;
}

/** Spawns `node dist/cli.js <app> --socket <socket> ...` and collects its logs, without waiting for anything. */
export function launchServer(opts: ServerOptions): LaunchedServer {
  requireCli();
  const app = opts.app.startsWith('/') ? opts.app : join(APPS, opts.app);
  const argv = [opts.cli ?? CLI, app, ...(opts.listenArgs ?? ['--socket', opts.socket]), ...(opts.args ?? [])];
  const env = opts.env ? { ...process.env, ...opts.env } : process.env;
  const [command, ...args] = [...(opts.wrapper ?? []), process.execPath, ...argv];
  const child = spawn(command!, args, { cwd: opts.cwd ?? ROOT, env, stdio: ['ignore', 'pipe', 'pipe', ...(opts.fds ?? [])] });
  const logs: LogLine[] = [];
  const waiters = new Set<{ match: (line: LogLine) => boolean; resolve: (line: LogLine) => void }>();
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const stdout = readLogLines(child.stdout!, (line) => {
    logs.push(line);
    for (const waiter of waiters) {
      if (waiter.match(line)) {
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  });
  const describe = (): string =>
    `server: ${[command, ...args].join(' ')}\n--- stderr ---\n${stderr}\n--- stdout ---\n${stdout()}`;

  const waitForLog = (match: (line: LogLine) => boolean, timeout = 10_000 * TIME_SCALE): Promise<LogLine> => {
    const seen = logs.find(match);
    if (seen) return Promise.resolve(seen);
    let waiter: { match: (line: LogLine) => boolean; resolve: (line: LogLine) => void } | undefined;
    return withTimeout(
      new Promise<LogLine>((resolve) => {
        waiter = { match, resolve };
        waiters.add(waiter);
      }),
      timeout,
      () => `no matching server log line within ${timeout} ms\n${describe()}`,
    ).finally(() => waiters.delete(waiter!));
  };

  return {
    child,
    address: opts.socket,
    logs,
    // 'close', not 'exit': every line the process wrote has been read by then.
    exited: new Promise((resolve) => child.once('close', (code) => resolve(code))),
    describe,
    stdout,
    stderr: () => stderr,
    alive: () => child.exitCode === null && child.signalCode === null,
    waitForLog,
    stop: () => stopChild(child),
  };
}

/** Starts `node dist/cli.js <app> --socket <socket> ...` and resolves once it serves. */
export async function startServer(opts: ServerOptions): Promise<ServerProcess> {
  const launched = launchServer(opts);
  const { child, describe, waitForLog } = launched;
  const exitedEarly = launched.exited.then((code) => {
    throw new Error(`the server exited (code ${code}, signal ${child.signalCode}) before it was ready\n${describe()}`);
  });
  exitedEarly.catch(() => {});
  const byLog = waitForLog((line) => line.msg === 'ready', SERVER_READY_TIMEOUT).then((line) => ({ by: 'log' as const, line }));
  byLog.catch(() => {});
  const candidates: Array<Promise<{ by: 'log' | 'socket'; line?: LogLine }>> = [byLog, exitedEarly];
  const probe = opts.socket.startsWith('unix:') ? socketAccepts(opts.socket.slice(5)) : undefined;
  if (probe) candidates.push(probe.accepted.then(() => ({ by: 'socket' as const })));
  let outcome: { by: 'log' | 'socket'; line?: LogLine };
  try {
    outcome = await withTimeout(Promise.race(candidates), SERVER_READY_TIMEOUT, () =>
      `the server was not ready within ${SERVER_READY_TIMEOUT} ms\n${describe()}`,
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  } finally {
    probe?.cancel();
  }
  return {
    child,
    address: opts.socket,
    logs: launched.logs,
    readyBy: outcome.by,
    stdout: launched.stdout,
    stderr: launched.stderr,
    alive: launched.alive,
    waitForLog,
    stop: launched.stop,
  };
}

/** The fallback readiness signal: the socket file appears and accepts a connection. */
function socketAccepts(path: string): { accepted: Promise<void>; cancel(): void } {
  const dir = path.slice(0, path.lastIndexOf('/')) || '/';
  let connecting = false;
  let settled = false;
  let resolve!: () => void;
  const accepted = new Promise<void>((r) => (resolve = r));
  const watcher = watch(dir, () => check());
  const cancel = (): void => {
    settled = true;
    watcher.close();
  };
  function check(): void {
    if (settled || connecting || !existsSync(path) || !statSync(path).isSocket()) return;
    connecting = true;
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      cancel();
      resolve();
    });
    // Bound but not yet listening: try again shortly. No directory event may follow (the file exists already),
    // and a server logging to --log-file has no 'ready' line on stdout to fall back on.
    probe.once('error', () => {
      connecting = false;
      setTimeout(check, 50);
    });
  }
  check();
  return { accepted, cancel };
}

// --- nginx ------------------------------------------------------------------------------------------------

export interface NginxProcess {
  readonly child: ChildProcess;
  readonly prefix: string;
  readonly port: number;
  /** The generated nginx.conf. */
  readonly config: string;
  /** The error log's current size: pass it to errorLog() to see only what came after. */
  errorLogMark(): number;
  /** nginx's error_log (level info), from byte `from`. */
  errorLog(from?: number): string;
  accessLog(): string;
  stop(): Promise<void>;
}

export interface NginxOptions {
  /** The directory for nginx.conf, logs, pid and temp files (created by the caller, removed by the caller). */
  prefix: string;
  /** Which shipped site file to use. */
  transport: Transport;
  /** The backend: a Unix socket path (unix) or host:port (tcp). */
  upstream: string;
  /** A site of the test's own instead of the shipped file (an upstream of several hosts): the http-context
   * text for nginx listening on 127.0.0.1:`port`. */
  site?: (port: number) => string;
  /** nginx's worker_connections (512 unless given): a load of c clients needs 2c (client and upstream). */
  workerConnections?: number;
}

/**
 * The shipped site file with its three marked lines replaced: the listen port, the include of our uwsgi_params
 * (by absolute path into this checkout) and the backend address. Everything else is used verbatim.
 */
export function siteConfig(transport: Transport, port: number, upstream: string): string {
  const file = join(ROOT, 'nginx', transport === 'unix' ? 'site-unix.conf' : 'site-tcp.conf');
  let site = readFileSync(file, 'utf8');
  const substitutions: Array<[RegExp, string, 'once' | 'each']> = [
    [LISTEN, `127.0.0.1:${port};`, 'once'],
    [INCLUDE, `${join(ROOT, 'nginx/uwsgi_params')};`, 'each'],
    [UPSTREAM[transport], `${transport === 'unix' ? `unix:${upstream}` : upstream};`, 'each'],
  ];
  for (const [pattern, value, times] of substitutions) {
    const all = new RegExp(pattern.source, 'gm');
    const count = site.match(all)?.length ?? 0;
    if (times === 'once' ? count !== 1 : count < 1) {
      throw new Error(`${file}: expected ${times === 'once' ? 'exactly one line' : 'lines'} matching ${pattern} (found ${count}); update the harness with the file`);
    }
    site = site.replace(all, (_whole, directive: string) => `${directive}${value}`);
  }
  return site;
}

export function nginxConfig(prefix: string, site: string, workerConnections = 512): string {
  const p = (name: string): string => JSON.stringify(join(prefix, name));
  return `# Generated by test/integration/nginx.ts around the shipped site file.
daemon off;
master_process off;
worker_processes 1;
pid ${p('nginx.pid')};
error_log ${p('error.log')} info;
events { worker_connections ${workerConnections}; }
http {
    access_log ${p('access.log')};
    client_body_temp_path ${p('client_body_temp')};
    proxy_temp_path ${p('proxy_temp')};
    fastcgi_temp_path ${p('fastcgi_temp')};
    uwsgi_temp_path ${p('uwsgi_temp')};
    scgi_temp_path ${p('scgi_temp')};

${site}
}
`;
}

/** Starts nginx in `prefix` on a free 127.0.0.1 port (retrying a port a parallel worker took meanwhile). */
export async function startNginx(opts: NginxOptions): Promise<NginxProcess> {
  requireNginx();
  let lastError: Error | undefined;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      return await startNginxOn(opts, port);
    } catch (err) {
      lastError = err as Error;
      if (!/Address already in use/.test(lastError.message)) throw lastError;
    }
  }
  throw lastError!;
}

async function startNginxOn(opts: NginxOptions, port: number): Promise<NginxProcess> {
  const { prefix } = opts;
  const config = nginxConfig(prefix, opts.site?.(port) ?? siteConfig(opts.transport, port, opts.upstream), opts.workerConnections);
  const confPath = join(prefix, 'nginx.conf');
  const errorPath = join(prefix, 'error.log');
  const pidPath = join(prefix, 'nginx.pid');
  rmSync(pidPath, { force: true });
  writeFileSync(confPath, config);
  const child = spawn(NGINX_BIN, ['-p', prefix, '-c', confPath, '-e', errorPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (output += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (output += c));
  const readLog = (from = 0): string => {
    try {
      return readFileSync(errorPath).subarray(from).toString('utf8');
    } catch {
      return '';
    }
  };
  // nginx writes its pid file after it has bound and listened on every socket (nginx.c: ngx_init_cycle, then
  // ngx_create_pidfile): from then on connections queue until its event loop accepts them.
  await waitForFile(pidPath, prefix, child, () => `nginx: ${NGINX_BIN} -p ${prefix} -c ${confPath}\n--- error.log ---\n${readLog()}\n--- output ---\n${output}\n--- nginx.conf ---\n${config}`).catch(
    (err: Error) => {
      child.kill('SIGKILL');
      throw err;
    },
  );
  return {
    child,
    prefix,
    port,
    config,
    errorLogMark: () => {
      try {
        return statSync(errorPath).size;
      } catch {
        return 0;
      }
    },
    errorLog: readLog,
    accessLog: () => {
      try {
        return readFileSync(join(prefix, 'access.log'), 'utf8');
      } catch {
        return '';
      }
    },
    async stop() {
      await stopChild(child);
    },
  };
}

// --- both: what a test file starts in beforeAll -----------------------------------------------------------

export interface Stack {
  readonly dir: string;
  readonly server: ServerProcess;
  readonly nginx: NginxProcess;
  /** nginx's port on 127.0.0.1. */
  readonly port: number;
  /** The Unix socket path (unix) or host:port (tcp) the server listens on. */
  readonly backend: string;
  /** http://127.0.0.1:<port><path> */
  url(path: string): string;
  stop(): Promise<void>;
}

export interface StackOptions {
  app: string;
  args?: string[];
  transport?: Transport;
  env?: Record<string, string>;
  /** nginx's worker_connections (NginxOptions). */
  workerConnections?: number;
  /** ServerOptions.wrapper. */
  wrapper?: string[];
}

/** Starts the server (on a Unix socket in a fresh temp prefix, or a free TCP port), then nginx in front. */
export async function startStack(opts: StackOptions): Promise<Stack> {
  requireNginx();
  const transport = opts.transport ?? 'unix';
  const dir = mkdtempSync(join(tmpdir(), 'nu-nginx-'));
  let server: ServerProcess | undefined;
  try {
    let backend: string;
    if (transport === 'unix') {
      backend = join(dir, 'app.sock');
      server = await startServer({ app: opts.app, socket: `unix:${backend}`, args: opts.args, env: opts.env, wrapper: opts.wrapper });
    } else {
      let lastError: Error | undefined;
      for (let attempt = 0; attempt < 3 && server === undefined; attempt++) {
        backend = `127.0.0.1:${await freePort()}`;
        try {
          server = await startServer({ app: opts.app, socket: backend, args: opts.args, env: opts.env, wrapper: opts.wrapper });
        } catch (err) {
          lastError = err as Error;
          if (!/ERR_SOCKET_IN_USE|EADDRINUSE/.test(lastError.message)) throw lastError;
        }
      }
      if (server === undefined) throw lastError!;
      backend = server.address;
    }
    const nginx = await startNginx({ prefix: dir, transport, upstream: backend, workerConnections: opts.workerConnections });
    const started = server;
    return {
      dir,
      server: started,
      nginx,
      port: nginx.port,
      backend,
      url: (path) => `http://127.0.0.1:${nginx.port}${path}`,
      async stop() {
        await Promise.all([nginx.stop(), started.stop()]);
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

// --- clients ---------------------------------------------------------------------------------------------

export interface HttpResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
  /** The client's own port on its connection to nginx: what REMOTE_PORT should say. */
  localPort: number;
}

export interface HttpOptions {
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  /** A Buffer is sent with Content-Length; an array of Buffers is written piece by piece, chunked. */
  body?: Buffer | Buffer[];
}

/** One request with node's http client on a fresh connection; the whole body is buffered. */
export function httpRequest(url: string, opts: HttpOptions = {}): Promise<HttpResult> {
  return exchange<Buffer>(url, opts, (res, done) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => done(Buffer.concat(chunks)));
  }).then(({ res, value, localPort }) => ({
    status: res.statusCode!,
    headers: res.headers,
    rawHeaders: res.rawHeaders,
    body: value,
    localPort,
  }));
}

export interface DigestResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  length: number;
  sha256: string;
}

/** A GET whose body is hashed as it streams in, never held whole. */
export function httpDigest(url: string): Promise<DigestResult> {
  return exchange<{ length: number; sha256: string }>(url, {}, (res, done) => {
    const hash = createHash('sha256');
    let length = 0;
    res.on('data', (c: Buffer) => {
      hash.update(c);
      length += c.length;
    });
    res.on('end', () => done({ length, sha256: hash.digest('hex') }));
  }).then(({ res, value }) => ({ status: res.statusCode!, headers: res.headers, ...value }));
}

function exchange<T>(
  url: string,
  opts: HttpOptions,
  read: (res: http.IncomingMessage, done: (value: T) => void) => void,
): Promise<{ res: http.IncomingMessage; value: T; localPort: number }> {
  return withTimeout(
    new Promise((resolve, reject) => {
      let localPort = 0;
      const headers: http.OutgoingHttpHeaders = { ...opts.headers };
      if (Buffer.isBuffer(opts.body)) headers['content-length'] = opts.body.length;
      const req = http.request(url, { method: opts.method ?? 'GET', headers, agent: false }, (res) => {
        res.on('error', reject);
        read(res, (value) => resolve({ res, value, localPort }));
      });
      req.on('socket', (socket) => socket.on('connect', () => (localPort = socket.localPort ?? 0)));
      req.on('error', reject);
      if (Array.isArray(opts.body)) {
        for (const piece of opts.body) req.write(piece);
        req.end();
      } else {
        req.end(opts.body);
      }
    }),
    IO_TIMEOUT,
    () => `no complete response to ${opts.method ?? 'GET'} ${url} within ${IO_TIMEOUT} ms`,
  );
}

export interface LoadResponse {
  /** The HTTP status, or undefined when the request failed without one (see error). */
  status: number | undefined;
  body: string;
  /** The error code (ECONNRESET, ...) or message when there was no response. */
  error?: string;
  startedAt: number;
  endedAt: number;
}

export interface LoadStats {
  /** Requests finished, with a response or an error. */
  requests: number;
  /** 2xx and 3xx responses. */
  ok: number;
  /** Everything else: other statuses and socket errors. */
  failed: number;
  statuses: Record<string, number>;
  errors: Record<string, number>;
  /** Requests sent and not yet finished. */
  inFlight: number;
}

export interface Load {
  /** Live counters. */
  readonly stats: LoadStats;
  /** Every failed request, in the order they finished. */
  readonly failures: LoadResponse[];
  /** Resolves when the loops end: after stop(), or once `requests` have been sent and answered. */
  readonly done: Promise<LoadStats>;
  /** Ends the loops after the requests in flight; resolves with the final counters. */
  stop(): Promise<LoadStats>;
  /** Resolves with the first response from now on for which `match` is true; rejects after `timeout` ms. */
  waitFor(match: (response: LoadResponse) => boolean, timeout?: number): Promise<LoadResponse>;
}

export interface LoadOptions {
  /** Concurrent keep-alive connections to nginx, each sending one request at a time. */
  connections: number;
  /** Stop after this many requests in all; unbounded (until stop()) if absent. */
  requests?: number;
  onResponse?: (response: LoadResponse) => void;
}

/**
 * A closed-loop load generator against nginx: `connections` keep-alive connections, each sending GET `url` as
 * soon as its previous answer is in. Counts every outcome exactly, which wrk's summary does not split finely
 * enough (it folds resets into one number and does not say which worker answered).
 */
export function startLoad(url: string, opts: LoadOptions): Load {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.connections });
  const stats: LoadStats = { requests: 0, ok: 0, failed: 0, statuses: {}, errors: {}, inFlight: 0 };
  const failures: LoadResponse[] = [];
  const waiters = new Set<{ match: (response: LoadResponse) => boolean; resolve: (response: LoadResponse) => void }>();
  let stopped = false;
  let sent = 0;

  const one = (): Promise<LoadResponse> =>
    new Promise((resolve) => {
      const startedAt = Date.now();
      const req = http.get(url, { agent }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body, startedAt, endedAt: Date.now() }));
        res.on('error', (err: NodeJS.ErrnoException) => resolve({ status: undefined, body, error: err.code ?? err.message, startedAt, endedAt: Date.now() }));
      });
      req.setTimeout(IO_TIMEOUT, () => req.destroy(new Error(`no response within ${IO_TIMEOUT} ms`)));
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: undefined, body: '', error: err.code ?? err.message, startedAt, endedAt: Date.now() }));
    });

  const loop = async (): Promise<void> => {
    while (!stopped && (opts.requests === undefined || sent < opts.requests)) {
      sent++;
      stats.inFlight++;
      const response = await one();
      stats.inFlight--;
      stats.requests++;
      if (response.status !== undefined) stats.statuses[response.status] = (stats.statuses[response.status] ?? 0) + 1;
      if (response.error !== undefined) stats.errors[response.error] = (stats.errors[response.error] ?? 0) + 1;
      if (response.status !== undefined && response.status >= 200 && response.status < 400) stats.ok++;
      else {
        stats.failed++;
        failures.push(response);
      }
      opts.onResponse?.(response);
      for (const waiter of waiters) {
        if (waiter.match(response)) {
          waiters.delete(waiter);
          waiter.resolve(response);
        }
      }
    }
  };

  const done = Promise.all(Array.from({ length: opts.connections }, loop)).then(() => {
    agent.destroy();
    return { ...stats };
  });
  return {
    stats,
    failures,
    done,
    stop() {
      stopped = true;
      return done;
    },
    waitFor(match, timeout = 20_000) {
      let waiter: { match: (response: LoadResponse) => boolean; resolve: (response: LoadResponse) => void } | undefined;
      return withTimeout(
        new Promise<LoadResponse>((resolve) => {
          waiter = { match, resolve };
          waiters.add(waiter);
        }),
        timeout,
        () => `no matching response under load within ${timeout} ms (${JSON.stringify(stats)})`,
      ).finally(() => waiters.delete(waiter!));
    },
  };
}

export interface RawResult {
  /** Every byte the peer sent, until it closed. */
  raw: Buffer;
  /** Our local port on the connection. */
  localPort: number;
}

/** Writes `data` on a fresh connection (to host:port or a Unix socket path) and reads until the peer closes. */
export function rawExchange(
  target: { port: number } | { path: string },
  data: Buffer | string,
  opts: { end?: boolean } = {},
): Promise<RawResult> {
  return withTimeout(
    new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      const socket = 'port' in target ? net.connect({ host: '127.0.0.1', port: target.port }) : net.connect({ path: target.path });
      let localPort = 0;
      socket.on('connect', () => {
        localPort = socket.localPort ?? 0;
        socket.write(data);
        if (opts.end) socket.end();
      });
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', (err: NodeJS.ErrnoException) => {
        // A reset after the response (the server closing with unread bytes) still ends the exchange.
        if (err.code === 'ECONNRESET' || err.code === 'EPIPE') return;
        reject(err);
      });
      socket.on('close', () => resolve({ raw: Buffer.concat(chunks), localPort }));
    }),
    IO_TIMEOUT,
    () => `the peer did not close the connection within ${IO_TIMEOUT} ms`,
  );
}

export interface ParsedResponse {
  statusLine: string;
  status: number;
  /** Header names lowercased; repeated headers joined with ', '. */
  headers: Record<string, string>;
  /** The bytes after the blank line, exactly as they came. */
  body: Buffer;
}

export function parseResponse(raw: Buffer): ParsedResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end === -1) throw new Error(`no complete response head in ${JSON.stringify(raw.subarray(0, 200).toString('latin1'))}`);
  const [statusLine = '', ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  return { statusLine, status: Number(statusLine.split(' ')[1]), headers, body: raw.subarray(end + 4) };
}

/** Decodes an HTTP/1.1 chunked body strictly (RFC 9112 §7.1): throws on any framing error or trailing bytes. */
export function decodeChunked(body: Buffer): { data: Buffer; chunks: number } {
  const parts: Buffer[] = [];
  let offset = 0;
  for (;;) {
    const lineEnd = body.indexOf('\r\n', offset);
    if (lineEnd === -1) throw new Error(`chunk size line not terminated at offset ${offset}`);
    const sizeText = body.subarray(offset, lineEnd).toString('latin1').split(';')[0]!.trim();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) throw new Error(`bad chunk size ${JSON.stringify(sizeText)} at offset ${offset}`);
    const size = parseInt(sizeText, 16);
    offset = lineEnd + 2;
    if (size === 0) {
      // No trailers expected: the last chunk is followed by the final CRLF, then nothing.
      if (body.subarray(offset).toString('latin1') !== '\r\n') {
        throw new Error(`unexpected bytes after the last chunk: ${JSON.stringify(body.subarray(offset, offset + 80).toString('latin1'))}`);
      }
      return { data: Buffer.concat(parts), chunks: parts.length };
    }
    if (offset + size + 2 > body.length) throw new Error(`chunk of ${size} bytes at offset ${offset} runs past the body`);
    parts.push(body.subarray(offset, offset + size));
    offset += size;
    if (body.subarray(offset, offset + 2).toString('latin1') !== '\r\n') throw new Error(`chunk data not followed by CRLF at ${offset}`);
    offset += 2;
  }
}

export function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Deterministic pseudo-random bytes (xorshift32), so a failing case can be replayed from its seed. */
export function seededBytes(seed: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** What payload.mjs's 16 MiB download sends, computed here on its own: 256 chunks of 64 KiB, chunk i filled with
 * (i * 31 + 7) & 0xff, its index first (big-endian u32). */
export function expectedDownload(): { length: number; sha256: string } {
  const hash = createHash('sha256');
  for (let i = 0; i < 256; i++) {
    const chunk = Buffer.alloc(64 * 1024, (i * 31 + 7) & 0xff);
    chunk.writeUInt32BE(i, 0);
    hash.update(chunk);
  }
  return { length: 256 * 64 * 1024, sha256: hash.digest('hex') };
}

/** Resolves true once something accepts on 127.0.0.1:`port`, false if `child` exits first (or after 15 s). */
export async function accepting(port: number, child: ChildProcess): Promise<boolean> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return false;
    const ok = await connects(port);
    if (ok) return true;
    // Not yet bound: wait for the child to exit or to bind, whichever comes first.
    await Promise.race([new Promise((resolve) => child.once('exit', resolve)), new Promise((resolve) => setTimeout(resolve, 50))]);
  }
  return false;
}

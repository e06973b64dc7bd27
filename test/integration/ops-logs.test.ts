// Configuration and logs with real processes (dist/cli.js): a --config file with NODE_UWSGI_* and the command line
// over it, printed and then served; --log-file moved away and reopened on SIGUSR1 as logrotate does it; and
// --reload-on-change serving new code through a real nginx without a failed request.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { nginxVars, parseRawResponse } from '../helpers/serve.js';
import { APPS, CLI, ROOT, requireNginx, startLoad, startStack, type LoadResponse, type LogLine } from './nginx.js';
import { useCleanups } from '../helpers/cleanup.js';
import { until } from '../helpers/wait.js';

const HELLO = join(ROOT, 'test/fixtures/apps/cli/hello.mjs');
const WAIT_MS = 20_000;

const { defer, tempDir } = useCleanups('nu-ops-logs-');

interface Cli {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  readonly exited: Promise<number | null>;
}

/** `node dist/cli.js ...args` with `env` added; stopped (SIGTERM, then SIGKILL) after the test. */
function cli(args: string[], env: Record<string, string> = {}): Cli {
  requireNginx();
  const child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  defer(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

function jsonLines(text: string): LogLine[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as LogLine);
}

function readLines(path: string): LogLine[] {
  return existsSync(path) ? jsonLines(readFileSync(path, 'utf8')) : [];
}

/** One uwsgi request straight to the Unix socket, as nginx would send it. */
function request(path: string, uri: string, body?: Buffer): Promise<ReturnType<typeof parseRawResponse>> {
  const vars = nginxVars({ REQUEST_URI: uri, PATH_INFO: uri, ...(body ? { REQUEST_METHOD: 'POST', CONTENT_LENGTH: String(body.length) } : {}) });
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ path }, () => socket.write(encodeRequest(vars, body)));
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(parseRawResponse(Buffer.concat(chunks))));
  });
}

describe('--config, NODE_UWSGI_* and --print-config', () => {
  function setUp(): { dir: string; file: string; sock: string } {
    const dir = tempDir();
    const sock = join(dir, 'app.sock');
    const file = join(dir, 'app.toml');
    writeFileSync(
      file,
      [
        '# node-uwsgi configuration',
        `app = ${JSON.stringify(HELLO)}`,
        `socket = [${JSON.stringify(`unix:${sock}`)}]`,
        'workers = 2',
        'access-log = true',
        'max-body-size = "1m"',
        'header-timeout = 30',
        '',
      ].join('\n'),
    );
    return { dir, file, sock };
  }
  const env = { NODE_UWSGI_MAX_BODY_SIZE: '16', NODE_UWSGI_HEADER_TIMEOUT: '20' };

  it('prints every effective value with its source and exits 0', async () => {
    const { file, sock } = setUp();
    const run = cli(['--config', file, '--print-config', '--header-timeout', '10'], env);
    expect(await run.exited).toBe(0);
    expect(run.stderr()).toBe('');
    const lines = run.stdout().trimEnd().split('\n');
    const line = (key: string): string => lines.find((l) => new RegExp(`^(# )?${key}[ =]`).test(l)) ?? `(no line for ${key})`;
    expect(line('app')).toMatch(new RegExp(`^app += ${JSON.stringify(HELLO).replaceAll('/', '\\/')} +# file ${file}$`));
    expect(line('socket')).toContain(`socket = ["unix:${sock}"]`);
    expect(line('workers')).toMatch(/^workers += 2 +# file /);
    expect(line('max-body-size')).toMatch(/^max-body-size += 16 +# environment NODE_UWSGI_MAX_BODY_SIZE$/);
    expect(line('header-timeout')).toMatch(/^header-timeout += 10 +# command line$/);
    expect(line('interface')).toMatch(/^interface += "auto" +# default$/);
    // No process was started: nothing listens.
    expect(existsSync(sock)).toBe(false);
  });

  it('serves with the file\'s app, socket, workers and access log, the environment\'s body limit over the file\'s', async () => {
    const { file, sock } = setUp();
    const run = cli(['--config', file], env);
    const ready = await until(`the ready line\n${run.stderr()}`, () => jsonLines(run.stdout()).find((l) => l.msg === 'ready'));
    expect(ready).toMatchObject({ workers: 2, sockets: [`unix:${sock}`], interface: 'wsgi' });

    const ok = await request(sock, '/from-config');
    expect(ok.status).toBe(200);
    expect(ok.body.toString()).toBe('hello /from-config\n');
    // 16 bytes from NODE_UWSGI_MAX_BODY_SIZE, not the file's 1m.
    expect((await request(sock, '/upload', Buffer.alloc(17, 'x'))).status).toBe(413);
    await until('the access line', () => jsonLines(run.stdout()).find((l) => l.msg === 'request' && l.uri === '/from-config' && l.status === 200));
  });

  it('refuses an unknown key in the file with exit 2, naming the nearest key and the code', async () => {
    const { file } = setUp();
    writeFileSync(file, `${readFileSync(file, 'utf8')}max-body-sise = "2m"\n`);
    const run = cli(['--config', file]);
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain('"max-body-sise"');
    expect(run.stderr()).toContain('did you mean "max-body-size"?');
    expect(run.stderr()).toContain('ERR_CONFIG_UNKNOWN_KEY');
  });
});

describe('--log-file', () => {
  it('writes JSON lines to the file, and after mv + SIGUSR1 the master and every worker write to a new one', async () => {
    const dir = tempDir();
    const sock = join(dir, 'app.sock');
    const log = join(dir, 'app.log');
    const rotated = `${log}.1`;
    const run = cli([HELLO, '--socket', `unix:${sock}`, '--workers', '2', '--access-log', '--log-file', log]);
    const ready = await until(`the ready line in ${log}\n${run.stderr()}`, () => readLines(log).find((l) => l.msg === 'ready'));
    const master = ready.pid;
    expect(run.stdout()).toBe('');

    expect((await request(sock, '/before')).status).toBe(200);
    await until('the access line of /before', () => readLines(log).find((l) => l.msg === 'request' && l.uri === '/before'));

    // What logrotate does: move the file, then `kill -USR1` the master's pid (postrotate).
    renameSync(log, rotated);
    run.child.kill('SIGUSR1');
    const reopened = await until('a reopen line from the master and both workers', () => {
      const lines = readLines(log).filter((l) => l.msg === 'log file reopened');
      return lines.length >= 3 ? lines : undefined;
    });
    expect(reopened.filter((l) => l.role === 'master').map((l) => l.pid)).toEqual([master]);
    const reopenedWorkers = new Set(reopened.filter((l) => l.worker !== undefined).map((l) => l.pid));
    expect(reopenedWorkers.size).toBe(2);
    expect(reopenedWorkers).not.toContain(master);

    const uris = Array.from({ length: 20 }, (_, i) => `/after-${i}`);
    for (const uri of uris) expect((await request(sock, uri)).status).toBe(200);
    const after = await until('every access line in the new file', () => {
      const lines = readLines(log).filter((l) => l.msg === 'request');
      return lines.length >= uris.length ? lines : undefined;
    });
    expect(after.map((l) => l.uri).sort()).toEqual([...uris].sort());
    for (const line of after) expect(reopenedWorkers).toContain(line.pid);
    // Nothing after the reopen went to the moved file, and its lines before the move are intact.
    const old = readLines(rotated);
    expect(old.some((l) => l.uri === '/before')).toBe(true);
    expect(old.filter((l) => typeof l.uri === 'string' && (l.uri as string).startsWith('/after'))).toEqual([]);
    // SIGUSR1 killed nothing and opened no inspector: the same processes serve.
    expect(readLines(log).filter((l) => l.msg === 'worker exited')).toEqual([]);
    expect(run.stderr()).not.toContain('Debugger listening');
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
    expect(readLines(log).some((l) => l.msg === 'stopped' && l.pid === master)).toBe(true);
  }, 60_000);

  it('a USR1 right after a HUP (logrotate during a reload) reopens and opens no debugger in a booting worker', async () => {
    const dir = tempDir();
    const sock = join(dir, 'app.sock');
    const log = join(dir, 'app.log');
    const run = cli([HELLO, '--socket', `unix:${sock}`, '--workers', '2', '--log-file', log]);
    await until(`the ready line in ${log}\n${run.stderr()}`, () => readLines(log).find((l) => l.msg === 'ready'));
    for (let round = 1; round <= 3; round++) {
      run.child.kill('SIGHUP');
      await new Promise((r) => setTimeout(r, 30));
      run.child.kill('SIGUSR1');
      // The reload completes: as many reload-done lines as rounds.
      await until(`reload ${round} done`, () => {
        const done = readLines(log).filter((l) => l.msg === 'reload complete');
        return done.length >= round ? done : undefined;
      });
    }
    expect(run.stderr()).not.toContain('Debugger listening');
    expect((await request(sock, '/after')).status).toBe(200);
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
  }, 90_000);

  it('the harakiri watchdog\'s line goes to the log file too, not to stdout', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'version'), 'v1');
    const sock = join(dir, 'app.sock');
    const log = join(dir, 'app.log');
    const run = cli([join(APPS, 'pm-app.mjs'), '--socket', `unix:${sock}`, '--harakiri', '1', '--log-file', log], { PM_DIR: dir });
    await until(`the ready line in ${log}\n${run.stderr()}`, () => readLines(log).find((l) => l.msg === 'ready'));
    void request(sock, '/spin').catch(() => undefined);
    const line = await until('the watchdog line in the log file', () =>
      readLines(log).find((l) => l.code === 'ERR_WORKER_BLOCKED' && l.inflight !== undefined),
    );
    expect(line.inflight).toEqual(expect.arrayContaining([expect.objectContaining({ method: 'GET', uri: '/spin' })]));
    expect(run.stdout()).not.toContain('ERR_WORKER_BLOCKED');
    run.child.kill('SIGTERM');
    expect(await run.exited).toBe(0);
  }, 60_000);

  it('refuses a log file it cannot open, exit 2 with ERR_LOG_FILE', async () => {
    const dir = tempDir();
    const run = cli([HELLO, '--socket', `unix:${join(dir, 'app.sock')}`, '--log-file', join(dir, 'missing-dir', 'app.log')]);
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toContain('ERR_LOG_FILE');
    expect(run.stderr()).toContain(join(dir, 'missing-dir', 'app.log'));
  });
});

describe('--reload-on-change', () => {
  it('serves the new code after the app file changes, through nginx under load, without a failed request', async () => {
    const dir = tempDir();
    const app = join(dir, 'app.mjs');
    copyFileSync(join(APPS, 'reload-app.mjs'), app);
    const stack = await startStack({ app, args: ['--workers', '2', '--reload-on-change'] });
    defer(() => stack.stop());
    const { server } = stack;
    await server.waitForLog((l) => l.msg === 'ready');
    await server.waitForLog((l) => l.msg === 'watching for changes' && l.directory === dir);

    const versions: Array<{ at: number; version: string }> = [];
    const load = startLoad(stack.url('/'), {
      connections: 4,
      onResponse: (r: LoadResponse) => {
        if (r.status === 200) versions.push({ at: r.startedAt, version: (JSON.parse(r.body) as { version: string }).version });
      },
    });
    defer(async () => {
      await load.stop();
    });
    await load.waitFor((r) => r.status === 200);
    const master = server.child.pid!;
    const oldWorkers = readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim().split(/\s+/).map(Number);
    expect(oldWorkers).toHaveLength(2);

    // Files the watcher leaves alone: a dependency and a dotfile.
    mkdirSync(join(dir, 'node_modules', 'dep'), { recursive: true });
    writeFileSync(join(dir, 'node_modules', 'dep', 'index.js'), 'export default 1;\n');
    // As an editor saves: a temporary dotfile renamed over the app.
    const source = readFileSync(app, 'utf8');
    expect(source).toContain("const VERSION = 'v1';");
    writeFileSync(join(dir, '.app.mjs.tmp'), source.replace("const VERSION = 'v1';", "const VERSION = 'v2';"));
    renameSync(join(dir, '.app.mjs.tmp'), app);

    const changed = await server.waitForLog((l) => l.msg === 'files changed: reloading', WAIT_MS);
    expect(changed).toMatchObject({ file: app, files: 1 });
    await server.waitForLog((l) => l.msg === 'reload complete' && l.generation === 2, 30_000);
    // 'reload complete': the old workers are told to drain. Connections already in the shared socket's queue may
    // still reach one until it has closed its listener (an IPC message away, longer on a loaded machine): from
    // their exit on, every response is the new code's.
    await until('the old workers to exit', () => (oldWorkers.every((pid) => !existsSync(`/proc/${pid}`)) ? true : undefined));
    const settled = Date.now();
    await load.waitFor(() => versions.filter((v) => v.at >= settled).length >= 100, 30_000);
    const stats = await load.stop();

    console.log(`reload-on-change: ${stats.requests} requests, ${stats.failed} failed, statuses ${JSON.stringify(stats.statuses)}`);
    expect(stats.failed, JSON.stringify(load.failures.slice(0, 5))).toBe(0);
    expect(new Set(versions.filter((v) => v.at >= settled).map((v) => v.version))).toEqual(new Set(['v2']));
    expect(versions.some((v) => v.version === 'v1')).toBe(true);
    // One reload for one change: the ignored files started none.
    expect(server.logs.filter((l) => l.msg === 'files changed: reloading')).toHaveLength(1);
  }, 90_000);
});


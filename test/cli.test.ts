// The CLI as users run it: the built dist/cli.js in a child process (npm test builds first).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync, statSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeRequest } from '../src/protocol/encoder.js';
import { nginxVars, parseRawResponse } from './helpers/serve.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const cli = join(root, 'dist/cli.js');
const app = join(root, 'test/fixtures/apps/cli/hello.mjs');
const dirs: string[] = [];
const children: ReturnType<typeof spawn>[] = [];

afterEach(() => {
  for (const child of children.splice(0)) child.kill('SIGKILL');
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nu-cli-'));
  dirs.push(dir);
  return dir;
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runToExit(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd: root });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Starts the CLI and resolves once it logs "ready" (rejects with its output if it exits first). */
function startServer(args: string[]): Promise<{ child: ReturnType<typeof spawn>; lines: Array<Record<string, unknown>> }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [cli, ...args], { cwd: root });
    children.push(child);
    const lines: Array<Record<string, unknown>> = [];
    let buffered = '';
    let stderr = '';
    child.stderr.on('data', (c) => (stderr += c));
    child.stdout.on('data', (c) => {
      buffered += c;
      let nl;
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>;
        buffered = buffered.slice(nl + 1);
        lines.push(line);
        if (line.msg === 'ready') resolve({ child, lines });
      }
    });
    child.on('exit', (code) => reject(new Error(`exited ${code}: ${stderr}`)));
  });
}

function request(path: string, vars = nginxVars({ REQUEST_URI: '/x', PATH_INFO: '/x' })): Promise<ReturnType<typeof parseRawResponse>> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ path }, () => socket.write(encodeRequest(vars)));
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(parseRawResponse(Buffer.concat(chunks))));
  });
}

describe('node-uwsgi CLI', () => {
  it('prints its version and help', async () => {
    const version = await runToExit(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
    const help = await runToExit(['--help']);
    expect(help.code).toBe(0);
    for (const flag of ['--socket', '--chmod-socket', '--interface', '--log-level', '--access-log', '--max-vars-size']) {
      expect(help.stdout).toContain(flag);
    }
  });

  it('rejects an invalid option value with a message naming it, exit code 2', async () => {
    const run = await runToExit([app, '--interface', 'wsig']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--interface');
    expect(run.stderr).toContain('wsgi');
  });

  it('rejects an unknown option', async () => {
    const run = await runToExit([app, '--sokcet', '/tmp/x.sock']);
    expect(run.code).not.toBe(0);
    expect(run.stderr).toMatch(/unknown option '--sokcet'/);
  });

  it('exits 1 with the loader error when the app throws on import', async () => {
    const dir = tempDir();
    const run = await runToExit([join(root, 'test/fixtures/apps/cli/throws-on-import.mjs'), '--socket', join(dir, 's.sock')]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('database unreachable at import');
    expect(run.stdout).toContain('ERR_APP_IMPORT_FAILED');
  });

  it('prints the file:line of a syntax error in a dependency of the app at error level, and on stderr', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'lib'));
    writeFileSync(join(dir, 'app.mjs'), "import { helper } from './lib/dep.mjs';\nexport default (req, res) => res.end(helper);\n");
    writeFileSync(join(dir, 'lib/dep.mjs'), "export const helper = 'x';\n\nconst broken = ;\n");
    const run = await runToExit([join(dir, 'app.mjs'), '--socket', join(dir, 's.sock'), '--workers', '2']);
    expect(run.code).toBe(1);
    const where = `${pathToFileURL(join(dir, 'lib/dep.mjs')).href}:3`;
    const lines = run.stdout.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const failed = lines.filter((line) => (line.level as number) >= 50);
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ errorCode: 'ERR_APP_IMPORT_FAILED', errorAt: [where, 'const broken = ;', '               ^'] });
    expect(run.stderr).toBe(
      `node-uwsgi: importing the app module ${join(dir, 'app.mjs')} failed: Unexpected token ';'\n    ${where}\n    const broken = ;\n                   ^\n`,
    );
  });

  it('serves on a Unix socket with --chmod-socket, logs access lines, and stops on SIGTERM with exit 0', async () => {
    const dir = tempDir();
    const sock = join(dir, 'app.sock');
    const { child, lines } = await startServer([app, '--socket', `unix:${sock}`, '--chmod-socket', '660', '--access-log']);
    expect(statSync(sock).mode & 0o777).toBe(0o660);
    const res = await request(sock);
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe('hello /x\n');
    const ready = lines.find((l) => l.msg === 'ready')!;
    expect(ready.interface).toBe('wsgi');
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(lines.some((l) => l.msg === 'request' && l.status === 200 && l.uri === '/x' && l.remote === '203.0.113.7')).toBe(true);
  });

  it('replaces a stale socket file and refuses a live one', async () => {
    const dir = tempDir();
    const sock = join(dir, 'app.sock');
    // A socket file nobody listens on: what a crashed server leaves behind (SIGKILL skips the unlink).
    await new Promise((r) =>
      spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(sock)}, () => process.kill(process.pid, 'SIGKILL'))`]).on('exit', r),
    );
    expect(statSync(sock).isSocket()).toBe(true);
    await startServer([app, '--socket', sock]);
    expect((await request(sock)).status).toBe(200);

    const second = await runToExit([app, '--socket', sock]);
    expect(second.code).toBe(1);
    expect(second.stdout).toContain('ERR_SOCKET_IN_USE');
    expect((await request(sock)).status).toBe(200);
  });

  it('refuses a path that is not a socket', async () => {
    const dir = tempDir();
    const file = join(dir, 'not-a-socket');
    writeFileSync(file, 'data');
    const run = await runToExit([app, '--socket', file]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('ERR_SOCKET_LISTEN');
  });
});

// `node-uwsgi request` against a real node-uwsgi (dist/cli.js) on a Unix socket and on TCP: the vars it sends
// (as nginx's uwsgi_params would), bodies from the command line, a file and stdin, and its exit codes.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, ROOT, freePort, seededBytes, sha256, startServer, type ServerProcess } from '../integration/nginx.js';

interface CliResult {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

function request(args: string[], input?: Buffer): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'request', ...args], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
    child.stdin.end(input);
  });
}

interface Echo {
  vars: Record<string, string>;
  uwsgiVars: Array<[string, string]>;
  body: { length: number; sha256: string };
}

const echoOf = (res: CliResult): Echo => JSON.parse(res.stdout.toString('utf8')) as Echo;

describe('node-uwsgi request', () => {
  let dir: string;
  let sock: string;
  let server: ServerProcess;
  let tcp: ServerProcess | undefined;
  let tcpAddress = '';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nu-request-'));
    sock = join(dir, 'app.sock');
    server = await startServer({ app: 'echo-vars.mjs', socket: `unix:${sock}`, args: ['--access-log'] });
    for (let attempt = 0; attempt < 3 && tcp === undefined; attempt++) {
      tcpAddress = `127.0.0.1:${await freePort()}`;
      try {
        tcp = await startServer({ app: 'echo-vars.mjs', socket: tcpAddress });
      } catch (err) {
        if (!/ERR_SOCKET_IN_USE|EADDRINUSE/.test((err as Error).message)) throw err;
      }
    }
  }, 60_000);

  afterAll(async () => {
    await Promise.all([server?.stop(), tcp?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('GET: sends the vars nginx would, in uwsgi_params order, with the headers given as HTTP_*', async () => {
    const res = await request([`unix:${sock}`, '/a%20b/./c/../d?x=1&y=%41', '-H', 'X-Custom: one two', '-H', 'Host: example.org:8080']);
    expect(res.stderr).toBe('');
    expect(res.code).toBe(0);
    const { vars, uwsgiVars, body } = echoOf(res);
    expect(vars).toMatchObject({
      REQUEST_METHOD: 'GET',
      REQUEST_URI: '/a%20b/./c/../d?x=1&y=%41',
      // Decoded and normalised, as nginx's $document_uri.
      PATH_INFO: '/a b/d',
      QUERY_STRING: 'x=1&y=%41',
      SERVER_PROTOCOL: 'HTTP/1.1',
      REQUEST_SCHEME: 'http',
      SERVER_NAME: 'example.org',
      SERVER_PORT: '80',
      REMOTE_ADDR: '127.0.0.1',
      HTTP_HOST: 'example.org:8080',
      HTTP_X_CUSTOM: 'one two',
      CONTENT_LENGTH: '',
      CONTENT_TYPE: '',
    });
    expect(vars.HTTPS).toBeUndefined();
    expect(uwsgiVars.map(([name]) => name).slice(0, 6)).toEqual([
      'QUERY_STRING',
      'REQUEST_METHOD',
      'CONTENT_TYPE',
      'CONTENT_LENGTH',
      'REQUEST_URI',
      'PATH_INFO',
    ]);
    expect(body.length).toBe(0);
    await server.waitForLog((line) => line.msg === 'request' && line.uri === '/a%20b/./c/../d?x=1&y=%41' && line.status === 200);
  });

  it('Host defaults to localhost, and -i prints the status line and headers before the body', async () => {
    const res = await request([`unix:${sock}`, '/hi', '-i']);
    expect(res.code).toBe(0);
    const text = res.stdout.toString('latin1');
    const end = text.indexOf('\r\n\r\n');
    expect(text.slice(0, end)).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text.slice(0, end)).toContain('\r\nX-Echo: yes');
    const echo = JSON.parse(text.slice(end + 4)) as Echo;
    expect(echo.vars.HTTP_HOST).toBe('localhost');
    expect(echo.vars.PATH_INFO).toBe('/hi');
  });

  it('POST -d @file sends the file byte for byte, with CONTENT_LENGTH and a default CONTENT_TYPE', async () => {
    const data = seededBytes(7, 300_000);
    const file = join(dir, 'body.bin');
    writeFileSync(file, data);
    const res = await request([`unix:${sock}`, '/upload', '-d', `@${file}`]);
    expect(res.code).toBe(0);
    const { vars, body } = echoOf(res);
    expect(body).toEqual({ length: data.length, sha256: sha256(data) });
    expect(vars).toMatchObject({
      REQUEST_METHOD: 'POST',
      CONTENT_LENGTH: String(data.length),
      CONTENT_TYPE: 'application/x-www-form-urlencoded',
    });
  });

  it('-X PUT with -d @- reads the body from stdin; a Content-Type given with -H wins', async () => {
    const data = Buffer.from('{"name":"nüx"}\n');
    const res = await request([`unix:${sock}`, '/items/1', '-X', 'PUT', '-H', 'Content-Type: application/json', '-d', '@-'], data);
    expect(res.code).toBe(0);
    const { vars, uwsgiVars, body } = echoOf(res);
    expect(body).toEqual({ length: data.length, sha256: sha256(data) });
    expect(vars).toMatchObject({ REQUEST_METHOD: 'PUT', CONTENT_TYPE: 'application/json' });
    // As nginx does, both CONTENT_TYPE and the header's HTTP_CONTENT_TYPE go out (the environ drops the latter).
    expect(uwsgiVars).toContainEqual(['HTTP_CONTENT_TYPE', 'application/json']);
    expect(uwsgiVars).toContainEqual(['HTTP_CONTENT_LENGTH', String(data.length)]);
  });

  it('-d text is sent as UTF-8', async () => {
    const res = await request([`unix:${sock}`, '/form', '-d', 'a=1&b=é']);
    expect(res.code).toBe(0);
    expect(echoOf(res).body).toEqual({ length: 8, sha256: sha256(Buffer.from('a=1&b=é')) });
  });

  it('over TCP: SERVER_PORT is the socket port and REMOTE_PORT the client port', async () => {
    const res = await request([tcpAddress, '/tcp']);
    expect(res.code).toBe(0);
    const { vars } = echoOf(res);
    expect(vars.SERVER_PORT).toBe(tcpAddress.split(':')[1]);
    expect(Number(vars.REMOTE_PORT)).toBeGreaterThan(0);
  });

  it('exits 22 for a 404 and a 500, still printing the body of the 404', async () => {
    const notFound = await request([`unix:${sock}`, '/status/404']);
    expect(notFound.code).toBe(22);
    expect(echoOf(notFound).vars.PATH_INFO).toBe('/status/404');
    expect(notFound.stderr).toContain('404');
    const failed = await request([`unix:${sock}`, '/throw']);
    expect(failed.code).toBe(22);
    expect(failed.stdout.toString()).toBe('Internal Server Error\n');
    const redirect = await request([`unix:${sock}`, '/status/302']);
    expect(redirect.code).toBe(0);
  });

  it('exits 7 with ERR_CLIENT_CONNECT when nobody listens (TCP refused, missing Unix socket)', async () => {
    const port = await freePort();
    const refused = await request([`127.0.0.1:${port}`, '/health']);
    expect(refused.code).toBe(7);
    expect(refused.stderr).toContain('ERR_CLIENT_CONNECT');
    expect(refused.stderr).toContain('ECONNREFUSED');
    const missing = await request([`unix:${join(dir, 'none.sock')}`, '/health']);
    expect(missing.code).toBe(7);
    expect(missing.stderr).toContain('ENOENT');
  });

  it('exits 28 with ERR_CLIENT_TIMEOUT when the peer never answers, and 8 when it answers something else', async () => {
    const silent = net.createServer(() => {});
    const chatty = net.createServer((socket) => socket.end('SSH-2.0-OpenSSH\r\n'));
    const silentPath = join(dir, 'silent.sock');
    const chattyPath = join(dir, 'chatty.sock');
    await Promise.all([
      new Promise<void>((resolve) => silent.listen(silentPath, resolve)),
      new Promise<void>((resolve) => chatty.listen(chattyPath, resolve)),
    ]);
    try {
      const timedOut = await request([`unix:${silentPath}`, '/health', '--timeout', '0.5']);
      expect(timedOut.code).toBe(28);
      expect(timedOut.stderr).toContain('ERR_CLIENT_TIMEOUT');
      const bad = await request([`unix:${chattyPath}`, '/health']);
      expect(bad.code).toBe(8);
      expect(bad.stderr).toContain('ERR_CLIENT_BAD_RESPONSE');
    } finally {
      silent.close();
      chatty.close();
    }
  });

  it('exits 2 on bad usage, naming the argument', async () => {
    const noPath = await request([`unix:${sock}`]);
    expect(noPath.code).toBe(2);
    const badHeader = await request([`unix:${sock}`, '/x', '-H', 'no colon here']);
    expect(badHeader.code).toBe(2);
    expect(badHeader.stderr).toContain('ERR_OPTION_INVALID');
    expect(badHeader.stderr).toContain('-H');
    const noFile = await request([`unix:${sock}`, '/x', '-d', `@${join(dir, 'missing.bin')}`]);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain('ENOENT');
    const help = await request(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout.toString()).toMatch(/22 for a status of 400 or more/);
  });
});

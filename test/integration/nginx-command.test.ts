// `node-uwsgi nginx` (the real CLI, dist/cli.js): what it prints passes the real `nginx -t` for Unix and TCP
// sockets, with and without --websocket, and an nginx started with it serves requests and WebSockets from a
// running node-uwsgi.
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { nginxSize } from '../../src/commands/nginx.js';
import { CLI, NGINX_BIN, ROOT, httpRequest, nginxConfig, requireNginx, startNginx, startServer, type NginxProcess } from '../integration/nginx.js';

function generate(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [CLI, 'nginx', ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** `nginx -t` on the printed block wrapped in an http{} context in `prefix`, as the test harness wraps the shipped files. */
function nginxTest(prefix: string, site: string): { code: number | null; output: string } {
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, nginxConfig(prefix, site));
  const result = spawnSync(NGINX_BIN, ['-t', '-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')], { encoding: 'utf8' });
  return { code: result.status, output: `${result.stdout}${result.stderr}` };
}

describe('node-uwsgi nginx', () => {
  let dir: string;
  beforeAll(() => {
    requireNginx();
    dir = mkdtempSync(join(tmpdir(), 'nu-nginx-gen-'));
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const CASES = [
    { name: 'unix', socket: 'unix:/run/app/app.sock', pass: 'uwsgi_pass unix:/run/app/app.sock;', websocket: undefined },
    { name: 'unix + websocket', socket: 'unix:/run/app/app.sock', pass: 'uwsgi_pass unix:/run/app/app.sock;', websocket: '/socket/' },
    { name: 'tcp', socket: '127.0.0.1:3031', pass: 'uwsgi_pass 127.0.0.1:3031;', websocket: undefined },
    { name: 'tcp + websocket', socket: '127.0.0.1:3031', pass: 'uwsgi_pass 127.0.0.1:3031;', websocket: '/live/' },
  ];

  it.each(CASES)('prints a server block that passes nginx -t ($name)', ({ socket, pass, websocket }) => {
    const args = ['--socket', socket, '--server-name', 'example.com www.example.com', '--max-body-size', '10m'];
    if (websocket) args.push('--websocket', websocket);
    const { code, stdout, stderr } = generate(args);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    const params = join(ROOT, 'nginx/uwsgi_params');
    expect(stdout).toContain(`include ${params};`);
    expect(stdout).toContain(pass);
    expect(stdout).toContain('server_name example.com www.example.com;');
    expect(stdout).toContain('client_max_body_size 10m;');
    expect(stdout).toContain('--max-body-size 10m');
    expect(stdout).not.toMatch(/# EDIT/);
    const locations = stdout.match(/^\s*location .*\{$/gm) ?? [];
    expect(locations.map((l) => l.trim())).toEqual(websocket ? ['location / {', `location ${websocket} {`] : ['location / {']);
    if (websocket) expect(stdout).toMatch(new RegExp(`location ${websocket} \\{[^}]*uwsgi_read_timeout 1h;`));
    else expect(stdout).not.toContain('WebSocket');

    const prefix = mkdtempSync(join(dir, 't-'));
    const tested = nginxTest(prefix, stdout);
    expect(tested.output).toContain('syntax is ok');
    expect(tested.output).toContain('test is successful');
    expect(tested.code).toBe(0);
  });

  it.each([
    { name: 'plain uwsgi', ssl: false },
    { name: 'TLS with a client certificate', ssl: true },
  ])('prints an upstream block for several hosts that passes nginx -t ($name)', ({ ssl }) => {
    const prefix = mkdtempSync(join(dir, 'up-'));
    const files = { crt: join(prefix, 'client.crt'), key: join(prefix, 'client.key'), ca: join(prefix, 'ca.crt') };
    // nginx -t loads the certificate files: real ones, from the openssl CLI.
    spawnSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=t', '-keyout', files.key, '-out', files.crt], { stdio: 'ignore' });
    writeFileSync(files.ca, readFileSync(files.crt));
    const args = ['--upstream', '10.0.0.11:3031,10.0.0.12:3031, [fd00::13]:3031', '--server-name', 'example.com', '--max-fails', '2', '--fail-timeout', '5'];
    if (ssl) args.push('--ssl', '--ssl-certificate', files.crt, '--ssl-certificate-key', files.key, '--ssl-trusted-certificate', files.ca, '--ssl-name', 'app.internal');
    const { code, stdout, stderr } = generate(args);
    expect(stderr).toBe('');
    expect(code).toBe(0);
    expect(stdout).toMatch(
      /upstream node_uwsgi \{\n {4}server 10\.0\.0\.11:3031 max_fails=2 fail_timeout=5s;\n {4}server 10\.0\.0\.12:3031 max_fails=2 fail_timeout=5s;\n {4}server \[fd00::13\]:3031 max_fails=2 fail_timeout=5s;\n\}/,
    );
    expect(stdout).toContain('uwsgi_next_upstream error timeout;');
    expect(stdout).toContain('uwsgi_connect_timeout 1s;');
    // Idempotent requests only, and no keepalive (uwsgi closes per request).
    expect(stdout).not.toMatch(/^[^#]*non_idempotent/m);
    expect(stdout).not.toMatch(/^\s*keepalive/m);
    const passes = stdout.match(/^\s*uwsgi_pass .*$/gm)!.map((l) => l.trim());
    expect(passes).toEqual([`uwsgi_pass ${ssl ? 'suwsgi' : 'uwsgi'}://node_uwsgi;`]);
    if (ssl) {
      for (const line of [
        `uwsgi_ssl_certificate ${files.crt};`,
        `uwsgi_ssl_certificate_key ${files.key};`,
        `uwsgi_ssl_trusted_certificate ${files.ca};`,
        'uwsgi_ssl_verify on;',
        'uwsgi_ssl_name app.internal;',
        'uwsgi_ssl_session_reuse on;',
        'uwsgi_ssl_protocols TLSv1.2 TLSv1.3;',
      ]) expect(stdout).toContain(line);
      expect(stdout).toContain('--ssl-socket 0.0.0.0:PORT,');
    } else {
      expect(stdout).not.toContain('uwsgi_ssl');
    }
    const tested = nginxTest(prefix, stdout);
    expect(tested.output).toContain('test is successful');
    expect(tested.code).toBe(0);
  });

  it('refuses what nginx could not use, naming the option', () => {
    for (const [args, option] of [
      [['--socket', 'fd://3'], '--socket'],
      [['--socket', 'nonsense'], 'nonsense'],
      [['--websocket', 'ws'], '--websocket'],
      [['--websocket', '/'], '--websocket'],
      [['--server-name', 'a;b'], '--server-name'],
      [['--listen', '80; evil'], '--listen'],
      [['--max-body-size', '12q'], '--max-body-size'],
      [['--ssl'], '--ssl'],
      [['--upstream', 'unix:/run/a.sock'], '--upstream'],
      [['--upstream', '10.0.0.1'], '--upstream'],
      [['--upstream', ','], '--upstream'],
      [['--upstream', '10.0.0.1:3031', '--upstream-name', 'a b'], '--upstream-name'],
      [['--upstream', '10.0.0.1:3031', '--max-fails', 'x'], '--max-fails'],
      [['--upstream', '10.0.0.1:3031', '--ssl', '--ssl-certificate', '/a b.crt'], '--ssl-certificate'],
      [['--upstream', '10.0.0.1:3031', '--ssl', '--ssl-name', 'a;b'], '--ssl-name'],
    ] as const) {
      const { code, stderr, stdout } = generate([...args]);
      expect(code, args.join(' ')).toBe(2);
      expect(stderr).toContain(option);
      expect(stdout).toBe('');
    }
  });

  it('writes sizes as nginx does', () => {
    expect([0, 1000, 4096, 10 * 1024 * 1024, 3 * 1024 ** 3].map(nginxSize)).toEqual(['0', '1000', '4k', '10m', '3g']);
  });

  it('serves requests and WebSockets through an nginx started with the printed block', async () => {
    const sock = join(dir, 'app.sock');
    const server = await startServer({ app: 'ws-server.mjs', socket: `unix:${sock}`, args: ['--access-log'] });
    const prefix = mkdtempSync(join(dir, 'run-'));
    let nginx: NginxProcess | undefined;
    try {
      nginx = await startNginx({
        prefix,
        transport: 'unix',
        upstream: sock,
        site: (listen) => {
          const { code, stdout } = generate(['--socket', `unix:${sock}`, '--listen', `127.0.0.1:${listen}`, '--server-name', 'localhost', '--websocket', '/ws/']);
          expect(code).toBe(0);
          return stdout;
        },
      });
      const port = nginx.port;
      expect(nginx, 'nginx started with the printed configuration').toBeDefined();

      const res = await httpRequest(`http://127.0.0.1:${port}/through/nginx?q=1`);
      expect(res.status).toBe(200);
      expect(res.body.toString()).toBe('plain /through/nginx?q=1');
      await server.waitForLog((line) => line.msg === 'request' && line.uri === '/through/nginx?q=1' && line.remote === '127.0.0.1');

      const ws = new WebSocket(`ws://127.0.0.1:${port}/ws/gen`);
      const [first] = (await once(ws, 'message')) as [Buffer];
      expect(JSON.parse(first.toString())).toMatchObject({ url: '/ws/gen' });
      const echoed = once(ws, 'message') as Promise<[Buffer]>;
      ws.send('through the generated block');
      expect((await echoed)[0].toString()).toBe('through the generated block');
      ws.close();
      await once(ws, 'close');
    } finally {
      await nginx?.stop();
      await server.stop();
    }
  });
});


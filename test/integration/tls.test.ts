// --ssl-socket through a real nginx (`uwsgi_pass suwsgi://`, client certificate, the block `node-uwsgi nginx
// --upstream --ssl` prints), with certificates made by the README's own openssl commands ("Several hosts"), on the
// JavaScript accept path and with --accept native (the plain socket native, the TLS one in JavaScript).
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { encodeRequest } from '../../src/protocol/encoder.js';
import {
  CLI, ROOT, freePort, httpRequest, launchServer, requireNginx, seededBytes, sha256, startNginx, startServer,
  type NginxProcess, type ServerProcess,
} from './nginx.js';

const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

/** The ```sh blocks of the README's "Several hosts" section, in order. */
function severalHostsBlocks(): string[] {
  const start = readme.indexOf('\n## Several hosts\n');
  expect(start).toBeGreaterThan(-1);
  const end = readme.indexOf('\n## ', start + 5);
  const section = readme.slice(start, end);
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
}

function bash(script: string, cwd: string): void {
  execFileSync('bash', ['-euo', 'pipefail', '-c', script], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function serialOf(file: string): string {
  return new X509Certificate(readFileSync(file)).serialNumber;
}

const VARS = ['REQUEST_METHOD', 'GET', 'REQUEST_URI', '/direct', 'PATH_INFO', '/direct', 'QUERY_STRING', '', 'SERVER_NAME', 'localhost', 'SERVER_PORT', '80', 'SERVER_PROTOCOL', 'HTTP/1.1', 'REMOTE_ADDR', '127.0.0.1'];

describe('--ssl-socket', () => {
  let dir: string;
  let pki: string;
  let other: string;
  beforeAll(() => {
    requireNginx();
    dir = mkdtempSync(join(tmpdir(), 'nu-tls-'));
    pki = join(dir, 'pki');
    other = join(dir, 'other');
    mkdirSync(pki);
    mkdirSync(other);
    const [certificates] = severalHostsBlocks();
    // The README's commands as written; a second run elsewhere is "another CA".
    bash(certificates!, pki);
    bash(certificates!, other);
  }, 60_000);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const file = (name: string): string => join(pki, name);

  /** A direct TLS connection to the uwsgi socket: resolves with the server certificate's serial and the raw answer. */
  function direct(port: number, opts: tls.ConnectionOptions = {}, body?: Buffer): Promise<{ serial?: string; answer: string; error?: string }> {
    return new Promise((resolve) => {
      let serial: string | undefined;
      let answer = '';
      const socket = tls.connect({ port, host: '127.0.0.1', servername: 'node-uwsgi', ca: readFileSync(file('ca.crt')), cert: readFileSync(file('client.crt')), key: readFileSync(file('client.key')), ...opts }, () => {
        serial = socket.getPeerCertificate().serialNumber;
        socket.write(encodeRequest(VARS, body));
      });
      socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      socket.on('error', (err: NodeJS.ErrnoException) => resolve({ serial, answer, error: err.code }));
      socket.on('close', () => resolve({ serial, answer }));
    });
  }

  /** nginx with the block `node-uwsgi nginx --upstream ... --ssl` prints for the TLS socket on `tlsPort`. */
  function generatedNginx(prefix: string, tlsPort: number, extra: string[] = []): Promise<NginxProcess> {
    return startNginx({
      prefix,
      transport: 'tcp',
      upstream: `127.0.0.1:${tlsPort}`,
      site: (listen) => {
        const site = spawnSync(process.execPath, [
          CLI, 'nginx', '--upstream', `127.0.0.1:${tlsPort}`, '--ssl', '--listen', `127.0.0.1:${listen}`, '--server-name', 'localhost', ...extra,
          '--ssl-certificate', file('client.crt'), '--ssl-certificate-key', file('client.key'), '--ssl-trusted-certificate', file('ca.crt'),
        ], { encoding: 'utf8' });
        expect(site.stderr).toBe('');
        expect(site.stdout).toContain('uwsgi_pass suwsgi://node_uwsgi;');
        return site.stdout;
      },
    });
  }

  describe.each(['js', 'native'] as const)('with --accept %s', (accept) => {
    let server: ServerProcess;
    let nginx: NginxProcess | undefined;
    let tlsPort = 0;
    let port = 0;
    let prefix: string;
    const url = (path: string): string => `http://127.0.0.1:${port}${path}`;

    beforeAll(async () => {
      prefix = mkdtempSync(join(dir, `${accept}-`));
      // A copy of app1's files per run: the reload test replaces them.
      for (const name of ['app1.crt', 'app1.key']) writeFileSync(join(prefix, name), readFileSync(file(name)));
      for (let attempt = 0; attempt < 3 && server === undefined; attempt++) {
        tlsPort = await freePort();
        try {
          server = await startServer({
            app: 'echo-vars.mjs',
            socket: `unix:${join(prefix, 'plain.sock')}`,
            args: ['--ssl-socket', `127.0.0.1:${tlsPort},${join(prefix, 'app1.crt')},${join(prefix, 'app1.key')},${file('ca.crt')}`, '--accept', accept, '--workers', '2', '--metrics', `unix:${join(prefix, 'metrics.sock')}`],
          });
        } catch (err) {
          if (!/ERR_SOCKET_IN_USE|EADDRINUSE/.test((err as Error).message)) throw err;
        }
      }
      const ready = await server.waitForLog((l) => l.msg === 'ready');
      expect(ready.sockets).toEqual([`unix:${join(prefix, 'plain.sock')}`, `127.0.0.1:${tlsPort}`]);
      // --accept native serves the plain socket natively, the TLS one in JavaScript.
      if (accept === 'native') expect(server.logs.find((l) => l.msg === 'accept: native')).toMatchObject({ sockets: 1 });
      nginx = await generatedNginx(prefix, tlsPort);
      port = nginx.port;
      expect(nginx, 'nginx started with the generated upstream').toBeDefined();
    }, 60_000);

    afterAll(async () => {
      await nginx?.stop();
      await server?.stop();
    });

    it('serves a GET and a 1 MiB POST through nginx over TLS, with nginx\'s scheme', async () => {
      const get = await httpRequest(url('/over/tls?x=1'));
      expect(get.status, get.body.toString()).toBe(200);
      const vars = JSON.parse(get.body.toString()).vars as Record<string, string>;
      expect(vars.REQUEST_URI).toBe('/over/tls?x=1');
      // The client spoke plain HTTP to nginx: the app sees that, not the TLS of the hop behind it.
      expect(vars.HTTPS ?? '').not.toBe('on');
      expect(vars.REMOTE_ADDR).toBe('127.0.0.1');

      const body = seededBytes(13, 1024 * 1024);
      const post = await httpRequest(url('/upload'), { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
      expect(post.status).toBe(200);
      expect(JSON.parse(post.body.toString()).body).toEqual({ length: body.length, sha256: sha256(body) });
      const plain = readFileSync(join(prefix, 'error.log'), 'utf8');
      expect(plain).not.toMatch(/\[(error|crit)\]/);
    });

    it('refuses a peer without a client certificate, or with one from another CA, and logs the cause', async () => {
      const none = await direct(tlsPort, { cert: undefined, key: undefined });
      expect(none.answer).toBe('');
      const noCert = await server.waitForLog((l) => l.code === 'ERR_TLS_HANDSHAKE' && String(l.cause).includes('no client certificate'));
      expect(noCert).toMatchObject({ peer: '127.0.0.1', address: `127.0.0.1:${tlsPort}`, tlsError: 'ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE' });

      const foreign = await direct(tlsPort, { cert: readFileSync(join(other, 'client.crt')), key: readFileSync(join(other, 'client.key')) });
      expect(foreign.answer).toBe('');
      const refused = await server.waitForLog((l) => l.code === 'ERR_TLS_HANDSHAKE' && String(l.cause).includes('client certificate was refused'));
      expect(refused).toMatchObject({ peer: '127.0.0.1', tlsError: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' });

      // Mutual TLS done right is served.
      const good = await direct(tlsPort);
      expect(good.answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(good.serial).toBe(serialOf(join(prefix, 'app1.crt')));
      expect(server.alive()).toBe(true);
    });

    it('logs plain uwsgi bytes sent to the TLS socket, and a client that offers only TLS 1.1', async () => {
      await new Promise<void>((resolve) => {
        const socket = net.connect(tlsPort, '127.0.0.1', () => socket.write(encodeRequest(VARS)));
        socket.on('error', () => {});
        socket.on('close', () => resolve());
      });
      const line = await server.waitForLog((l) => l.code === 'ERR_TLS_HANDSHAKE' && String(l.cause).includes('does not speak TLS'));
      expect(line.peer).toBe('127.0.0.1');
      // A real TLS 1.1 ClientHello (OpenSSL 3 offers it only at security level 0).
      const old = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${tlsPort}`, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], { input: '', encoding: 'utf8', timeout: 10_000 });
      expect(`${old.stdout}${old.stderr}`).toMatch(/alert protocol version/);
      const version = await server.waitForLog((l) => l.code === 'ERR_TLS_HANDSHAKE' && String(l.cause).includes('TLS 1.2 or 1.3 is required'));
      expect(version).toMatchObject({ peer: '127.0.0.1', tlsError: 'ERR_SSL_UNSUPPORTED_PROTOCOL' });
      const handshakeWarnings = server.logs.filter((l) => l.code === 'ERR_TLS_HANDSHAKE');
      expect(handshakeWarnings).toHaveLength(4);
      // Counted too, over both workers, on the heartbeats.
      let failures: number | undefined;
      for (let i = 0; i < 60 && failures !== 4; i++) {
        const text = await new Promise<string>((resolve, reject) => {
          http.get({ socketPath: join(prefix, 'metrics.sock'), path: '/metrics' }, (res) => {
            let body = '';
            res.setEncoding('utf8').on('data', (c: string) => (body += c)).on('end', () => resolve(body));
          }).on('error', reject);
        });
        failures = Number(/^nodeuwsgi_tls_handshake_failures_total (\d+)$/m.exec(text)?.[1]);
        if (failures !== 4) await new Promise((resolve) => setTimeout(resolve, 100));
      }
      expect(failures).toBe(4);
      expect((await httpRequest(url('/still'))).status).toBe(200);
    });

    it('takes a renewed certificate at SIGHUP for new connections, keeps the old one for a request in flight and after a broken file', async () => {
      const oldSerial = serialOf(join(prefix, 'app1.crt'));
      // A request in flight: head and half of its body sent over a connection made with the old certificate.
      const body = seededBytes(5, 200_000);
      const head = encodeRequest(VARS.map((v) => (v === 'GET' ? 'POST' : v)).concat(['CONTENT_LENGTH', String(body.length)]));
      let answer = '';
      const inflight = tls.connect({ port: tlsPort, host: '127.0.0.1', servername: 'node-uwsgi', ca: readFileSync(file('ca.crt')), cert: readFileSync(file('client.crt')), key: readFileSync(file('client.key')) });
      await once(inflight, 'secureConnect');
      const inflightSerial = inflight.getPeerCertificate().serialNumber;
      inflight.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      const closed = once(inflight, 'close');
      inflight.write(Buffer.concat([head, body.subarray(0, 100_000)]));

      // The README's renewal command, in this run's copy.
      const [, , renew] = severalHostsBlocks();
      for (const name of ['app1.csr', 'app1.ext']) writeFileSync(join(prefix, name), readFileSync(file(name)));
      for (const name of ['ca.crt', 'ca.key', 'ca.srl']) writeFileSync(join(prefix, name), readFileSync(file(name)));
      bash(renew!, prefix);
      const newSerial = serialOf(join(prefix, 'app1.crt'));
      expect(newSerial).not.toBe(oldSerial);
      server.child.kill('SIGHUP');
      await server.waitForLog((l) => l.msg === 'TLS certificates reloaded' && l.serial === newSerial);
      let fresh = await direct(tlsPort);
      for (let i = 0; i < 40 && fresh.serial !== newSerial; i++) fresh = await direct(tlsPort);
      expect(fresh.serial).toBe(newSerial);
      expect(fresh.answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);

      // The request in flight finishes on its own connection, with the certificate it began with.
      inflight.write(body.subarray(100_000));
      await closed;
      expect(inflightSerial).toBe(oldSerial);
      expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      expect(answer).toContain(sha256(body));

      // A broken certificate file: logged, the renewed certificate stays, requests go on.
      writeFileSync(join(prefix, 'app1.crt'), 'not a certificate\n');
      server.child.kill('SIGHUP');
      const kept = await server.waitForLog((l) => l.code === 'ERR_TLS_RELOAD');
      expect(kept).toMatchObject({ cause: 'ERR_TLS_FILE', serial: newSerial });
      expect(String(kept.msg)).toContain(join(prefix, 'app1.crt'));
      for (let i = 0; i < 4; i++) {
        const after = await direct(tlsPort);
        expect(after.serial).toBe(newSerial);
      }
      expect((await httpRequest(url('/after/broken'))).status).toBe(200);
      writeFileSync(join(prefix, 'app1.crt'), readFileSync(file('app1.crt')));
    }, 60_000);
  });

  it('tunnels a WebSocket through nginx over TLS (the generated block with --websocket)', async () => {
    const tlsPort = await freePort();
    const prefix = mkdtempSync(join(dir, 'ws-'));
    const server = await startServer({
      app: 'ws-server.mjs',
      socket: `unix:${join(prefix, 'plain.sock')}`,
      args: ['--ssl-socket', `127.0.0.1:${tlsPort},${file('app1.crt')},${file('app1.key')},${file('ca.crt')}`],
    });
    await server.waitForLog((l) => l.msg === 'ready');
    let nginx: NginxProcess | undefined;
    try {
      nginx = await generatedNginx(prefix, tlsPort, ['--websocket', '/ws/']);
      expect(nginx).toBeDefined();
      const ws = new WebSocket(`ws://127.0.0.1:${nginx.port}/ws/over-tls`);
      const [first] = (await once(ws, 'message')) as [Buffer];
      expect(JSON.parse(first.toString())).toMatchObject({ url: '/ws/over-tls', remoteAddress: '127.0.0.1' });
      const big = seededBytes(3, 300_000);
      const echoed = once(ws, 'message') as Promise<[Buffer]>;
      ws.send(big);
      expect(sha256((await echoed)[0])).toBe(sha256(big));
      ws.close();
      await once(ws, 'close');
    } finally {
      await nginx?.stop();
      await server.stop();
    }
  });

  it('gives a node app nginx\'s scheme and client address, not the TLS hop\'s', async () => {
    let server: ServerProcess | undefined;
    const tlsPort = await freePort();
    try {
      server = await startServer({
        app: 'node.mjs',
        socket: `unix:${join(dir, 'node-plain.sock')}`,
        args: ['--ssl-socket', `127.0.0.1:${tlsPort},${file('app1.crt')},${file('app1.key')},${file('ca.crt')}`],
      });
      // startServer may have seen the plain Unix socket accept first; the TLS socket listens by 'ready'.
      await server.waitForLog((l) => l.msg === 'ready');
      const ask = async (https: boolean): Promise<Record<string, unknown>> => {
        const vars = ['REQUEST_METHOD', 'GET', 'REQUEST_URI', '/hello', 'PATH_INFO', '/hello', 'QUERY_STRING', '', 'SERVER_NAME', 'localhost', 'SERVER_PORT', '80',
          'SERVER_PROTOCOL', 'HTTP/1.1', 'REMOTE_ADDR', '203.0.113.7', 'REMOTE_PORT', '40000', 'HTTP_HOST', 'example.com', ...(https ? ['HTTPS', 'on'] : [])];
        const answer = await new Promise<string>((resolve, reject) => {
          let raw = '';
          const socket = tls.connect({ port: tlsPort, host: '127.0.0.1', servername: 'node-uwsgi', ca: readFileSync(file('ca.crt')), cert: readFileSync(file('client.crt')), key: readFileSync(file('client.key')) }, () =>
            socket.write(encodeRequest(vars)),
          );
          socket.on('data', (d: Buffer) => (raw += d.toString('latin1')));
          socket.on('error', reject);
          socket.on('close', () => resolve(raw));
        });
        return JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
      };
      expect(await ask(false)).toMatchObject({ scheme: 'http', remoteAddress: '203.0.113.7', remotePort: 40000 });
      expect(await ask(true)).toMatchObject({ scheme: 'https', remoteAddress: '203.0.113.7' });
    } finally {
      await server?.stop();
    }
  });

  it('takes the README\'s host command line, and prints the nginx block the README shows for its nginx command', () => {
    const [, host, , nginxCommand] = severalHostsBlocks();
    const words = (block: string): string[] => block.replace(/\\\n/g, ' ').split(/\s+/).filter((w) => w !== '');
    const hostArgs = words(host!);
    expect(hostArgs.slice(0, 2)).toEqual(['node-uwsgi', './app.js']);
    const printed = spawnSync(process.execPath, [CLI, ...hostArgs.slice(1), '--print-config'], { encoding: 'utf8' });
    expect(printed.status, printed.stderr).toBe(0);
    expect(printed.stdout).toMatch(/^ssl-socket = \["10\.0\.0\.11:3031,\/etc\/node-uwsgi\/server\.crt,\/etc\/node-uwsgi\/server\.key,\/etc\/node-uwsgi\/ca\.crt"\]/m);
    // No plain socket besides the TLS one.
    expect(printed.stdout).toMatch(/^socket = \[\] +# default$/m);

    const nginxArgs = words(nginxCommand!);
    expect(nginxArgs.slice(0, 3)).toEqual(['npx', 'node-uwsgi', 'nginx']);
    const generated = spawnSync(process.execPath, [CLI, ...nginxArgs.slice(2, nginxArgs.indexOf('>'))], { encoding: 'utf8' });
    expect(generated.status, generated.stderr).toBe(0);
    const start = readme.indexOf('\n## Several hosts\n');
    const shown = /```nginx\n([\s\S]*?)```/.exec(readme.slice(start))![1]!;
    const lines = shown.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#') && l !== '}' && !l.startsWith('include'));
    const out = generated.stdout.split('\n').map((l) => l.trim());
    for (const line of lines) expect(out, line).toContain(line);
  });

  it('refuses to start with a missing key or a key that is not the certificate\'s, naming the file, or beyond loopback without --allow-from', async () => {
    const cases: Array<[string, string, RegExp]> = [
      [join(pki, 'missing.key'), 'ERR_TLS_FILE', /missing\.key/],
      [join(pki, 'app2.key'), 'ERR_TLS_KEY_MISMATCH', /app2\.key/],
    ];
    for (const [key, code, names] of cases) {
      const launched = launchServer({
        app: 'echo-vars.mjs',
        socket: `unix:${join(dir, 'never.sock')}`,
        args: ['--ssl-socket', `127.0.0.1:${await freePort()},${join(pki, 'app1.crt')},${key},${join(pki, 'ca.crt')}`],
      });
      expect(await launched.exited).toBe(1);
      expect(launched.stderr()).toMatch(names);
      expect(launched.logs.some((l) => l.code === code)).toBe(true);
    }
    // A TLS socket beyond loopback needs --allow-from as a plain one does: TLS authenticates, the list admits.
    const open = launchServer({
      app: 'echo-vars.mjs',
      socket: `unix:${join(dir, 'never.sock')}`,
      args: ['--ssl-socket', `0.0.0.0:${await freePort()},${join(pki, 'app1.crt')},${join(pki, 'app1.key')},${join(pki, 'ca.crt')}`],
    });
    expect(await open.exited).toBe(1);
    expect(open.logs.some((l) => l.code === 'ERR_ALLOW_FROM_REQUIRED')).toBe(true);
  });

  it('warns at start about a certificate that expires soon, with its notAfter', async () => {
    const short = join(dir, 'short');
    mkdirSync(short);
    bash(
      `openssl req -newkey rsa:2048 -nodes -subj /CN=short -keyout short.key -out short.csr 2>/dev/null
       openssl x509 -req -in short.csr -CA ${join(pki, 'ca.crt')} -CAkey ${join(pki, 'ca.key')} -CAcreateserial -CAserial short.srl -days 3 -out short.crt 2>/dev/null`,
      short,
    );
    const server = await startServer({
      app: 'echo-vars.mjs',
      socket: `unix:${join(short, 'plain.sock')}`,
      args: ['--ssl-socket', `127.0.0.1:${await freePort()},${join(short, 'short.crt')},${join(short, 'short.key')}`],
    });
    try {
      const warning = await server.waitForLog((l) => l.code === 'ERR_TLS_CERT_EXPIRING');
      expect(warning.file).toBe(join(short, 'short.crt'));
      expect(Date.parse(String(warning.notAfter)) - Date.now()).toBeLessThan(4 * 24 * 3600 * 1000);
    } finally {
      await server.stop();
    }
  });
});

// A stop that resets nothing (README "Deploys that lose nothing"): the addon's refuseNew (no new TCP handshakes)
// and acceptAll, and a server's close(serveQueue) on both accept paths, with connections really queued in the
// kernel: a child process connects and sends its requests while this process's event loop is blocked.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { ExchangeHandler } from '../../src/exchange.js';
import { DEFAULT_LIMITS } from '../../src/protocol/decoder.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { loadNative } from '../../src/server/native.js';
import { createServer } from '../../src/server/server.js';
import { loadTlsMaterial } from '../../src/server/tls.js';
import { useCleanups } from '../helpers/cleanup.js';
import { freePort } from './nginx.js';
import { memoryLogger, nginxVars } from '../helpers/serve.js';

const addon = loadNative().addon;
if (addon === undefined) throw new Error(`the native addon is needed here (npm run build): ${loadNative().reason}`);
const { defer, tempDir } = useCleanups('nu-stop-');
const QUEUED = 6;

const hello: ExchangeHandler = async (ex) => {
  ex.response.writeHead(200, 'OK', [['Content-Type', 'text/plain']]);
  ex.response.write('hello');
  ex.response.end();
};

/** A child process opens `count` connections to 127.0.0.1:`port`, each sending one request; resolves with what
 * each got: the status line's code, or the error (ECONNRESET: reset in the queue). */
function queuedClients(port: number, count: number, tls = false): { connected: Promise<void>; results: Promise<string[]>; marker: string } {
  const marker = join(mkdtempSync(join(tmpdir(), 'stop-queue-')), 'connected');
  const script = `const net = require('node:net');
const request = Buffer.from(process.env.REQUEST, 'hex');
const results = []; let connected = 0;
for (let i = 0; i < ${count}; i++) {
  const chunks = [];
  const s = ${tls ? `require('node:tls').connect({ host: '127.0.0.1', port: ${port}, rejectUnauthorized: false }` : `net.connect({ host: '127.0.0.1', port: ${port} }`}, () => { s.write(request); if (++connected === ${count}) { require('node:fs').writeFileSync(process.env.MARKER, ''); console.log('connected'); } });
  s.on('data', (c) => chunks.push(c));
  s.on('error', (e) => (s.failed = e.code));
  s.on('close', () => { results.push(s.failed ?? (Buffer.concat(chunks).toString('latin1').split(' ')[1] || 'closed')); if (results.length === ${count}) console.log(JSON.stringify(results)); });
}`;
  const child = spawn(process.execPath, ['-e', script], { env: { ...process.env, MARKER: marker, REQUEST: encodeRequest(nginxVars()).toString('hex') }, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  let onConnected: () => void = () => {};
  const connected = new Promise<void>((resolve) => (onConnected = resolve));
  const results = new Promise<string[]>((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (c: string) => {
      out += c;
      if (out.includes('connected\n')) onConnected();
    });
    child.on('exit', () => resolve(JSON.parse(out.trim().split('\n').pop()!) as string[]));
  });
  return { connected, results, marker };
}

/** Blocks this event loop until the child says all its connections are made (they queue in the kernel meanwhile). */
function blockUntilQueued(clients: { connected: Promise<void>; marker: string }): Promise<void> {
  // A synchronous wait: nothing in this process accepts during it. The child writes the marker once all its
  // connections are made (up to 10 s on a loaded machine).
  const until = Date.now() + 10_000;
  while (!existsSync(clients.marker) && Date.now() < until) spawnSync('sleep', ['0.05']);
  return clients.connected;
}

describe.each(['native', 'js'] as const)('close(serveQueue) on the %s accept path', (path) => {
  async function serverOn(port: number) {
    const fd = addon!.bindTcp('127.0.0.1', port, 64);
    const server = createServer({
      handler: hello,
      log: memoryLogger().log,
      limits: DEFAULT_LIMITS,
      shared: true,
      ...(path === 'native' ? { native: addon, nativeFds: [fd] } : { acceptAll: (listening: number) => addon!.acceptAll!(listening) }),
    });
    await server.listen([{ kind: 'fd', fd }]);
    defer(() => server.close());
    return server;
  }

  it('serves what is queued before its close, so that no queued request is reset', async () => {
    const port = await freePort();
    const server = await serverOn(port);
    const clients = queuedClients(port, QUEUED);
    const connected = blockUntilQueued(clients);
    const closed = server.close(true);
    await connected;
    await closed;
    expect(await clients.results).toEqual(Array(QUEUED).fill('200'));
  });

  it('without serveQueue (the master keeps the socket) its close leaves the queue: here, the last close, it is reset', async () => {
    const port = await freePort();
    const server = await serverOn(port);
    const clients = queuedClients(port, QUEUED);
    const connected = blockUntilQueued(clients);
    const closed = server.close();
    await connected;
    await closed;
    expect(await clients.results).toEqual(Array(QUEUED).fill('ECONNRESET'));
  });
});

describe('close(serveQueue) on a --ssl-socket', () => {
  it('serves TLS connections queued before its close, handshakes included (in flight from the accept on)', async () => {
    const dir = tempDir();
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-keyout', 'key.pem', '-out', 'cert.pem'], { cwd: dir, stdio: 'ignore' });
    const port = await freePort();
    const fd = addon!.bindTcp('127.0.0.1', port, 64);
    const address = { kind: 'fd', fd } as const;
    const material = loadTlsMaterial({ address, cert: join(dir, 'cert.pem'), key: join(dir, 'key.pem') });
    const server = createServer({
      handler: hello,
      log: memoryLogger().log,
      limits: DEFAULT_LIMITS,
      shared: true,
      acceptAll: (listening: number) => addon!.acceptAll!(listening),
    });
    await server.listenTls([{ address, material, mutual: false }]);
    defer(() => server.close());
    const clients = queuedClients(port, QUEUED, true);
    const connected = blockUntilQueued(clients);
    const closed = server.close(true);
    await connected;
    await closed;
    // What a worker does next is exit: nothing may still be shaking hands.
    expect(server.connections).toBe(0);
    expect(await clients.results).toEqual(Array(QUEUED).fill('200'));
  });
});

describe('refuseNew', () => {
  it('stops a TCP socket completing handshakes (the connect gets no answer, then is refused once it closes); what is queued stays', async () => {
    const port = await freePort();
    const fd = addon.bindTcp('127.0.0.1', port, 64);
    let open = true;
    defer(() => open && closeSync(fd));
    const before = net.connect({ host: '127.0.0.1', port });
    defer(() => before.destroy());
    await new Promise((resolve) => before.once('connect', resolve));
    expect(addon.refuseNew!(fd)).toBe(0);
    const after = net.connect({ host: '127.0.0.1', port });
    defer(() => after.destroy());
    let outcome = 'pending';
    after.once('connect', () => (outcome = 'connected')).once('error', (err: NodeJS.ErrnoException) => (outcome = err.code ?? err.message));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(outcome).toBe('pending');
    const accepted = addon.acceptAll!(fd);
    expect(accepted).toHaveLength(1);
    for (const conn of accepted) closeSync(conn);
    closeSync(fd);
    open = false;
    // The SYN is sent again after about a second and meets a closed port.
    await new Promise((resolve) => after.once('error', resolve));
    expect(outcome).toBe('ECONNREFUSED');
  });

  it('is no error on a Unix socket, and changes nothing there (-EINVAL: removing the file stops new connects)', () => {
    const dir = tempDir();
    const fd = addon.bindUnix(`${dir}/s.sock`, 16);
    defer(() => closeSync(fd));
    expect(addon.refuseNew!(fd)).toBe(-22);
  });
});

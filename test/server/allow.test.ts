// TCP exposure (issue 5): a non-loopback TCP socket needs --allow-from; peers not on the list are closed unserved
// and logged with their address; loopback is always allowed. Real sockets, the real CLI for the start-up check.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { isUwsgiError } from '../../src/errors.js';
import type { ExchangeHandler } from '../../src/exchange.js';
import { OPTIONS, parseSocketAddress } from '../../src/options.js';
import { buildAllowList, isAllowed, requireAllowList } from '../../src/server/allow.js';
import { DEFAULT_LIMITS } from '../../src/protocol/decoder.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { createServer, type UwsgiServer } from '../../src/server/server.js';
import { createHttpListener } from '../../src/server/http.js';
import { memoryLogger, nginxVars, parseRawResponse } from '../helpers/serve.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const APP = fileURLToPath(new URL('../fixtures/apps/cli/hello.mjs', import.meta.url));
const allowSpec = OPTIONS.find((o) => o.name === 'allowFrom')!;

const hello: ExchangeHandler = async (ex) => {
  ex.response.writeHead(200, undefined, [['Content-Type', 'text/plain']]);
  ex.response.write('hello');
  ex.response.end();
};

/** This machine's first non-loopback IPv4 address: a peer address that is not loopback. */
function externalAddress(): string | undefined {
  for (const list of Object.values(networkInterfaces())) {
    for (const entry of list ?? []) if (entry.family === 'IPv4' && !entry.internal) return entry.address;
  }
  return undefined;
}

function request(host: string, port: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const socket = net.connect({ host, port }, () => socket.write(encodeRequest(nginxVars())));
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', () => {});
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}

let server: UwsgiServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function serve(allowFrom: string[]): Promise<{ port: number; records: Array<Record<string, unknown>> }> {
  const { log, records } = memoryLogger();
  server = createServer({ handler: hello, log, limits: DEFAULT_LIMITS, allowList: buildAllowList(allowFrom) });
  await server.listen([{ kind: 'tcp', host: '0.0.0.0', port: 0 }]);
  const port = (server.servers[0]!.address() as net.AddressInfo).port;
  return { port, records };
}

describe('--allow-from', () => {
  it('parses addresses and CIDRs, repeatable and comma-separated, and rejects anything else by name', () => {
    expect(allowSpec.parse('10.0.0.0/8, 192.0.2.7', undefined)).toEqual(['10.0.0.0/8', '192.0.2.7']);
    expect(allowSpec.parse('fd00::/64', ['10.0.0.1'])).toEqual(['10.0.0.1', 'fd00::/64']);
    for (const bad of ['10.0.0.0/33', 'example.com', '10.0.0/8', '::1/129', '10.0.0.1/x']) {
      expect(() => allowSpec.parse(bad, undefined), bad).toThrow(/--allow-from/);
    }
  });

  it('checks peers against the list, loopback always allowed, IPv4-mapped IPv6 included', () => {
    const list = buildAllowList(['10.1.0.0/16', 'fd00::2']);
    expect(isAllowed(list, '127.0.0.1')).toBe(true);
    expect(isAllowed(list, '::1')).toBe(true);
    expect(isAllowed(list, '::ffff:127.0.0.1')).toBe(true);
    expect(isAllowed(list, '10.1.200.3')).toBe(true);
    expect(isAllowed(list, '::ffff:10.1.0.9')).toBe(true);
    expect(isAllowed(list, 'fd00::2')).toBe(true);
    expect(isAllowed(list, '10.2.0.1')).toBe(false);
    expect(isAllowed(list, 'fd00::3')).toBe(false);
    expect(isAllowed(list, undefined)).toBe(false);
  });

  it('is required for a non-loopback TCP socket and not for loopback or Unix sockets', () => {
    for (const ok of ['127.0.0.1:3031', '[::1]:3031', 'localhost:3031', 'unix:/run/app.sock']) {
      expect(() => requireAllowList([parseSocketAddress(ok)], undefined), ok).not.toThrow();
    }
    for (const exposed of ['0.0.0.0:3031', '[::]:3031', '192.0.2.2:3031']) {
      let caught: unknown;
      try {
        requireAllowList([parseSocketAddress(exposed)], undefined);
      } catch (err) {
        caught = err;
      }
      expect(isUwsgiError(caught, 'ERR_ALLOW_FROM_REQUIRED'), exposed).toBe(true);
      expect(() => requireAllowList([parseSocketAddress(exposed)], ['10.0.0.0/8'])).not.toThrow();
    }
  });

  it('the CLI refuses to start on 0.0.0.0 without --allow-from, naming the option', () => {
    const run = spawnSync(process.execPath, [CLI, APP, '--socket', '0.0.0.0:0'], { encoding: 'utf8', timeout: 15_000 });
    expect(run.status).toBe(1);
    expect(run.stdout).toContain('ERR_ALLOW_FROM_REQUIRED');
    expect(run.stderr).toContain('--allow-from');
  });

  it('the CLI refuses --http on 0.0.0.0 without --allow-from too: it is no edge server either', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nu-allow-'));
    try {
      const run = spawnSync(process.execPath, [CLI, APP, '--socket', `unix:${join(dir, 'a.sock')}`, '--http', '0.0.0.0:0'], {
        encoding: 'utf8',
        timeout: 15_000,
      });
      expect(run.status).toBe(1);
      expect(run.stdout).toContain('ERR_ALLOW_FROM_REQUIRED');
      expect(run.stderr).toContain('0.0.0.0:0');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('--http listeners close peers off the list too; loopback is served', async () => {
    const external = externalAddress();
    expect(external, 'this test needs a non-loopback IPv4 interface to connect from').toBeDefined();
    const { log, records } = memoryLogger();
    const listener = createHttpListener({ handler: hello, log, maxBodySize: 0, allowList: buildAllowList(['10.255.0.0/16']) });
    await listener.listen([{ kind: 'tcp', host: '0.0.0.0', port: 0 }]);
    try {
      const port = (listener.servers[0]!.address() as net.AddressInfo).port;
      expect(await (await fetch(`http://127.0.0.1:${port}/`)).text()).toBe('hello');
      await expect(fetch(`http://${external}:${port}/`)).rejects.toThrow();
      expect(records.find((r) => r.code === 'ERR_PEER_NOT_ALLOWED')?.peer).toBe(external);
    } finally {
      await listener.close();
    }
  });

  it('closes a peer that is not on the list unserved and logs its address; loopback is served', async () => {
    const external = externalAddress();
    expect(external, 'this test needs a non-loopback IPv4 interface to connect from').toBeDefined();
    const { port, records } = await serve(['10.255.0.0/16']);
    expect(parseRawResponse(await request('127.0.0.1', port)).status).toBe(200);
    const refused = await request(external!, port);
    expect(refused.length).toBe(0);
    const line = records.find((r) => r.code === 'ERR_PEER_NOT_ALLOWED');
    expect(line?.peer).toBe(external);
    expect(parseRawResponse(await request('127.0.0.1', port)).status).toBe(200);
  });

  it('serves a peer that the list names', async () => {
    const external = externalAddress();
    expect(external).toBeDefined();
    const { port, records } = await serve([`${external}`]);
    expect(parseRawResponse(await request(external!, port)).status).toBe(200);
    expect(records.some((r) => r.code === 'ERR_PEER_NOT_ALLOWED')).toBe(false);
  });
});


describe('Unix socket permissions', () => {
  it('creates the socket without access for others by default, even under umask 000', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nu-perm-'));
    const path = join(dir, 'app.sock');
    const child = spawn('sh', ['-c', `umask 000; exec "${process.execPath}" "${CLI}" "${APP}" --socket unix:${path}`], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      await new Promise<void>((resolve, reject) => {
        let out = '';
        child.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('"msg":"ready"')) resolve();
        });
        child.once('exit', (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      const mode = statSync(path).mode & 0o777;
      expect(mode & 0o007).toBe(0);
      expect(mode & 0o660).toBe(0o660);
    } finally {
      child.kill('SIGTERM');
      await new Promise((resolve) => child.once('exit', resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

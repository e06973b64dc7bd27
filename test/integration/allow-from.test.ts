// --allow-from on real peers that are not loopback (issue 5): connections from this machine's own non-loopback
// address are closed unserved and logged with it, unless the list names it; loopback is always served. Needs a
// network interface beyond loopback, hence here; the list's parsing and the start-up checks are
// test/server/allow.test.ts.
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import type { ExchangeHandler } from '../../src/exchange.js';
import { DEFAULT_LIMITS } from '../../src/protocol/decoder.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { buildAllowList } from '../../src/server/allow.js';
import { createHttpListener } from '../../src/server/http.js';
import { createServer, type UwsgiServer } from '../../src/server/server.js';
import { memoryLogger, nginxVars, parseRawResponse } from '../helpers/serve.js';

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

describe('--allow-from, peers beyond loopback', () => {
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

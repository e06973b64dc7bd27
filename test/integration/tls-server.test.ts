// --ssl-socket's files (src/server/tls.ts): what is fatal at start (and kept at a reload), the expiry warnings,
// and the words a failed handshake is logged with. Certificates come from the openssl CLI, in a temp dir.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlockList, type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ExchangeHandler } from '../../src/exchange.js';
import { DEFAULT_LIMITS } from '../../src/protocol/decoder.js';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { createServer } from '../../src/server/server.js';
import { memoryLogger, nginxVars } from '../helpers/serve.js';
import { isUwsgiError, type ErrorCode } from '../../src/errors.js';
import { parseSslSocket } from '../../src/options.js';
import { EXPIRY_WARNING_DAYS, expiryWarning, handshakeCause, loadTlsMaterial } from '../../src/server/tls.js';

let dir: string;
const f = (name: string): string => join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function codeOf(fn: () => unknown): ErrorCode | string | undefined {
  try {
    fn();
  } catch (err) {
    return isUwsgiError(err) ? err.code : `not ours: ${String(err)}`;
  }
  return undefined;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'nu-tls-unit-'));
  openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '30', '-subj', '/CN=ca', '-keyout', 'ca.key', '-out', 'ca.crt');
  for (const name of ['a', 'b']) {
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '30', '-out', `${name}.crt`);
  }
  openssl('genpkey', '-algorithm', 'RSA', '-aes-128-cbc', '-pass', 'pass:secret', '-out', 'encrypted.key');
  writeFileSync(f('garbage.pem'), 'not a certificate\n');
}, 30_000);
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const socket = (cert: string, key: string, ca?: string): ReturnType<typeof parseSslSocket> =>
  parseSslSocket(['127.0.0.1:3443', f(cert), f(key), ...(ca === undefined ? [] : [f(ca)])].join(','));

describe('loadTlsMaterial', () => {
  it('reads a certificate, its key and a CA; the serial and notAfter are the certificate\'s', () => {
    const material = loadTlsMaterial(socket('a.crt', 'a.key', 'ca.crt'));
    const x509 = new X509Certificate(material.cert);
    expect(material.serial).toBe(x509.serialNumber);
    expect(material.notAfter).toBe(new Date(x509.validTo).toISOString());
    expect(material.address).toBe('127.0.0.1:3443');
    expect(material.ca).toContain('BEGIN CERTIFICATE');
    expect(Buffer.from(material.ticketKeys, 'base64')).toHaveLength(48);
  });

  it.each([
    ['a missing certificate', 'missing.crt', 'a.key', undefined, 'ERR_TLS_FILE'],
    ['a missing key', 'a.crt', 'missing.key', undefined, 'ERR_TLS_FILE'],
    ['a missing CA', 'a.crt', 'a.key', 'missing.crt', 'ERR_TLS_FILE'],
    ['a file that is not PEM', 'garbage.pem', 'a.key', undefined, 'ERR_TLS_FILE'],
    ['a key that is not PEM', 'a.crt', 'garbage.pem', undefined, 'ERR_TLS_FILE'],
    ['an encrypted key', 'a.crt', 'encrypted.key', undefined, 'ERR_TLS_FILE'],
    ['a CA that is not PEM', 'a.crt', 'a.key', 'garbage.pem', 'ERR_TLS_FILE'],
    ['another certificate\'s key', 'a.crt', 'b.key', undefined, 'ERR_TLS_KEY_MISMATCH'],
  ])('refuses %s, naming the file', (_what, cert, key, ca, code) => {
    expect(codeOf(() => loadTlsMaterial(socket(cert, key, ca)))).toBe(code);
    try {
      loadTlsMaterial(socket(cert, key, ca));
    } catch (err) {
      const named = [cert, key, ca].filter((n) => n !== undefined && (n.startsWith('missing') || n === 'garbage.pem' || n === 'encrypted.key' || n === 'b.key'));
      for (const name of named) expect((err as Error).message).toContain(f(name!));
    }
  });
});

describe('expiryWarning', () => {
  it(`warns within ${EXPIRY_WARNING_DAYS} days of notAfter and after it, with the date`, () => {
    const ssl = socket('a.crt', 'a.key');
    const material = loadTlsMaterial(ssl);
    const notAfter = Date.parse(material.notAfter);
    const day = 24 * 3600 * 1000;
    expect(expiryWarning(ssl, material, notAfter - (EXPIRY_WARNING_DAYS + 1) * day)).toBeUndefined();
    const soon = expiryWarning(ssl, material, notAfter - 3.5 * day);
    expect(soon?.code).toBe('ERR_TLS_CERT_EXPIRING');
    expect(soon?.message).toContain(material.notAfter);
    expect(soon?.message).toContain('in 3 days');
    expect(expiryWarning(ssl, material, notAfter - 30 * 3600 * 1000)?.message).toContain('in 30 hours');
    expect(expiryWarning(ssl, material, notAfter - 60 * 1000)?.message).toContain('in 1 hour:');
    expect(expiryWarning(ssl, material, notAfter + 1)?.code).toBe('ERR_TLS_CERT_EXPIRED');
  });
});

describe('handshakeCause', () => {
  const err = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });
  it('names what went wrong in words, and keeps a bare hang-up quiet', () => {
    expect(handshakeCause(err('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE'), null).cause).toContain('no client certificate');
    expect(handshakeCause(err('ECONNRESET'), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')).toMatchObject({ quiet: false });
    expect(handshakeCause(err('ECONNRESET'), 'UNABLE_TO_VERIFY_LEAF_SIGNATURE').cause).toContain('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
    expect(handshakeCause(err('ERR_SSL_WRONG_VERSION_NUMBER'), null).cause).toContain('does not speak TLS');
    expect(handshakeCause(err('ERR_SSL_UNSUPPORTED_PROTOCOL'), null).cause).toContain('TLS 1.2 or 1.3');
    expect(handshakeCause(err('ECONNRESET'), null)).toMatchObject({ quiet: true });
    expect(handshakeCause(err('ERR_SSL_SOMETHING_NEW'), null)).toMatchObject({ quiet: false, cause: 'ERR_SSL_SOMETHING_NEW: ERR_SSL_SOMETHING_NEW' });
  });
});

describe('a TLS listener (server.ts listenTls)', () => {
  const hello: ExchangeHandler = async (ex) => {
    ex.response.writeHead(200, undefined, [['Content-Type', 'text/plain']]);
    ex.response.write('hello over tls');
    ex.response.end();
  };

  function connect(port: number): Promise<{ serial?: string; answer: string; error?: string }> {
    return new Promise((resolve) => {
      let serial: string | undefined;
      let answer = '';
      const socket = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => {
        serial = socket.getPeerCertificate().serialNumber;
        socket.write(encodeRequest(nginxVars()));
      });
      socket.on('data', (d: Buffer) => (answer += d.toString('latin1')));
      socket.on('error', (err: NodeJS.ErrnoException) => resolve({ serial, answer, error: err.code }));
      socket.on('close', () => resolve({ serial, answer }));
    });
  }

  it('checks --allow-from on the plain connection, before any handshake', async () => {
    const { log, records } = memoryLogger();
    const onlyElsewhere = new BlockList();
    onlyElsewhere.addAddress('10.9.9.9');
    const server = createServer({ handler: hello, log, limits: DEFAULT_LIMITS, allowList: onlyElsewhere });
    try {
      await server.listenTls([{ address: { kind: 'tcp', host: '127.0.0.1', port: 0 }, material: loadTlsMaterial(socket('a.crt', 'a.key')), mutual: false }]);
      const port = (server.servers[0]!.address() as AddressInfo).port;
      const result = await connect(port);
      expect(result.serial).toBeUndefined();
      expect(result.answer).toBe('');
      expect(records.filter((r) => r.code === 'ERR_PEER_NOT_ALLOWED').map((r) => r.peer)).toEqual(['127.0.0.1']);
      expect(records.some((r) => r.code === 'ERR_TLS_HANDSHAKE')).toBe(false);
      expect(server.tlsFailures).toBe(0);
    } finally {
      await server.close();
    }
  });

  it('serves uwsgi over TLS, and updateTls gives the next connections the new certificate', async () => {
    const { log } = memoryLogger();
    const server = createServer({ handler: hello, log, limits: DEFAULT_LIMITS });
    try {
      const a = loadTlsMaterial(socket('a.crt', 'a.key'));
      const b = loadTlsMaterial(socket('b.crt', 'b.key'));
      await server.listenTls([{ address: { kind: 'tcp', host: '127.0.0.1', port: 0 }, material: a, mutual: false }]);
      const port = (server.servers[0]!.address() as AddressInfo).port;
      const first = await connect(port);
      expect(first.serial).toBe(a.serial);
      expect(first.answer).toMatch(/^HTTP\/1\.1 200 OK\r\n[\s\S]*hello over tls$/);
      server.updateTls(0, b);
      expect((await connect(port)).serial).toBe(b.serial);
      expect(b.serial).not.toBe(a.serial);
    } finally {
      await server.close();
    }
  });
});

// --ssl-socket's files (src/server/tls.ts): what is fatal at start (and kept at a reload), the expiry warnings,
// and the words a failed handshake is logged with. Certificates come from the openssl CLI, in a temp dir.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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

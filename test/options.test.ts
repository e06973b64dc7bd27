import { describe, expect, it } from 'vitest';
import { isUwsgiError } from '../src/errors.js';
import { OPTIONS, defaultOptions } from '../src/options.js';
import { formatSocketAddress, isLoopbackHost, parseSocketAddress } from '../src/address.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isUwsgiError(err) ? err.code : `not ours: ${String(err)}`;
  }
  return undefined;
}

describe('parseSocketAddress', () => {
  it.each([
    ['unix:/run/app.sock', { kind: 'unix', path: '/run/app.sock' }],
    ['/run/app.sock', { kind: 'unix', path: '/run/app.sock' }],
    ['127.0.0.1:3031', { kind: 'tcp', host: '127.0.0.1', port: 3031 }],
    ['localhost:8000', { kind: 'tcp', host: 'localhost', port: 8000 }],
    ['[::1]:3031', { kind: 'tcp', host: '::1', port: 3031 }],
    [':3031', { kind: 'tcp', host: '127.0.0.1', port: 3031 }],
    ['fd://3', { kind: 'fd', fd: 3 }],
  ])('parses %s', (raw, expected) => {
    expect(parseSocketAddress(raw)).toEqual(expected);
    expect(parseSocketAddress(formatSocketAddress(parseSocketAddress(raw)))).toEqual(expected);
  });

  it.each(['', 'unix:', 'fd://', 'fd://x', 'host', 'host:99999', '[::1]', '::1:80', 'a:b'])('rejects %j with ERR_SOCKET_ADDRESS', (raw) => {
    expect(codeOf(() => parseSocketAddress(raw))).toBe('ERR_SOCKET_ADDRESS');
  });
});

describe('the options table', () => {
  it('has unique flags and defaults that its own parser accepts', () => {
    const flags = OPTIONS.map((o) => o.flag);
    expect(new Set(flags).size).toBe(flags.length);
    const defaults = defaultOptions();
    expect(defaults.socket).toEqual([{ kind: 'tcp', host: '127.0.0.1', port: 3031 }]);
    expect(defaults.maxVarsSize).toBe(65535);
  });

  it('checks values and names the option in the error', () => {
    const spec = (flag: string) => OPTIONS.find((o) => o.flag === flag)! as unknown as { parse(raw: string, prev: unknown): unknown };
    expect(spec('chmod-socket').parse('660', undefined)).toBe(0o660);
    expect(codeOf(() => spec('chmod-socket').parse('999', undefined))).toBe('ERR_OPTION_INVALID');
    expect(codeOf(() => spec('interface').parse('wsig', 'auto'))).toBe('ERR_OPTION_INVALID');
    expect(codeOf(() => spec('max-vars-size').parse('70000', 0))).toBe('ERR_OPTION_INVALID');
    expect(codeOf(() => spec('max-vars').parse('-1', 0))).toBe('ERR_OPTION_INVALID');
    expect(() => spec('log-level').parse('loud', 'info')).toThrow(/"loud" for --log-level/);
    expect(spec('socket').parse('/a.sock', [{ kind: 'fd', fd: 3 }])).toEqual([{ kind: 'fd', fd: 3 }, { kind: 'unix', path: '/a.sock' }]);
    expect(spec('log-buffer').parse('1m', 0)).toBe(1024 * 1024);
    expect(() => spec('log-buffer').parse('0', 0)).toThrow(/"0" for --log-buffer: expected a size of at least 64k/);
  });
});

describe('isLoopbackHost', () => {
  it('is true of localhost, ::1 and 127.0.0.0/8 only', () => {
    expect(['localhost', '::1', '127.0.0.1', '127.1.2.3'].map(isLoopbackHost)).toEqual([true, true, true, true]);
    // The stats listener's copy let '127.example.com' through.
    expect(['127.example.com', '0.0.0.0', '::', '10.0.0.1', 'example.org', '128.0.0.1'].map(isLoopbackHost)).toEqual([false, false, false, false, false, false]);
  });
});

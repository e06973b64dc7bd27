// TCP exposure (issue 5): a non-loopback TCP socket needs --allow-from; loopback is always allowed. The list, the
// start-up checks through the real CLI, the socket's mode; real peers beyond loopback are
// test/integration/allow-from.test.ts.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isUwsgiError } from '../../src/errors.js';
import { OPTIONS, parseSocketAddress } from '../../src/options.js';
import { buildAllowList, isAllowed, requireAllowList } from '../../src/server/allow.js';

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));
const APP = fileURLToPath(new URL('../fixtures/apps/cli/hello.mjs', import.meta.url));
const allowSpec = OPTIONS.find((o) => o.name === 'allowFrom')!;

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

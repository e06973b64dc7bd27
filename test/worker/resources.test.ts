// A worker's own readings (src/worker/resources.ts): memory read through a descriptor opened once, the file limit,
// and the out-of-descriptors episode; plus the listening servers' 'error' events, which reach it instead of
// throwing out of the accept callback (an uncaught exception, once counted as the app's).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FdPressure, MemoryReader, fileLimit } from '../../src/worker/resources.js';
import { createServer } from '../../src/server/server.js';
import { DEFAULT_LIMITS } from '../../src/protocol/decoder.js';
import { memoryLogger } from '../helpers/serve.js';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));

function emfile(syscall = 'accept'): NodeJS.ErrnoException {
  return Object.assign(new Error(`EMFILE: too many open files, ${syscall}`), { code: 'EMFILE', errno: -24, syscall });
}

describe('MemoryReader', () => {
  it('reads VmRSS and VmSize again from the descriptor it opened once (pread at offset 0)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'nu-res-'));
    dirs.push(dir);
    const file = join(dir, 'status');
    writeFileSync(file, 'Name:\tnode\nVmSize:\t  100 kB\nVmRSS:\t   40 kB\n');
    const reader = new MemoryReader(file);
    expect(reader.read()).toEqual({ rss: 40 * 1024, vsz: 100 * 1024 });
    writeFileSync(file, 'Name:\tnode\nVmSize:\t  200 kB\nVmRSS:\t   50 kB\n');
    expect(reader.read()).toEqual({ rss: 50 * 1024, vsz: 200 * 1024 });
    reader.close();
  });

  it('reads this process from /proc/self/status, and falls back to Node without it', () => {
    const reader = new MemoryReader();
    const { rss, vsz } = reader.read();
    expect(Math.abs(rss - process.memoryUsage.rss())).toBeLessThan(64 * 1024 * 1024);
    expect(vsz).toBeGreaterThan(rss);
    reader.close();
    const missing = new MemoryReader('/nonexistent/status');
    expect(missing.read().rss).toBeGreaterThan(0);
  });
});

describe('fileLimit', () => {
  it('reads the soft and hard RLIMIT_NOFILE from /proc/self/limits', () => {
    const text = 'Limit                     Soft Limit           Hard Limit           Units     \nMax open files            256                  4096                 files     \n';
    expect(fileLimit(text)).toEqual({ soft: 256, hard: 4096 });
    expect(fileLimit('Max open files  unlimited  unlimited  files\n')).toEqual({ soft: 'unlimited', hard: 'unlimited' });
    expect(fileLimit('nothing here')).toBeUndefined();
    expect(fileLimit()).toMatchObject({ soft: expect.any(Number) });
  });
});

describe('FdPressure', () => {
  it('warns once per episode, from the heartbeat probe or an accept error, and says when descriptors are back', () => {
    const { log, records } = memoryLogger();
    let out = false;
    let now = 1000;
    const fds = new FdPressure(log, { soft: 256, hard: 256 }, () => {
      if (out) throw emfile('open');
    }, () => now);
    fds.check();
    expect(records).toEqual([]);
    out = true;
    fds.check();
    fds.acceptError(emfile());
    fds.check();
    expect(fds.exhausted).toBe(true);
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: 40, code: 'ERR_FD_LIMIT', errno: 'EMFILE', limit: 256, hardLimit: 256, syscall: 'open' });
    out = false;
    now += 2500;
    fds.check();
    expect(records[1]).toMatchObject({ level: 30, msg: 'file descriptors available again', ms: 2500, failures: 3 });
    fds.acceptError(emfile());
    expect(records.filter((r) => r.code === 'ERR_FD_LIMIT')).toHaveLength(2);
  });

  it('takes a probe failing for another reason (no /dev/null) as a descriptor free', () => {
    const { log, records } = memoryLogger();
    const fds = new FdPressure(log, undefined, () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    });
    fds.acceptError(emfile());
    expect(fds.exhausted).toBe(true);
    fds.check();
    expect(fds.exhausted).toBe(false);
    expect(records.map((r) => r.msg)).toEqual(['out of file descriptors: new connections are closed unserved until some close', 'file descriptors available again']);
  });

  it('logs other accept errors as they come, without an episode', () => {
    const { log, records } = memoryLogger();
    const fds = new FdPressure(log, undefined, () => {});
    fds.acceptError(Object.assign(new Error('ENOMEM'), { code: 'ENOMEM' }));
    expect(fds.exhausted).toBe(false);
    expect(records).toMatchObject([{ level: 40, msg: 'cannot accept a connection' }]);
  });
});

describe('a listening server\'s error event', () => {
  it('goes to onAcceptError, or a warning, instead of throwing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nu-res-'));
    dirs.push(dir);
    const { log, records } = memoryLogger();
    const seen: string[] = [];
    const withHook = createServer({ handler: async () => {}, log, limits: DEFAULT_LIMITS, onAcceptError: (err) => seen.push(err.code!) });
    const plain = createServer({ handler: async () => {}, log, limits: DEFAULT_LIMITS });
    await withHook.listen([{ kind: 'unix', path: join(dir, 'a.sock') }]);
    await plain.listen([{ kind: 'unix', path: join(dir, 'b.sock') }]);
    try {
      withHook.servers[0]!.emit('error', emfile());
      plain.servers[0]!.emit('error', emfile());
      expect(seen).toEqual(['EMFILE']);
      expect(records.find((r) => r.msg === 'cannot accept a connection')).toMatchObject({ level: 40 });
    } finally {
      await Promise.all([withHook.close(), plain.close()]);
    }
  });
});

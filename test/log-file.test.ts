// The --log-file destination on a file that takes its lines, and on /dev/full, whose every write fails with ENOSPC
// as a full disk's does: one stderr line per episode, memory bounded by the limit, a retry on a timer and not a
// spin, writing again after a reopen with a report of what was dropped, and an exit that does not wait.
import { execFileSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, openSync, readFileSync, symlinkSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RETRY_FIRST_MS, LogFile, takeBackCutLine, type Resumed } from '../src/log-file.js';
import { useCleanups } from './helpers/cleanup.js';

const { tempDir } = useCleanups('nu-log-file-');
const LIMIT = 64 * 1024;
const ROOT = fileURLToPath(new URL('..', import.meta.url));

afterEach(() => {
  vi.useRealTimers();
});

function line(i: number): string {
  // Every line the same length, so that the lines held can be counted from the characters held.
  return `${JSON.stringify({ level: 30, msg: 'request', uri: `/item/${String(i).padStart(5, '0')}`.padEnd(60, 'x') })}\n`;
}

/** A LogFile whose stderr lines and resumed reports are recorded, with a promise for the next stderr line. */
function setUp(path: string, limit = LIMIT) {
  const stderr: string[] = [];
  const reports: Resumed[] = [];
  let onStderr: (() => void) | undefined;
  const file = new LogFile(path, {
    limit,
    stderr: (text) => {
      stderr.push(text);
      onStderr?.();
    },
    resumed: (info) => {
      reports.push(info);
      file.write(`${JSON.stringify({ msg: 'log file writing resumed', dropped: info.dropped })}\n`);
    },
  });
  const nextStderr = (): Promise<void> => new Promise((resolve) => (onStderr = resolve));
  return { file, stderr, reports, nextStderr };
}

/** A symlink to /dev/full: the path a reopen later finds pointing at a real file. */
function fullDisk(dir: string): string {
  const path = join(dir, 'app.log');
  symlinkSync('/dev/full', path);
  return path;
}

function repoint(path: string, target: string): void {
  unlinkSync(path);
  symlinkSync(target, path);
}

describe('LogFile', () => {
  it('appends every line in order and flush() resolves once they are in the file', async () => {
    const path = join(tempDir(), 'app.log');
    const { file, stderr } = setUp(path, 4 * 1024 * 1024);
    const lines = Array.from({ length: 20_000 }, (_, i) => line(i));
    for (const l of lines) file.write(l);
    await file.flush(10_000);
    expect(readFileSync(path, 'utf8')).toBe(lines.join(''));
    expect(file.held).toBe(0);
    expect(stderr).toEqual([]);
  });

  it('appends to a file the process may write but not read (mode 0222, another owner)', () => {
    // Root reads any file: as root the check runs as nobody, in a child process on the built module; any other user
    // already cannot read its own file of mode 0222.
    const asNobody = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
    const dir = tempDir();
    chmodSync(dir, 0o755);
    const path = join(dir, 'app.log');
    writeFileSync(path, '');
    chmodSync(path, 0o222);
    const script = `import { LogFile } from ${JSON.stringify(pathToFileURL(join(ROOT, 'dist/log-file.js')).href)};
      const file = new LogFile(${JSON.stringify(path)}, { limit: 65536 });
      file.write('{"msg":"written by nobody"}\\n');
      await file.flush(1000);`;
    execFileSync(process.execPath, ['--input-type=module', '-e', script], { ...asNobody, stdio: 'pipe' });
    chmodSync(path, 0o644);
    expect(readFileSync(path, 'utf8')).toBe('{"msg":"written by nobody"}\n');
  });

  it('refuses a path it cannot open with ERR_LOG_FILE', () => {
    const path = join(tempDir(), 'missing-dir', 'app.log');
    expect(() => setUp(path)).toThrow(expect.objectContaining({ code: 'ERR_LOG_FILE' }));
  });

  it('on ENOSPC: one stderr line naming ENOSPC and the file, memory bounded, lines dropped and counted, no retry before its timer', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const path = fullDisk(tempDir());
    const { file, stderr, reports, nextStderr } = setUp(path);
    const failed = nextStderr();
    file.write(line(0));
    await failed;
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).toMatch(/^node-uwsgi: cannot write to the log file .*app\.log \(ENOSPC: no space left on device, write\): /);
    expect(stderr[0]).toContain('(ERR_LOG_WRITE)\n');
    expect(stderr[0]).not.toContain('cannot open');

    // 10,000 lines of 100 characters: 1 MB against a 64 KiB limit.
    for (let i = 1; i < 10_000; i++) file.write(line(i));
    expect(file.held).toBeLessThanOrEqual(LIMIT);
    expect(file.held).toBeGreaterThan(LIMIT - line(0).length * 2);
    const kept = Math.round(file.held / line(0).length);
    expect(file.droppedLines).toBe(10_000 - kept);
    // Failing, nothing is in flight: a stopping process does not wait.
    await file.flush(60_000);
    // The retry waits for its timer: one pending, and no second error line whatever the lines logged meanwhile.
    expect(vi.getTimerCount()).toBe(1);
    // Each retry fails again on /dev/full: no new stderr line, and the next retry is scheduled.
    for (let retry = 0; retry < 3; retry++) {
      vi.advanceTimersByTime(RETRY_FIRST_MS * 2 ** retry);
      await file.flush(60_000);
      expect(vi.getTimerCount()).toBe(1);
    }
    expect(stderr).toHaveLength(1);
    expect(reports).toEqual([]);
  });

  it('a reopen onto a file that takes lines writes the held ones, then the report of the dropped ones, then new ones', async () => {
    const dir = tempDir();
    const path = fullDisk(dir);
    const { file, stderr, reports, nextStderr } = setUp(path);
    const failed = nextStderr();
    file.write(line(0));
    await failed;
    for (let i = 1; i < 3_000; i++) file.write(line(i));
    const kept = Math.round(file.held / line(0).length);
    expect(kept).toBeLessThan(3_000);

    const real = join(dir, 'real.log');
    repoint(path, real);
    file.reopen();
    await file.flush(10_000);
    file.write(line(3_000));
    await file.flush(10_000);

    expect(reports).toEqual([{ dropped: 3_000 - kept, failedMs: expect.any(Number), error: 'ENOSPC' }]);
    const written = readFileSync(real, 'utf8').split('\n').slice(0, -1);
    // The lines held from the start of the episode, the report where the gap is, and the line logged after.
    expect(written.slice(0, kept)).toEqual(Array.from({ length: kept }, (_, i) => line(i).trimEnd()));
    expect(JSON.parse(written[kept]!)).toEqual({ msg: 'log file writing resumed', dropped: 3_000 - kept });
    expect(written.slice(kept + 1)).toEqual([line(3_000).trimEnd()]);
    expect(stderr).toHaveLength(1);

    // A second episode gets its own line.
    repoint(path, '/dev/full');
    const again = nextStderr();
    file.reopen();
    file.write(line(3_001));
    await again;
    expect(stderr).toHaveLength(2);
    expect(stderr[1]).toContain('ENOSPC');
  });

  it('a reopen that cannot open keeps the old file and says so, as ERR_LOG_FILE', async () => {
    const dir = tempDir();
    const path = join(dir, 'app.log');
    const { file, stderr } = setUp(path);
    file.write(line(0));
    await file.flush(10_000);
    repoint(path, join(dir, 'missing-dir', 'app.log'));
    file.reopen();
    expect(stderr).toHaveLength(1);
    expect(stderr[0]).toMatch(/^node-uwsgi: cannot open the log file .*app\.log: ENOENT.*\(ERR_LOG_FILE\)\n$/);
    file.write(line(1));
    await file.flush(10_000);
    unlinkSync(path);
    expect(existsSync(join(dir, 'missing-dir'))).toBe(false);
  });

  it('at exit on a full disk, flushSync makes one attempt, returns at once and counts the lost lines on stderr', async () => {
    const path = fullDisk(tempDir());
    const { file, stderr, nextStderr } = setUp(path);
    const failed = nextStderr();
    file.write(line(0));
    await failed;
    for (let i = 1; i < 10_000; i++) file.write(line(i));
    const kept = Math.round(file.held / line(0).length);
    const started = performance.now();
    file.flushSync();
    expect(performance.now() - started).toBeLessThan(100);
    expect(file.held).toBe(0);
    expect(stderr).toHaveLength(2);
    expect(stderr[1]).toContain(`${10_000} log lines were lost at exit (${kept} held, ${10_000 - kept} dropped before)`);
    expect(stderr[1]).toContain('ENOSPC');
  });

  it('at exit on a file that takes them, flushSync writes the lines not yet handed to a write', () => {
    const path = join(tempDir(), 'app.log');
    const { file, stderr } = setUp(path);
    // The first line is handed to an asynchronous write at once; the others wait for it.
    const lines = Array.from({ length: 100 }, (_, i) => line(i));
    for (const l of lines) file.write(l);
    file.flushSync();
    expect(stderr).toEqual([]);
    expect(readFileSync(path, 'utf8')).toContain(lines.slice(1).join(''));
  });

  it('when a write fails after a partial one cut a line, takes the cut part back, or ends it if the file grew', () => {
    const path = join(tempDir(), 'app.log');
    const chunk = Buffer.from('{"b":2}\n{"c":3}\n');
    const fd = openSync(path, 'a+');
    try {
      writeSync(fd, '{"a":1}\n');
      // '{"b' went in before the disk was full: truncated away, and the line waits whole.
      writeSync(fd, chunk.subarray(0, 3));
      expect(takeBackCutLine(fd, chunk, 3)).toBe(chunk);
      expect(readFileSync(path, 'utf8')).toBe('{"a":1}\n');
      // Another process appended after the cut part: it stays, and the whole line follows on a line of its own.
      writeSync(fd, chunk.subarray(0, 3));
      writeSync(fd, '{"master":1}\n');
      expect(takeBackCutLine(fd, chunk, 3).toString()).toBe('\n{"b":2}\n{"c":3}\n');
      expect(readFileSync(path, 'utf8')).toBe('{"a":1}\n{"b{"master":1}\n');
    } finally {
      closeSync(fd);
    }
  });
});

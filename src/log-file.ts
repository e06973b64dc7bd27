// The --log-file destination: log lines appended to a file that can never hurt serving. A write that fails (a
// full disk: ENOSPC) starts an episode: one line on stderr, the lines kept in memory up to --log-buffer and the
// rest dropped and counted, a retry on a backoff timer (or at once on reopen), and, when a write goes through,
// a report of what was dropped. Exit writes what is held once, synchronously, and gives up at the first error.
//
// Why not pino's SonicBoom on the file: on ENOSPC (4.2) it emits 'error' and retries on the next line, so every
// line costs a failed write and an error, its buffer has no bound unless maxLength is set, and its flushSync,
// which pino runs at exit, retries a failing write every 100 ms for ever (only EAGAIN/EBUSY may give up): a
// stopping worker never exited. This one also costs less CPU per access line than SonicBoom, the file writes
// included (bench/log-file.js; bench/README.md, "Log file").
import { closeSync, fstatSync, ftruncateSync, openSync, readSync, write, writeSync } from 'node:fs';
import { UwsgiError } from './errors.js';

/** The first retry after a failed write; each further failure doubles it, up to RETRY_MAX_MS. */
export const RETRY_FIRST_MS = 250;
export const RETRY_MAX_MS = 5_000;

export interface Resumed {
  /** Lines dropped since the last report (the held ones did not fit --log-buffer). */
  readonly dropped: number;
  /** How long writes failed, in ms; 0 when lines were dropped without a failure (a slow disk). */
  readonly failedMs: number;
  /** The failure's errno code (ENOSPC), when writes failed. */
  readonly error: string | undefined;
}

export interface LogFileOptions {
  /** --log-buffer: the most characters held while the file does not take them. */
  readonly limit: number;
  /** Where the episode's one line goes; process.stderr unless given (tests). */
  readonly stderr?: (line: string) => void;
  /** Called when writing works again after a failure or after drops: the caller logs the report. */
  readonly resumed?: (info: Resumed) => void;
}

export class LogFile {
  readonly path: string;
  private fd: number;
  private readonly limit: number;
  private readonly stderr: (line: string) => void;
  private readonly resumed: ((info: Resumed) => void) | undefined;
  /** Lines not yet handed to a write. */
  private pending = '';
  /** Bytes taken from `pending` and not yet written: in flight, or waiting for the retry. */
  private chunk: Buffer | undefined;
  /** After a partial write that cut a line: how much of the chunk's first line is in the file already. */
  private cut = 0;
  /** The fd of the write in flight, -1 when none: a reopen during a write closes the old fd after it. */
  private writingFd = -1;
  private retry: NodeJS.Timeout | undefined;
  private backoff = RETRY_FIRST_MS;
  private failedAt = 0;
  private failure: string | undefined;
  private dropped = 0;
  /** While the resumed report is logged: that line is never dropped. */
  private reporting = false;
  private waiters: Array<() => void> = [];

  /** Opens `path` for appending, synchronously, so that a bad path fails at start (ERR_LOG_FILE). */
  constructor(path: string, options: LogFileOptions) {
    this.path = path;
    this.limit = options.limit;
    this.stderr = options.stderr ?? ((line) => void process.stderr.write(line));
    this.resumed = options.resumed;
    this.fd = open(path);
  }

  /** Lines dropped and not yet reported (tests). */
  get droppedLines(): number {
    return this.dropped;
  }

  /** Characters held in memory: pending lines and unwritten bytes. */
  get held(): number {
    return this.pending.length + (this.chunk?.length ?? 0);
  }

  /** pino's destination call, once per line. */
  write(line: string): void {
    // Characters, not bytes (Buffer.byteLength would scan the line): the bound is on memory, and a JS string
    // holds no fewer bytes than it has characters.
    if (this.pending.length + (this.chunk?.length ?? 0) + line.length > this.limit && !this.reporting) {
      this.dropped++;
      return;
    }
    this.pending += line;
    if (this.writingFd < 0 && this.retry === undefined) this.next();
  }

  /** Opens the path again (logrotate moved the file); on failure keeps the old file and says so on stderr. */
  reopen(): void {
    let fd: number;
    try {
      fd = open(this.path);
    } catch (err) {
      this.stderr(`node-uwsgi: ${(err as Error).message} (ERR_LOG_FILE)\n`);
      return;
    }
    const old = this.fd;
    this.fd = fd;
    if (this.writingFd !== old) closeQuietly(old);
    // A reopen is the user's "try again now": after a failure the new file may be on a disk with room.
    this.backoff = RETRY_FIRST_MS;
    if (this.retry !== undefined) {
      clearTimeout(this.retry);
      this.retry = undefined;
    }
    if (this.writingFd < 0 && this.held > 0) this.next();
  }

  /**
   * Resolves when every line is written, or writes are failing (nothing to wait for), or after `timeoutMs`:
   * a stopping process waits no longer than that for its log.
   */
  flush(timeoutMs: number): Promise<void> {
    if (this.settled()) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(done, timeoutMs);
      this.waiters.push(done);
    });
  }

  /**
   * At exit (no event loop left): one synchronous attempt for what is held, no retry. A write in flight belongs
   * to the thread pool and is not repeated (it may land after these lines). What cannot be written is counted on
   * stderr.
   */
  flushSync(): void {
    if (this.retry !== undefined) clearTimeout(this.retry);
    this.retry = undefined;
    const held = this.writingFd < 0 && this.chunk !== undefined ? Buffer.concat([this.chunk, Buffer.from(this.pending)]) : Buffer.from(this.pending);
    this.pending = '';
    if (this.writingFd < 0) this.chunk = undefined;
    let offset = 0;
    let error: NodeJS.ErrnoException | undefined;
    try {
      while (offset < held.length) {
        const n = writeSync(this.fd, held, offset);
        if (n === 0) break;
        offset += n;
      }
    } catch (err) {
      error = err as NodeJS.ErrnoException;
      const start = offset === 0 ? 0 : held.lastIndexOf(10, offset - 1) + 1;
      if (start < offset && takeBack(this.fd, held.subarray(start, offset))) offset = start;
    }
    const lost = countLines(held.subarray(offset));
    if (lost + this.dropped === 0) return;
    const outcome = `${lost + this.dropped} log lines were lost at exit (${lost} held, ${this.dropped} dropped before)`;
    const detail = error?.message ?? this.failure ?? 'a partial write';
    this.stderr(`node-uwsgi: ${new UwsgiError('ERR_LOG_WRITE', { file: this.path, detail, outcome }).message} (ERR_LOG_WRITE)\n`);
    this.dropped = 0;
  }

  private next(): void {
    if (this.chunk === undefined) {
      this.chunk = Buffer.from(this.pending);
      this.pending = '';
    }
    this.writingFd = this.fd;
    write(this.fd, this.chunk, this.cut, this.chunk.length - this.cut, null, this.written);
  }

  private readonly written = (err: NodeJS.ErrnoException | null, n: number): void => {
    const fd = this.writingFd;
    this.writingFd = -1;
    // Reopened during the write: the old fd is done with.
    const stale = fd !== this.fd;
    const chunk = this.chunk!;
    const end = this.cut + (err === null ? n : 0);
    if (end < chunk.length) {
      // Not all of it: a filling disk writes part, then fails with ENOSPC. The rest of a line it cut goes at once
      // to complete it, unless the write failed or the file was reopened: then the cut part is taken back and
      // the line waits whole (takeBackCutLine).
      const start = end === 0 || chunk[end - 1] === 10 ? end : chunk.lastIndexOf(10, end - 1) + 1;
      this.chunk = chunk.subarray(start);
      this.cut = end - start;
      if (this.cut > 0 && (err !== null || stale)) {
        this.chunk = takeBackCutLine(fd, this.chunk, this.cut);
        this.cut = 0;
      }
    }
    if (stale) closeQuietly(fd);
    if (err !== null) {
      this.failed(err, stale);
      return;
    }
    if (end < chunk.length) {
      // A write of nothing without an error would repeat at once: wait as after a failure.
      if (n === 0) this.schedule();
      else this.next();
      return;
    }
    this.chunk = undefined;
    this.cut = 0;
    // Only a whole write counts as writing again.
    if (this.failure !== undefined || this.dropped > 0) this.resume();
    // resume() logs a line, which may have started the next write already.
    if (this.writingFd >= 0) return;
    if (this.held > 0) this.next();
    else this.settle();
  };

  private failed(err: NodeJS.ErrnoException, reopened: boolean): void {
    if (this.failure === undefined) {
      this.failure = err.code ?? 'EIO';
      this.failedAt = Date.now();
      const outcome =
        `lines wait in memory up to --log-buffer (${this.limit} bytes), more are dropped and counted; ` +
        'writing resumes within seconds of space returning, at once on SIGUSR1';
      this.stderr(`node-uwsgi: ${new UwsgiError('ERR_LOG_WRITE', { file: this.path, detail: err.message, outcome }).message} (ERR_LOG_WRITE)\n`);
    }
    if (reopened) {
      this.next();
      return;
    }
    this.schedule();
  }

  private schedule(): void {
    this.retry = setTimeout(this.retryNow, this.backoff).unref();
    this.backoff = Math.min(this.backoff * 2, RETRY_MAX_MS);
    this.settle();
  }

  private readonly retryNow = (): void => {
    this.retry = undefined;
    if (this.writingFd < 0 && this.held > 0) this.next();
  };

  private resume(): void {
    const info: Resumed = {
      dropped: this.dropped,
      failedMs: this.failure === undefined ? 0 : Date.now() - this.failedAt,
      error: this.failure,
    };
    this.failure = undefined;
    this.dropped = 0;
    this.backoff = RETRY_FIRST_MS;
    this.reporting = true;
    try {
      this.resumed?.(info);
    } finally {
      this.reporting = false;
    }
  }

  private settled(): boolean {
    return this.writingFd < 0 && (this.retry !== undefined || this.held === 0);
  }

  private settle(): void {
    if (this.waiters.length === 0) return;
    const waiters = this.waiters;
    this.waiters = [];
    for (const done of waiters) done();
  }
}

const NEWLINE = Buffer.from('\n');

/**
 * After a write failed with `cut` bytes of the chunk's first line in the file (a partial write before it): what
 * to write when writing works again. Other processes append to the same file (the master and every worker), and
 * a line of theirs landing after half a line of ours would leave two broken lines. So the cut part is taken back
 * (truncated away, after checking that the file still ends with it: on a full disk nobody else could append) and
 * the line waits whole. If the file has grown meanwhile, the cut part stays, with what was appended joined to it,
 * and our line follows whole on a line of its own.
 */
export function takeBackCutLine(fd: number, chunk: Buffer, cut: number): Buffer {
  return takeBack(fd, chunk.subarray(0, cut)) ? chunk : Buffer.concat([NEWLINE, chunk]);
}

/** Truncates `part` off the end of the file, if the file ends with it. */
function takeBack(fd: number, part: Buffer): boolean {
  try {
    const size = fstatSync(fd).size;
    if (size < part.length) return false;
    const tail = Buffer.allocUnsafe(part.length);
    if (readSync(fd, tail, 0, part.length, size - part.length) !== part.length || !tail.equals(part)) return false;
    ftruncateSync(fd, size - part.length);
    return true;
  } catch {
    return false;
  }
}

function open(path: string): number {
  try {
    // Read as well as append: a line cut by a full disk is read back before it is taken back. A file the process
    // may append to but not read (mode 0200, or 0620 with another owner) is opened for appending alone: a cut
    // line then stays cut (the read back fails, and so nothing is truncated).
    try {
      return openSync(path, 'a+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EACCES') throw err;
      return openSync(path, 'a');
    }
  } catch (err) {
    throw new UwsgiError('ERR_LOG_FILE', { file: path, detail: (err as Error).message }, { cause: err });
  }
}

function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed or never valid: nothing left to release.
  }
}

function countLines(bytes: Buffer): number {
  let lines = 0;
  for (let at = bytes.indexOf(10); at >= 0; at = bytes.indexOf(10, at + 1)) lines++;
  return lines;
}

// What a worker reads of its own process for the heartbeat (resident and virtual memory), and how it notices
// running out of file descriptors, without needing a free descriptor for either: a heartbeat that threw EMFILE
// was reported as an app exception every second and, missing, got a healthy worker killed by --harakiri.
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import type { Logger } from 'pino';

export interface Memory {
  /** Bytes. */
  rss: number;
  /** Bytes; 0 where /proc is missing. */
  vsz: number;
}

/**
 * /proc/self/status, opened once and read again with pread at offset 0 (a seq_file regenerates its text then):
 * a read costs no descriptor. VmRSS and VmSize are in kB, so no page size is guessed. Without /proc (or if a read
 * fails) rss comes from process.memoryUsage.rss(), and if that throws too (it opens /proc/self/stat), the last
 * value is kept.
 */
export class MemoryReader {
  private fd: number | undefined;
  private readonly buffer = Buffer.alloc(8192);
  private last: Memory = { rss: 0, vsz: 0 };

  constructor(path = '/proc/self/status') {
    try {
      this.fd = openSync(path, 'r');
    } catch {
      this.fd = undefined;
    }
  }

  read(): Memory {
    if (this.fd !== undefined) {
      try {
        const text = this.buffer.toString('latin1', 0, readSync(this.fd, this.buffer, 0, this.buffer.length, 0));
        const rss = /^VmRSS:\s+(\d+) kB/m.exec(text);
        const vsz = /^VmSize:\s+(\d+) kB/m.exec(text);
        if (rss !== null) {
          this.last = { rss: Number(rss[1]) * 1024, vsz: vsz === null ? 0 : Number(vsz[1]) * 1024 };
          return this.last;
        }
      } catch {
        // Fall through to Node's own reading.
      }
    }
    try {
      this.last = { rss: process.memoryUsage.rss(), vsz: this.last.vsz };
    } catch {
      // EMFILE and the like: the last value stands.
    }
    return this.last;
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** The soft and hard RLIMIT_NOFILE from /proc/self/limits ("Max open files  1024  524288  files"); undefined
 * where it cannot be read. Node raises the soft limit to the hard one at start (PlatformInit, node.cc). */
export function fileLimit(text?: string): { soft: number | 'unlimited'; hard: number | 'unlimited' } | undefined {
  let limits = text;
  if (limits === undefined) {
    try {
      limits = readFileSync('/proc/self/limits', 'latin1');
    } catch {
      return undefined;
    }
  }
  const match = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(limits);
  if (match === null) return undefined;
  const value = (raw: string): number | 'unlimited' => (raw === 'unlimited' ? raw : Number(raw));
  return { soft: value(match[1]!), hard: value(match[2]!) };
}

const OUT_OF_FDS = new Set(['EMFILE', 'ENFILE']);

/**
 * Out of file descriptors, one warning per episode. libuv hides most of it: when accept() fails with EMFILE it
 * closes a reserve descriptor, accepts and closes every pending connection, and reopens the reserve (uv__emfile_trick),
 * so the peer sees its connection closed and nothing reaches JavaScript. Hence a probe on each heartbeat (open and
 * close /dev/null: a few microseconds) besides the listening servers' 'error' events (the accept errors that
 * get through). The episode ends at the first probe that finds a descriptor free. A moment's exhaustion between
 * two heartbeats (a burst of connections while a few descriptors were open elsewhere) can pass unlogged: libuv's
 * closes leave no trace, and counting /proc/self/fd on every heartbeat would cost in proportion to the load.
 */
export class FdPressure {
  private since: number | undefined;
  private failures = 0;

  constructor(
    private readonly log: Logger,
    private readonly limit: ReturnType<typeof fileLimit>,
    private readonly probe: () => void = () => closeSync(openSync('/dev/null', 'r')),
    private readonly now: () => number = Date.now,
  ) {}

  get exhausted(): boolean {
    return this.since !== undefined;
  }

  /** A listening server's 'error' event: a failed accept. */
  acceptError(err: NodeJS.ErrnoException): void {
    if (err.code !== undefined && OUT_OF_FDS.has(err.code)) this.failed(err);
    else this.log.warn({ err }, 'cannot accept a connection');
  }

  /** On each heartbeat. */
  check(): void {
    try {
      this.probe();
    } catch (err) {
      // Linux allocates the descriptor before it looks the path up: any other error means one was free.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== undefined && OUT_OF_FDS.has(code)) return this.failed(err as NodeJS.ErrnoException);
    }
    if (this.since === undefined) return;
    this.log.info({ ms: this.now() - this.since, failures: this.failures }, 'file descriptors available again');
    this.since = undefined;
    this.failures = 0;
  }

  private failed(err: NodeJS.ErrnoException): void {
    this.failures++;
    if (this.since !== undefined) return;
    this.since = this.now();
    this.log.warn(
      { code: 'ERR_FD_LIMIT', errno: err.code, limit: this.limit?.soft, hardLimit: this.limit?.hard, syscall: err.syscall },
      'out of file descriptors: new connections are closed unserved until some close',
    );
  }
}

// The listen queues of the master's sockets: connections the kernel has completed and no worker has accepted
// yet, against the socket's backlog. Read for --stats (listen_queue, sockets[].queue/max_queue), --metrics and
// the "listen queue full" warning, on the master's clock (every CHECK_MS) and when a stats or metrics reader asks
// (at most once per FRESH_MS).
//
// TCP: /proc/net/tcp{,6} gives a listener's accept queue as rx_queue (uWSGI reads the same number through
// TCP_INFO's tcpi_unacked); its backlog is the one listen() was given, capped at somaxconn. Unix sockets: neither
// /proc/net/unix nor an ioctl on a listening socket tells (uWSGI needs a patched kernel's SIOBKLGQ); sock_diag
// does (UDIAG_SHOW_RQLEN: the queue and the backlog). Node cannot open a netlink socket: the native addon asks
// sock_diag for a socket the master holds (`readUnix`, its unixQueue); without the addon, or for a socket the
// master has no fd of, `ss -xlnH` (iproute2) prints them as a listener's Recv-Q and Send-Q. ss costs ~7 ms of CPU
// per run (3.3 ms of it the master's fork), so it runs only when a Unix listener needs it, at most once a second.
import { execFile } from 'node:child_process';
import { relative, resolve } from 'node:path';
import type { Logger } from 'pino';
import { formatSocketAddress, type SocketAddress } from '../address.js';
import { effectiveBacklog } from '../server/listen.js';
import { inspectFd } from './activation.js';
import { procNetRows } from './procnet.js';

/** How often the master checks the queues for the warning. */
export const CHECK_MS = 2000;
/** The oldest reading a stats or metrics reader gets. */
export const FRESH_MS = 1000;
/** A queue this full (of its backlog) starts a warning episode, as uWSGI's "listen queue ... full" but earlier. */
export const FULL_RATIO = 0.9;
/** The episode ends once the queue is back under this share of the backlog, so that a queue hovering at the
 * threshold does not log a line per check. */
export const CLEAR_RATIO = 0.5;

export interface QueueReading {
  /** formatSocketAddress of the socket as given (--socket, --http). */
  readonly address: string;
  readonly proto: 'uwsgi' | 'http';
  /** Connections waiting to be accepted; undefined where it cannot be read (a Unix socket without ss). */
  queue: number | undefined;
  /** The queue's capacity: what listen() was given, capped at somaxconn. */
  backlog: number;
}

/** A Unix socket's [queue, backlog] from sock_diag, or a negative errno; undefined where the master holds no fd of
 * it (the master's addon: master.ts). */
export type ReadUnixQueue = (address: SocketAddress) => readonly [number, number] | number | undefined;

/** Where a socket's queue is read: a Unix socket by ss's rows (`paths`) or by `read` (sock_diag, no ss). */
type Source =
  | { kind: 'unix'; paths: string[]; read?: () => readonly [number, number] | number | undefined }
  | { kind: 'tcp'; port: number }
  | { kind: 'none' };

interface Watched {
  readonly reading: QueueReading;
  readonly source: Source;
  /** In a warning episode: the queue passed FULL_RATIO and has not yet fallen under CLEAR_RATIO. */
  full: boolean;
  peak: number;
}

/** Listener rows of `ss -xlnH`: `u_str LISTEN <Recv-Q> <Send-Q> <path> <inode> * 0`; a path may hold spaces. */
export function parseUnixListeners(text: string): Array<{ path: string; inode: string; queue: number; backlog: number }> {
  const out: Array<{ path: string; inode: string; queue: number; backlog: number }> = [];
  for (const line of text.split('\n')) {
    const match = /^\S+\s+LISTEN\s+(\d+)\s+(\d+)\s+(.*?)\s+(\d+)\s+\S+\s+\S+\s*$/.exec(line);
    if (match) out.push({ path: match[3]!, inode: match[4]!, queue: Number(match[1]), backlog: Number(match[2]) });
  }
  return out;
}

/** Connections waiting in a TCP listening socket's accept queue (/proc/net/tcp); 0 for others: the master's
 * ListenQueues reads Unix sockets' queues. */
export function listenQueue(address: SocketAddress): number {
  return address.kind === 'tcp' ? tcpListenQueue(address.port) : 0;
}

/** A TCP listener's accept queue from /proc/net/tcp{,6} (st 0A, LISTEN), matched by port; 0 if none is found. */
export function tcpListenQueue(port: number): number {
  const hex = port.toString(16).toUpperCase().padStart(4, '0');
  let queue = 0;
  for (const table of ['tcp', 'tcp6'] as const) {
    for (const fields of procNetRows(table)) {
      if (fields[3] !== '0A' || !fields[1]?.endsWith(`:${hex}`)) continue;
      queue = Math.max(queue, parseInt(fields[4]!.split(':')[1]!, 16) || 0);
    }
  }
  return queue;
}

/** After a failed run of ss, the next one is not before this (ms). */
export const SS_RETRY_MS = 30_000;

export type RunSs = () => Promise<string>;

const runSs: RunSs = () =>
  new Promise((resolvePromise, reject) => {
    execFile('ss', ['-xlnH'], { timeout: 5000, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(Object.assign(err, { stderr: String(stderr).trim() }));
      else resolvePromise(stdout);
    });
  });

export interface ListenQueuesConfig {
  sockets: readonly SocketAddress[];
  http?: readonly SocketAddress[];
  /** --backlog (undefined: somaxconn). */
  backlog: number | undefined;
  cwd: string;
  log: Logger;
  ss?: RunSs;
  now?: () => number;
  /** Unix queues without ss, where it answers. */
  readUnix?: ReadUnixQueue;
}

export class ListenQueues {
  private readonly watched: Watched[];
  private readonly log: Logger;
  private readonly ss: RunSs;
  private readonly now: () => number;
  /** False when there is no Unix socket to read, or ss is not installed (run only for what sock_diag did not answer). */
  private ssUsable: boolean;
  /** After ss failed for another reason (a fork refused, EMFILE, a time-out, netlink refused): no run before. */
  private ssRetryAt = -Infinity;
  /** The failure was said: once per episode, until ss works again. */
  private ssFailing = false;
  private inflight: Promise<void> | undefined;
  private sampledAt = -Infinity;
  /** Checks that found a queue full (at its backlog): the stats' listen_queue_errors, counted as uWSGI does. */
  errors = 0;

  constructor(config: ListenQueuesConfig) {
    this.log = config.log;
    this.ss = config.ss ?? runSs;
    this.now = config.now ?? Date.now;
    const backlog = effectiveBacklog(config.backlog);
    const readUnix = config.readUnix;
    const watch = (address: SocketAddress, proto: 'uwsgi' | 'http'): Watched => {
      const source = sourceOf(address, config.cwd);
      // sock_diag where it answers now (a kernel without unix_diag does not: ss then, which needs it too).
      if (source.kind === 'unix' && readUnix !== undefined && Array.isArray(readUnix(address))) source.read = () => readUnix(address);
      return { reading: { address: formatSocketAddress(address), proto, queue: undefined, backlog }, source, full: false, peak: 0 };
    };
    this.watched = [...config.sockets.map((a) => watch(a, 'uwsgi')), ...(config.http ?? []).map((a) => watch(a, 'http'))];
    this.ssUsable = this.watched.some((w) => w.source.kind === 'unix');
  }

  /** The latest reading of each socket, --socket ones first. */
  get readings(): readonly QueueReading[] {
    return this.watched.map((w) => w.reading);
  }

  /** Reads again if the last reading is older than `maxAgeMs`; never rejects. */
  fresh(maxAgeMs = FRESH_MS): Promise<void> {
    if (this.inflight !== undefined) return this.inflight;
    if (this.now() - this.sampledAt < maxAgeMs) return Promise.resolve();
    this.inflight = this.sample().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  private async sample(): Promise<void> {
    this.sampledAt = this.now();
    // sock_diag first; ss for the Unix sockets it did not answer for (none held, or the master's copy closed at a stop).
    const pairs = new Map<Watched, readonly [number, number]>();
    let needSs = false;
    for (const w of this.watched) {
      if (w.source.kind !== 'unix') continue;
      const pair = w.source.read?.();
      if (Array.isArray(pair)) pairs.set(w, pair as readonly [number, number]);
      else needSs = true;
    }
    const unix = needSs ? await this.runSs() : undefined;
    for (const w of this.watched) {
      const source = w.source;
      if (source.kind === 'tcp') w.reading.queue = tcpListenQueue(source.port);
      if (source.kind !== 'unix') continue;
      const pair = pairs.get(w);
      const row = pair === undefined ? unix?.find((r) => source.paths.includes(r.path)) : { queue: pair[0], backlog: pair[1] };
      w.reading.queue = row?.queue;
      if (row !== undefined) w.reading.backlog = row.backlog;
    }
    this.check();
  }

  /** ss's listener rows, or undefined (ss missing, failing, or waiting to be tried again). */
  private async runSs(): Promise<ReturnType<typeof parseUnixListeners> | undefined> {
    if (!this.ssUsable || this.sampledAt < this.ssRetryAt) return undefined;
    try {
      const rows = parseUnixListeners(await this.ss());
      this.ssFailing = false;
      return rows;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.ssUsable = false;
        this.log.info({ err }, 'ss (iproute2) is not installed: the listen queue of Unix sockets is not reported');
      } else {
        // Maybe passing (no process or descriptor to spare, a busy machine): tried again later, said once.
        this.ssRetryAt = this.sampledAt + SS_RETRY_MS;
        if (!this.ssFailing) {
          this.log.warn(
            { err, stderr: (err as { stderr?: string }).stderr, retryMs: SS_RETRY_MS },
            'ss failed: the listen queue of Unix sockets is unknown until it works again',
          );
        }
        this.ssFailing = true;
      }
      return undefined;
    }
  }

  /** The warning: once per episode per socket, on the readings just taken. */
  check(): void {
    for (const w of this.watched) {
      const { queue, backlog, address } = w.reading;
      if (queue === undefined || backlog <= 0) continue;
      if (queue >= backlog) this.errors++;
      if (!w.full && queue > 0 && queue >= backlog * FULL_RATIO) {
        w.full = true;
        w.peak = queue;
        this.log.warn(
          { code: 'ERR_LISTEN_QUEUE_FULL', address, queue, backlog },
          'listen queue over 90% of its backlog: the workers do not accept fast enough',
        );
      } else if (w.full) {
        w.peak = Math.max(w.peak, queue);
        if (queue < backlog * CLEAR_RATIO) {
          w.full = false;
          this.log.info({ address, queue, backlog, peak: w.peak }, 'listen queue of a socket back under half its backlog');
        }
      }
    }
  }
}

function sourceOf(address: SocketAddress, cwd: string): Source {
  switch (address.kind) {
    case 'tcp':
      return { kind: 'tcp', port: address.port };
    case 'unix': {
      // node:cluster binds a worker's Unix socket by the shorter of its absolute path and its path relative to
      // the master's cwd (primary.js queryServer: sun_path's ~100 bytes), and sock_diag reports the name bound.
      const absolute = resolve(cwd, address.path);
      return { kind: 'unix', paths: [...new Set([address.path, absolute, relative(process.cwd(), absolute)])] };
    }
    case 'fd': {
      // An inherited socket (systemd): its address from /proc/net, once; the fd is re-listened with --backlog.
      let socket;
      try {
        socket = inspectFd(address.fd);
      } catch {
        return { kind: 'none' };
      }
      if (socket?.kind === 'tcp') return { kind: 'tcp', port: socket.port };
      if (socket?.kind === 'unix') return { kind: 'unix', paths: [socket.path] };
      return { kind: 'none' };
    }
  }
}

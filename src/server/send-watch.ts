// --send-timeout for every connection of a server with one timer: a scan every quarter of the timeout (at most
// every second) looks for connections whose peer has taken none of the waiting response bytes for that long.
// A socket timer per connection (socket.setTimeout) costs an order of magnitude more to arm and disarm, and Node
// refreshes it on every read and write; watch() and unwatch() here are a Map insert and delete (bench/README.md,
// "Figures the source cites").
import type { Socket } from 'node:net';
import { writeQueueSize } from '../node-internals.js';

/** Told once when the peer of a watched socket stops taking response bytes (lifecycle.ts RequestLifecycle). */
export interface StallListener {
  sendStalled(socket: Socket, pending: number): void;
}

interface Watched {
  listener: StallListener;
  /** Bytes the peer has taken in whole writes (bytesWritten less what still waits), at the last scan. */
  taken: number;
  /** Bytes of the write in progress that libuv still holds: it shrinks as the peer takes part of a big write. */
  queued: number;
  lastProgress: number;
}

export class SendWatch {
  private readonly sockets = new Map<Socket, Watched>();
  private timer: NodeJS.Timeout | undefined;
  private readonly tick: number;

  /** The timeout in seconds, for messages. */
  get seconds(): number {
    return this.timeoutMs / 1000;
  }

  constructor(private readonly timeoutMs: number) {
    this.tick = Math.max(10, Math.min(1000, Math.floor(timeoutMs / 4)));
  }

  /** Watches `socket` until unwatch(); `listener` is told once if its peer stops taking response bytes. */
  watch(socket: Socket, listener: StallListener): void {
    this.sockets.set(socket, { listener, taken: 0, queued: 0, lastProgress: Date.now() });
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.scan(), this.tick);
      this.timer.unref();
    }
  }

  unwatch(socket: Socket): void {
    this.sockets.delete(socket);
  }

  private scan(): void {
    // Stopped by the scan that finds nothing to watch, not by each unwatch: one request at a time would otherwise
    // make and clear an interval per request.
    if (this.sockets.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    const now = Date.now();
    for (const [socket, watched] of this.sockets) {
      const pending = socket.writableLength;
      const taken = socket.bytesWritten - pending;
      const queued = writeQueueSize(socket);
      if (pending === 0 || taken > watched.taken || queued < watched.queued) {
        watched.lastProgress = now;
      } else if (now - watched.lastProgress >= this.timeoutMs) {
        this.unwatch(socket);
        watched.listener.sendStalled(socket, pending);
        continue;
      }
      watched.taken = taken;
      watched.queued = queued;
    }
  }
}

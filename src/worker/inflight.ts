// The worker's table of requests in flight, kept in a SharedArrayBuffer so that the watchdog thread can read it
// while the event loop is blocked: that is exactly when the master needs to know what the worker was doing.
// Writing a slot costs a few hundred nanoseconds per request; no message leaves the process per request.
import { RequestCounters } from '../ops/counters.js';
import type { RequestTracker } from '../server/lifecycle.js';

export const SLOTS = 64;
const TEXT_BYTES = 240;
// Int32 words at the start: [0] event-loop tick, [1] requests not tracked because every slot was busy.
const HEADER_WORDS = 2;
const FLAGS_OFFSET = HEADER_WORDS * 4;
const LENGTHS_OFFSET = FLAGS_OFFSET + SLOTS * 4;
const STARTED_OFFSET = LENGTHS_OFFSET + SLOTS * 4; // 8-aligned: (2 + 128) * 4 = 520 = 65 * 8
const TEXT_OFFSET = STARTED_OFFSET + SLOTS * 8;
export const TABLE_BYTES = TEXT_OFFSET + SLOTS * TEXT_BYTES;

export interface InflightView {
  method: string;
  uri: string;
  startedAt: number;
}

export class InflightTable implements RequestTracker {
  readonly buffer: SharedArrayBuffer;
  /** Requests finished since the worker started. */
  requests = 0;
  /** Requests in flight. */
  busy = 0;
  /** Statuses, bytes and latencies of finished requests (--stats, --metrics). */
  readonly counters = new RequestCounters();
  /** performance.now() at each slot's start; requests beyond the slots get tokens from SLOTS up, timed here. */
  private readonly t0 = new Float64Array(SLOTS);
  private readonly overflow = new Map<number, number>();
  private nextOverflow = SLOTS;
  private readonly header: Int32Array;
  private readonly flags: Int32Array;
  private readonly lengths: Int32Array;
  private readonly started: Float64Array;
  private readonly text: Buffer;
  private readonly free: number[] = [];
  private readonly methods: string[] = new Array<string>(SLOTS).fill('');
  private readonly uris: string[] = new Array<string>(SLOTS).fill('');

  /** `shared`: mirror each request's text into the buffer for the watchdog thread (only with --harakiri). */
  constructor(private readonly shared = true, buffer = new SharedArrayBuffer(TABLE_BYTES)) {
    this.buffer = buffer;
    this.header = new Int32Array(buffer, 0, HEADER_WORDS);
    this.flags = new Int32Array(buffer, FLAGS_OFFSET, SLOTS);
    this.lengths = new Int32Array(buffer, LENGTHS_OFFSET, SLOTS);
    this.started = new Float64Array(buffer, STARTED_OFFSET, SLOTS);
    this.text = Buffer.from(buffer, TEXT_OFFSET, SLOTS * TEXT_BYTES);
    for (let i = SLOTS - 1; i >= 0; i--) this.free.push(i);
  }

  /** Called by a timer on the event loop: a tick that stops moving means the loop is blocked. */
  tick(): void {
    Atomics.add(this.header, 0, 1);
  }

  start(method: string, uri: string): number {
    this.busy++;
    const slot = this.free.pop();
    if (slot === undefined) {
      Atomics.add(this.header, 1, 1);
      const token = this.nextOverflow++;
      this.overflow.set(token, performance.now());
      return token;
    }
    this.t0[slot] = performance.now();
    this.methods[slot] = method;
    this.uris[slot] = uri;
    this.started[slot] = Date.now();
    if (this.shared) {
      this.lengths[slot] = this.text.write(`${method} ${uri}`, slot * TEXT_BYTES, TEXT_BYTES, 'latin1');
      Atomics.store(this.flags, slot, 1);
    } else {
      this.flags[slot] = 1;
    }
    return slot;
  }

  /** Called once when `requests` reaches `threshold` (--max-requests: the master hears of it at once). */
  onThreshold: (() => void) | undefined;
  threshold = 0;

  /** `status` 0: the request ended without one; `bytes`: what was written to the peer. */
  end(token: number, status = 0, bytes = 0): void {
    this.busy--;
    const t0 = token < SLOTS ? this.t0[token] : this.overflow.get(token);
    if (t0 !== undefined) this.counters.record(status, bytes, (performance.now() - t0) * 1000);
    if (++this.requests === this.threshold) this.onThreshold?.();
    if (token < 0 || token >= SLOTS) {
      Atomics.sub(this.header, 1, 1);
      this.overflow.delete(token);
      return;
    }
    if (this.shared) Atomics.store(this.flags, token, 0);
    else this.flags[token] = 0;
    this.free.push(token);
  }

  /** Requests in flight, oldest first (read on the main thread, from its own copy). */
  list(): InflightView[] {
    const out: InflightView[] = [];
    for (let slot = 0; slot < SLOTS; slot++) {
      if (this.flags[slot] === 1) out.push({ method: this.methods[slot]!, uri: this.uris[slot]!, startedAt: this.started[slot]! });
    }
    return out.sort((a, b) => a.startedAt - b.startedAt);
  }
}

/** Reads a table from any thread. */
export function readTable(buffer: SharedArrayBuffer): { tick: number; untracked: number; inflight: InflightView[] } {
  const header = new Int32Array(buffer, 0, HEADER_WORDS);
  const flags = new Int32Array(buffer, FLAGS_OFFSET, SLOTS);
  const lengths = new Int32Array(buffer, LENGTHS_OFFSET, SLOTS);
  const started = new Float64Array(buffer, STARTED_OFFSET, SLOTS);
  const text = Buffer.from(buffer, TEXT_OFFSET, SLOTS * TEXT_BYTES);
  const inflight: InflightView[] = [];
  for (let slot = 0; slot < SLOTS; slot++) {
    if (Atomics.load(flags, slot) !== 1) continue;
    const line = text.toString('latin1', slot * TEXT_BYTES, slot * TEXT_BYTES + lengths[slot]!);
    const space = line.indexOf(' ');
    inflight.push({ method: line.slice(0, space), uri: line.slice(space + 1), startedAt: started[slot]! });
  }
  inflight.sort((a, b) => a.startedAt - b.startedAt);
  return { tick: Atomics.load(header, 0), untracked: Atomics.load(header, 1), inflight };
}

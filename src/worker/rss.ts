// A worker's watch on its own resident memory under --max-rss, so that the master hears of a fast leak within
// milliseconds rather than at the next heartbeat (1 s). The master decides (src/master/policy.ts); this only
// says when a heartbeat should go early.
//
// Reading RSS (the worker's MemoryReader: a pread of /proc/self/status on a descriptor opened at start, so that
// it works out of descriptors too) costs a few microseconds (bench/README.md, "Figures the source cites"): too
// much for every request, nothing for a timer. Every FAR_CHECK_MS, then every NEAR_CHECK_MS from NEAR_FRACTION of the limit on.

export const FAR_CHECK_MS = 100;
export const NEAR_CHECK_MS = 10;
export const NEAR_FRACTION = 0.8;
/**
 * While over the limit, a heartbeat every OVER_REPORT_MS: the master's hysteresis (3 heartbeats over) then takes
 * about 0.1 s instead of 3 s, and a spike that falls back at once still does not recycle.
 */
export const OVER_REPORT_MS = 50;
/** Past this multiple of the limit the master recycles at once (policy.ts RSS_HARD_FACTOR): said at once. */
export const HARD_FACTOR = 2;

export class RssWatch {
  /** The last reading, in bytes. */
  rss = 0;
  private lastReport = -Infinity;
  private hardReported = false;

  /** `limit` in bytes; `read` returns RSS in bytes and may throw (EMFILE: then the sample is skipped). */
  constructor(
    private readonly limit: number,
    private readonly read: () => number,
  ) {}

  /** Takes a reading; true when a heartbeat should go now. */
  check(now: number): boolean {
    try {
      this.rss = this.read();
    } catch {
      return false;
    }
    if (this.rss <= this.limit) {
      this.hardReported = false;
      return false;
    }
    if (this.rss > HARD_FACTOR * this.limit && !this.hardReported) {
      this.hardReported = true;
      return true;
    }
    return now - this.lastReport >= OVER_REPORT_MS;
  }

  /** A heartbeat went, early or on its own timer. */
  reported(now: number): void {
    this.lastReport = now;
  }

  /** ms until the next check. */
  get interval(): number {
    return this.rss >= NEAR_FRACTION * this.limit ? NEAR_CHECK_MS : FAR_CHECK_MS;
  }
}

/** Checks on a timer for the worker's life; `beat` sends a heartbeat (and calls `reported`). Returns a stop. */
export function watchRss(watch: RssWatch, beat: () => void): () => void {
  let timer: NodeJS.Timeout;
  const step = (): void => {
    if (watch.check(Date.now())) beat();
    timer = setTimeout(step, watch.interval).unref();
  };
  timer = setTimeout(step, watch.interval).unref();
  return () => clearTimeout(timer);
}

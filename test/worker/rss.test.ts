// The worker's watch on its own RSS under --max-rss, with readings and a clock given as plain numbers.
import { describe, expect, it } from 'vitest';
import { FAR_CHECK_MS, NEAR_CHECK_MS, OVER_REPORT_MS, RssWatch } from '../../src/worker/rss.js';

const LIMIT = 1000;

function watching(readings: Array<number | Error>): RssWatch {
  return new RssWatch(LIMIT, () => {
    const next = readings.shift();
    if (next === undefined) throw new Error('no more readings');
    if (next instanceof Error) throw next;
    return next;
  });
}

describe('RssWatch', () => {
  it('checks every FAR_CHECK_MS below 80% of the limit and every NEAR_CHECK_MS from there on', () => {
    const watch = watching([500, 799, 800, 1000, 700]);
    const intervals: number[] = [];
    for (let i = 0; i < 5; i++) {
      expect(watch.check(i)).toBe(false);
      intervals.push(watch.interval);
    }
    expect(intervals).toEqual([FAR_CHECK_MS, FAR_CHECK_MS, NEAR_CHECK_MS, NEAR_CHECK_MS, FAR_CHECK_MS]);
  });

  it('over the limit: a heartbeat at once, then at most every OVER_REPORT_MS, counting the regular ones', () => {
    const watch = watching([1001, 1100, 1200, 1300, 1400, 900, 1001]);
    watch.reported(0);
    // The regular heartbeat went a moment ago: the next early one waits until OVER_REPORT_MS after it.
    expect(watch.check(OVER_REPORT_MS / 2)).toBe(false);
    expect(watch.check(OVER_REPORT_MS)).toBe(true);
    watch.reported(OVER_REPORT_MS);
    expect(watch.check(OVER_REPORT_MS + 10)).toBe(false);
    expect(watch.check(2 * OVER_REPORT_MS - 1)).toBe(false);
    expect(watch.check(2 * OVER_REPORT_MS)).toBe(true);
    expect(watch.check(3 * OVER_REPORT_MS)).toBe(false);
    expect(watch.check(3 * OVER_REPORT_MS + 1)).toBe(true);
  });

  it('past twice the limit: a heartbeat at once, however recent the last one, once until it falls back', () => {
    const watch = watching([2001, 2500, 1500, 2001]);
    watch.reported(0);
    expect(watch.check(1)).toBe(true);
    watch.reported(1);
    // Still over twice (or back between once and twice), said already: the ordinary pace.
    expect(watch.check(2)).toBe(false);
    expect(watch.check(3)).toBe(false);
    expect(watch.check(4)).toBe(false);
    // Under the limit once: the next crossing of twice is said at once again.
    const back = watching([2001, 900, 2001]);
    back.reported(0);
    expect(back.check(1)).toBe(true);
    expect(back.check(2)).toBe(false);
    expect(back.check(3)).toBe(true);
  });

  it('skips a reading that fails (no file descriptor left) and keeps the last one', () => {
    const err = Object.assign(new Error('EMFILE: too many open files'), { code: 'EMFILE' });
    const watch = watching([900, err, 1200]);
    expect(watch.check(0)).toBe(false);
    expect(watch.check(10)).toBe(false);
    expect(watch.rss).toBe(900);
    expect(watch.interval).toBe(NEAR_CHECK_MS);
    expect(watch.check(20)).toBe(true);
    expect(watch.rss).toBe(1200);
  });
});

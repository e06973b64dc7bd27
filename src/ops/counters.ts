// A worker's own counters, kept on the request path (a few additions per request) and sent to the master on each
// heartbeat: requests by status class, bytes, latency histogram. Of src/ops, the worker imports this module and
// worker-metrics.ts alone.

/** A worker's counters since it started, sent on each heartbeat (the 'hb' message: src/master/messages.ts) from
 * RequestCounters below; --stats, --metrics. */
export interface WorkerStats {
  exceptions: number;
  /** Response bytes written. */
  tx: number;
  /** µs: uWSGI's running average of response times. */
  avgRt: number;
  /** µs spent in requests. */
  runningTime: number;
  /** Virtual memory size, bytes (0 where /proc is missing). */
  vsz: number;
  /** Requests in flight. */
  busy: number;
  /** Finished requests by status class (STATUS_CLASSES). */
  statuses: number[];
  /** Non-cumulative latency counts per LATENCY_BUCKETS bound, then +Inf. */
  buckets: number[];
  /** Seconds. */
  latencySum: number;
  /** --ssl-socket handshakes that failed. */
  tlsHandshakeFailures?: number;
}

/** Prometheus' default buckets (client_golang DefBuckets), in seconds. */
export const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const;
/** Requests by the class of their status; 'none' ended without a status (the peer left before the response). */
export const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx', 'none'] as const;
export type StatusClass = (typeof STATUS_CLASSES)[number];

export function statusClassIndex(status: number): number {
  return status >= 100 && status < 600 ? Math.floor(status / 100) - 1 : STATUS_CLASSES.length - 1;
}

/** A worker's own counters, kept on the request path: a few additions per request, reported on the heartbeat. */
export class RequestCounters {
  /** App exceptions: 500 answers (an app error maps to 500) and uncaught exceptions or rejections. */
  exceptions = 0;
  tx = 0;
  /** µs, uWSGI's running average: (previous + latest) / 2. */
  avgRt = 0;
  /** µs spent in requests since the worker started. */
  runningTime = 0;
  readonly statuses: number[] = new Array<number>(STATUS_CLASSES.length).fill(0);
  /** Non-cumulative counts per LATENCY_BUCKETS bound, the last one for +Inf. */
  readonly buckets: number[] = new Array<number>(LATENCY_BUCKETS.length + 1).fill(0);
  /** Seconds. */
  latencySum = 0;

  record(status: number, bytes: number, micros: number): void {
    this.statuses[statusClassIndex(status)]!++;
    if (status === 500) this.exceptions++;
    this.tx += bytes;
    // A tunnel (101: WebSocket) lasts as long as the socket is open: its length says nothing of response times.
    if (status === 101) return;
    this.runningTime += micros;
    this.avgRt = (this.avgRt + micros) / 2;
    const seconds = micros / 1e6;
    this.latencySum += seconds;
    let i = 0;
    while (i < LATENCY_BUCKETS.length && seconds > LATENCY_BUCKETS[i]!) i++;
    this.buckets[i]!++;
  }
}

/** A worker's heartbeat report; `vsz` in bytes (the worker's MemoryReader, src/worker/resources.ts). */
export function workerStats(counters: RequestCounters, busy: number, vsz: number, tlsHandshakeFailures = 0): WorkerStats {
  return {
    exceptions: counters.exceptions,
    tx: counters.tx,
    avgRt: counters.avgRt,
    runningTime: counters.runningTime,
    vsz,
    busy,
    statuses: counters.statuses,
    buckets: counters.buckets,
    latencySum: counters.latencySum,
    tlsHandshakeFailures,
  };
}


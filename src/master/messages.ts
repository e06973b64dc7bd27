// What master and workers say to each other over the cluster IPC channel, and how a worker learns its
// configuration. Types and constants only: both sides import this, nothing else of each other.
//
// Serialisation: Node's own JSON IPC, not msgpackr, by measurement (bench/ipc.js; bench/README.md, "IPC"): it
// is the fastest of the three and the cheapest for the master. The channel's framing dominates; an extra
// encode/decode step only adds to it.
import type { Options } from '../options.js';
import type { TlsMaterial } from '../server/tls.js';
import type { WorkerStats } from '../ops/counters.js';

export const WORKER_CONFIG_ENV = 'NODE_UWSGI_WORKER';

export interface WorkerConfig {
  spec: string;
  cwd: string;
  options: Options;
  id: number;
  generation: number;
  workers: number;
  heartbeatMs: number;
  /** This worker's --max-requests with its jitter (0: none): it reports at once when it gets there. */
  maxRequests: number;
  /** Inherited fds (in options.socket as fd://N) of the Unix sockets the master bound for native accept. */
  nativeFds: number[];
  /** The fds of the sockets the master bound (not inherited ones): a worker whose master is gone stops their
   * handshakes before it closes them (refuseNew), as the master does at a stop. */
  boundFds?: number[];
}

export interface ReadyInfo {
  file: string;
  exportName: string;
  interface: string;
  detectedBy: string;
}

/** [method, uri, startedAt (epoch ms)] */
export type InflightEntry = [string, string, number];

export type WorkerMessage =
  | { t: 'ready'; app: ReadyInfo; bootMs: number }
  /** `at`: where the error was raised (src/app-loader/trace.ts), shown with the message at error level. */
  | { t: 'boot-failed'; code: string | undefined; message: string; at?: string[] }
  | { t: 'hb'; requests: number; rss: number; inflight: InflightEntry[]; stats?: WorkerStats }
  /** --ssl-socket: the worker asks for its certificates once its listener for the answer is in place. */
  | { t: 'tls-get' }
  /** --metrics: the app's prom-client metrics (src/ops/worker-metrics.ts), for request `n` (0: the last, at a drain). */
  | { t: 'metrics'; n: number; app: unknown[]; process: unknown[] };

/** drain's `stop`: the master has let go of the sockets (a stop, not a reload or recycling): the worker serves
 * what is queued before its close. `tls`: the --ssl-socket material, in options.sslSocket's order: at a worker's
 * 'tls-get', and to every worker at each reload. Over IPC, never in the environment (which the app's child
 * processes inherit). */
export type MasterMessage = { t: 'drain'; stop?: boolean } | { t: 'reopen-log' } | { t: 'tls'; material: TlsMaterial[] } | { t: 'metrics-get'; n: number };

export function isWorkerMessage(value: unknown): value is WorkerMessage {
  return typeof value === 'object' && value !== null && typeof (value as { t?: unknown }).t === 'string';
}

/** Heartbeats often enough that --harakiri is enforced within a quarter of its value (100 ms to 1 s). */
export function heartbeatInterval(harakiriMs: number): number {
  return harakiriMs > 0 ? Math.min(1000, Math.max(100, Math.floor(harakiriMs / 4))) : 1000;
}

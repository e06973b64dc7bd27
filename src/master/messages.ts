// What master and workers say to each other over the cluster IPC channel, and how a worker learns its
// configuration. Types and constants only: both sides import this, nothing else of each other.
//
// Serialisation: Node's own JSON IPC framing, not msgpackr. Measured on this machine (bench/ipc.js, Node 24):
// a heartbeat is ~100 bytes and the channel's cost is the syscall and framing, not the encoding; wrapping it
// in msgpackr added an encode/decode step and a Buffer that JSON IPC must base64 or 'advanced' serialisation
// must copy, for no gain. See bench/README.md for the figures.
import type { Options } from '../options.js';

export const WORKER_CONFIG_ENV = 'NODE_UWSGI_WORKER';

export interface WorkerConfig {
  spec: string;
  cwd: string;
  options: Options;
  id: number;
  generation: number;
  workers: number;
  heartbeatMs: number;
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
  | { t: 'boot-failed'; code: string | undefined; message: string }
  | { t: 'hb'; requests: number; rss: number; inflight: InflightEntry[] };

export type MasterMessage = { t: 'drain' };

export function isWorkerMessage(value: unknown): value is WorkerMessage {
  return typeof value === 'object' && value !== null && typeof (value as { t?: unknown }).t === 'string';
}

/** Heartbeats often enough that --harakiri is enforced within a quarter of its value (100 ms to 1 s). */
export function heartbeatInterval(harakiriMs: number): number {
  return harakiriMs > 0 ? Math.min(1000, Math.max(100, Math.floor(harakiriMs / 4))) : 1000;
}

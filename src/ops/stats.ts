// uWSGI's stats document: every field that uwsgitop reads, named and typed as uWSGI's
// uwsgi_master_generate_stats (core/master_utils.c) writes them: times in microseconds, last_spawn in epoch
// seconds, memory in bytes; built from the master's collector (collector.ts), sent by the stats server
// (stats-server.ts), read by `node-uwsgi top`.
import { readFileSync } from 'node:fs';
import { formatSocketAddress, type SocketAddress } from '../address.js';
import { addTotals, emptyTotals, mergeTotals, type CollectorConfig, type Slot, type StatsCollector } from './collector.js';
import { listenQueue } from './listen-queue.js';

/** The document uWSGI's stats server sends. */
export function statsDocument(collector: StatsCollector): UwsgiStats {
const config = collector.config;
  const readings = collector.queueReadings();
  const queues = config.sockets.map((address, i) => {
    const reading = readings[i];
    return reading === undefined ? { address, queue: listenQueue(address), max: 0 } : { address, queue: reading.queue ?? 0, max: reading.backlog };
  });
  const listenQueueMax = Math.max(0, ...queues.map((q) => q.queue));
  return {
    version: packageVersion(),
    listen_queue: listenQueueMax,
    listen_queue_errors: config.queues?.errors ?? 0,
    signal_queue: 0,
    load: listenQueueMax,
    pid: process.pid,
    uid: process.getuid?.() ?? 0,
    gid: process.getgid?.() ?? 0,
    cwd: config.cwd,
    locks: [],
    sockets: queues.map(({ address, queue, max }) => ({
      name: socketName(address),
      proto: 'uwsgi',
      queue,
      max_queue: max,
      shared: 0,
      can_offload: 0,
    })),
    workers: collector.slotList().map((slot) => workerDocument(config, slot)),
  };
}

function workerDocument(config: CollectorConfig, slot: Slot): UwsgiWorkerStats {
  const sum = emptyTotals();
  mergeTotals(sum, slot.base);
  let busy = 0;
  for (const member of slot.members) {
    addTotals(sum, member.requests, member.stats);
    busy += member.stats?.busy ?? 0;
  }
  const newest = slot.members[slot.members.length - 1];
  const state = newest === undefined ? undefined : config.state(newest.id);
  const status = newest === undefined ? 'cheap' : busy > 0 ? 'busy' : 'idle';
  const app = newest !== undefined && state === 'ready' && newest.stats !== undefined;
  return {
    id: slot.id,
    pid: newest?.pid ?? 0,
    accepting: state === 'ready' ? 1 : 0,
    requests: sum.requests,
    delta_requests: newest?.requests ?? 0,
    exceptions: sum.exceptions,
    harakiri_count: slot.harakiriCount,
    signals: 0,
    signal_queue: 0,
    status,
    rss: newest?.rss ?? 0,
    vsz: newest?.stats?.vsz ?? 0,
    uss: 0,
    pss: 0,
    running_time: Math.round(sum.runningTime),
    last_spawn: Math.floor(slot.lastSpawn / 1000),
    respawn_count: slot.respawnCount,
    tx: sum.tx,
    avg_rt: Math.round(slot.avgRt),
    apps: app
      ? [
          {
            id: 0,
            modifier1: 0,
            mountpoint: '',
            startup_time: Math.round((newest.bootMs ?? 0) / 1000),
            requests: newest.requests,
            exceptions: newest.stats!.exceptions,
            chdir: config.cwd,
          },
        ]
      : [],
    cores: [
      {
        id: 0,
        requests: sum.requests,
        static_requests: 0,
        routed_requests: 0,
        offloaded_requests: 0,
        write_errors: 0,
        read_errors: 0,
        in_request: busy > 0 ? 1 : 0,
        vars: [],
        req_info: {},
      },
    ],
  };
}

export interface UwsgiWorkerStats {
  id: number;
  pid: number;
  accepting: number;
  requests: number;
  delta_requests: number;
  exceptions: number;
  harakiri_count: number;
  signals: number;
  signal_queue: number;
  status: 'idle' | 'busy' | 'cheap';
  rss: number;
  vsz: number;
  uss: number;
  pss: number;
  running_time: number;
  last_spawn: number;
  respawn_count: number;
  tx: number;
  avg_rt: number;
  apps: Array<{ id: number; modifier1: number; mountpoint: string; startup_time: number; requests: number; exceptions: number; chdir: string }>;
  cores: Array<{
    id: number;
    requests: number;
    static_requests: number;
    routed_requests: number;
    offloaded_requests: number;
    write_errors: number;
    read_errors: number;
    in_request: number;
    vars: string[];
    req_info: Record<string, never>;
  }>;
}

export interface UwsgiStats {
  version: string;
  listen_queue: number;
  listen_queue_errors: number;
  signal_queue: number;
  load: number;
  pid: number;
  uid: number;
  gid: number;
  cwd: string;
  locks: never[];
  sockets: Array<{ name: string; proto: string; queue: number; max_queue: number; shared: number; can_offload: number }>;
  workers: UwsgiWorkerStats[];
}

let version: string | undefined;
function packageVersion(): string {
  if (version === undefined) {
    try {
      version = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
    } catch {
      version = 'unknown';
    }
  }
  return version;
}

/** As uWSGI names its sockets: the path, or host:port. */
function socketName(address: SocketAddress): string {
  return address.kind === 'unix' ? address.path : formatSocketAddress(address);
}


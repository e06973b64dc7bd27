// The master's local listeners (--stats, and --metrics through metrics.ts): listenLocal on a Unix socket or TCP
// address, and uWSGI's stats server, which sends one JSON document per connection (stats.ts), then closes it.
import { unlinkSync } from 'node:fs';
import net from 'node:net';
import type { Logger } from 'pino';
import type { SocketAddress } from '../address.js';
import { listenOn } from '../server/listen.js';
import type { StatsCollector } from './collector.js';
import { statsDocument } from './stats.js';

export interface OpsListener {
  /** Stops listening and removes a Unix socket file; synchronous, for the master's last moments. */
  close(): void;
}

/** Listens on `address` (a stale Unix socket file is replaced, a live one is an error). */
export async function listenLocal(server: net.Server, address: SocketAddress): Promise<OpsListener> {
  await listenOn(server, address);
  return {
    close() {
      server.close();
      if (address.kind !== 'unix') return;
      try {
        unlinkSync(address.path);
      } catch {
        // Already gone: libuv unlinks a Unix socket it bound when the handle closes.
      }
    },
  };
}

/** --stats: one JSON document per connection, then the connection is closed (what uwsgitop expects). */
export async function startStatsServer(address: SocketAddress, collector: StatsCollector, log: Logger): Promise<OpsListener> {
  const server = net.createServer((socket) => {
    socket.on('error', (err) => log.debug({ err }, 'stats connection error'));
    void collector.freshQueues().then(() => {
      let body: string;
      try {
        body = JSON.stringify(statsDocument(collector));
      } catch (err) {
        log.error({ err }, 'cannot build the stats document');
        socket.destroy();
        return;
      }
      socket.end(body);
    });
  });
  return listenLocal(server, address);
}


// Listening sockets: Unix (a stale socket file is replaced, a live one is an error), TCP and inherited fds.
import { chmodSync, lstatSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import { UwsgiError } from '../errors.js';
import { listenOnFd } from '../node-internals.js';
import { formatSocketAddress, type SocketAddress } from '../address.js';

const ownListeners = new WeakSet<net.Server>();

/** Whether node-uwsgi itself listens `server` (through listenOn): src/worker/listen-guard.ts lets it through. */
export function isOwnListener(server: net.Server): boolean {
  return ownListeners.has(server);
}

/** Node's own default backlog (net.js), used where /proc/sys/net/core/somaxconn cannot be read. */
export const FALLBACK_BACKLOG = 511;

let somaxconn: number | undefined;
/** The kernel's cap on a listen queue (net.core.somaxconn: 4096 since Linux 5.4, 128 before): listen() silently
 * truncates a larger backlog to it, and Node passes the backlog through unchecked. Read once. */
export function kernelMaxBacklog(): number {
  if (somaxconn === undefined) {
    try {
      const value = Number(readFileSync('/proc/sys/net/core/somaxconn', 'latin1').trim());
      somaxconn = Number.isInteger(value) && value > 0 ? value : FALLBACK_BACKLOG;
    } catch {
      somaxconn = FALLBACK_BACKLOG;
    }
  }
  return somaxconn;
}

/** The queue a socket listening with --backlog `backlog` gets: the kernel's cap applies to an explicit value too. */
export function effectiveBacklog(backlog: number | undefined): number {
  return Math.min(backlog ?? kernelMaxBacklog(), kernelMaxBacklog());
}

/** Listens `server` on `address`; resolves once listening. `shared`: a cluster worker, whose master owns the
 * socket and has already prepared its path (prepareAddress). `backlog`: --backlog, by default somaxconn, for
 * inherited fds too (see below). */
export async function listenOn(server: net.Server, address: SocketAddress, chmod?: number, shared = false, backlog?: number): Promise<void> {
  const queue = backlog ?? kernelMaxBacklog();
  const label = formatSocketAddress(address);
  ownListeners.add(server);
  if (!shared) await prepareAddress(address);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      reject(
        err.code === 'EADDRINUSE'
          ? new UwsgiError('ERR_SOCKET_IN_USE', { address: label }, { cause: err })
          : new UwsgiError('ERR_SOCKET_LISTEN', { address: label, detail: err.message }, { cause: err }),
      );
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    switch (address.kind) {
      case 'unix':
        server.listen({ path: address.path, backlog: queue });
        break;
      case 'tcp':
        server.listen({ host: address.host, port: address.port, backlog: queue });
        break;
      case 'fd':
        // libuv calls listen() on an inherited fd too, which sets the queue of a socket already listening
        // (Linux, Unix and TCP alike): systemd's Backlog= holds only until the first worker listens, and the
        // value set here stays on the socket after node-uwsgi exits. Measured: Backlog=16, then Node's listen
        // without a backlog: ss shows 511.
        // In a cluster worker, listen({ fd }) asks the master to wrap *its* fd N and share it, and the master
        // closes it when the last worker holding it goes: a lone worker's crash lost a socket-activated socket
        // for good. The master passes its fds to each worker at the same numbers instead (ops/activation.ts,
        // workerStdio), and the worker listens on its own copy (node-internals.ts listenOnFd).
        if (shared) listenOnFd(server, address.fd, queue);
        else server.listen({ fd: address.fd, backlog: queue });
        break;
    }
  });
  if (address.kind === 'unix' && (chmod !== undefined || !shared)) setSocketMode(address.path, chmod);
}


/** --chmod-socket's mode, or by default the mode the umask gave minus any access for others: whoever can write
 * to the socket can claim any client address and scheme. */
export function setSocketMode(path: string, chmod: number | undefined): void {
  chmodSync(path, chmod ?? (statSync(path).mode & 0o770));
}

/** Before listening: a Unix socket file nobody answers on is left over from a crash and is removed; one that
 * answers is a live server (ERR_SOCKET_IN_USE); a path that is not a socket is left alone (ERR_SOCKET_LISTEN). */
export async function prepareAddress(address: SocketAddress): Promise<void> {
  if (address.kind === 'unix') await removeStaleSocket(address.path);
}

async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return;
  }
  if (!isSocket) {
    throw new UwsgiError('ERR_SOCKET_LISTEN', { address: `unix:${path}`, detail: 'the path exists and is not a socket' });
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.connect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) throw new UwsgiError('ERR_SOCKET_IN_USE', { address: `unix:${path}` });
  unlinkSync(path);
}

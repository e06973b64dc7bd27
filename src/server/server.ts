// The server factory: listening sockets whose connections go to handleConnection with one app adapter.
// A worker process hosts the same factory; wiring to an adapter happens in cli.ts or index.ts.
import net, { type BlockList } from 'node:net';
import { unlinkSync } from 'node:fs';
import type { Logger } from 'pino';
import type { ExchangeHandler } from '../exchange.js';
import { formatSocketAddress, type SocketAddress } from '../address.js';
import type { DecoderLimits } from '../protocol/decoder.js';
import { handleConnection } from './connection.js';
import { lifecycleContext, type RequestTracker } from './lifecycle.js';
import { effectiveBacklog, listenOn, prepareAddress, setSocketMode } from './listen.js';
import { bindSocket, NativeListener, type NativeAddon } from './native.js';
import { admitPeer } from './allow.js';
import { TlsFront, type TlsMaterial } from './tls.js';

/** One --ssl-socket as a worker listens on it: where, and the material its secure context is made of. */
export interface TlsListen {
  readonly address: SocketAddress;
  readonly material: TlsMaterial;
  /** Peers need a client certificate signed by material.ca. */
  readonly mutual: boolean;
}

export interface ServerConfig {
  readonly handler: ExchangeHandler;
  readonly log: Logger;
  readonly limits: DecoderLimits;
  readonly accessLog?: boolean;
  readonly multiprocess?: boolean;
  readonly chmodSocket?: number | undefined;
  /** In a cluster worker: the master owns the listening sockets (no stale-file check, no unlink on close). */
  readonly shared?: boolean;
  readonly requestTimeout?: number;
  readonly headerTimeout?: number;
  readonly bodyTimeout?: number;
  readonly sendTimeout?: number;
  readonly tracker?: RequestTracker;
  /** TCP peers allowed (loopback always is); undefined allows every peer (Unix sockets, tests). */
  readonly allowList?: BlockList;
  /** --backlog; undefined: the kernel's somaxconn (listen.ts). */
  readonly backlog?: number | undefined;
  /** An accept that failed on a listening socket (EMFILE when libuv's reserve fd is gone too); by default a
   * warning. Without a listener Node's 'error' event would throw from the accept callback. */
  readonly onAcceptError?: (err: NodeJS.ErrnoException) => void;
  /** The native accept addon (native.ts chooseAccept): it serves Unix sockets this server binds itself (not
   * shared) and the inherited fds in `nativeFds` (the master bound them); everything else listens in JavaScript. */
  readonly native?: NativeAddon | undefined;
  readonly nativeFds?: readonly number[];
  /** The addon's acceptAll, for a JavaScript listener on an inherited fd (the master bound it): at close, what is
   * queued is accepted and served right before the fd closes, so that the last close resets nothing. */
  readonly acceptAll?: ((fd: number) => number[]) | undefined;
}

/** The 'error' listener for a listening server: accept failures, not the app's. */
export function acceptErrorListener(config: Pick<ServerConfig, 'log' | 'onAcceptError'>): (err: NodeJS.ErrnoException) => void {
  return config.onAcceptError ?? ((err) => config.log.warn({ err }, 'cannot accept a connection'));
}

export interface UwsgiServer {
  /** Starts listening on every address; rejects (closing what was opened) if any fails. */
  listen(addresses: readonly SocketAddress[]): Promise<void>;
  /** Starts listening for uwsgi over TLS (--ssl-socket), always in JavaScript; rejects as listen(). */
  listenTls(sockets: readonly TlsListen[]): Promise<void>;
  /** New certificates for the TLS socket at `index` (in listenTls's order): for connections from now on. */
  updateTls(index: number, material: TlsMaterial): void;
  /** TLS handshakes that failed, over every TLS socket. */
  readonly tlsFailures: number;
  /** Stops accepting, waits for in-flight connections to finish, removes Unix socket files. `serveQueue`: the
   * master no longer holds the sockets (a stop): what is queued is served first, as this close may be the last. */
  close(serveQueue?: boolean): Promise<void>;
  /** Number of connections being served. */
  readonly connections: number;
  readonly servers: readonly net.Server[];
}

export function createServer(config: ServerConfig): UwsgiServer {
  const servers: net.Server[] = [];
  /** JavaScript listeners on inherited fds, and their fds. */
  const listenFds = new Map<net.Server, number>();
  const natives: NativeListener[] = [];
  const fronts: TlsFront[] = [];
  const unixPaths: string[] = [];
  const inflight = new Set<Promise<void>>();
  const context = {
    ...lifecycleContext(config),
    limits: config.limits,
    headerTimeout: config.headerTimeout ?? 0,
  };

  const allowList = config.allowList;
  const onAcceptError = acceptErrorListener(config);
  const track = (done: Promise<void>): void => {
    inflight.add(done);
    void done.then(() => inflight.delete(done));
  };
  const onConnection = (socket: net.Socket): void => {
    if (!admitPeer(allowList, socket, config.log)) return;
    track(handleConnection(socket, context));
  };
  const native = config.native;
  /** The fd the addon serves `address` on, or undefined for a JavaScript listener. */
  const nativeFd = async (address: SocketAddress): Promise<number | undefined> => {
    if (native === undefined) return undefined;
    if (address.kind === 'fd') return config.nativeFds?.includes(address.fd) ? address.fd : undefined;
    if (config.shared) return undefined;
    if (address.kind === 'tcp') return bindSocket(native, address, effectiveBacklog(config.backlog));
    await prepareAddress(address);
    const fd = bindSocket(native, address, effectiveBacklog(config.backlog));
    unixPaths.push(address.path);
    setSocketMode(address.path, config.chmodSocket);
    return fd;
  };

  /** A listener accepting in JavaScript (plain, or the plain side of a --ssl-socket): listening, and known to close(). */
  const listenJs = async (server: net.Server, address: SocketAddress, logged: Record<string, unknown>): Promise<void> => {
    servers.push(server);
    await listenOn(server, address, config.chmodSocket, config.shared, config.backlog);
    server.on('error', onAcceptError);
    if (address.kind === 'fd') listenFds.set(server, address.fd);
    if (address.kind === 'unix' && !config.shared) unixPaths.push(address.path);
    config.log[config.shared ? 'debug' : 'info'](logged, 'listening');
  };

  return {
    get connections() {
      return inflight.size + natives.reduce((n, listener) => n + listener.requests, 0);
    },
    servers,
    get tlsFailures() {
      return fronts.reduce((n, front) => n + front.failures, 0);
    },
    updateTls(index, material) {
      fronts[index]?.update(material);
    },
    async listenTls(sockets) {
      try {
        for (const { address, material, mutual } of sockets) {
          const label = material.address;
          const front = new TlsFront(material, config.log, mutual, context.headerTimeout, (socket) => track(handleConnection(socket, context)));
          fronts.push(front);
          // --allow-from on the plain connection, before any handshake.
          const server = net.createServer({ noDelay: true }, (socket) => {
            if (!admitPeer(allowList, socket, config.log)) return;
            // In flight from the accept, not from the end of the handshake: a stop or reload waits for a
            // connection still shaking hands (a queue served at a stop is all such) instead of resetting it.
            track(new Promise<void>((resolve) => socket.once('close', () => resolve())));
            front.accept(socket);
          });
          await listenJs(server, address, { address: label, tls: true, serial: material.serial });
        }
      } catch (err) {
        await this.close();
        throw err;
      }
    },
    async listen(addresses) {
      try {
        for (const address of addresses) {
          const fd = await nativeFd(address);
          if (fd !== undefined) {
            natives.push(new NativeListener(native!, fd, context, track, onAcceptError, allowList));
            config.log[config.shared ? 'debug' : 'info']({ address: formatSocketAddress(address), accept: 'native' }, 'listening');
            continue;
          }
          await listenJs(net.createServer({ noDelay: true }, onConnection), address, { address: formatSocketAddress(address) });
        }
      } catch (err) {
        await this.close();
        throw err;
      }
    },
    async close(serveQueue = false) {
      const nativeDone = natives.splice(0).map((listener) => listener.close(serveQueue));
      await Promise.all(
        servers.map((server) => {
          if (!server.listening) return undefined;
          const fd = listenFds.get(server);
          // The queue, served right before the close (libuv closes the fd at once, in server.close()): the same
          // step as the native Stop (accept.c). Without the addon the last close resets what is queued.
          if (serveQueue && fd !== undefined && config.acceptAll !== undefined) {
            // Through 'connection', as if the server had accepted them: the plain handler, or the TLS front's.
            for (const conn of config.acceptAll(fd)) server.emit('connection', new net.Socket({ fd: conn, readable: true, writable: true }));
          }
          return new Promise<void>((resolve) => server.close(() => resolve()));
        }),
      );
      for (const path of unixPaths) {
        try {
          unlinkSync(path);
        } catch {
          // Already gone: net.Server removes its own socket file on close.
        }
      }
      await Promise.all(nativeDone);
      await Promise.all(inflight);
    },
  };
}

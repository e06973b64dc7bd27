// An app's own listen() in a worker opens nothing: node-uwsgi owns the sockets, and `app.listen(3000)` at import
// (Express, Koa, Fastify and http.Server all end in net.Server.prototype.listen) would otherwise open *:3000 on
// every interface, past nginx and --allow-from. As Phusion Passenger does, the server only looks listening: the
// callback and 'listening' run, `listening` is true and address() answers what was asked, so apps that wait for
// them go on. The one patch of the platform in node-uwsgi, made in workers only, before the app is imported;
// node-uwsgi's own listeners (src/server/listen.ts listenOn) pass through.
import net from 'node:net';
import { listenHandleOf } from '../node-internals.js';
import { isOwnListener } from '../server/listen.js';

export interface AskedListen {
  /** What was asked, for the log: `*:3000`, `127.0.0.1:3000`, `[::1]:3000`, `unix:/path`, `fd://3`. */
  label: string;
  /** What the server's address() answers while it looks listening. */
  address: net.AddressInfo | string | null;
}

export interface ListenGuard {
  /** The addresses the app asked to listen on (labels), in order. */
  readonly asked: readonly string[];
  /** Puts net.Server.prototype.listen back. */
  uninstall(): void;
}

const PRETENDED = ['listening', 'address', 'close'] as const;

/** Replaces net.Server.prototype.listen for everything but node-uwsgi's own listeners; `onAddress` hears of each
 * address once (one warning per address and worker: a second server, say metrics on :9100, is said too). */
export function installListenGuard(onAddress: (asked: AskedListen) => void): ListenGuard {
  const original = net.Server.prototype.listen;
  const asked: string[] = [];
  const listen = function listen(this: net.Server, ...args: unknown[]): net.Server {
    if (isOwnListener(this)) return (original as (...a: unknown[]) => net.Server).apply(this, args);
    const what = describeListen(args);
    if (!asked.includes(what.label)) onAddress(what);
    asked.push(what.label);
    const callback = args[args.length - 1];
    if (typeof callback === 'function') this.once('listening', callback as () => void);
    pretendListening(this, what.address);
    process.nextTick(() => {
      if (Object.hasOwn(this, 'listening')) this.emit('listening');
    });
    return this;
  };
  net.Server.prototype.listen = listen as typeof original;
  return {
    asked,
    uninstall() {
      if (net.Server.prototype.listen === (listen as typeof original)) net.Server.prototype.listen = original;
    },
  };
}

/** What a listen() call asks for, by Node's own reading of its arguments: (port[, host][, backlog][, cb]),
 * (path[, backlog][, cb]), (options[, cb]) or (handle[, backlog][, cb]); no port is port 0. */
export function describeListen(args: readonly unknown[]): AskedListen {
  const first = args[0];
  if (typeof first === 'object' && first !== null) {
    const options = first as Record<string, unknown>;
    if (typeof options.path === 'string') return pipe(options.path);
    if (options.port !== undefined || options.host !== undefined) return tcp(options.port, options.host);
    const handle = listenHandleOf(options);
    if (typeof handle.fd === 'number') return { label: `fd://${handle.fd}`, address: null };
    if (typeof options.fd === 'number') return { label: `fd://${options.fd}`, address: null };
    return tcp(undefined, undefined);
  }
  if (typeof first === 'string' && !/^\d+$/.test(first)) return pipe(first);
  return tcp(first, args[1]);
}

function pipe(path: string): AskedListen {
  return { label: `unix:${path}`, address: path };
}

function tcp(rawPort: unknown, rawHost: unknown): AskedListen {
  const port = typeof rawPort === 'number' || (typeof rawPort === 'string' && /^\d+$/.test(rawPort)) ? Number(rawPort) : 0;
  const host = typeof rawHost === 'string' && rawHost !== '' ? rawHost : undefined;
  if (host === undefined) return { label: `*:${port}`, address: { address: '::', family: 'IPv6', port } };
  const ipv6 = net.isIPv6(host);
  return {
    label: ipv6 ? `[${host}]:${port}` : `${host}:${port}`,
    // A name cannot be resolved here, synchronously; localhost is what apps mostly give.
    address: { address: host === 'localhost' ? '127.0.0.1' : host, family: ipv6 ? 'IPv6' : 'IPv4', port },
  };
}

/** Own properties over the prototype's, until close() takes them away again. */
function pretendListening(server: net.Server, address: AskedListen['address']): void {
  Object.defineProperties(server, {
    listening: { configurable: true, get: () => true },
    address: {
      configurable: true,
      writable: true,
      value: () => (typeof address === 'object' && address !== null ? { ...address } : address),
    },
    close: {
      configurable: true,
      writable: true,
      // No handle to close: without its callback, net.Server's close() just emits 'close' (with it, the callback
      // would get ERR_SERVER_NOT_RUNNING, which an app that saw its server listen does not expect).
      value: function close(this: net.Server, callback?: (err?: Error) => void): net.Server {
        for (const name of PRETENDED) delete (this as unknown as Record<string, unknown>)[name];
        if (typeof callback === 'function') this.once('close', () => callback());
        return this.close();
      },
    },
  });
}

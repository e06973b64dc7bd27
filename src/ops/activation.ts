// Socket activation (sd_listen_fds(3)): the listening sockets systemd passes as fds 3.. with LISTEN_PID,
// LISTEN_FDS and LISTEN_FDNAMES replace --socket; how the master hands those fds to its workers; what an
// inherited fd is bound to, read from /proc (Node has no getsockname for an fd it has not wrapped).
//
// Why workers get the fds through stdio and listen on them themselves, not through cluster's shared handle:
// a worker's `listen({ fd })` always goes through the master (net.js ignores `exclusive` for fds), which wraps
// its own fd N in a handle and closes it when the last worker holding that handle goes. Measured with
// systemd-socket-activate and one worker, Node 20.20: after a SIGKILL of that worker its replacement failed
// with "bind EEXIST" and the socket was gone for good. With the fds passed at the same numbers
// (cluster.setupPrimary stdio) and listened on in the worker (listen.ts), the master never wraps them: the
// replacement served both a Unix and a TCP fd again.
import { readlinkSync } from 'node:fs';
import { endianness } from 'node:os';
import type { Logger } from 'pino';
import { UwsgiError } from '../errors.js';
import { type Options } from '../options.js';
import { formatSocketAddress, type SocketAddress } from '../address.js';
import { requireAllowList } from '../server/allow.js';
import { procNetRows } from './procnet.js';

/** sd_listen_fds(3): the first passed fd. */
export const SD_LISTEN_FDS_START = 3;
const LISTEN_VARS = ['LISTEN_PID', 'LISTEN_FDS', 'LISTEN_FDNAMES'] as const;

/** What an inherited fd is, from /proc/net. */
export type FdSocket =
  | { kind: 'unix'; path: string; listening: boolean; stream: boolean }
  | { kind: 'tcp'; host: string; port: number; listening: boolean; stream: true };

export interface ActivatedSocket {
  fd: number;
  name: string;
  socket: FdSocket | undefined;
}

/**
 * Takes the sockets systemd passed to this process and removes LISTEN_* from `env`, so that neither the workers
 * nor the app see them (sd_listen_fds with unset_environment). Undefined when there are none for this process.
 */
export function takeListenFds(env: NodeJS.ProcessEnv, pid: number, log: Logger): ActivatedSocket[] | undefined {
  const [listenPid, listenFds, listenNames] = LISTEN_VARS.map((name) => env[name]);
  for (const name of LISTEN_VARS) delete env[name];
  if (listenFds === undefined && listenPid === undefined) return undefined;
  if (listenPid !== String(pid)) {
    // Set for another process: a wrapper (sh -c without exec) sits between systemd and node.
    log.warn({ code: 'ERR_LISTEN_FDS', listenPid, pid }, 'LISTEN_FDS is meant for another process (LISTEN_PID): ignored; start node with exec');
    return undefined;
  }
  const count = Number(listenFds);
  if (listenFds === undefined || !/^\d+$/.test(listenFds) || count < 1) {
    throw new UwsgiError('ERR_LISTEN_FDS', { detail: `LISTEN_FDS=${JSON.stringify(listenFds)} is not a positive number of sockets` });
  }
  const names = listenNames === undefined ? [] : listenNames.split(':');
  if (listenNames !== undefined && names.length !== count) {
    throw new UwsgiError('ERR_LISTEN_FDS', { detail: `LISTEN_FDNAMES names ${names.length} sockets, LISTEN_FDS says ${count}` });
  }
  const out: ActivatedSocket[] = [];
  for (let i = 0; i < count; i++) {
    const fd = SD_LISTEN_FDS_START + i;
    // systemd's default name for a socket without FileDescriptorName=.
    const name = names[i] || 'unknown';
    const socket = inspectFd(fd);
    if (socket !== undefined && (!socket.listening || !socket.stream)) {
      throw new UwsgiError('ERR_LISTEN_FDS', {
        detail: `fd ${fd} (${name}) is not a listening stream socket: use ListenStream= in the socket unit`,
      });
    }
    out.push({ fd, name, socket });
  }
  return out;
}

/** The options with systemd's sockets, if any, in place of --socket; each is logged with its name. */
export function activateSockets(options: Options, log: Logger, env: NodeJS.ProcessEnv = process.env, pid = process.pid): Options {
  const activated = takeListenFds(env, pid, log);
  if (activated === undefined) return options;
  for (const { fd, name, socket } of activated) {
    log.info({ fd, name, socket: socket === undefined ? undefined : formatSocketAddress(socket) }, 'socket activation: listening socket passed by systemd');
  }
  log.info({ ignored: options.socket.map(formatSocketAddress) }, 'socket activation: --socket is ignored');
  // An fd that --ssl-socket fd://N names is that TLS socket; the others are plain uwsgi sockets.
  const tls = new Set(options.sslSocket.flatMap((ssl) => (ssl.address.kind === 'fd' ? [ssl.address.fd] : [])));
  return { ...options, socket: activated.filter(({ fd }) => !tls.has(fd)).map(({ fd }) => ({ kind: 'fd', fd }) satisfies SocketAddress) };
}

/** requireAllowList for inherited fds: a TCP socket bound to a non-loopback address needs --allow-from too. */
export function requireAllowListForFds(addresses: readonly SocketAddress[], allowFrom: readonly string[] | undefined): void {
  for (const address of addresses) {
    if (address.kind !== 'fd') continue;
    const socket = inspectFd(address.fd);
    if (socket?.kind === 'tcp') requireAllowList([{ kind: 'tcp', host: socket.host, port: socket.port }], allowFrom);
  }
}

/**
 * The workers' stdio when some sockets are fds: each fd at its own number, so that the worker's listen.ts
 * finds it where --socket fd://N says, and the IPC channel after them. Undefined (cluster's default) otherwise.
 */
export function workerStdio(addresses: readonly SocketAddress[]): Array<'inherit' | 'ignore' | 'ipc' | number> | undefined {
  const fds = new Set(addresses.flatMap((a) => (a.kind === 'fd' ? [a.fd] : [])));
  if (fds.size === 0) return undefined;
  const stdio: Array<'inherit' | 'ignore' | 'ipc' | number> = ['inherit', 'inherit', 'inherit'];
  for (let fd = 3; fd <= Math.max(...fds); fd++) stdio.push(fds.has(fd) ? fd : 'ignore');
  stdio.push('ipc');
  return stdio;
}

/** What fd `fd` of this process is bound to; undefined if it is not a socket or /proc/net cannot tell. */
export function inspectFd(fd: number): FdSocket | undefined {
  let inode: string | undefined;
  try {
    inode = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/self/fd/${fd}`))?.[1];
  } catch (err) {
    throw new UwsgiError('ERR_LISTEN_FDS', { detail: `fd ${fd} is not open (${(err as Error).message})` });
  }
  if (inode === undefined) return undefined;
  return findUnix(inode) ?? findTcp(inode, 'tcp') ?? findTcp(inode, 'tcp6');
}

// /proc/net/unix: Num RefCount Protocol Flags Type St Inode Path. Flags has __SO_ACCEPTCON (0x10000) once
// listen() was called; Type 0001 is SOCK_STREAM (net/unix/af_unix.c, unix_seq_show).
function findUnix(inode: string): FdSocket | undefined {
  for (const fields of procNetRows('unix')) {
    if (fields[6] !== inode) continue;
    return {
      kind: 'unix',
      path: fields.slice(7).join(' '),
      listening: (parseInt(fields[3] ?? '0', 16) & 0x10000) !== 0,
      stream: fields[4] === '0001',
    };
  }
  return undefined;
}

// /proc/net/tcp{,6}: sl local_address rem_address st ... inode (field 9); the address is the kernel's __be32
// words printed as host-order hex, the port in host order; st 0A is TCP_LISTEN (net/ipv4/tcp_ipv4.c).
function findTcp(inode: string, table: 'tcp' | 'tcp6'): FdSocket | undefined {
  for (const fields of procNetRows(table)) {
    if (fields[9] !== inode) continue;
    const [hexAddress = '', hexPort = '0'] = (fields[1] ?? '').split(':');
    return { kind: 'tcp', host: decodeAddress(hexAddress), port: parseInt(hexPort, 16), listening: fields[3] === '0A', stream: true };
  }
  return undefined;
}

function decodeAddress(hex: string): string {
  const bytes: number[] = [];
  for (let word = 0; word < hex.length; word += 8) {
    const chunk = Buffer.from(hex.slice(word, word + 8), 'hex');
    bytes.push(...(endianness() === 'LE' ? chunk.reverse() : chunk));
  }
  if (bytes.length === 4) return bytes.join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  // The URL parser writes the canonical, compressed form (RFC 5952): ::1, ::, 2001:db8::1.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

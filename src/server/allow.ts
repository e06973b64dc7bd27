// Who may talk to a TCP uwsgi socket. The protocol has no authentication and its vars (REMOTE_ADDR, HTTPS...)
// are trusted, so a non-loopback TCP listener needs an allow-list of front servers (--allow-from); loopback is
// always allowed. Unix sockets are guarded by file permissions instead.
import { BlockList, isIP, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { UwsgiError } from '../errors.js';
import { formatSocketAddress, isLoopbackHost, type SocketAddress } from '../address.js';

/** The allow-list: the entries plus loopback. */
export function buildAllowList(entries: readonly string[]): BlockList {
  const list = new BlockList();
  list.addSubnet('127.0.0.0', 8, 'ipv4');
  list.addAddress('::1', 'ipv6');
  for (const entry of entries) {
    const [address, prefix] = entry.split('/') as [string, string | undefined];
    const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, family);
    else list.addSubnet(address, Number(prefix), family);
  }
  return list;
}

export function isAllowed(list: BlockList, address: string | undefined): boolean {
  if (address === undefined) return false;
  const family = isIP(address);
  return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
}

/** Whether a new connection may be served; one from a peer off the list is logged and closed. Unix peers have no
 * address (file permissions guard them); an undefined list admits everyone. */
export function admitPeer(list: BlockList | undefined, socket: Socket, log: Logger): boolean {
  const peer = socket.remoteAddress;
  if (list === undefined || peer === undefined || isAllowed(list, peer)) return true;
  const err = new UwsgiError('ERR_PEER_NOT_ALLOWED', { peer });
  log.warn({ code: err.code, peer }, err.message);
  socket.destroy();
  return false;
}

/** Refuses to start a non-loopback TCP listener without --allow-from. */
export function requireAllowList(addresses: readonly SocketAddress[], allowFrom: readonly string[] | undefined): void {
  if (allowFrom !== undefined && allowFrom.length > 0) return;
  for (const address of addresses) {
    if (address.kind === 'tcp' && !isLoopbackHost(address.host)) {
      throw new UwsgiError('ERR_ALLOW_FROM_REQUIRED', { address: formatSocketAddress(address) });
    }
  }
}

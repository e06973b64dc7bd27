// Wires a loaded app to its interface's adapter: the one place that knows every interface.
import type { LoadedApp } from './app-loader/index.js';
import { socketlessHandlers, type ExchangeHandler } from './exchange.js';
import { createFetchHandler, type FetchApp } from './interfaces/fetch.js';
import { Server } from 'node:http';
import { createNodeHandler, serverUpgrade, withUpgrade, type NodeHandler, type UpgradeHandler } from './interfaces/node.js';
import { createWsgiHandler, type WsgiApp } from './interfaces/wsgi.js';

export function createHandler(loaded: Pick<LoadedApp, 'interface' | 'app' | 'upgrade'>): ExchangeHandler {
  const serve = interfaceHandler(loaded);
  // Upgrade requests (WebSocket) go to the app's upgrade handler whatever its interface, when it has one.
  const upgrade = loaded.upgrade;
  if (upgrade === undefined) return serve;
  if (upgrade instanceof Server) return socketless(serve, withUpgrade(serve, serverUpgrade(upgrade)));
  const handler = upgrade as UpgradeHandler;
  return socketless(serve, withUpgrade(serve, () => handler));
}

/** Upgrade requests never reach a handler on the native path without a net.Socket (native.ts): the wrapper of a
 * socketless handler is socketless too. */
function socketless(serve: ExchangeHandler, wrapper: ExchangeHandler): ExchangeHandler {
  if (socketlessHandlers.has(serve)) socketlessHandlers.add(wrapper);
  return wrapper;
}

function interfaceHandler(loaded: Pick<LoadedApp, 'interface' | 'app'>): ExchangeHandler {
  switch (loaded.interface) {
    case 'wsgi':
      return createWsgiHandler(loaded.app as WsgiApp);
    case 'fetch':
      return createFetchHandler(loaded.app as FetchApp);
    case 'node':
      return createNodeHandler(loaded.app as NodeHandler);
  }
}

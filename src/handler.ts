// Wires a loaded app to its interface's adapter: the one place that knows every interface.
import type { LoadedApp } from './app-loader/index.js';
import type { ExchangeHandler } from './exchange.js';
import { createFetchHandler, type FetchApp } from './interfaces/fetch.js';
import { Server } from 'node:http';
import { createNodeHandler, serverUpgrade, withUpgrade, type NodeHandler, type UpgradeHandler } from './interfaces/node.js';
import { createWsgiHandler, type WsgiApp } from './interfaces/wsgi.js';

export function createHandler(loaded: Pick<LoadedApp, 'interface' | 'app' | 'upgrade'>): ExchangeHandler {
  const serve = interfaceHandler(loaded);
  // Upgrade requests (WebSocket) go to the app's upgrade handler whatever its interface, when it has one.
  const upgrade = loaded.upgrade;
  if (upgrade === undefined) return serve;
  if (upgrade instanceof Server) return withUpgrade(serve, serverUpgrade(upgrade));
  const handler = upgrade as UpgradeHandler;
  return withUpgrade(serve, () => handler);
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

// Wires a loaded app to its interface's adapter: the one place that knows every interface.
import type { LoadedApp } from './app-loader/index.js';
import type { ExchangeHandler } from './exchange.js';
import { createFetchHandler, type FetchApp } from './interfaces/fetch.js';
import { createNodeHandler, type NodeHandler } from './interfaces/node.js';
import { createWsgiHandler, type WsgiApp } from './interfaces/wsgi.js';

export function createHandler(loaded: Pick<LoadedApp, 'interface' | 'app'>): ExchangeHandler {
  switch (loaded.interface) {
    case 'wsgi':
      return createWsgiHandler(loaded.app as WsgiApp);
    case 'fetch':
      return createFetchHandler(loaded.app as FetchApp);
    case 'node':
      return createNodeHandler(loaded.app as NodeHandler);
  }
}

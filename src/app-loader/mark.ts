// Tags that settle an app's interface in code, whatever detection would say:
//   export default wsgi((environ, startResponse) => ...)
// The tag is a registered symbol, so an app tagged by another copy of node-uwsgi is still recognised.
import type { FetchApp } from '../interfaces/fetch.js';
import type { NodeHandler } from '../interfaces/node.js';
import type { WsgiApp } from '../interfaces/wsgi.js';

export type InterfaceName = 'wsgi' | 'node' | 'fetch';

export const INTERFACE_TAG: unique symbol = Symbol.for('node-uwsgi.interface') as never;

function tag<T extends object>(app: T, name: InterfaceName): T {
  Object.defineProperty(app, INTERFACE_TAG, { value: name, configurable: true });
  return app;
}

/** Marks a WSGI-shaped `(environ, startResponse)` app. */
export function wsgi<T extends WsgiApp>(app: T): T {
  return tag(app, 'wsgi');
}

/** Marks a Node `(req, res)` handler. */
export function node<T extends NodeHandler>(app: T): T {
  return tag(app, 'node');
}

/** Marks a fetch handler `(request) => Response` or an object with a `fetch` method. */
export function fetchApp<T extends FetchApp>(app: T): T {
  return tag(app, 'fetch');
}

export function taggedInterface(value: unknown): InterfaceName | undefined {
  if ((typeof value !== 'function' && typeof value !== 'object') || value === null) return undefined;
  const name = (value as { [INTERFACE_TAG]?: unknown })[INTERFACE_TAG];
  return name === 'wsgi' || name === 'node' || name === 'fetch' ? name : undefined;
}

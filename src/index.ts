// The public API of the node-uwsgi package: interface tags, the WSGI validator, the server and codec for
// embedding and tests. The CLI (src/cli.ts) is built on the same exports.
export { fetchApp, node, wsgi, loadApp, parseAppSpec, type LoadedApp, type InterfaceName } from './app-loader/index.js';
export { validator } from './interfaces/validate.js';
export type { Environ, StartResponse, WsgiApp, WsgiBody, WsgiWrite } from './interfaces/wsgi.js';
export type { FetchApp } from './interfaces/fetch.js';
export { Response } from './interfaces/fetch-response.js';
export type { NodeHandler } from './interfaces/node.js';
export { createHandler } from './handler.js';
export { createServer } from './server/server.js';
export { ERRORS, UwsgiError, isUwsgiError, statusOf, type ErrorCode } from './errors.js';
export { OPTIONS, defaultOptions, parseSocketAddress, type Options } from './options.js';
export * as protocol from './protocol/index.js';

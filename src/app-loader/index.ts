// Loads an app from a spec `path-or-package[:export]` (`:name()` calls a factory), ESM or CommonJS, and tells
// which interface it speaks. Detection is deterministic and documented in README.md ("Which interface an app
// speaks"); the rules below are that table, in that order.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { Server } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { UwsgiError } from '../errors.js';
import { describeValue, isThenable } from '../values.js';
import { taggedInterface, type InterfaceName } from './mark.js';
import { locateError } from './trace.js';
import { looksLikePath, parseAppSpec, type AppSpec } from './spec.js';

export { fetchApp, node, wsgi, type InterfaceName } from './mark.js';
export { parseAppSpec, type AppSpec } from './spec.js';

export interface LoadedApp {
  interface: InterfaceName;
  /** What the adapter serves: a WSGI app, a (req, res) handler or http.Server, or a fetch app. */
  app: unknown;
  /** The module file that was imported. */
  file: string;
  /** The export used. */
  exportName: string;
  /** Which rule chose the interface (logged at start, so a surprise is visible). */
  detectedBy: string;
  /** Who takes Upgrade requests (WebSocket): the module's `upgrade(req, socket, head)` export, else the
   * http.Server (the app, or Fastify's `.server`) whose 'upgrade' listeners do, while it has any. */
  upgrade?: ((req: never, socket: never, head: never) => unknown) | Server;
}

export interface LoadOptions {
  cwd: string;
  interface: 'auto' | InterfaceName;
  /** The addresses the module's own listen() calls asked for (src/worker/listen-guard.ts): when nothing it
   * exports can be served, the error says to export the app instead. */
  appListens?: readonly string[];
}

/** Where the spec named the module, and what its import did: for the hints of the errors. */
export interface DetectContext {
  /** The module as the spec named it (./app.js). */
  module?: string;
  /** The export was a `:name()` factory, and the value is what it returned. */
  factory?: boolean;
  commonJs?: boolean;
  appListens?: readonly string[];
}

const CONVENTIONAL = ['default', 'application', 'app', 'handler'];

/** Finds the module file: a path (relative to cwd) when it looks like one or exists, else a package from cwd. */
export function resolveModule(module: string, cwd: string): string {
  const asPath = resolve(cwd, module);
  if (looksLikePath(module) || existsSync(asPath)) {
    if (existsSync(asPath) && statSync(asPath).isFile()) return asPath;
    // A directory with a package.json or index.js, as require() would take it.
    try {
      return createRequire(join(cwd, 'noop.js')).resolve(asPath);
    } catch {
      throw new UwsgiError('ERR_APP_NOT_FOUND', { spec: JSON.stringify(module), cwd });
    }
  }
  try {
    return createRequire(join(cwd, 'noop.js')).resolve(module);
  } catch {
    const esm = resolveEsmPackage(module, cwd);
    if (esm !== undefined) return esm;
    throw new UwsgiError('ERR_APP_NOT_FOUND', { spec: JSON.stringify(module), cwd });
  }
}

/** A package whose `exports` offer only an `import` condition, which require.resolve cannot see. */
function resolveEsmPackage(name: string, cwd: string): string | undefined {
  for (let dir = cwd; ; dir = dirname(dir)) {
    const pkgFile = join(dir, 'node_modules', name, 'package.json');
    if (existsSync(pkgFile)) {
      const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { exports?: unknown; module?: string; main?: string };
      let target: unknown = pkg.exports;
      if (typeof target === 'object' && target !== null && '.' in target) target = (target as Record<string, unknown>)['.'];
      while (typeof target === 'object' && target !== null) {
        const conditions = target as Record<string, unknown>;
        target = conditions.import ?? conditions.node ?? conditions.default;
      }
      const entry = typeof target === 'string' ? target : (pkg.module ?? pkg.main ?? 'index.js');
      const file = join(dir, 'node_modules', name, entry);
      return existsSync(file) ? file : undefined;
    }
    if (dirname(dir) === dir) return undefined;
  }
}

/** Whether Node loads `file` as CommonJS (.cjs, or .js under a package.json without "type": "module"). */
function isCommonJs(file: string): boolean {
  const ext = extname(file);
  if (ext === '.cjs' || ext === '.cts') return true;
  if (ext !== '.js' && ext !== '.ts') return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const pkgFile = join(dir, 'package.json');
    if (existsSync(pkgFile)) {
      try {
        return (JSON.parse(readFileSync(pkgFile, 'utf8')) as { type?: string }).type !== 'module';
      } catch {
        return true;
      }
    }
    if (dirname(dir) === dir) return true;
  }
}

export async function loadApp(spec: string, options: LoadOptions): Promise<LoadedApp> {
  const parsed = parseAppSpec(spec, options.cwd);
  const file = resolveModule(parsed.module, options.cwd);
  let namespace: Record<string, unknown>;
  try {
    namespace = (await import(pathToFileURL(file).href)) as Record<string, unknown>;
  } catch (cause) {
    throw new UwsgiError('ERR_APP_IMPORT_FAILED', { file, detail: messageOf(cause), at: await locateError(cause, file, options.cwd) }, { cause });
  }
  const commonJs = isCommonJs(file);
  const exports = exportsOf(namespace, commonJs);
  const [exportName, value] = pickExport(exports, parsed, file, options.appListens ?? []);
  let app = value;
  if (parsed.factory) {
    if (typeof value !== 'function') {
      throw new UwsgiError('ERR_APP_FACTORY_FAILED', { file, name: exportName, detail: `the export is ${kindOf(value)}, not a function` });
    }
    try {
      app = await (value as () => unknown)();
    } catch (cause) {
      throw new UwsgiError('ERR_APP_FACTORY_FAILED', { file, name: exportName, detail: messageOf(cause), at: await locateError(cause, file, options.cwd) }, { cause });
    }
  }
  const detected = await detectInterface(app, exportName, options.interface, file, {
    module: parsed.module,
    factory: parsed.factory,
    commonJs,
    appListens: options.appListens ?? [],
  });
  const upgrade = upgradeOf(exports.get('upgrade'), detected.app instanceof Server ? detected.app : app);
  return { ...detected, file, exportName, ...(upgrade && { upgrade }) };
}

function upgradeOf(exported: unknown, app: unknown): LoadedApp['upgrade'] {
  if (typeof exported === 'function') return exported as (req: never, socket: never, head: never) => unknown;
  if (app instanceof Server) return app;
  const server = hasMethod(app, 'routing') ? (app as { server?: unknown }).server : undefined;
  return server instanceof Server ? server : undefined;
}

/** The exports to choose from. A CommonJS module's `module.exports` object is its namespace (Node puts it under
 * `default`); a function assigned to `module.exports` stays the default export. */
function exportsOf(namespace: Record<string, unknown>, commonJs: boolean): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const def = namespace.default;
  if (commonJs && isPlainObject(def) && !looksLikeApp(def)) {
    for (const [key, value] of Object.entries(def)) out.set(key, value);
    return out;
  }
  for (const key of Object.keys(namespace)) if (key !== 'module.exports') out.set(key, namespace[key]);
  return out;
}

function pickExport(exports: Map<string, unknown>, spec: AppSpec, file: string, appListens: readonly string[]): [string, unknown] {
  const names = spec.exportName === undefined ? CONVENTIONAL : [spec.exportName];
  for (const name of names) {
    const value = exports.get(name);
    if (value !== undefined && value !== null) return [name, value];
  }
  const found = [...exports.keys()].sort();
  throw new UwsgiError('ERR_APP_EXPORT_MISSING', {
    file,
    name: names.join('", "'),
    exports: found.length === 0 ? '(none)' : found.join(', '),
    spec: `${spec.module}`,
    hint: appListens.length === 0 ? '' : `; ${listenHint(appListens)}`,
  });
}

interface Detected {
  interface: InterfaceName;
  app: unknown;
  detectedBy: string;
}

/** README.md's detection table, in order; `forced` (--interface) only adapts the value it names. */
export async function detectInterface(
  value: unknown,
  exportName: string,
  forced: 'auto' | InterfaceName,
  file = '<app>',
  context: DetectContext = {},
): Promise<Detected> {
  const tagged = taggedInterface(value);
  if (forced === 'auto' && tagged !== undefined) {
    // node() on a Koa or Fastify instance still needs its (req, res) handler.
    const adapted = tagged === 'node' ? await nodeShape(value, exportName, file) : undefined;
    return { interface: tagged, app: adapted?.app ?? value, detectedBy: `tagged ${tagged}()` };
  }
  if (forced === 'wsgi') {
    if (typeof value === 'function') return { interface: 'wsgi', app: value, detectedBy: '--interface wsgi' };
    throw mismatch(value, exportName, 'wsgi', file);
  }
  if (forced === 'fetch') {
    if (typeof value === 'function' || hasMethod(value, 'fetch')) return { interface: 'fetch', app: value, detectedBy: '--interface fetch' };
    throw mismatch(value, exportName, 'fetch', file);
  }
  const node = await nodeShape(value, exportName, file);
  if (forced === 'node') {
    if (node !== undefined) return { interface: 'node', app: node.app, detectedBy: `--interface node (${node.by})` };
    if (typeof value === 'function') return { interface: 'node', app: value, detectedBy: '--interface node' };
    throw mismatch(value, exportName, 'node', file);
  }
  if (value instanceof Server) return { interface: 'node', app: value, detectedBy: 'http.Server' };
  if (hasMethod(value, 'fetch')) return { interface: 'fetch', app: value, detectedBy: 'fetch method' };
  if (node !== undefined) return { interface: 'node', app: node.app, detectedBy: node.by };
  if (typeof value === 'function') {
    if (exportName === 'application') return { interface: 'wsgi', app: value, detectedBy: 'exported as application' };
    if (value.length === 1) return { interface: 'fetch', app: value, detectedBy: 'function of one parameter' };
    if (value.length >= 2 && value.length <= 4) {
      return { interface: 'node', app: value, detectedBy: `function of ${value.length} parameters` };
    }
  }
  throw new UwsgiError('ERR_APP_INTERFACE_UNKNOWN', { file, name: exportName, detail: `it is ${kindOf(value)}`, fix: unknownFix(value, exportName, context) });
}

/** What to do about an export whose interface cannot be told: the likely mistake's fix, else --interface. */
function unknownFix(value: unknown, exportName: string, context: DetectContext): string {
  const module = context.module ?? '<app>';
  if (isThenable(value)) {
    if (context.commonJs) {
      return `CommonJS cannot await it at top level: export the factory instead (module.exports.createApp = createApp) and use ${module}:createApp()`;
    }
    const awaited = exportName === 'default' ? 'export default await createApp()' : `export const ${exportName} = await createApp()`;
    return `await it at top level (${awaited}) or export the factory and use ${module}:createApp()`;
  }
  if (typeof value === 'function' && !context.factory && (value.length === 0 || isAsyncFunction(value))) {
    return `if it is a factory, call it: ${module}:${exportName}(); else pass --interface wsgi|node|fetch`;
  }
  if (context.appListens !== undefined && context.appListens.length > 0) return listenHint(context.appListens);
  return 'pass --interface wsgi|node|fetch';
}

function listenHint(appListens: readonly string[]): string {
  return `the module called listen() on ${appListens.join(', ')}: export the app (or the server) instead, and node-uwsgi serves it on its own sockets`;
}

function isAsyncFunction(value: unknown): boolean {
  return Object.prototype.toString.call(value) === '[object AsyncFunction]';
}

/** Koa (callback()) and Fastify (ready(), then routing()) as (req, res) handlers; http.Server as itself; a NestJS
 * application (init()) as its http.Server. */
async function nodeShape(value: unknown, exportName: string, file: string): Promise<{ app: unknown; by: string } | undefined> {
  if (value instanceof Server) return { app: value, by: 'http.Server' };
  if (hasMethod(value, 'fetch')) return undefined;
  if (hasMethod(value, 'getHttpServer') && hasMethod(value, 'getHttpAdapter') && hasMethod(value, 'init')) {
    return { app: await nestServer(value, exportName, file), by: 'NestJS application (init(), getHttpServer())' };
  }
  if (hasMethod(value, 'routing') && hasMethod(value, 'ready') && hasMethod(value, 'inject')) {
    const fastify = value as { ready(): Promise<unknown>; routing(req: unknown, res: unknown): void };
    try {
      await fastify.ready();
    } catch (cause) {
      // A plugin that fails to boot: the app cannot serve, and the error must say where it came from.
      throw new UwsgiError('ERR_APP_FACTORY_FAILED', { file, name: `${exportName}.ready`, detail: messageOf(cause) }, { cause });
    }
    return { app: (req: unknown, res: unknown) => fastify.routing(req, res), by: 'Fastify instance (ready(), routing)' };
  }
  if (hasMethod(value, 'callback')) {
    const koa = value as { callback(): unknown };
    return { app: koa.callback(), by: 'callback() (Koa)' };
  }
  return undefined;
}

/**
 * A NestJS INestApplication, as NestFactory.create() returns it: its routes exist once init() has run (listen()
 * runs it; an app handed over without listen() has not). Then its http.Server's 'request' listener (the Express
 * or Fastify instance) serves, and its 'upgrade' listeners (WebSocket gateways) take upgrades.
 */
async function nestServer(value: unknown, exportName: string, file: string): Promise<Server> {
  const nest = value as { isInitialized?: boolean; init(): Promise<unknown>; getHttpServer(): unknown };
  // NestApplication's own flag (nest-application.js); init() checks it too, so an older Nest without it is fine.
  if (nest.isInitialized !== true) {
    try {
      await nest.init();
    } catch (cause) {
      throw new UwsgiError('ERR_APP_FACTORY_FAILED', { file, name: `${exportName}.init`, detail: messageOf(cause) }, { cause });
    }
  }
  // On Nest's Fastify platform, listen() also runs Fastify's ready() (plugins, hooks, the router): without it
  // every request fails with a 500.
  const adapter = (nest as unknown as { getHttpAdapter(): { getType?(): string; getInstance?(): unknown } }).getHttpAdapter();
  const instance = adapter.getType?.() === 'fastify' ? adapter.getInstance?.() : undefined;
  if (hasMethod(instance, 'ready')) {
    try {
      await (instance as { ready(): Promise<unknown> }).ready();
    } catch (cause) {
      throw new UwsgiError('ERR_APP_FACTORY_FAILED', { file, name: `${exportName}.getHttpAdapter().getInstance().ready`, detail: messageOf(cause) }, { cause });
    }
  }
  const server = nest.getHttpServer();
  if (server instanceof Server) return server;
  throw new UwsgiError('ERR_APP_INTERFACE_UNKNOWN', {
    file,
    name: exportName,
    detail: `it is a NestJS application whose getHttpServer() returns ${kindOf(server)}, not an http.Server`,
    fix: 'an httpsOptions app? nginx terminates TLS: drop httpsOptions',
  });
}

function mismatch(value: unknown, name: string, forced: InterfaceName, file: string): UwsgiError {
  return new UwsgiError('ERR_APP_INTERFACE_MISMATCH', { file, name, interface: forced, detail: `it is ${kindOf(value)}` });
}

function hasMethod(value: unknown, name: string): boolean {
  return (typeof value === 'object' || typeof value === 'function') && value !== null &&
    typeof (value as Record<string, unknown>)[name] === 'function';
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function looksLikeApp(value: Record<string, unknown>): boolean {
  return hasMethod(value, 'fetch') || hasMethod(value, 'callback') || taggedInterface(value) !== undefined;
}

/** describeValue, with an object's first keys: what an export that is not an app holds. */
function kindOf(value: unknown): string {
  const described = describeValue(value);
  return described.startsWith('an object') ? `${described} with keys [${Object.keys(value as object).slice(0, 8).join(', ')}]` : described;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

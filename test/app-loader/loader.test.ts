// The app loader: spec parsing, resolution from the cwd option, export choice, factories, and README.md's
// detection table ("Which interface an app speaks") row by row, against real fixture modules and real frameworks.
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Server, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  detectInterface,
  fetchApp,
  loadApp,
  node,
  parseAppSpec,
  wsgi,
  type LoadOptions,
} from '../../src/app-loader/index.js';
import { UwsgiError, type ErrorCode } from '../../src/errors.js';

const root = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = join(root, 'test/fixtures/apps/loader');
const auto: LoadOptions = { cwd: fixtures, interface: 'auto' };

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** The fixture module itself, as the test sees it (the same instance the loader imported). */
async function fixture(name: string): Promise<Record<string, unknown>> {
  return (await import(pathToFileURL(join(fixtures, name)).href)) as Record<string, unknown>;
}

function thrown(fn: () => unknown): UwsgiError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(UwsgiError);
    return err as UwsgiError;
  }
  throw new Error('expected a throw');
}

async function rejection(promise: Promise<unknown>, code: ErrorCode): Promise<UwsgiError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(UwsgiError);
  expect((err as UwsgiError).code).toBe(code);
  return err as UwsgiError;
}

/** The exports an ERR_APP_EXPORT_MISSING message lists, sorted: Node's ESM namespaces list them sorted, vitest's
 * module runner in declaration order. */
function exportsListed(err: UwsgiError): string[] {
  const match = /; exports found: (.*)\. Name one with /.exec(err.message);
  expect(match).not.toBeNull();
  return (match?.[1] ?? '').split(', ').sort();
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nu-loader-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Serves one GET through a (req, res) handler on an ephemeral port and returns status and body. */
async function getThrough(handler: RequestListener, path: string): Promise<{ status: number; body: string }> {
  const server = createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: response.status, body: await response.text() };
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

describe('parseAppSpec', () => {
  it('takes a path alone as the module, with no export named', () => {
    expect(parseAppSpec('./app.js')).toEqual({ module: './app.js', exportName: undefined, factory: false });
  });

  it('splits off a named export', () => {
    expect(parseAppSpec('./app.mjs:handler')).toEqual({ module: './app.mjs', exportName: 'handler', factory: false });
  });

  it('reads :name() as a factory to call', () => {
    expect(parseAppSpec('./f.js:createApp()')).toEqual({ module: './f.js', exportName: 'createApp', factory: true });
  });

  it('takes a bare package name as the module', () => {
    expect(parseAppSpec('pkg')).toEqual({ module: 'pkg', exportName: undefined, factory: false });
  });

  it('splits an absolute path and its export', () => {
    expect(parseAppSpec('/abs/path/app.js:app')).toEqual({ module: '/abs/path/app.js', exportName: 'app', factory: false });
  });

  it('leaves a colon that is not followed by an identifier in the path', () => {
    expect(parseAppSpec('./we:ird/app.js')).toEqual({ module: './we:ird/app.js', exportName: undefined, factory: false });
    expect(parseAppSpec('./we:ird/app.js:handler()')).toEqual({ module: './we:ird/app.js', exportName: 'handler', factory: true });
  });

  it('refuses an empty spec with ERR_APP_NOT_FOUND', () => {
    const err = thrown(() => parseAppSpec(''));
    expect(err.code).toBe('ERR_APP_NOT_FOUND');
    expect(err.message).toContain('cannot find the app module ""');
  });

  it('names the cwd option, not process.cwd(), when loadApp gets an empty spec', async () => {
    const err = await rejection(loadApp('', auto), 'ERR_APP_NOT_FOUND');
    expect(err.message).toContain(`(resolved from ${fixtures})`);
  });
});

describe('resolution', () => {
  it('resolves a relative path from the cwd option, not process.cwd()', async () => {
    expect(process.cwd()).not.toBe(fixtures);
    const loaded = await loadApp('./fetch-default.mjs', auto);
    expect(loaded.file).toBe(join(fixtures, 'fetch-default.mjs'));
    expect(loaded.app).toBe((await fixture('fetch-default.mjs')).default);

    const err = await rejection(loadApp('./fetch-default.mjs', { cwd: root, interface: 'auto' }), 'ERR_APP_NOT_FOUND');
    expect(err.message).toContain(`"./fetch-default.mjs" (resolved from ${root})`);
  });

  it('loads an absolute path whatever the cwd', async () => {
    const file = join(fixtures, 'node-default.mjs');
    const loaded = await loadApp(`${file}:default`, { cwd: tempDir(), interface: 'auto' });
    expect(loaded.file).toBe(file);
    expect(loaded.exportName).toBe('default');
    expect(loaded.interface).toBe('node');
  });

  it('loads a path whose directory has a colon in its name', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'we:ird'));
    writeFileSync(join(dir, 'we:ird/app.mjs'), 'export const handler = (request) => new Response(request.url);\n');
    const loaded = await loadApp('./we:ird/app.mjs', { cwd: dir, interface: 'auto' });
    expect(loaded.file).toBe(join(dir, 'we:ird/app.mjs'));
    expect(loaded.exportName).toBe('handler');
    expect(loaded.interface).toBe('fetch');
  });

  it('finds a CommonJS package by name through its "main"', async () => {
    const loaded = await loadApp('loader-fixture-cjs-main', auto);
    expect(loaded.file).toBe(join(fixtures, 'node_modules/loader-fixture-cjs-main/lib/main.js'));
    expect(loaded.exportName).toBe('application');
    expect(loaded.interface).toBe('wsgi');
    expect(loaded.detectedBy).toBe('exported as application');
  });

  it('finds a package whose "exports" have only an "import" condition', async () => {
    const loaded = await loadApp('loader-fixture-import-only', auto);
    expect(loaded.file).toBe(join(fixtures, 'node_modules/loader-fixture-import-only/src/entry.js'));
    expect(loaded.exportName).toBe('default');
    expect(loaded.interface).toBe('fetch');
    expect(loaded.detectedBy).toBe('fetch method');
    const app = loaded.app as { fetch(request: Request): Response };
    expect(await app.fetch(new Request('http://example.test/x')).text()).toBe('from loader-fixture-import-only http://example.test/x');
  });

  it('looks packages up from the cwd option: elsewhere they are not found', async () => {
    const cwd = tempDir();
    const err = await rejection(loadApp('loader-fixture-import-only', { cwd, interface: 'auto' }), 'ERR_APP_NOT_FOUND');
    expect(err.message).toBe(
      `cannot find the app module "loader-fixture-import-only" (resolved from ${cwd}): give a path such as ./app.js or an installed package name`,
    );
  });

  it('reports a missing file with ERR_APP_NOT_FOUND naming the spec and the cwd', async () => {
    const err = await rejection(loadApp('./missing.mjs:app', auto), 'ERR_APP_NOT_FOUND');
    expect(err.message).toBe(
      `cannot find the app module "./missing.mjs" (resolved from ${fixtures}): give a path such as ./app.js or an installed package name`,
    );
  });
});

describe('export choice', () => {
  it('takes the default export first', async () => {
    const loaded = await loadApp('./default-first.mjs', auto);
    expect(loaded.exportName).toBe('default');
    expect(loaded.app).toBe((await fixture('default-first.mjs')).default);
    expect(loaded.interface).toBe('fetch');
    expect(loaded.detectedBy).toBe('function of one parameter');
  });

  it('takes application when there is no default', async () => {
    const loaded = await loadApp('./application-second.mjs', auto);
    expect(loaded.exportName).toBe('application');
    expect(loaded.app).toBe((await fixture('application-second.mjs')).application);
    expect(loaded.interface).toBe('wsgi');
  });

  it('takes app when there is neither default nor application', async () => {
    const loaded = await loadApp('./app-third.mjs', auto);
    expect(loaded.exportName).toBe('app');
    expect(loaded.app).toBe((await fixture('app-third.mjs')).app);
    expect(loaded.interface).toBe('node');
  });

  it('takes handler last', async () => {
    const loaded = await loadApp('./handler-fourth.mjs', auto);
    expect(loaded.exportName).toBe('handler');
    expect(loaded.app).toBe((await fixture('handler-fourth.mjs')).handler);
    expect(loaded.interface).toBe('fetch');
  });

  it('takes a named export over the conventional ones', async () => {
    const loaded = await loadApp('./default-first.mjs:handler', auto);
    expect(loaded.exportName).toBe('handler');
    expect(loaded.app).toBe((await fixture('default-first.mjs')).handler);
    expect(loaded.interface).toBe('node');
  });

  it('reports a missing named export with ERR_APP_EXPORT_MISSING, listing the exports found', async () => {
    const file = join(fixtures, 'default-first.mjs');
    const err = await rejection(loadApp('./default-first.mjs:main', auto), 'ERR_APP_EXPORT_MISSING');
    expect(err.message).toContain(`the app module ${file} has no export "main"; exports found: `);
    expect(err.message).toContain('. Name one with ./default-first.mjs:<export>');
    expect(exportsListed(err)).toEqual(['app', 'application', 'default', 'handler']);
  });

  it('reports a module without any conventional export, listing the exports found', async () => {
    const file = join(fixtures, 'no-conventional.mjs');
    const err = await rejection(loadApp('./no-conventional.mjs', auto), 'ERR_APP_EXPORT_MISSING');
    expect(err.message).toContain(`the app module ${file} has no export "default", "application", "app", "handler"; exports found: `);
    expect(err.message).toContain('. Name one with ./no-conventional.mjs:<export>');
    expect(exportsListed(err)).toEqual(['routes', 'server']);
  });

  it('sees CommonJS exports.application = fn as the export application', async () => {
    const loaded = await loadApp('./cjs-application.cjs', auto);
    expect(loaded.file).toBe(join(fixtures, 'cjs-application.cjs'));
    expect(loaded.exportName).toBe('application');
    expect(loaded.interface).toBe('wsgi');
    expect(loaded.detectedBy).toBe('exported as application');
    expect(loaded.app).toBe(((await fixture('cjs-application.cjs')).default as Record<string, unknown>).application);
  });

  it('lists a CommonJS module\'s own exports when the named one is missing', async () => {
    const err = await rejection(loadApp('./cjs-application.cjs:main', auto), 'ERR_APP_EXPORT_MISSING');
    expect(err.message).toContain(`the app module ${join(fixtures, 'cjs-application.cjs')} has no export "main"`);
    expect(exportsListed(err)).toEqual(['application', 'helper']);
  });

  it('takes CommonJS module.exports = fn as the default export', async () => {
    const loaded = await loadApp('./cjs-function.cjs', auto);
    expect(loaded.exportName).toBe('default');
    expect(loaded.app).toBe((await fixture('cjs-function.cjs')).default);
    expect(loaded.interface).toBe('node');
    expect(loaded.detectedBy).toBe('function of 2 parameters');
  });

  it('takes CommonJS module.exports = { fetch } as the app, not as a bag of exports', async () => {
    const loaded = await loadApp('./cjs-fetch-object.cjs', auto);
    expect(loaded.exportName).toBe('default');
    expect(loaded.app).toBe((await fixture('cjs-fetch-object.cjs')).default);
    expect(loaded.interface).toBe('fetch');
    expect(loaded.detectedBy).toBe('fetch method');
  });

  it('loads a .js file as CommonJS under a package.json with "type": "commonjs"', async () => {
    const loaded = await loadApp('./nested/app.js', auto);
    expect(loaded.file).toBe(join(fixtures, 'nested/app.js'));
    expect(loaded.exportName).toBe('app');
    expect(loaded.app).toBe(((await fixture('nested/app.js')).default as Record<string, unknown>).app);
    expect(loaded.interface).toBe('node');
    expect(loaded.detectedBy).toBe('function of 2 parameters');
  });
});

describe('factories', () => {
  it('calls a sync factory and serves what it returns', async () => {
    const loaded = await loadApp('./factories.mjs:createApp()', auto);
    expect(loaded.exportName).toBe('createApp');
    expect(loaded.interface).toBe('fetch');
    expect(loaded.detectedBy).toBe('function of one parameter');
    const app = loaded.app as (request: Request) => Response;
    expect(await app(new Request('http://example.test/sync')).text()).toBe('created http://example.test/sync');
  });

  it('awaits an async factory', async () => {
    const loaded = await loadApp('./factories.mjs:createAppAsync()', auto);
    expect(loaded.exportName).toBe('createAppAsync');
    expect(loaded.app).not.toBeInstanceOf(Promise);
    expect(loaded.interface).toBe('fetch');
    expect(loaded.detectedBy).toBe('fetch method');
    const app = loaded.app as { fetch(request: Request): Response };
    expect(await app.fetch(new Request('http://example.test/async')).text()).toBe('created async http://example.test/async');
  });

  it('reports a factory that throws with ERR_APP_FACTORY_FAILED and its message', async () => {
    const err = await rejection(loadApp('./factories.mjs:createAppThrows()', auto), 'ERR_APP_FACTORY_FAILED');
    expect(err.message).toBe(
      `the app factory ${join(fixtures, 'factories.mjs')}:createAppThrows() threw or rejected: factory exploded: missing DATABASE_URL`,
    );
    expect((err.cause as Error).message).toBe('factory exploded: missing DATABASE_URL');
  });

  it('reports a factory that rejects with ERR_APP_FACTORY_FAILED and its message', async () => {
    const err = await rejection(loadApp('./factories.mjs:createAppRejects()', auto), 'ERR_APP_FACTORY_FAILED');
    expect(err.message).toContain('createAppRejects() threw or rejected: factory rejected: config unreadable');
  });

  it('reports :name() on an export that is not a function with ERR_APP_FACTORY_FAILED', async () => {
    const err = await rejection(loadApp('./factories.mjs:notAFunction()', auto), 'ERR_APP_FACTORY_FAILED');
    expect(err.message).toBe(
      `the app factory ${join(fixtures, 'factories.mjs')}:notAFunction() threw or rejected: the export is an object with keys [fetch], not a function`,
    );
  });

  it('reports a missing factory as a missing export', async () => {
    const err = await rejection(loadApp('./factories.mjs:makeApp()', auto), 'ERR_APP_EXPORT_MISSING');
    expect(err.message).toContain(`the app module ${join(fixtures, 'factories.mjs')} has no export "makeApp"`);
    expect(exportsListed(err)).toEqual(['createApp', 'createAppAsync', 'createAppRejects', 'createAppThrows', 'notAFunction']);
  });
});

describe('import failures', () => {
  it('reports a module that throws on import with ERR_APP_IMPORT_FAILED, its file and the cause\'s message', async () => {
    const err = await rejection(loadApp('./throws-on-import.mjs', auto), 'ERR_APP_IMPORT_FAILED');
    expect(err.message).toBe(
      `importing the app module ${join(fixtures, 'throws-on-import.mjs')} failed: fixture import failure: REDIS_URL is not set`,
    );
    expect((err.cause as Error).message).toBe('fixture import failure: REDIS_URL is not set');
  });
});

describe('detection, in README order', () => {
  it('row 1: a tag beats the shape (node() on a function exported as application)', async () => {
    const loaded = await loadApp('./tagged.mjs:application', auto);
    expect(loaded.interface).toBe('node');
    expect(loaded.detectedBy).toBe('tagged node()');
    expect(loaded.app).toBe((await fixture('tagged.mjs')).application);
  });

  it('row 1: wsgi() on a function of two parameters', async () => {
    const loaded = await loadApp('./tagged.mjs:taggedWsgi', auto);
    expect(loaded.interface).toBe('wsgi');
    expect(loaded.detectedBy).toBe('tagged wsgi()');
    expect(loaded.app).toBe((await fixture('tagged.mjs')).taggedWsgi);
  });

  it('row 1: fetchApp() on a function of three parameters', async () => {
    const loaded = await loadApp('./tagged.mjs:taggedFetch', auto);
    expect(loaded.interface).toBe('fetch');
    expect(loaded.detectedBy).toBe('tagged fetch()');
    expect(loaded.app).toBe((await fixture('tagged.mjs')).taggedFetch);
  });

  it('row 1: tags applied here, with the functions from the loader, beat each shape rule', async () => {
    const oneParam = wsgi((environ) => [String(environ.PATH_INFO)]);
    expect(await detectInterface(oneParam, 'default', 'auto')).toEqual({ interface: 'wsgi', app: oneParam, detectedBy: 'tagged wsgi()' });

    const asApplication = node((_req, res) => res.end());
    expect(await detectInterface(asApplication, 'application', 'auto')).toEqual({
      interface: 'node',
      app: asApplication,
      detectedBy: 'tagged node()',
    });

    const threeParams = fetchApp(Object.assign((request: Request, _env?: unknown, _ctx?: unknown) => new Response(request.url)));
    expect(await detectInterface(threeParams, 'default', 'auto')).toEqual({
      interface: 'fetch',
      app: threeParams,
      detectedBy: 'tagged fetch()',
    });
  });

  it('row 1: --interface overrides a tag', async () => {
    const tagged = wsgi((_environ, _startResponse) => []);
    expect(await detectInterface(tagged, 'default', 'node')).toEqual({ interface: 'node', app: tagged, detectedBy: '--interface node' });
  });

  it('row 2: an http.Server is node, served as itself', async () => {
    const loaded = await loadApp('./http-server.mjs', auto);
    const server = (await fixture('http-server.mjs')).default as Server;
    expect(loaded.interface).toBe('node');
    expect(loaded.detectedBy).toBe('http.Server');
    expect(loaded.app).toBe(server);
    expect(server.listening).toBe(false);
  });

  it('row 3: an object with a fetch method (a real Hono app) is fetch, served as itself', async () => {
    const loaded = await loadApp('./hono.mjs', auto);
    expect(loaded.interface).toBe('fetch');
    expect(loaded.detectedBy).toBe('fetch method');
    expect(loaded.app).toBe((await fixture('hono.mjs')).default);
    const app = loaded.app as { fetch(request: Request): Promise<Response> };
    expect(await (await app.fetch(new Request('http://example.test/hello'))).text()).toBe('hello from hono');
  });

  it('row 3: export default { fetch } is fetch', async () => {
    const loaded = await loadApp('./shapes.mjs:fetchObject', auto);
    expect(loaded.interface).toBe('fetch');
    expect(loaded.detectedBy).toBe('fetch method');
    expect(loaded.app).toBe((await fixture('shapes.mjs')).fetchObject);
  });

  it('row 4: a Koa app is node, served through app.callback()', async () => {
    const koa = (await fixture('koa.mjs')).default;
    const loaded = await loadApp('./koa.mjs', auto);
    expect(loaded.interface).toBe('node');
    expect(loaded.detectedBy).toBe('callback() (Koa)');
    expect(typeof loaded.app).toBe('function');
    expect(loaded.app).not.toBe(koa);
    expect(await getThrough(loaded.app as RequestListener, '/k')).toEqual({ status: 200, body: 'hello from koa /k' });
  });

  it('row 5: a Fastify instance is node, after ready() was awaited', async () => {
    const fastify = (await fixture('fastify.mjs')).default as {
      readyRan: boolean;
      server: Server;
      printRoutes(): string;
      get(path: string, handler: () => unknown): unknown;
      close(): Promise<void>;
    };
    cleanups.push(() => fastify.close());
    expect(fastify.readyRan).toBe(false);

    const loaded = await loadApp('./fastify.mjs', auto);
    expect(loaded.interface).toBe('node');
    expect(loaded.detectedBy).toBe('Fastify instance (ready(), routing)');
    expect(typeof loaded.app).toBe('function');
    expect(loaded.app).not.toBe(fastify);
    // The onReady hook ran; the instance has started, so it refuses new routes, yet it does not listen itself.
    expect(fastify.readyRan).toBe(true);
    expect(() => fastify.get('/late', () => 'late')).toThrow(expect.objectContaining({ code: 'FST_ERR_INSTANCE_ALREADY_LISTENING' }));
    expect(fastify.server.listening).toBe(false);
    expect(fastify.printRoutes()).toContain('hello');
    expect(await getThrough(loaded.app as RequestListener, '/hello')).toEqual({ status: 200, body: '{"hello":"fastify"}' });
  });

  it('row 4: a NestJS application is node: init() is awaited, then its http.Server serves', async () => {
    const nest = (await fixture('nest.mjs')).app as { isInitialized: boolean; getHttpServer(): Server; close(): Promise<void> };
    cleanups.push(() => nest.close());
    expect(nest.isInitialized).toBe(false);
    const loaded = await loadApp('./nest.mjs:app', auto);
    expect(loaded.interface).toBe('node');
    expect(loaded.detectedBy).toBe('NestJS application (init(), getHttpServer())');
    expect(nest.isInitialized).toBe(true);
    expect(loaded.app).toBe(nest.getHttpServer());
    // Its 'upgrade' listeners take upgrades, as an exported http.Server's do.
    expect(loaded.upgrade).toBe(loaded.app);
    const server = loaded.app as Server;
    expect(server.listening).toBe(false);
    expect(await getThrough((req, res) => server.emit('request', req, res), '/hello')).toEqual({ status: 200, body: 'hello from nest' });
  });

  it('row 4: a NestJS factory (:createApp()) and --interface node give the same', async () => {
    const loaded = await loadApp('./nest.mjs:createApp()', { cwd: fixtures, interface: 'node' });
    expect(loaded.interface).toBe('node');
    expect(loaded.detectedBy).toBe('--interface node (NestJS application (init(), getHttpServer()))');
    const server = loaded.app as Server;
    expect(server).toBeInstanceOf(Server);
    expect(await getThrough((req, res) => server.emit('request', req, res), '/hello')).toEqual({ status: 200, body: 'hello from nest' });
  });

  it('row 4: a NestJS application already initialised is not initialised again', async () => {
    const createApp = (await fixture('nest.mjs')).createApp as () => Promise<{ init(): Promise<unknown>; close(): Promise<void> }>;
    const nest = await createApp();
    cleanups.push(() => nest.close());
    await nest.init();
    let inits = 0;
    const init = nest.init.bind(nest);
    Object.defineProperty(nest, 'init', { value: () => (inits++, init()), configurable: true });
    const detected = await detectInterface(nest, 'default', 'auto');
    expect(detected.interface).toBe('node');
    expect(inits).toBe(0);
  });

  it('row 6: a function exported as application is wsgi, whatever its arity', async () => {
    const loaded = await loadApp('./shapes.mjs:application', auto);
    expect(loaded.interface).toBe('wsgi');
    expect(loaded.detectedBy).toBe('exported as application');
    expect(loaded.app).toBe((await fixture('shapes.mjs')).application);
  });

  it('row 7: a default function of one parameter is fetch', async () => {
    const loaded = await loadApp('./fetch-default.mjs', auto);
    expect(loaded.exportName).toBe('default');
    expect(loaded.interface).toBe('fetch');
    expect(loaded.detectedBy).toBe('function of one parameter');
    const app = loaded.app as (request: Request) => Promise<Response>;
    expect(await (await app(new Request('http://example.test/one'))).text()).toBe('fetch default /one');
  });

  it('row 8: functions of two, three and four parameters are node', async () => {
    for (const [name, count] of [['twoParams', 2], ['threeParams', 3], ['fourParams', 4]] as const) {
      const loaded = await loadApp(`./shapes.mjs:${name}`, auto);
      expect(loaded.interface).toBe('node');
      expect(loaded.detectedBy).toBe(`function of ${count} parameters`);
      expect(loaded.app).toBe((await fixture('shapes.mjs'))[name]);
    }
  });

  it('row 8: a real Express app (a function of three parameters) is node, served as itself', async () => {
    const loaded = await loadApp('./express.mjs', auto);
    const express = (await fixture('express.mjs')).default as RequestListener;
    expect(express.length).toBe(3);
    expect(loaded.interface).toBe('node');
    expect(loaded.detectedBy).toBe('function of 3 parameters');
    expect(loaded.app).toBe(express);
  });

  it('row 9: a function of no parameters is ERR_APP_INTERFACE_UNKNOWN, naming what it is and how to call a factory', async () => {
    const err = await rejection(loadApp('./shapes.mjs:zeroParams', auto), 'ERR_APP_INTERFACE_UNKNOWN');
    expect(err.message).toBe(
      `cannot tell which interface the app ${join(fixtures, 'shapes.mjs')}:zeroParams speaks (it is a function of 0 parameters); ` +
        'if it is a factory, call it: ./shapes.mjs:zeroParams(); else pass --interface wsgi|node|fetch',
    );
  });

  it('row 9: a function of five parameters is ERR_APP_INTERFACE_UNKNOWN', async () => {
    const err = await rejection(loadApp('./shapes.mjs:fiveParams', auto), 'ERR_APP_INTERFACE_UNKNOWN');
    expect(err.message).toContain('(it is a function of 5 parameters); pass --interface wsgi|node|fetch');
  });

  it('row 9: a number is ERR_APP_INTERFACE_UNKNOWN, naming its type', async () => {
    const err = await rejection(loadApp('./shapes.mjs:aNumber', auto), 'ERR_APP_INTERFACE_UNKNOWN');
    expect(err.message).toBe(
      `cannot tell which interface the app ${join(fixtures, 'shapes.mjs')}:aNumber speaks (it is number 42); pass --interface wsgi|node|fetch`,
    );
  });

  it('row 9: a plain object is ERR_APP_INTERFACE_UNKNOWN, naming its keys', async () => {
    const err = await rejection(loadApp('./shapes.mjs:plainObject', auto), 'ERR_APP_INTERFACE_UNKNOWN');
    expect(err.message).toContain('(it is an object with keys [port, host])');
  });
});

describe('--interface', () => {
  it('wsgi serves a default function of two parameters as WSGI', async () => {
    const loaded = await loadApp('./node-default.mjs', { cwd: fixtures, interface: 'wsgi' });
    expect(loaded.interface).toBe('wsgi');
    expect(loaded.detectedBy).toBe('--interface wsgi');
    expect(loaded.app).toBe((await fixture('node-default.mjs')).default);
  });

  it('fetch on an object without a fetch method is ERR_APP_INTERFACE_MISMATCH', async () => {
    const err = await rejection(loadApp('./shapes.mjs:plainObject', { cwd: fixtures, interface: 'fetch' }), 'ERR_APP_INTERFACE_MISMATCH');
    expect(err.message).toBe(
      `the app ${join(fixtures, 'shapes.mjs')}:plainObject cannot be served as --interface fetch: it is an object with keys [port, host]; drop --interface to detect it, or export the right shape`,
    );
  });

  it('wsgi on an object is ERR_APP_INTERFACE_MISMATCH', async () => {
    const err = await rejection(loadApp('./hono.mjs', { cwd: fixtures, interface: 'wsgi' }), 'ERR_APP_INTERFACE_MISMATCH');
    expect(err.message).toContain('cannot be served as --interface wsgi: it is an object (Hono) with keys');
  });

  it('node on a Koa app serves app.callback()', async () => {
    const koa = (await fixture('koa.mjs')).default;
    const loaded = await loadApp('./koa.mjs', { cwd: fixtures, interface: 'node' });
    expect(loaded.interface).toBe('node');
    expect(loaded.detectedBy).toBe('--interface node (callback() (Koa))');
    expect(typeof loaded.app).toBe('function');
    expect(loaded.app).not.toBe(koa);
    expect(await getThrough(loaded.app as RequestListener, '/forced')).toEqual({ status: 200, body: 'hello from koa /forced' });
  });

  it('node on a fetch object is ERR_APP_INTERFACE_MISMATCH', async () => {
    const err = await rejection(loadApp('./shapes.mjs:fetchObject', { cwd: fixtures, interface: 'node' }), 'ERR_APP_INTERFACE_MISMATCH');
    expect(err.message).toContain(':fetchObject cannot be served as --interface node: it is an object with keys [fetch]');
  });
});

describe('hints for the usual mistakes', () => {
  it('a factory\'s promise exported un-awaited (export default createApp()): await it, or use :createApp()', async () => {
    const err = await rejection(loadApp('./mistakes.mjs', auto), 'ERR_APP_INTERFACE_UNKNOWN');
    expect(err.message).toBe(
      `cannot tell which interface the app ${join(fixtures, 'mistakes.mjs')}:default speaks (it is a promise); ` +
        'await it at top level (export default await createApp()) or export the factory and use ./mistakes.mjs:createApp()',
    );
    // The fix it names works.
    const fixed = await loadApp('./mistakes.mjs:createApp()', auto);
    expect(fixed.interface).toBe('fetch');
  });

  it('a named export holding a promise: the hint awaits that export', async () => {
    const err = await rejection(loadApp('./mistakes.mjs:pending', auto), 'ERR_APP_INTERFACE_UNKNOWN');
    expect(err.message).toContain('(it is a promise); await it at top level (export const pending = await createApp())');
  });

  it('CommonJS exporting a promise: export the factory, since CommonJS cannot await at top level', async () => {
    const err = await rejection(loadApp('./cjs-promise.cjs', auto), 'ERR_APP_INTERFACE_UNKNOWN');
    expect(err.message).toContain(
      '(it is a promise); CommonJS cannot await it at top level: export the factory instead (module.exports.createApp = createApp) and use ./cjs-promise.cjs:createApp()',
    );
  });

  it('an async factory named without () (app.js:createApp): use app.js:createApp()', async () => {
    for (const name of ['createApp', 'createAppAsyncWithArgs']) {
      const err = await rejection(loadApp(`./mistakes.mjs:${name}`, auto), 'ERR_APP_INTERFACE_UNKNOWN');
      expect(err.message).toContain(`; if it is a factory, call it: ./mistakes.mjs:${name}(); else pass --interface wsgi|node|fetch`);
    }
  });

  it('no factory hint for what a :factory() returned', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'app.mjs'), 'export const createApp = () => () => "still a factory";\n');
    const err = await rejection(loadApp('./app.mjs:createApp()', { cwd: dir, interface: 'auto' }), 'ERR_APP_INTERFACE_UNKNOWN');
    expect(err.message).toMatch(/\(it is a function of 0 parameters\); pass --interface wsgi\|node\|fetch$/);
  });

  it('--interface on a promise says it is a promise', async () => {
    const err = await rejection(loadApp('./mistakes.mjs', { cwd: fixtures, interface: 'node' }), 'ERR_APP_INTERFACE_MISMATCH');
    expect(err.message).toContain(':default cannot be served as --interface node: it is a promise;');
  });

  it('a module that exports nothing but called listen(): export the app instead', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'server.mjs'), 'const port = 3000;\nvoid port;\n');
    const err = await rejection(loadApp('./server.mjs', { cwd: dir, interface: 'auto', appListens: ['*:3000'] }), 'ERR_APP_EXPORT_MISSING');
    expect(err.message).toBe(
      `the app module ${join(dir, 'server.mjs')} has no export "default", "application", "app", "handler"; exports found: (none). ` +
        'Name one with ./server.mjs:<export>; the module called listen() on *:3000: export the app (or the server) instead, and node-uwsgi serves it on its own sockets',
    );
  });

  it('an export of no known shape from a module that called listen() (export default await fastify.listen()): export the app', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'app.mjs'), 'export default "http://127.0.0.1:3000";\n');
    const options: LoadOptions = { cwd: dir, interface: 'auto', appListens: ['localhost:3000', '[::1]:3000'] };
    const err = await rejection(loadApp('./app.mjs', options), 'ERR_APP_INTERFACE_UNKNOWN');
    expect(err.message).toBe(
      `cannot tell which interface the app ${join(dir, 'app.mjs')}:default speaks (it is "http://127.0.0.1:3000"); ` +
        'the module called listen() on localhost:3000, [::1]:3000: export the app (or the server) instead, and node-uwsgi serves it on its own sockets',
    );
  });

  it('no listen hint when the module did not call listen()', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'server.mjs'), 'void 0;\n');
    const err = await rejection(loadApp('./server.mjs', { cwd: dir, interface: 'auto' }), 'ERR_APP_EXPORT_MISSING');
    expect(err.message).toMatch(/Name one with \.\/server\.mjs:<export>$/);
  });
});

// Where a start-up error comes from: the loader's errors carry the file:line of the app's own error (`details.at`),
// for ESM and CommonJS syntax errors in a dependency, a throw at import and a throwing factory. The loader runs in
// a child process from the built dist/ (npm test builds first): under vitest, import() goes through vite's
// transform, whose errors are not Node's.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { startupTrace, traceOf } from '../../src/app-loader/trace.js';
import { UwsgiError } from '../../src/errors.js';

const dist = new URL('../../dist/', import.meta.url);
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A temp app directory with these files (paths relative to it). */
function appDir(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'nu-trace-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(join(dir, name, '..'), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

interface Failure {
  code: string;
  message: string;
  at: unknown;
  startupTrace: string[];
}

/** loadApp(spec) in a plain node process; what it threw. */
function loadError(dir: string, spec = './app.mjs'): Promise<Failure> {
  const script = `
    import { loadApp } from ${JSON.stringify(new URL('app-loader/index.js', dist).href)};
    import { startupTrace } from ${JSON.stringify(new URL('app-loader/trace.js', dist).href)};
    try {
      await loadApp(${JSON.stringify(spec)}, { cwd: ${JSON.stringify(dir)}, interface: 'auto' });
      console.log('null');
    } catch (err) {
      console.log(JSON.stringify({ code: err.code, message: err.message, at: err.details?.at, startupTrace: startupTrace(err) }));
    }
    process.exit(0);`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], { cwd: fileURLToPath(dist) }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${err.message}\n${stderr}`));
      const failure = JSON.parse(stdout) as Failure | null;
      if (failure === null) return reject(new Error('the app loaded'));
      resolve(failure);
    });
  });
}

const APP = "import { helper } from './lib/dep.mjs';\nexport default (req, res) => res.end(helper);\n";

describe('the location of an app\'s start-up error', () => {
  it('an ES module dependency that does not parse: its file:line, source line and caret (Node leaves them out of err.stack)', async () => {
    const dir = appDir({ 'app.mjs': APP, 'lib/dep.mjs': "export const helper = 'x';\nconst broken = ;\n" });
    const err = await loadError(dir);
    expect(err.code).toBe('ERR_APP_IMPORT_FAILED');
    expect(err.at).toEqual([`${pathToFileURL(join(dir, 'lib/dep.mjs')).href}:2`, 'const broken = ;', '               ^']);
    expect(err.startupTrace).toEqual(err.at);
  });

  it('a CommonJS dependency that does not parse: the location Node put at the top of its stack', async () => {
    const dir = appDir({
      'app.mjs': "import dep from './lib/dep.cjs';\nexport default (req, res) => res.end(dep);\n",
      'lib/dep.cjs': "module.exports = 'x';\nconst broken = ;\n",
    });
    const err = await loadError(dir);
    expect(err.at).toEqual([`${join(dir, 'lib/dep.cjs')}:2`, 'const broken = ;', '               ^']);
  });

  it('an import of a name the dependency does not export: the importing line', async () => {
    const dir = appDir({ 'app.mjs': APP, 'lib/dep.mjs': 'export const other = 1;\n' });
    const err = await loadError(dir);
    expect(err.at).toEqual([`${pathToFileURL(join(dir, 'app.mjs')).href}:1`, APP.split('\n')[0], '         ^^^^^^']);
  });

  it('a dependency that throws at import: its frame first, without Node\'s or node-uwsgi\'s', async () => {
    const dir = appDir({ 'app.mjs': APP, 'lib/dep.mjs': "export const helper = 'x';\nundefinedThing.call();\n" });
    const err = await loadError(dir);
    const at = err.at as string[];
    expect(at[0]).toBe(`at ${pathToFileURL(join(dir, 'lib/dep.mjs')).href}:2:1`);
    expect(at.join('\n')).not.toMatch(/node:internal|app-loader\//);
  });

  it('a factory that throws: the factory\'s frame', async () => {
    const dir = appDir({ 'app.mjs': "export function createApp() {\n  throw new Error('no DATABASE_URL');\n}\n" });
    const err = await loadError(dir, './app.mjs:createApp()');
    expect(err.code).toBe('ERR_APP_FACTORY_FAILED');
    expect((err.at as string[])[0]).toBe(`at createApp (${pathToFileURL(join(dir, 'app.mjs')).href}:2:9)`);
  });

  it('a SyntaxError from a dynamic import while the app runs: not located, and the probe evaluates nothing of the app', async () => {
    const dir = appDir({
      'app.mjs': "import './side.mjs';\nawait import('./lib/dep.mjs');\nexport default (req, res) => res.end();\n",
      'side.mjs': "import { appendFileSync } from 'node:fs';\nappendFileSync(new URL('./evaluated.txt', import.meta.url), 'x');\n",
      'lib/dep.mjs': 'const broken = ;\n',
    });
    const err = await loadError(dir);
    expect(err.code).toBe('ERR_APP_IMPORT_FAILED');
    expect(err.at).toEqual([]);
    // Once, by the loader's own import; the probe's static import of the graph exited before evaluating it.
    expect(readFileSync(join(dir, 'evaluated.txt'), 'utf8')).toBe('x');
  });
});

describe('startupTrace', () => {
  it('says nothing more of node-uwsgi\'s own errors than their message', () => {
    expect(startupTrace(new UwsgiError('ERR_SOCKET_IN_USE', { address: 'unix:/run/app.sock' }))).toEqual([]);
  });

  it('gives the first frames of an unexpected error, at most five', () => {
    const err = new Error('unexpected');
    err.stack = ['Error: unexpected', ...Array.from({ length: 8 }, (_, i) => `    at f${i} (/srv/app/x.js:${i + 1}:1)`)].join('\n');
    expect(startupTrace(err)).toEqual(Array.from({ length: 5 }, (_, i) => `at f${i} (/srv/app/x.js:${i + 1}:1)`));
  });

  it('leaves out Node\'s internal frames', () => {
    const err = new Error('m');
    err.stack = 'Error: m\n    at ModuleJob.run (node:internal/modules/esm/module_job:325:25)\n    at async node:internal/x:1:1\n    at file:///srv/app/a.mjs:3:7';
    expect(traceOf(err)).toEqual(['at file:///srv/app/a.mjs:3:7']);
  });

  it('gives nothing for what is not an Error', () => {
    expect(traceOf('a string thrown')).toEqual([]);
  });
});

// The npm package as a user gets it (issue 12, README "Native accept"): `npm pack` carries the prebuilt addon
// (prepack builds prebuilds/linux-<arch>/node.napi.node), and the installed package, on a machine without a C
// compiler, serves on the native accept path from that binary; without it, or with one that does not load, its
// install script still succeeds and the server serves on the JavaScript path and says why.
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { nginxVars } from '../helpers/serve.js';
import { parseResponse, rawExchange, ROOT, startServer, type LogLine } from './nginx.js';

const run = promisify(execFile);
const PREBUILT = `prebuilds/linux-${process.arch}/node.napi.node`;
// Without a compiler; or before it is looked for, where this Node has no uv.h and libuv1-dev is not installed.
const NOT_BUILT = /native accept addon not built \(no (C compiler \(\/nonexistent\)|uv\.h: install libuv1-dev)\)/;

// The two installs run side by side: each spends most of its time in npm's start-up and the server's.
describe('the npm package, installed without a C compiler', () => {
  let dir: string;
  let tarball: string;
  let npmCli: string;
  /** PATH for the installed package: a folder holding only `node` and `sh` (npm runs scripts with it), so no cc,
   * gcc or clang is found. */
  let bin: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nu-package-'));
    bin = join(dir, 'bin');
    mkdirSync(bin);
    symlinkSync(process.execPath, join(bin, 'node'));
    const which = async (command: string): Promise<string> => realpathSync((await run('sh', ['-c', `command -v ${command}`])).stdout.trim());
    symlinkSync(await which('sh'), join(bin, 'sh'));
    // npm's own script (npm-cli.js), run by this Node: it needs no PATH of its own.
    npmCli = await which('npm');
    // What `npm pack` does here is what `npm publish` does: prepack builds the prebuilt binary into the package.
    const packed = await run(process.execPath, [npmCli, 'pack', '--json', '--pack-destination', dir], { cwd: ROOT });
    const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    expect(info!.files.map((f) => f.path)).toContain(PREBUILT);
    expect(info!.files.map((f) => f.path).filter((p) => p.startsWith('dist/native/'))).toEqual([]);
    tarball = join(dir, info!.filename);
  }, 60_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** The tarball unpacked as npm installs it (node_modules/node-uwsgi), its install script run as npm runs it
   * (`npm run install`), with no C compiler on PATH and CC=/nonexistent. The dependencies are this checkout's
   * (a symlinked node_modules): `npm install <tgz>` would ask the registry for their metadata, and this test runs
   * offline. */
  async function install(name: string, prebuilt: 'keep' | 'remove' | 'corrupt'): Promise<{ app: string; pkg: string; log: string }> {
    const app = join(dir, name);
    const pkg = join(app, 'node_modules', 'node-uwsgi');
    mkdirSync(pkg, { recursive: true });
    await run('tar', ['-xzf', tarball, '-C', pkg, '--strip-components=1']);
    symlinkSync(join(ROOT, 'node_modules'), join(pkg, 'node_modules'));
    if (prebuilt === 'remove') rmSync(join(pkg, 'prebuilds'), { recursive: true });
    // A binary this machine cannot load, as a glibc build is on musl or another architecture's would be.
    if (prebuilt === 'corrupt') writeFileSync(join(pkg, PREBUILT), Buffer.alloc(4096, 'not an ELF file '));
    const env = { ...process.env, PATH: bin, CC: '/nonexistent' };
    const script = JSON.parse(readFileSync(join(pkg, 'package.json'), 'utf8')).scripts.install as string;
    expect(script).toContain('scripts/build-native.js');
    const { stdout } = await run(process.execPath, [npmCli, 'run', 'install'], { cwd: pkg, env });
    return { app, pkg, log: stdout };
  }

  /** Starts the installed CLI on the example app and asks it for /hello over the uwsgi socket. */
  async function serve(app: string, pkg: string): Promise<{ accept: LogLine[]; body: string; status: number }> {
    const sock = join(app, 'app.sock');
    // --accept auto: CI's last run sets NODE_UWSGI_ACCEPT=js, which would hide what this test is about.
    const server = await startServer({
      app: join(ROOT, 'examples', 'hello-wsgi.js'),
      socket: `unix:${sock}`,
      args: ['--workers', '1', '--accept', 'auto'],
      cli: join(pkg, 'dist', 'cli.js'),
      cwd: app,
      env: { PATH: bin, CC: '/nonexistent' },
    });
    try {
      await server.waitForLog((line) => line.msg === 'ready');
      const response = parseResponse((await rawExchange({ path: sock }, encodeRequest(nginxVars({ REQUEST_URI: '/hello', PATH_INFO: '/hello' })))).raw);
      const accept = server.logs.filter((line) => typeof line.msg === 'string' && line.msg.startsWith('accept: '));
      return { accept, body: response.body.toString(), status: response.status };
    } finally {
      await server.stop();
    }
  }

  it.concurrent('serves on the native accept path from the prebuilt binary', async () => {
    const { app, pkg, log } = await install('with-prebuilt', 'keep');
    expect(log).toContain(`native accept addon: using the prebuilt ${PREBUILT}`);
    const served = await serve(app, pkg);
    expect(served.accept).toEqual([expect.objectContaining({ msg: 'accept: native', addon: PREBUILT, sockets: 1 })]);
    expect(served).toMatchObject({ status: 200, body: 'Hello from node-uwsgi: GET /hello\n' });
  });

  it.concurrent('without the prebuilt binary: the install succeeds, and the JavaScript path serves and says why', async () => {
    const { app, pkg, log } = await install('without-prebuilt', 'remove');
    expect(log).toMatch(NOT_BUILT);
    const served = await serve(app, pkg);
    expect(served.accept).toEqual([expect.objectContaining({ msg: 'accept: js', reason: expect.stringContaining(`nor ${PREBUILT} (prebuilt) is there`) })]);
    expect(served).toMatchObject({ status: 200, body: 'Hello from node-uwsgi: GET /hello\n' });
  });

  it.concurrent('with a prebuilt binary that does not load: the install tries to build, and the JavaScript path serves and says why', async () => {
    const { app, pkg, log } = await install('broken-prebuilt', 'corrupt');
    expect(log).toContain(`native accept addon: the prebuilt ${PREBUILT} does not load`);
    expect(log).toMatch(NOT_BUILT);
    const served = await serve(app, pkg);
    expect(served.accept).toEqual([
      expect.objectContaining({ msg: 'accept: js', reason: expect.stringMatching(new RegExp(`^the native addon does not load \\(${PREBUILT} does not load: .*invalid ELF header`)) }),
    ]);
    expect(served).toMatchObject({ status: 200, body: 'Hello from node-uwsgi: GET /hello\n' });
  });
});

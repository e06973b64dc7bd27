// Deploy loss: does a stopping host reset connections nginx has already sent a request on? wrk holds POST load
// (1 KiB bodies) through nginx on an upstream of two node-uwsgi servers, A and B; A is started and stopped
// (SIGTERM, or SIGHUP reloads with --mode reload) ROUNDS times while B stays. A refused connect is retried by nginx
// on B (a POST too: nothing was sent); a reset after the request went out is a 502 for a POST. Counts 502s in the
// access log and classifies nginx's error lines.
// Usage: `node bench/stop-loss.js` (build first); env ROUNDS (20), TRANSPORT tcp|unix (tcp), WORKERS (2),
// UP_MS (300: A's time under load per round), NODE_UWSGI_ACCEPT (native|js), MODE stop|reload (stop).
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const CLI = join(ROOT, 'dist/cli.js');
const APP = join(ROOT, 'test/fixtures/apps/integration/hosts-app.mjs');
const ROUNDS = Number(process.env.ROUNDS ?? 20);
const TRANSPORT = process.env.TRANSPORT ?? 'tcp';
const WORKERS = process.env.WORKERS ?? '2';
const UP_MS = Number(process.env.UP_MS ?? 300);
const MODE = process.env.MODE ?? 'stop';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject).listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function startServer(address, name) {
  const child = spawn(process.execPath, [CLI, APP, '--socket', address, '--workers', WORKERS], {
    env: { ...process.env, HOST_NAME: name },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  const waiters = [];
  child.stdout.setEncoding('utf8').on('data', (c) => {
    out += c;
    for (const w of [...waiters]) if (w.re.test(out.slice(w.from))) { waiters.splice(waiters.indexOf(w), 1); w.resolve(); }
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return {
    child,
    exited,
    /** Resolves once stdout, from now on, matches `re`. */
    waitFor(re) {
      return new Promise((resolve) => waiters.push({ re, from: out.length, resolve }));
    },
    out: () => out,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'nu-stoploss-'));
const addr = async (name) => (TRANSPORT === 'unix' ? `unix:${join(dir, `${name}.sock`)}` : `127.0.0.1:${await freePort()}`);
const A = await addr('a');
const B = await addr('b');
const nginxPort = await freePort();
const conf = `daemon off; master_process off; worker_processes 1; pid ${dir}/nginx.pid; error_log ${dir}/error.log info;
events { worker_connections 1024; }
http {
  log_format up '$status $request_method $upstream_addr $upstream_status';
  access_log ${dir}/access.log up;
  client_body_temp_path ${dir}/cb; uwsgi_temp_path ${dir}/ut; proxy_temp_path ${dir}/pt; fastcgi_temp_path ${dir}/ft; scgi_temp_path ${dir}/st;
  upstream app { server ${A} max_fails=0; server ${B} max_fails=0; }
  server { listen 127.0.0.1:${nginxPort}; location / { include ${ROOT}/nginx/uwsgi_params; uwsgi_pass app; uwsgi_next_upstream error timeout; } }
}`;
writeFileSync(join(dir, 'nginx.conf'), conf);
writeFileSync(join(dir, 'post.lua'), `wrk.method = "POST"\nwrk.body = string.rep("x", 1024)\nwrk.headers["Content-Type"] = "application/octet-stream"\n`);

const b = startServer(B, 'b');
await b.waitFor(/"msg":"ready"/);
const nginx = spawn('/usr/sbin/nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: 'inherit' });
await sleep(300);
const wrk = spawn('wrk', ['-t1', '-c32', `-d${Math.ceil((ROUNDS * (UP_MS + 900)) / 1000) + 30}s`, '-s', join(dir, 'post.lua'), `http://127.0.0.1:${nginxPort}/`], { stdio: ['ignore', 'pipe', 'inherit'] });
let wrkOut = '';
wrk.stdout.setEncoding('utf8').on('data', (c) => (wrkOut += c));
const wrkDone = new Promise((resolve) => wrk.once('exit', resolve));

const t0 = Date.now();
if (MODE === 'reload') {
  const a = startServer(A, 'a');
  await a.waitFor(/"msg":"ready"/);
  for (let i = 0; i < ROUNDS; i++) {
    const done = a.waitFor(/reload complete/);
    a.child.kill('SIGHUP');
    await done;
    await sleep(UP_MS);
  }
  a.child.kill('SIGTERM');
  await a.exited;
} else {
  for (let i = 0; i < ROUNDS; i++) {
    const a = startServer(A, 'a');
    await a.waitFor(/"msg":"ready"/);
    await sleep(UP_MS);
    a.child.kill('SIGTERM');
    await a.exited;
  }
}
const elapsed = Date.now() - t0;
wrk.kill('SIGINT');
await wrkDone;
nginx.kill('SIGTERM');
b.child.kill('SIGTERM');
await b.exited;

const access = readFileSync(join(dir, 'access.log'), 'utf8').trim().split('\n');
const errors = readFileSync(join(dir, 'error.log'), 'utf8').split('\n').filter((l) => /\[error\]|\[warn\]/.test(l));
const count = (re) => errors.filter((l) => re.test(l)).length;
const result = {
  mode: MODE,
  transport: TRANSPORT,
  accept: process.env.NODE_UWSGI_ACCEPT ?? 'auto',
  rounds: ROUNDS,
  seconds: elapsed / 1000,
  requests: access.length,
  s502: access.filter((l) => l.startsWith('502 ')).length,
  retried: access.filter((l) => l.includes(', ')).length,
  errorLines: {
    reset: count(/reset by peer/),
    prematurelyClosed: count(/prematurely closed/),
    refused: count(/Connection refused/),
    eagain: count(/Resource temporarily unavailable/),
    other: errors.filter((l) => !/reset by peer|prematurely closed|Connection refused|Resource temporarily unavailable/.test(l)).length,
  },
};
console.log(JSON.stringify(result));
if (process.env.VERBOSE) for (const l of errors.filter((l) => !/Connection refused|Resource temporarily/.test(l)).slice(0, 10)) console.log(l);
rmSync(dir, { recursive: true, force: true });
spawnSync('true');

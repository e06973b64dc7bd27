// The benchmark: wrk → one real nginx (1 worker, 2 for the 2-worker targets) → each target on a Unix socket,
// interleaved in rounds, medians of requests/s and of the backend's CPU time per request, each compared with
// uWSGI (C) + a Python WSGI hello behind the same nginx configuration in the same run (the peer to beat), next to
// the minimal uwsgi responder (the floor of a `node:net` server) and node:http behind proxy_pass keep-alive.
// Usage: `npm run bench` (builds first); `npm run bench -- --quick` for a short run (QUICK below); env
// BENCH_SECONDS (10), BENCH_ROUNDS (5), BENCH_WARMUP (2), BENCH_TARGETS (comma-separated keys, default the
// single-worker set; `all` for every target), BENCH_UWSGI (the uwsgi binary, `uwsgi`), BENCH_NODE_UWSGI_ARGS
// (extra arguments for every node-uwsgi target, split on spaces); `--workers` runs uwsgi, minimal and the worker-count
// targets (wsgi-1w, wsgi-2w, wsgi-2w-rr); `--json` prints the results as JSON on stdout. The helpers are exported
// for bench/reload.js and bench/memory.js.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const NGINX = process.env.BENCH_NGINX ?? '/usr/sbin/nginx';
export const WRK = process.env.BENCH_WRK ?? 'wrk';
export const UWSGI = process.env.BENCH_UWSGI || 'uwsgi';
export const UWSGI_PACKAGES = 'uwsgi-core uwsgi-plugin-python3';
export const CONNECTIONS = 32;
export const READY_TIMEOUT_MS = 15_000;
/** --quick: settings for a look in a minute or two, not for figures to publish. Env variables still win. */
const QUICK = { seconds: 3, rounds: 3, warmup: 1 };
const FULL = { seconds: 10, rounds: 5, warmup: 2 };

// Issue 12's targets, relative to uWSGI in the same run: reported, they do not change the exit code.
// cpu: at most this × uWSGI's CPU µs per request; rps: at least this × uWSGI's requests/s.
const GOALS = [
  { target: 'wsgi', cpu: 1.25, rps: 0.95 },
  { target: 'node', cpu: 1.25 },
  { target: 'fetch', cpu: 1.6 },
];

// The default targets run --accept auto (native where the addon loads, for wsgi and fetch apps); the -js ones force
// the JavaScript accept path (net.Socket), node-native the native one for the node interface.
const ACCEPT_JS = ['--accept', 'js'];
const EXTRA_ARGS = (process.env.BENCH_NODE_UWSGI_ARGS ?? '').split(' ').filter(Boolean);

/** The wsgi hello on --ssl-socket (a Unix socket, mutual TLS), nginx speaking `protocols` to it. */
function tlsTarget(key, label, protocols) {
  return {
    key,
    label,
    upstream: 'suwsgi',
    protocols,
    argv: (sock) => {
      const pki = tlsFiles();
      return ['dist/cli.js', 'examples/hello-wsgi.js', '--ssl-socket', `unix:${sock},${pki}/server.crt,${pki}/server.key,${pki}/ca.crt`, '--log-level', 'warn', ...EXTRA_ARGS];
    },
    extra: true,
    needs: () => (spawnSync('openssl', ['version']).status === 0 ? null : 'the openssl CLI, to make the certificates'),
  };
}

/** A node-uwsgi target: `node dist/cli.js APP --socket unix:SOCK --log-level warn ...args`. */
function nodeUwsgi(key, label, app, args, more = {}) {
  return {
    key,
    label,
    upstream: 'uwsgi',
    argv: (sock) => ['dist/cli.js', app, '--socket', `unix:${sock}`, '--log-level', 'warn', ...args, ...EXTRA_ARGS],
    ...more,
  };
}

// command: the program (process.execPath, the Node running this bench, unless set); argv(sock) its arguments.
// nginxWorkers: nginx's worker_processes for that target (1 unless set). extra: not in the default set; run with
// BENCH_TARGETS=… or --workers. env: added to the target's environment. stopSignal: SIGTERM unless set. quiet: its
// output is shown only when it fails (uWSGI prints a banner). needs: a check that returns why the target cannot run.
export const TARGETS = [
  {
    key: 'uwsgi',
    label: 'uWSGI (C) + Python',
    upstream: 'uwsgi',
    command: UWSGI,
    // Master + 1 worker, like node-uwsgi's default; --die-on-term because SIGTERM reloads a uWSGI 2.0 master.
    argv: (sock) => [
      '--plugin', 'python3', '--socket', sock, '--wsgi-file', path.join(REPO, 'bench/hello-wsgi.py'),
      '--master', '--processes', '1', '--disable-logging', '--die-on-term', '--listen', '1024',
    ],
    stopSignal: 'SIGINT',
    quiet: true,
    needs: uwsgiMissing,
  },
  { key: 'minimal', label: 'minimal (node:net)', upstream: 'uwsgi', argv: (sock) => ['bench/minimal-responder.js', sock] },
  nodeUwsgi('wsgi', 'node-uwsgi wsgi', 'examples/hello-wsgi.js', []),
  nodeUwsgi('node', 'node-uwsgi node', 'examples/hello-node.js', []),
  nodeUwsgi('fetch', 'node-uwsgi fetch', 'examples/hello-fetch.js', []),
  nodeUwsgi('fetch-response', 'fetch, its Response', 'examples/hello-fetch-response.js', [], { extra: true }),
  nodeUwsgi('fetch-real', 'fetch --real-request', 'examples/hello-fetch.js', ['--real-request'], { extra: true }),
  nodeUwsgi('wsgi-js', 'wsgi --accept js', 'examples/hello-wsgi.js', ACCEPT_JS, { extra: true }),
  nodeUwsgi('node-js', 'node --accept js', 'examples/hello-node.js', ACCEPT_JS, { extra: true }),
  nodeUwsgi('node-native', 'node --accept native', 'examples/hello-node.js', ['--accept', 'native'], { extra: true }),
  nodeUwsgi('fetch-js', 'fetch --accept js', 'examples/hello-fetch.js', ACCEPT_JS, { extra: true }),
  // uwsgi over TLS (--ssl-socket, on the JavaScript path: compare with wsgi-js), mutual TLS, nginx reusing sessions
  // with the protocols `node-uwsgi nginx --ssl` prints (TLS 1.3 where both ends have it), or TLS 1.2 only.
  tlsTarget('wsgi-tls', 'wsgi --ssl-socket', 'TLSv1.2 TLSv1.3'),
  tlsTarget('wsgi-tls12', 'wsgi --ssl-socket 1.2', 'TLSv1.2'),
  { key: 'node-http', label: 'node:http proxy_pass', upstream: 'http', argv: (sock) => ['bench/node-http.js', sock] },
  nodeUwsgi('wsgi-1w', 'wsgi --workers 1', 'examples/hello-wsgi.js', ['--workers', '1'], { extra: true }),
  nodeUwsgi('wsgi-2w', 'wsgi --workers 2', 'examples/hello-wsgi.js', ['--workers', '2'], { nginxWorkers: 2, extra: true }),
  nodeUwsgi('wsgi-2w-rr', 'wsgi --workers 2 rr', 'examples/hello-wsgi.js', ['--workers', '2'], {
    env: { NODE_UWSGI_SCHED: 'rr' },
    nginxWorkers: 2,
    extra: true,
  }),
];
const WORKER_SET = ['uwsgi', 'minimal', 'wsgi-1w', 'wsgi-2w', 'wsgi-2w-rr'];

let pkiDir;
/** A private CA, a server certificate (subjectAltName node-uwsgi) and nginx's client certificate, made once per
 * run with the openssl CLI in a temp dir (removed at exit); for the wsgi-tls target. */
function tlsFiles() {
  if (pkiDir !== undefined) return pkiDir;
  pkiDir = mkdtempSync(path.join(os.tmpdir(), 'nu-bench-pki-'));
  process.once('exit', () => rmSync(pkiDir, { recursive: true, force: true }));
  const script = `set -e
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ca -keyout ca.key -out ca.crt
for name in server client; do
  openssl req -newkey rsa:2048 -nodes -subj /CN=$name -keyout $name.key -out $name.csr
  printf 'subjectAltName=DNS:node-uwsgi\n' > $name.ext
  openssl x509 -req -in $name.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile $name.ext -out $name.crt
done`;
  const r = spawnSync('bash', ['-c', script], { cwd: pkiDir, encoding: 'utf8' });
  if (r.status !== 0) throw new BenchError(`cannot make the TLS certificates:\n${r.stderr}`);
  return pkiDir;
}

/** Why uWSGI with its python3 plugin cannot run here, or null if it can. */
function uwsgiMissing() {
  const r = spawnSync(UWSGI, ['--plugin', 'python3', '--version'], { encoding: 'utf8' });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`;
  let why = null;
  if (r.error) why = `${UWSGI} not found (${r.error.code ?? r.error.message})`;
  else if (/UNABLE to load/.test(out)) why = `${UWSGI} cannot load its python3 plugin`;
  else if (r.status !== 0) why = `${UWSGI} --version exited with ${r.status}`;
  if (why === null) return null;
  return `${why}; install the Debian packages ${UWSGI_PACKAGES} (apt-get install -y --no-install-recommends ${UWSGI_PACKAGES}) to compare with it`;
}

export function uwsgiVersion() {
  const r = spawnSync(UWSGI, ['--version'], { encoding: 'utf8' });
  return r.error || r.status !== 0 ? null : r.stdout.trim();
}

export const nginxWorkersOf = (target) => target.nginxWorkers ?? 1;

export class BenchError extends Error {}

export function positiveInt(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1) throw new BenchError(`${name} must be a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

function selectedTargets(workersFlag) {
  const raw = process.env.BENCH_TARGETS;
  if (workersFlag && raw) throw new BenchError('--workers and BENCH_TARGETS select targets both: use one');
  if (workersFlag) return TARGETS.filter((t) => WORKER_SET.includes(t.key));
  if (!raw) return TARGETS.filter((t) => !t.extra);
  if (raw.trim() === 'all') return TARGETS;
  const keys = raw.split(',').map((k) => k.trim()).filter(Boolean);
  const unknown = keys.filter((k) => !TARGETS.some((t) => t.key === k));
  if (unknown.length > 0) {
    throw new BenchError(`unknown BENCH_TARGETS ${unknown.join(', ')}; known: ${TARGETS.map((t) => t.key).join(', ')}`);
  }
  return TARGETS.filter((t) => keys.includes(t.key));
}

/** The selected targets that can run here; each one skipped is said on stderr, with what it needs. */
function runnableTargets(selected) {
  const runnable = [];
  const skipped = [];
  for (const t of selected) {
    const why = t.needs?.() ?? null;
    if (why === null) runnable.push(t);
    else {
      skipped.push({ target: t.key, label: t.label, why });
      process.stderr.write(`bench: SKIPPING ${t.label}: ${why}\n`);
    }
  }
  if (runnable.length === 0) throw new BenchError('no target left to run');
  return { runnable, skipped };
}

// ---- processes and temp dirs, all released on exit, error or SIGINT ----

const live = new Set();
const tempDirs = new Set();

export function start(file, args, name, env) {
  const child = spawn(file, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env });
  const proc = { name, child, output: '', exited: null };
  const keep = (chunk) => {
    proc.output += chunk;
    if (proc.output.length > 64_000) proc.output = proc.output.slice(-32_000);
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  proc.exit = new Promise((resolve) => {
    child.on('error', (err) => {
      proc.exited = { err };
      live.delete(proc);
      resolve(proc.exited);
    });
    child.on('exit', (code, signal) => {
      proc.exited = { code, signal };
      live.delete(proc);
      resolve(proc.exited);
    });
  });
  live.add(proc);
  return proc;
}

export async function stop(proc, signal = 'SIGTERM') {
  if (proc.exited) return proc.exited;
  proc.child.kill(signal);
  const timer = sleep(5000).then(() => 'timeout');
  if ((await Promise.race([proc.exit, timer])) === 'timeout') proc.child.kill('SIGKILL');
  return proc.exit;
}

export function describeExit(proc) {
  const e = proc.exited;
  if (!e) return 'running';
  if (e.err) return `could not start: ${e.err.message}`;
  return e.signal ? `killed by ${e.signal}` : `exited with code ${e.code}`;
}

export function makeTempDir() {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'node-uwsgi-bench-'));
  tempDirs.add(dir);
  return dir;
}

export function removeTempDir(dir) {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

let cleaning = null;
export function cleanup() {
  cleaning ??= Promise.all([...live].map((p) => stop(p))).then(() => {
    for (const dir of [...tempDirs]) removeTempDir(dir);
  });
  return cleaning;
}

// Last resort if the process exits some other way: nothing async runs here.
process.on('exit', () => {
  for (const p of live) p.child.kill('SIGTERM');
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    process.stderr.write(`\nbench: ${signal}, stopping every process and removing temp dirs\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

// ---- readiness ----

function tryConnect(options) {
  return new Promise((resolve) => {
    const socket = net.connect(options);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

export async function waitConnectable(options, proc, what) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (proc.exited) throw new BenchError(`${what} ${describeExit(proc)} before it was ready:\n${proc.output.trim()}`);
    if (await tryConnect(options)) return;
    await sleep(25);
  }
  throw new BenchError(`${what} not ready after ${READY_TIMEOUT_MS} ms:\n${proc.output.trim()}`);
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export function get(port) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.setTimeout(5000, () => req.destroy(new Error('no answer in 5 s')));
    req.on('error', reject);
  });
}

// ---- nginx ----

export function nginxConf(dir, port, target, sock) {
  const pki = target.upstream === 'suwsgi' ? tlsFiles() : '';
  const location =
    target.upstream === 'uwsgi'
      ? `include ${path.join(REPO, 'nginx/uwsgi_params')};\n            uwsgi_pass unix:${sock};`
      : target.upstream === 'suwsgi'
        ? [
            `include ${path.join(REPO, 'nginx/uwsgi_params')};`,
            `uwsgi_pass suwsgi://unix:${sock};`,
            `uwsgi_ssl_certificate ${pki}/client.crt;`,
            `uwsgi_ssl_certificate_key ${pki}/client.key;`,
            `uwsgi_ssl_trusted_certificate ${pki}/ca.crt;`,
            'uwsgi_ssl_verify on;',
            'uwsgi_ssl_name node-uwsgi;',
            'uwsgi_ssl_session_reuse on;',
            `uwsgi_ssl_protocols ${target.protocols};`,
          ].join('\n            ')
        : 'proxy_pass http://up;\n            proxy_http_version 1.1;\n            proxy_set_header Connection "";';
  const upstream = target.upstream === 'http' ? `upstream up { server unix:${sock}; keepalive 32; }\n    ` : '';
  // As root, nginx's workers would otherwise run as nobody and could not reach the socket in our 0700 dir.
  const user = process.getuid?.() === 0 ? `user ${os.userInfo().username};\n` : '';
  // With several nginx workers, reuseport gives each its own listening socket, so that the kernel spreads wrk's
  // keep-alive connections over them (with one shared socket, whichever worker wakes first may take most of them).
  const workers = nginxWorkersOf(target);
  const reuseport = workers > 1 ? ' reuseport' : '';
  return `${user}worker_processes ${workers};
daemon off;
error_log stderr warn;
pid ${dir}/nginx.pid;
events { worker_connections 1024; }
http {
    access_log off;
    default_type text/plain;
    client_body_temp_path ${dir}/client_body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
    ${upstream}server {
        listen 127.0.0.1:${port}${reuseport};
        location / {
            ${location}
        }
    }
}
`;
}

/** nginx's own complaints at [error] or worse mean failed requests, whatever wrk counted. */
export function nginxErrors(output) {
  return output.split('\n').filter((line) => /\[(error|crit|alert|emerg)\]/.test(line));
}

// ---- CPU time of a process ----

// Throughput moves with whatever else the machine runs; the CPU a target spends per request barely does, so it
// is reported alongside (Linux /proc; null elsewhere).
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

function procStat(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(fields[1]), cpu: (Number(fields[11]) + Number(fields[12])) / CLK_TCK }; // utime + stime
  } catch {
    return null;
  }
}

/** CPU seconds used so far by pid and its descendants (node-uwsgi serves from worker processes), per pid. */
export function treeCpu(root) {
  let pids;
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number);
  } catch {
    return null;
  }
  const stats = new Map();
  for (const pid of pids) {
    const st = procStat(pid);
    if (st) stats.set(pid, st);
  }
  if (!stats.has(root)) return null;
  const cpu = new Map();
  const queue = [root];
  while (queue.length > 0) {
    const pid = queue.shift();
    cpu.set(pid, stats.get(pid).cpu);
    for (const [child, st] of stats) if (st.ppid === pid) queue.push(child);
  }
  return cpu;
}

export function cpuBetween(root, before, after) {
  if (!before || !after) return null;
  let total = 0;
  for (const [pid, cpu] of after) total += cpu - (before.get(pid) ?? 0);
  return { total, root: after.get(root) - before.get(root), processes: after.size };
}

// ---- wrk ----

export function parseWrk(out) {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  if (!rps) throw new BenchError(`cannot read Requests/sec from wrk's output:\n${out}`);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const requests = /(\d+) requests in ([\d.]+\w+)/.exec(out);
  const latency = /Latency\s+(\S+)/.exec(out);
  const socketErrors = sock
    ? { connect: +sock[1], read: +sock[2], write: +sock[3], timeout: +sock[4] }
    : { connect: 0, read: 0, write: 0, timeout: 0 };
  return {
    rps: Number(rps[1]),
    requests: requests ? Number(requests[1]) : null,
    latencyAvg: latency ? latency[1] : null,
    non2xx: non2xx ? Number(non2xx[1]) : 0,
    socketErrors,
    errorCount: (non2xx ? Number(non2xx[1]) : 0) + Object.values(socketErrors).reduce((a, b) => a + b, 0),
  };
}

export async function wrk(port, seconds) {
  const proc = start(WRK, ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, `http://127.0.0.1:${port}/`], 'wrk');
  await proc.exit;
  if (proc.exited.err || proc.exited.code !== 0) throw new BenchError(`wrk ${describeExit(proc)}:\n${proc.output}`);
  return { ...parseWrk(proc.output), raw: proc.output };
}

// ---- one measurement: target + nginx + wrk, in a temp prefix ----

async function measure(target, { seconds, warmup }) {
  const dir = makeTempDir();
  const sock = path.join(dir, 'app.sock');
  let app;
  let nginx;
  try {
    app = start(target.command ?? process.execPath, target.argv(sock), target.label, target.env);
    await waitConnectable({ path: sock }, app, target.label);
    const port = await freePort();
    writeFileSync(path.join(dir, 'nginx.conf'), nginxConf(dir, port, target, sock));
    nginx = start(NGINX, ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', 'stderr'], 'nginx');
    await waitConnectable({ host: '127.0.0.1', port }, nginx, 'nginx');

    const probe = await get(port);
    if (probe.status !== 200 || !probe.body.startsWith('Hello')) {
      throw new BenchError(
        `${target.label}: GET / answered ${probe.status} ${JSON.stringify(probe.body.slice(0, 200))}\n` +
          `nginx: ${nginx.output.trim()}\n${target.label}: ${app.output.trim()}`,
      );
    }
    const warm = await wrk(port, warmup);
    const cpuBefore = treeCpu(app.child.pid);
    const result = await wrk(port, seconds);
    const cpu = cpuBetween(app.child.pid, cpuBefore, treeCpu(app.child.pid));
    const perRequest = (seconds) => (cpu && result.requests ? (seconds / result.requests) * 1e6 : null);
    const cpuUsPerRequest = perRequest(cpu?.total);
    // With worker processes, the part the first process (node-uwsgi's master) spends: it should be ~0.
    const cpuRootUsPerRequest = cpu && cpu.processes > 1 ? perRequest(cpu.root) : null;
    const problems = [];
    if (warm.errorCount > 0) problems.push(`warm-up: ${summariseErrors(warm)}`);
    if (result.errorCount > 0) problems.push(summariseErrors(result));
    const nginxErr = nginxErrors(nginx.output);
    if (nginxErr.length > 0) problems.push(`nginx logged ${nginxErr.length} error(s), e.g. ${nginxErr[0]}`);
    if (app.exited) problems.push(`${target.label} ${describeExit(app)}`);
    return {
      rps: result.rps,
      requests: result.requests,
      latencyAvg: result.latencyAvg,
      cpuUsPerRequest,
      cpuRootUsPerRequest,
      processes: cpu?.processes ?? null,
      non2xx: result.non2xx + warm.non2xx,
      socketErrors: result.socketErrors,
      problems,
      appOutput: app.output.trim(),
      nginxOutput: nginx.output.trim(),
      wrkOutput: problems.length > 0 ? result.raw : undefined,
    };
  } finally {
    if (nginx) await stop(nginx);
    if (app) await stop(app, target.stopSignal);
    removeTempDir(dir);
  }
}

export function summariseErrors(r) {
  const s = r.socketErrors;
  return `${r.non2xx} non-2xx/3xx; socket errors connect ${s.connect}, read ${s.read}, write ${s.write}, timeout ${s.timeout}`;
}

// ---- report ----

function firstLine(file, args) {
  const r = spawnSync(file, args, { encoding: 'utf8' });
  if (r.error) return `unavailable (${r.error.message})`;
  return `${r.stdout}${r.stderr}`.trim().split('\n')[0].trim();
}

export function environment() {
  const cpus = os.cpus();
  return {
    date: new Date().toISOString(),
    node: process.version,
    nodePath: process.execPath,
    nginx: firstLine(NGINX, ['-v']).replace(/^nginx version:\s*/, ''),
    wrk: firstLine(WRK, ['-v']).replace(/\s*Copyright.*$/, ''),
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    kernel: `${os.type()} ${os.release()}`,
    loadavg: os.loadavg().map((l) => Number(l.toFixed(2))),
  };
}

export function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function table(rows) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

export const fmtRps = (n) => Math.round(n).toLocaleString('en-US');
export const fmtRatio = (n) => (n === null ? '—' : `${n.toFixed(2)}×`);
const fmtCpu = (n) => (n === null ? '—' : n.toFixed(1));
const medianOrNull = (values) => (values.some((v) => v === null) ? null : median(values));

// ---- main ----

/** Settings from the flags and env: --quick shortens the run, BENCH_* override either. */
export function settings(quick) {
  const base = quick ? QUICK : FULL;
  return {
    seconds: positiveInt('BENCH_SECONDS', base.seconds),
    rounds: positiveInt('BENCH_ROUNDS', base.rounds),
    warmup: positiveInt('BENCH_WARMUP', base.warmup),
  };
}

const minMax = (values) => (values.some((v) => v === null) ? null : [Math.min(...values), Math.max(...values)]);

async function main() {
  const flags = ['--json', '--workers', '--quick'];
  const json = process.argv.includes('--json');
  const workersFlag = process.argv.includes('--workers');
  const quick = process.argv.includes('--quick');
  const unknownArgs = process.argv.slice(2).filter((a) => !flags.includes(a));
  if (unknownArgs.length > 0) throw new BenchError(`unknown argument(s) ${unknownArgs.join(' ')}; only ${flags.join(', ')} are accepted`);
  const { seconds, rounds, warmup } = settings(quick);
  const { runnable: targets, skipped } = runnableTargets(selectedTargets(workersFlag));
  const env = { ...environment(), uwsgi: targets.some((t) => t.key === 'uwsgi') ? uwsgiVersion() : null };

  const header = [
    `machine  ${env.cpu} × ${env.cores} cores, ${env.kernel}`,
    `load     ${env.loadavg.join(' ')} at start (1/5/15 min; other work on the machine skews every figure)`,
    `node     ${env.node} (${env.nodePath})`,
    `nginx    ${env.nginx}, worker_processes per target (column nginx w); targets on Unix sockets`,
    ...(env.uwsgi ? [`uwsgi    ${env.uwsgi}, python3 plugin, bench/hello-wsgi.py, --master --processes 1`] : []),
    `wrk      ${env.wrk}: -t1 -c${CONNECTIONS} -d${seconds}s after a ${warmup} s warm-up, ${rounds} interleaved round(s), medians${quick ? ' (--quick)' : ''}`,
    ...(EXTRA_ARGS.length > 0 ? [`args     node-uwsgi targets get ${EXTRA_ARGS.join(' ')} (BENCH_NODE_UWSGI_ARGS)`] : []),
  ].join('\n');
  if (!json) process.stdout.write(`${header}\n\n`);

  const runs = new Map(targets.map((t) => [t.key, []]));
  for (let round = 0; round < rounds; round++) {
    // Rotating the order each round keeps any drift (thermal, neighbours) from favouring one position.
    const order = targets.map((_, i) => targets[(i + round) % targets.length]);
    for (const target of order) {
      process.stderr.write(`bench: round ${round + 1}/${rounds} ${target.label} ... `);
      const r = await measure(target, { seconds, warmup });
      runs.get(target.key).push(r);
      process.stderr.write(
        `${fmtRps(r.rps)} req/s, ${fmtCpu(r.cpuUsPerRequest)} µs CPU/req${r.problems.length ? `  PROBLEMS: ${r.problems.join('; ')}` : ''}\n`,
      );
      if (r.problems.length > 0 && r.wrkOutput) process.stderr.write(r.wrkOutput);
      // The targets run at --log-level warn: anything they print deserves a look, though it fails nothing.
      if (r.nginxOutput) process.stderr.write(`bench: note: nginx printed:\n${r.nginxOutput.slice(0, 2000)}\n`);
      if (r.appOutput && (!target.quiet || r.problems.length > 0)) {
        process.stderr.write(`bench: note: ${target.label} printed:\n${r.appOutput.slice(0, 2000)}\n`);
      }
    }
  }

  const medians = new Map(
    [...runs].map(([k, rs]) => [k, { rps: median(rs.map((r) => r.rps)), cpu: medianOrNull(rs.map((r) => r.cpuUsPerRequest)) }]),
  );
  const rpsRatio = (key, base) => (medians.has(base) ? medians.get(key).rps / medians.get(base).rps : null);
  const cpuRatio = (key, base) => {
    const x = medians.get(key)?.cpu ?? null;
    const y = medians.get(base)?.cpu ?? null;
    return x === null || y === null ? null : x / y;
  };
  const results = targets.map((t) => ({
    target: t.key,
    label: t.label,
    rps: medians.get(t.key).rps,
    rounds: runs.get(t.key).map((r) => r.rps),
    vsUwsgi: rpsRatio(t.key, 'uwsgi'),
    vsMinimal: rpsRatio(t.key, 'minimal'),
    vsNodeHttp: rpsRatio(t.key, 'node-http'),
    cpuUsPerRequest: medians.get(t.key).cpu,
    cpuRounds: runs.get(t.key).map((r) => r.cpuUsPerRequest),
    cpuVsUwsgi: cpuRatio(t.key, 'uwsgi'),
    cpuRootUsPerRequest: medianOrNull(runs.get(t.key).map((r) => r.cpuRootUsPerRequest)),
    processes: runs.get(t.key)[0].processes,
    nginxWorkers: nginxWorkersOf(t),
    non2xx: runs.get(t.key).reduce((a, r) => a + r.non2xx, 0),
    problems: runs.get(t.key).flatMap((r) => r.problems),
  }));
  const failed = results.filter((r) => r.problems.length > 0);
  const byKey = new Map(results.map((r) => [r.target, r]));
  const goals = [];
  for (const g of GOALS) {
    const r = byKey.get(g.target);
    if (!r || r.vsUwsgi === null) continue;
    if (g.cpu !== undefined && r.cpuVsUwsgi !== null) {
      goals.push({ target: g.target, what: 'cpu', ratio: r.cpuVsUwsgi, limit: g.cpu, pass: r.cpuVsUwsgi <= g.cpu });
    }
    if (g.rps !== undefined) goals.push({ target: g.target, what: 'rps', ratio: r.vsUwsgi, limit: g.rps, pass: r.vsUwsgi >= g.rps });
  }

  if (json) {
    const out = { environment: env, settings: { seconds, rounds, warmup, connections: CONNECTIONS, quick, extraArgs: EXTRA_ARGS }, results, skipped, goals, ok: failed.length === 0 };
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } else {
    // The master's column only when some target has one (node-uwsgi and uWSGI run a master and a worker).
    const master = results.some((r) => r.cpuRootUsPerRequest !== null);
    const rows = [
      [
        'target',
        'nginx w',
        'req/s',
        'vs uWSGI',
        'CPU µs/req',
        'vs uWSGI',
        ...(master ? ['of which master'] : []),
        'CPU µs/req min-max',
        'req/s per round',
      ],
    ];
    for (const r of results) {
      const range = minMax(r.cpuRounds);
      rows.push([
        r.label,
        String(r.nginxWorkers),
        fmtRps(r.rps),
        fmtRatio(r.vsUwsgi),
        fmtCpu(r.cpuUsPerRequest),
        fmtRatio(r.cpuVsUwsgi),
        ...(master ? [fmtCpu(r.cpuRootUsPerRequest)] : []),
        range ? `${fmtCpu(range[0])}-${fmtCpu(range[1])}` : '—',
        r.rounds.map(fmtRps).join(' / '),
      ]);
    }
    process.stdout.write(`${table(rows)}\n\n`);
    process.stdout.write('medians over the rounds; CPU µs/req: user + system time of the backend (master + workers) over wrk\'s requests\n');
    for (const s of skipped) process.stdout.write(`skipped: ${s.label}: ${s.why}\n`);
    const compare = (a, b, what) => {
      if (!byKey.has(a) || !byKey.has(b)) return;
      const x = byKey.get(a);
      const y = byKey.get(b);
      const cpu = x.cpuUsPerRequest !== null && y.cpuUsPerRequest !== null ? `, CPU/req ${fmtCpu(x.cpuUsPerRequest)} vs ${fmtCpu(y.cpuUsPerRequest)} µs` : '';
      process.stdout.write(`${what}: ${fmtRatio(x.rps / y.rps)} (${fmtRps(x.rps)} / ${fmtRps(y.rps)} req/s${cpu})\n`);
    };
    compare('wsgi-2w', 'wsgi-1w', 'scaling 2w / 1w (shared handle)');
    compare('wsgi-2w-rr', 'wsgi-1w', 'scaling 2w rr / 1w');
    compare('wsgi-2w-rr', 'wsgi-2w', 'round-robin / shared handle, 2w');
    if (goals.length > 0) {
      const verdict = goals.every((g) => g.pass) ? 'MET' : 'NOT MET';
      const detail = goals
        .map((g) => `${g.target} ${g.what === 'cpu' ? `CPU ${fmtRatio(g.ratio)} (≤ ${g.limit}×` : `req/s ${fmtRatio(g.ratio)} (≥ ${g.limit}×`}: ${g.pass ? 'yes' : 'no'})`)
        .join(', ');
      process.stdout.write(`goals vs uWSGI (issue 12): ${verdict} (${detail})\n`);
    } else {
      process.stdout.write('goals vs uWSGI (issue 12): not checked (they need uwsgi and one of wsgi, node, fetch)\n');
    }
  }
  if (failed.length > 0) {
    process.stderr.write(`\nbench: ERRORS in ${failed.map((r) => r.label).join(', ')}:\n`);
    for (const r of failed) for (const p of r.problems) process.stderr.write(`  ${r.label}: ${p}\n`);
    return 1;
  }
  return 0;
}

/** Runs fn as the program: cleans up and exits with its code, or 1 with the error. */
export function runMain(fn) {
  fn().then(
    async (code) => {
      await cleanup();
      process.exit(code);
    },
    async (err) => {
      process.stderr.write(`\nbench: FAILED: ${err instanceof BenchError ? err.message : err.stack}\n`);
      await cleanup();
      process.exit(1);
    },
  );
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) runMain(main);

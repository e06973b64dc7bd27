// The memory benchmark (issue 5): a 1 GiB upload and a 1 GiB download through a real nginx to node-uwsgi
// (--workers 1), for each app interface, sampling the worker's resident memory (VmRSS in /proc/<pid>/status)
// before and during each transfer. Bodies must stream with backpressure both ways: the worker's RSS may not
// grow by 64 MiB or more, whatever the body size. A script, not a timed test.
// Usage: `node bench/memory.js` (build first); env BENCH_MEMORY_MIB (1024, the size of each transfer),
// BENCH_MEMORY_WARMUP_MIB (64, each of the three warm-up transfers each way), BENCH_MEMORY_INTERFACES
// (node,wsgi,fetch), BENCH_MEMORY_ACCEPT (native or js: passed as --accept; unset, the default auto: native
// for wsgi and fetch where the addon loads, js for node); `--json` prints the results as JSON on stdout. Exits 1 if any
// growth reaches the limit, a transfer comes back wrong, or nginx logs an error.
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import {
  BenchError,
  NGINX,
  freePort,
  makeTempDir,
  nginxConf,
  nginxErrors,
  positiveInt,
  runMain,
  start,
  stop,
  waitConnectable,
} from './run.js';

const MiB = 1024 * 1024;
const LIMIT_MIB = 64;
const SAMPLE_MS = 25;
const INTERFACES = ['node', 'wsgi', 'fetch'];
// Each app allocates a fresh chunk per write: a server that kept references to written chunks (no
// backpressure, a queue that grows) would show here, where one reused buffer would hide it.
const CHUNK = 64 * 1024;

const APPS = {
  node: `import { once } from 'node:events';
export default async function handler(req, res) {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/upload') {
    let length = 0;
    for await (const chunk of req) length += chunk.length;
    const body = JSON.stringify({ length });
    res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) });
    return res.end(body);
  }
  const total = Number(url.searchParams.get('bytes'));
  res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': total });
  for (let sent = 0, i = 0; sent < total; sent += ${CHUNK}, i++) {
    if (!res.write(Buffer.alloc(Math.min(${CHUNK}, total - sent), i & 0xff))) await once(res, 'drain');
  }
  res.end();
}
`,
  wsgi: `export async function application(environ, startResponse) {
  if (environ.PATH_INFO === '/upload') {
    let length = 0;
    for await (const chunk of environ['wsgi.input']) length += chunk.length;
    const body = JSON.stringify({ length });
    startResponse('200 OK', [['Content-Type', 'application/json'], ['Content-Length', String(body.length)]]);
    return [body];
  }
  const total = Number(new URLSearchParams(environ.QUERY_STRING).get('bytes'));
  startResponse('200 OK', [['Content-Type', 'application/octet-stream'], ['Content-Length', String(total)]]);
  return (function* () {
    for (let sent = 0, i = 0; sent < total; sent += ${CHUNK}, i++) yield Buffer.alloc(Math.min(${CHUNK}, total - sent), i & 0xff);
  })();
}
`,
  fetch: `export default {
  async fetch(request) {
    const url = new URL(request.url);
    if (url.pathname === '/upload') {
      let length = 0;
      for await (const chunk of request.body) length += chunk.length;
      return Response.json({ length });
    }
    const total = Number(url.searchParams.get('bytes'));
    let sent = 0;
    let i = 0;
    const body = new ReadableStream({
      pull(controller) {
        if (sent >= total) return controller.close();
        const n = Math.min(${CHUNK}, total - sent);
        sent += n;
        controller.enqueue(new Uint8Array(n).fill(i++ & 0xff));
      },
    });
    return new Response(body, { headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': String(total) } });
  },
};
`,
};

// ---- the worker and its memory ----

/** The pids whose parent is `ppid` (Linux /proc). */
function childrenOf(ppid) {
  const out = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) out.push(Number(name));
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** VmRSS in bytes. */
function rssOf(pid) {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new BenchError(`no VmRSS in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

/** Samples `pid`'s RSS every SAMPLE_MS while `work` runs; resolves with its result, the peak and the sample count. */
async function sampled(pid, work) {
  let peak = rssOf(pid);
  let samples = 1;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, rssOf(pid));
      samples++;
    } catch {
      // The worker died: the transfer fails and says so.
    }
  }, SAMPLE_MS);
  try {
    const result = await work();
    peak = Math.max(peak, rssOf(pid));
    return { result, peak, samples: samples + 1 };
  } finally {
    clearInterval(timer);
  }
}

// ---- the client ----

const agent = new http.Agent({ keepAlive: false });

/** POSTs `total` bytes in 1 MiB writes (with backpressure); resolves with the status and the app's answer. */
function upload(port, total) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method: 'POST', path: '/upload', agent, headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': total } },
      (res) => {
        let body = '';
        res.setEncoding('utf8').on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    const piece = Buffer.alloc(MiB, 0x75);
    let sent = 0;
    const pump = () => {
      while (sent < total) {
        const n = Math.min(MiB, total - sent);
        sent += n;
        if (!req.write(n === MiB ? piece : piece.subarray(0, n))) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

/** GETs `total` bytes and counts what arrives, holding none of it. */
function download(port, total) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: `/download?bytes=${total}`, agent }, (res) => {
      let length = 0;
      res.on('data', (c) => (length += c.length));
      res.on('end', () => resolve({ status: res.statusCode, length }));
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

// ---- one interface: node-uwsgi + nginx in a temp prefix ----

async function measure(kind, total, warmup, accept) {
  const dir = makeTempDir();
  const sock = path.join(dir, 'app.sock');
  const appFile = path.join(dir, `app-${kind}.mjs`);
  writeFileSync(appFile, APPS[kind]);
  const server = start(
    process.execPath,
    ['dist/cli.js', appFile, '--socket', `unix:${sock}`, '--workers', '1', '--log-level', 'warn', '--max-body-size', '0', '--accept', accept],
    `node-uwsgi ${kind}`,
  );
  let nginx;
  try {
    await waitConnectable({ path: sock }, server, `node-uwsgi (${kind})`);

    const port = await freePort();
    // Both directions streamed end to end: nginx neither spools the upload nor the download to a temp file, so
    // the worker meets the client's pace (and its own app's) and nothing else absorbs a missing backpressure.
    const conf = nginxConf(dir, port, { upstream: 'uwsgi' }, sock).replace(
      `uwsgi_pass unix:${sock};`,
      `uwsgi_pass unix:${sock};\n            client_max_body_size 0;\n            uwsgi_request_buffering off;\n            uwsgi_buffering off;`,
    );
    if (!conf.includes('uwsgi_request_buffering off;')) throw new BenchError('could not add the buffering directives to the nginx config');
    writeFileSync(path.join(dir, 'nginx.conf'), conf);
    nginx = start(NGINX, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], 'nginx');
    await waitConnectable({ host: '127.0.0.1', port }, nginx, 'nginx');

    // With native accept the master binds the socket before it forks the worker: the socket accepts long before
    // the worker runs. An empty download answered means the worker has loaded the app and serves.
    const probe = await download(port, 0);
    if (probe.status !== 200) throw new BenchError(`node-uwsgi (${kind}): the first request answered ${probe.status}`);
    const workers = childrenOf(server.child.pid);
    if (workers.length !== 1) throw new BenchError(`expected one worker under the master ${server.child.pid}, found ${workers.join(', ') || 'none'}`);
    const worker = workers[0];
    const cold = rssOf(worker);
    // Warm-up: the app's code paths compiled and the worker's heap grown to its working size before the baseline.
    // On Node 24 the first sustained upload grows V8's young generation by 40-60 MiB once, whatever the body
    // size (256 MiB or 4 GiB alike; --max-semi-space-size=1 cuts it to 17 MiB): a fixed cost, not buffering,
    // which the 'from cold' column still shows.
    for (let i = 0; i < 3; i++) {
      await upload(port, warmup);
      await download(port, warmup);
    }

    const runs = [];
    for (const direction of ['upload', 'download']) {
      const baseline = rssOf(worker);
      const started = process.hrtime.bigint();
      const { result, peak, samples } = await sampled(worker, () => (direction === 'upload' ? upload(port, total) : download(port, total)));
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const after = rssOf(worker);
      const problems = [];
      if (result.status !== 200) problems.push(`status ${result.status}`);
      const got = direction === 'upload' ? JSON.parse(result.body || '{}').length : result.length;
      if (got !== total) problems.push(`${got} bytes arrived, not ${total}`);
      const growth = peak - baseline;
      if (growth >= LIMIT_MIB * MiB) problems.push(`RSS grew by ${(growth / MiB).toFixed(1)} MiB (limit ${LIMIT_MIB})`);
      runs.push({ interface: kind, direction, bytes: total, cold, baseline, peak, after, growth, samples, seconds, problems });
    }
    const errors = nginxErrors(nginx.output + safeRead(path.join(dir, 'error.log')));
    if (errors.length > 0) runs[runs.length - 1].problems.push(...errors.map((e) => `nginx: ${e}`));
    if (server.exited) runs[runs.length - 1].problems.push(`node-uwsgi ${server.exited.code ?? server.exited.signal}`);
    const warnings = server.output.trim();
    return { runs, notes: warnings ? [`node-uwsgi (${kind}) said: ${warnings.slice(0, 2000)}`] : [] };
  } finally {
    if (nginx) await stop(nginx);
    await stop(server);
  }
}

function safeRead(file) {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function selectedInterfaces() {
  const raw = process.env.BENCH_MEMORY_INTERFACES;
  if (!raw) return INTERFACES;
  const kinds = raw.split(',').map((k) => k.trim()).filter(Boolean);
  const unknown = kinds.filter((k) => !INTERFACES.includes(k));
  if (unknown.length > 0) throw new BenchError(`unknown BENCH_MEMORY_INTERFACES ${unknown.join(', ')}; known: ${INTERFACES.join(', ')}`);
  return kinds;
}

const mib = (bytes) => (bytes / MiB).toFixed(1);

async function main() {
  const json = process.argv.includes('--json');
  const total = positiveInt('BENCH_MEMORY_MIB', 1024) * MiB;
  const warmup = positiveInt('BENCH_MEMORY_WARMUP_MIB', 64) * MiB;
  const kinds = selectedInterfaces();
  const accept = process.env.BENCH_MEMORY_ACCEPT || 'auto';
  if (!['auto', 'native', 'js'].includes(accept)) throw new BenchError(`BENCH_MEMORY_ACCEPT=${accept}: auto, native or js`);
  const cpus = os.cpus();
  const env = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus[0]?.model.trim() ?? 'unknown',
    cores: cpus.length,
    kernel: `${os.type()} ${os.release()}`,
    loadavg: os.loadavg().map((l) => Number(l.toFixed(2))),
  };
  const runs = [];
  const notes = [];
  for (const kind of kinds) {
    const out = await measure(kind, total, warmup, accept);
    runs.push(...out.runs);
    notes.push(...out.notes);
  }
  const failed = runs.filter((r) => r.problems.length > 0);
  if (json) {
    process.stdout.write(`${JSON.stringify({ env, accept, limitMiB: LIMIT_MIB, runs }, null, 2)}\n`);
  } else {
    const lines = [
      `node     ${env.node} (${process.execPath})`,
      `machine  ${env.cpu} × ${env.cores} cores, ${env.kernel}, load ${env.loadavg.join(' ')} at start`,
      `setup    nginx (uwsgi_request_buffering off, uwsgi_buffering off) → node-uwsgi --workers 1 --accept ${accept} on a Unix socket; ` +
        `${mib(total)} MiB each way after 3 × ${mib(warmup)} MiB each way of warm-up; worker VmRSS sampled every ${SAMPLE_MS} ms`,
      '',
      ['interface', 'direction', 'cold MiB', 'baseline MiB', 'peak MiB', 'growth MiB', 'from cold', 'after MiB', 'MiB/s', 'result'].join('  '),
    ];
    for (const r of runs) {
      lines.push(
        [
          r.interface.padEnd(9),
          r.direction.padEnd(9),
          mib(r.cold).padStart(8),
          mib(r.baseline).padStart(12),
          mib(r.peak).padStart(8),
          mib(r.growth).padStart(10),
          mib(r.peak - r.cold).padStart(9),
          mib(r.after).padStart(9),
          (r.bytes / MiB / r.seconds).toFixed(0).padStart(5),
          r.problems.length === 0 ? `ok (< ${LIMIT_MIB} MiB)` : `FAIL: ${r.problems.join('; ')}`,
        ].join('  '),
      );
    }
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  for (const note of notes) process.stderr.write(`note: ${note}\n`);
  if (failed.length > 0) {
    process.stderr.write(`MEMORY BENCH FAILED: ${failed.length} transfer(s)\n`);
    return 1;
  }
  return 0;
}

runMain(main);

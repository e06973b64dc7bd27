// The reload benchmark: wrk → nginx (2 workers) → node-uwsgi (hello WSGI app, --workers 2) while the master gets
// a SIGHUP every BENCH_RELOAD_EVERY seconds (2), each sent only after the previous reload's 'reload complete' log
// line; then the same length of wrk without reloads. Reports requests/s with and without reloads, the reloads
// completed and their durations (the `ms` of the 'reload complete' lines): min / median / max. Any non-2xx
// response, socket error, nginx error line or a reload that does not complete fails the run (exit 1).
// Usage: `node bench/reload.js` (build first); env BENCH_RELOAD_SECONDS (20), BENCH_RELOAD_EVERY (2),
// BENCH_WARMUP (2); `--json` prints the results as JSON on stdout.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  BenchError,
  CONNECTIONS,
  NGINX,
  describeExit,
  environment,
  fmtRatio,
  fmtRps,
  freePort,
  get,
  makeTempDir,
  median,
  nginxConf,
  nginxErrors,
  positiveInt,
  runMain,
  start,
  summariseErrors,
  waitConnectable,
  wrk,
} from './run.js';

const WORKERS = 2;
const RELOAD_TIMEOUT_MS = 30_000;
const TARGET = { key: 'wsgi-2w-reload', label: 'node-uwsgi wsgi --workers 2', upstream: 'uwsgi', nginxWorkers: WORKERS };

/** The master's (and workers') JSON log lines on stdout, as they come; waiters resolve on a matching line. */
function logWatcher(proc) {
  const lines = [];
  const waiters = [];
  let partial = '';
  proc.child.stdout.on('data', (chunk) => {
    partial += chunk;
    const parts = partial.split('\n');
    partial = parts.pop();
    for (const text of parts) {
      let line;
      try {
        line = JSON.parse(text);
      } catch {
        continue;
      }
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.match(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  return {
    lines,
    /** Resolves with the first line from now on that matches, or rejects after timeoutMs. */
    next(match, timeoutMs, what) {
      return new Promise((resolve, reject) => {
        const w = { match, resolve };
        waiters.push(w);
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(new BenchError(`no ${what} log line within ${timeoutMs} ms; output:\n${proc.output.slice(-4000)}`));
        }, timeoutMs);
        proc.exit.then(() => {
          clearTimeout(timer);
          reject(new BenchError(`node-uwsgi ${describeExit(proc)} while waiting for ${what}:\n${proc.output.slice(-4000)}`));
        });
        const done = w.resolve;
        w.resolve = (line) => {
          clearTimeout(timer);
          done(line);
        };
      });
    },
  };
}

/** Sends SIGHUP every `every` ms (never before the previous reload completed) until `until`; returns the ms. */
async function reloadLoop(app, log, t0, until, every) {
  const durations = [];
  let next = t0 + every;
  while (next < until) {
    await sleep(Math.max(0, next - Date.now()));
    const complete = log.next((l) => l.msg === 'reload complete', RELOAD_TIMEOUT_MS, `'reload complete' for reload ${durations.length + 1}`);
    app.child.kill('SIGHUP');
    const line = await complete;
    durations.push(line.ms);
    next = Math.max(next + every, Date.now());
  }
  return durations;
}

async function main() {
  const json = process.argv.includes('--json');
  const unknownArgs = process.argv.slice(2).filter((a) => a !== '--json');
  if (unknownArgs.length > 0) throw new BenchError(`unknown argument(s) ${unknownArgs.join(' ')}; only --json is accepted`);
  const seconds = positiveInt('BENCH_RELOAD_SECONDS', 20);
  const every = positiveInt('BENCH_RELOAD_EVERY', 2);
  const warmup = positiveInt('BENCH_WARMUP', 2);
  const env = environment();

  const dir = makeTempDir();
  const sock = path.join(dir, 'app.sock');
  const argv = ['dist/cli.js', 'examples/hello-wsgi.js', '--socket', `unix:${sock}`, '--workers', String(WORKERS), '--log-level', 'info'];
  const app = start(process.execPath, argv, 'node-uwsgi');
  const log = logWatcher(app);
  await log.next((l) => l.msg === 'ready', 30_000, "the master's 'ready'");
  await waitConnectable({ path: sock }, app, 'node-uwsgi');
  const port = await freePort();
  writeFileSync(path.join(dir, 'nginx.conf'), nginxConf(dir, port, TARGET, sock));
  const nginx = start(NGINX, ['-p', `${dir}/`, '-c', path.join(dir, 'nginx.conf'), '-e', 'stderr'], 'nginx');
  await waitConnectable({ host: '127.0.0.1', port }, nginx, 'nginx');
  const probe = await get(port);
  if (probe.status !== 200 || !probe.body.startsWith('Hello')) {
    throw new BenchError(`GET / answered ${probe.status} ${JSON.stringify(probe.body.slice(0, 200))}\nnginx: ${nginx.output.trim()}`);
  }

  const header = [
    `node     ${env.node} (${env.nodePath})`,
    `nginx    ${env.nginx}, ${WORKERS} workers; node-uwsgi examples/hello-wsgi.js --workers ${WORKERS} (shared handle) on a Unix socket`,
    `wrk      -t1 -c${CONNECTIONS} -d${seconds}s after a ${warmup} s warm-up: once with a SIGHUP every ${every} s (each after the previous 'reload complete'), once without`,
    `cpu      ${env.cpu} × ${env.cores} cores`,
    `load     ${env.loadavg.join(' ')} at start (1/5/15 min)`,
  ].join('\n');
  if (!json) process.stdout.write(`${header}\n\n`);

  const warm = await wrk(port, warmup);
  process.stderr.write(`bench: with reloads (${seconds} s) ... `);
  const t0 = Date.now();
  const [withReloads, durations] = await Promise.all([wrk(port, seconds), reloadLoop(app, log, t0, t0 + seconds * 1000 - 1000, every * 1000)]);
  process.stderr.write(`${fmtRps(withReloads.rps)} req/s, ${durations.length} reloads\n`);
  process.stderr.write(`bench: without reloads (${seconds} s) ... `);
  const without = await wrk(port, seconds);
  process.stderr.write(`${fmtRps(without.rps)} req/s\n`);

  const problems = [];
  for (const [what, r] of [['warm-up', warm], ['with reloads', withReloads], ['without reloads', without]]) {
    if (r.errorCount > 0) problems.push(`${what}: ${summariseErrors(r)}`);
  }
  const nginxErr = nginxErrors(nginx.output);
  if (nginxErr.length > 0) problems.push(`nginx logged ${nginxErr.length} error(s), e.g. ${nginxErr[0]}`);
  if (app.exited) problems.push(`node-uwsgi ${describeExit(app)}`);
  if (durations.length === 0) problems.push('no reload completed');
  const badLines = log.lines.filter((l) => l.level >= 40);
  const sorted = [...durations].sort((a, b) => a - b);
  const result = {
    environment: env,
    settings: { seconds, every, warmup, connections: CONNECTIONS, workers: WORKERS, nginxWorkers: WORKERS },
    withReloads: { rps: withReloads.rps, requests: withReloads.requests, non2xx: withReloads.non2xx, socketErrors: withReloads.socketErrors },
    withoutReloads: { rps: without.rps, requests: without.requests, non2xx: without.non2xx, socketErrors: without.socketErrors },
    ratio: withReloads.rps / without.rps,
    reloads: durations.length,
    reloadMs: durations,
    reloadMsMin: sorted[0] ?? null,
    reloadMsMedian: sorted.length ? median(sorted) : null,
    reloadMsMax: sorted.at(-1) ?? null,
    warnings: badLines.map((l) => l.msg),
    problems,
    ok: problems.length === 0,
  };

  if (json) {
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } else {
    const errs = (r) => `${r.non2xx} non-2xx, socket errors ${Object.values(r.socketErrors).reduce((a, b) => a + b, 0)}`;
    const lines = [
      `with reloads      ${fmtRps(withReloads.rps).padStart(7)} req/s  ${String(withReloads.requests).padStart(8)} requests  ${errs(withReloads)}`,
      `without reloads   ${fmtRps(without.rps).padStart(7)} req/s  ${String(without.requests).padStart(8)} requests  ${errs(without)}`,
      `ratio             ${fmtRatio(result.ratio)} (with / without)`,
      `reloads           ${durations.length} completed (each: ${WORKERS} new workers booted, ${WORKERS} old ones drained)`,
      `reload ms         min ${result.reloadMsMin}  median ${result.reloadMsMedian}  max ${result.reloadMsMax}  (all: ${durations.join(', ')})`,
    ];
    if (badLines.length > 0) lines.push(`warn+ log lines   ${badLines.length}: ${[...new Set(badLines.map((l) => l.msg))].join('; ')}`);
    process.stdout.write(`${lines.join('\n')}\n`);
  }
  if (badLines.length > 0 && !json) process.stderr.write(`bench: note: node-uwsgi logged at warn or above:\n${badLines.map((l) => JSON.stringify(l)).join('\n').slice(0, 4000)}\n`);
  if (problems.length > 0) {
    process.stderr.write(`\nbench: RELOAD BENCH FAILED:\n${problems.map((p) => `  ${p}`).join('\n')}\n`);
    if (withReloads.errorCount > 0) process.stderr.write(withReloads.raw);
    return 1;
  }
  return 0;
}

runMain(main);

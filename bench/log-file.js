// The --log-file benchmark (issue 11): access-log lines through the logger that `--log-file` builds
// (dist/log.js), to a file on a normal disk. One line per request, so lines are logged a few per event loop turn
// (BENCH_LOG_BATCH, like that many requests ending in one turn), not in one synchronous loop.
// Prints lines/s for the logging calls (CPU of the process, the file writes included) and the wall time until
// every line is in the file.
// Usage: `node bench/log-file.js` (build first); env BENCH_LOG_LINES (200000), BENCH_LOG_BATCH (8), BENCH_LOG_DIR
// (a temporary directory under os.tmpdir()), BENCH_LOG_MODULE (../dist/log.js: another build's, for an A/B).
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const { createLogger } = await import(process.env.BENCH_LOG_MODULE ?? '../dist/log.js');
const LINES = Number(process.env.BENCH_LOG_LINES ?? 200_000);
const BATCH = Number(process.env.BENCH_LOG_BATCH ?? 8);
const dir = mkdtempSync(path.join(process.env.BENCH_LOG_DIR ?? os.tmpdir(), 'nu-bench-log-'));
const file = path.join(dir, 'access.log');

const { log } = createLogger({ logLevel: 'info', logFormat: 'json', logFile: file }, { pid: process.pid, worker: 1 });
const started = process.hrtime.bigint();
const cpu = process.cpuUsage();
let logged = 0;
await new Promise((resolve) => {
  const turn = () => {
    for (let i = 0; i < BATCH && logged < LINES; i++, logged++) {
      log.info({ method: 'GET', uri: `/items/${logged}?q=1`, status: 200, bytes: 1234, duration: 0.42, remote: '127.0.0.1' }, 'request');
    }
    if (logged < LINES) setImmediate(turn);
    else resolve();
  };
  turn();
});
const loggedNs = Number(process.hrtime.bigint() - started);
const used = process.cpuUsage(cpu);
const cpuUs = used.user + used.system;

// Done when the file stops growing for 300 ms.
let size = -1;
let grownAt = process.hrtime.bigint();
for (;;) {
  const now = statSync(file).size;
  if (now !== size) {
    size = now;
    grownAt = process.hrtime.bigint();
  } else if (Number(process.hrtime.bigint() - grownAt) > 300e6) break;
  await new Promise((resolve) => setTimeout(resolve, 5));
}
const lines = readFileSync(file, 'utf8').split('\n').length - 1;
rmSync(dir, { recursive: true, force: true });
console.log(
  JSON.stringify({
    node: process.version,
    lines: LINES,
    batch: BATCH,
    written: lines,
    bytes: size,
    cpuUsPerLine: +(cpuUs / LINES).toFixed(2),
    linesPerCpuSecond: Math.round(LINES / (cpuUs / 1e6)),
    loggedLinesPerSecond: Math.round(LINES / (loggedNs / 1e9)),
    allWrittenMs: Math.round(Number(grownAt - started) / 1e6),
  }),
);
process.exit(lines === LINES ? 0 : 1);

// The JavaScript half of the native accept path, alone: CPU per request of what runs in JavaScript from the
// addon's call (head bytes in) to the response handed back for C's one write, with a stand-in addon in place of
// src/native/accept.c. No sockets, no nginx, one process: a figure that a busy machine disturbs far less than
// run.js's, for comparing two builds of the adapters, the lifecycle and the codec. It leaves out what C and the
// kernel cost (accept, read, write, close: about 20 us per request in run.js on the same machine).
//
//   node bench/js-half.js [wsgi|node|fetch|express|...] [requests]   (dist/ must be built: npm run build)
//
// Under valgrind (`--tool=callgrind`), two runs with BENCH_WARM fixed and different request counts give
// instructions per request: a count that another process on the machine does not disturb.
//
// The worker's defaults are used (--header/--body/--send-timeout 60 s, the in-flight table, no access log).
import { readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { loadApp } from '../dist/app-loader/index.js';
import { createHandler } from '../dist/handler.js';
import { NativeListener } from '../dist/server/native.js';
import { lifecycleContext } from '../dist/server/lifecycle.js';
import { InflightTable } from '../dist/worker/inflight.js';

const root = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const APPS = {
  wsgi: 'examples/hello-wsgi.js',
  node: 'examples/hello-node.js',
  fetch: 'examples/hello-fetch.js',
  express: 'examples/express-app.js',
  koa: 'examples/koa-app.js',
  fastify: 'examples/fastify-app.js',
  hono: 'examples/hono-app.js',
};
const which = process.argv[2] ?? 'wsgi';
const N = Number(process.argv[3] ?? 200_000);
const WARM = Number(process.env.BENCH_WARM ?? Math.min(50_000, N));
// nginx's GET as captured (test/fixtures/nginx): the head node-uwsgi gets from a real front server.
const packet = readFileSync(path.join(root, 'test/fixtures/nginx/nginx-get-query.uwsgi'));

const loaded = await loadApp(APPS[which] ?? which, { cwd: root });
const log = pino({ level: 'warn' });
const ctx = {
  ...lifecycleContext({ handler: createHandler(loaded), log, bodyTimeout: 60_000, sendTimeout: 60_000, tracker: new InflightTable(false) }),
  limits: { maxVarsSize: 65535, maxVars: 1024, maxBodySize: 0 },
  headerTimeout: 60_000,
};

let onRequest;
let answered;
let bytesOut = 0;
let handedOver = 0;
const addon = {
  // The addon's read buffer with nginx's packet in it, as C's read leaves it (the same bytes for every request).
  readBuffer: Buffer.alloc(4 + 65535 + 16384),
  listen(fd, request) {
    onRequest = request;
    return {};
  },
  stop() {},
  respond(fd, bytes) {
    bytesOut += bytes.length;
    answered();
    return bytes.length;
  },
  release() {
    handedOver++;
  },
  close() {},
};
packet.copy(addon.readBuffer);
new NativeListener(addon, 3, ctx, () => {}, () => {}, undefined);

/** Requests in batches of `depth`, each batch started in its own turn of the event loop (as the addon calls
 * onRequest for the connections one epoll wait returned), the next once all of the batch are answered. */
async function run(count, depth = 8) {
  for (let done = 0; done < count; done += depth) {
    let left = depth;
    await new Promise((resolve) => {
      answered = () => {
        if (--left === 0) resolve();
      };
      setImmediate(() => {
        for (let i = 0; i < depth; i++) onRequest(100 + i, packet.length, true, undefined);
      });
    });
  }
}

await run(WARM);
const before = bytesOut;
const cpu0 = process.cpuUsage();
const t0 = process.hrtime.bigint();
await run(N);
const wall = Number(process.hrtime.bigint() - t0) / 1e3 / N;
const cpu = process.cpuUsage(cpu0);
if (handedOver > 0) throw new Error(`${handedOver} requests were handed over to the JavaScript path: not a one-write answer`);
console.log(
  `${which} on Node ${process.version}, ${os.cpus()[0]?.model ?? 'cpu'}: ${((cpu.user + cpu.system) / N).toFixed(2)} us CPU per request ` +
    `(${wall.toFixed(2)} us wall), ${((bytesOut - before) / N).toFixed(0)} response bytes each`,
);

// Microbenchmark for the fetch adapter alone (issue 12): the CPU time per request (user + system, so garbage
// collection on V8's helper threads counts) of createFetchHandler(app) over an
// in-memory exchange (the vars nginx sends for a browser's GET, a response sink that keeps nothing), for the hello
// app (with the global Response and with node-uwsgi's) and a Hono app (with each as the global one), each with the
// light Request and (-real) a real one, and a POST whose JSON body the app reads (json), against another build's adapter in the same process, rounds interleaved. Each request is
// awaited before the next, as one connection's would be. Prints the median CPU ns per request and the ratio.
// Usage: `node bench/fetch-adapter.js` (build first); env BENCH_FETCH_BASE (a path to another build's
// interfaces/fetch.js: the A of the A/B; without it, only this build), BENCH_FETCH_REQUESTS (50000 per round),
// BENCH_FETCH_ROUNDS (11).
import { Readable } from 'node:stream';
import { Hono } from 'hono';

const REQUESTS = Number(process.env.BENCH_FETCH_REQUESTS ?? 50_000);
const ROUNDS = Number(process.env.BENCH_FETCH_ROUNDS ?? 11);
const builds = { current: await import('../dist/interfaces/fetch.js') };
const { Response: LightResponse } = await import('../dist/interfaces/fetch-response.js');
const { installOwnRequest } = await import('../dist/interfaces/fetch-request.js');
if (process.env.BENCH_FETCH_BASE) builds.base = await import(process.env.BENCH_FETCH_BASE);

// What nginx 1.22 sends for a browser's GET / with uwsgi_params.
const VARS = [
  'QUERY_STRING', '', 'REQUEST_METHOD', 'GET', 'CONTENT_TYPE', '', 'CONTENT_LENGTH', '',
  'REQUEST_URI', '/items/42?sort=asc', 'PATH_INFO', '/items/42', 'DOCUMENT_ROOT', '/usr/share/nginx/html',
  'SERVER_PROTOCOL', 'HTTP/1.1', 'REQUEST_SCHEME', 'http', 'REMOTE_ADDR', '127.0.0.1', 'REMOTE_PORT', '51234',
  'SERVER_PORT', '8080', 'SERVER_NAME', 'localhost', 'HTTP_HOST', 'localhost:8080',
  'HTTP_USER_AGENT', 'Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0',
  'HTTP_ACCEPT', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
  'HTTP_ACCEPT_LANGUAGE', 'en-US,en;q=0.5', 'HTTP_ACCEPT_ENCODING', 'gzip, deflate, br',
];

// A JSON API's POST: the same headers, a 40-byte body.
const BODY = Buffer.from('{"name":"ada","tags":["a","b"],"n":42}\n');
const POST_VARS = VARS.map((v, i) => (VARS[i - 1] === 'REQUEST_METHOD' ? 'POST' : VARS[i - 1] === 'CONTENT_LENGTH' ? String(BODY.length) : VARS[i - 1] === 'CONTENT_TYPE' ? 'application/json' : v));

const noop = () => {};
const log = { debug: noop, info: noop, warn: noop, error: noop };
const RESOLVED = Promise.resolve();

class Sink {
  headersSent = false;
  status = 0;
  bytes = 0;
  writeHead(status, _reason, headers) {
    this.status = status;
    this.headersSent = true;
    for (const [name, value] of headers) this.bytes += name.length + value.length;
  }
  write(chunk) {
    this.bytes += chunk.length;
    return true;
  }
  drain() {
    return RESOLVED;
  }
  end() {}
}

// The server's exchange as the adapters see it: body and signal made on first use, as in server/connection.ts.
class Exchange {
  constructor(post = false) {
    if (post) {
      this.vars = POST_VARS;
      this.contentLength = BODY.length;
      this.#post = true;
    }
  }
  modifier1 = 0;
  modifier2 = 0;
  vars = VARS;
  contentLength = 0;
  #post = false;
  status = 0;
  multiprocess = false;
  upgrade = false;
  log = log;
  socket = undefined;
  response = new Sink();
  #controller;
  #body;
  get signal() {
    this.#controller ??= new AbortController();
    return this.#controller.signal;
  }
  get body() {
    this.#body ??= Readable.from(this.#post ? [BODY] : []);
    return this.#body;
  }
  takeOver() {
    throw new Error('no upgrade here');
  }
}

const hello = {
  fetch(request) {
    const url = new URL(request.url);
    return new Response(`Hello from node-uwsgi: ${request.method} ${url.pathname}\n`, {
      headers: { 'Content-Type': 'text/plain; charset=utf-8' },
    });
  },
};
// The hello app with node-uwsgi's own Response (`import { Response } from 'node-uwsgi'`).
const light = {
  fetch(request) {
    const url = new URL(request.url);
    return new LightResponse(`Hello from node-uwsgi: ${request.method} ${url.pathname}\n`, {
      headers: { 'Content-Type': 'text/plain; charset=utf-8' },
    });
  },
};
const hono = new Hono();
hono.get('/items/:id', (c) => c.text(`item ${c.req.param('id')} ${c.req.query('sort')}`));
// hono-own: the same Hono app with node-uwsgi's Response as the global one, as --own-response makes it. The
// -real rows: node-uwsgi's global Request not installed, so the adapter builds a real Request (--real-request).
// json: a POST whose JSON body the app reads with request.json().
const json = {
  async fetch(request) {
    const data = await request.json();
    return new Response(`${data.name} ${data.n}\n`);
  },
};
const apps = { hello, 'hello-real': hello, light, 'light-real': light, hono, 'hono-real': hono, 'hono-own': hono, json, 'json-real': json };
const NativeResponse = globalThis.Response;
let restoreRequest;

const samples = {};
let check = 0;
for (let round = 0; round < ROUNDS; round++) {
  const names = Object.keys(builds);
  if (round % 2 === 1) names.reverse();
  for (const [appName, app] of Object.entries(apps)) {
    globalThis.Response = appName === 'hono-own' ? LightResponse : NativeResponse;
    if (appName.endsWith('-real')) {
      restoreRequest?.();
      restoreRequest = undefined;
    } else {
      restoreRequest ??= installOwnRequest();
    }
    for (const build of names) {
      const handler = builds[build].createFetchHandler(app);
      const start = process.cpuUsage();
      for (let i = 0; i < REQUESTS; i++) {
        const exchange = new Exchange(appName.startsWith('json'));
        await handler(exchange);
        check += exchange.response.status;
      }
      const used = process.cpuUsage(start);
      (samples[`${appName} ${build}`] ??= []).push(((used.user + used.system) * 1000) / REQUESTS);
    }
  }
}
if (check !== 200 * REQUESTS * ROUNDS * Object.keys(apps).length * Object.keys(builds).length) throw new Error('a request was not answered 200');
const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const rows = Object.entries(samples).map(([key, ns]) => {
  const [app, build] = key.split(' ');
  const row = { app, build, medianCpuNsPerRequest: Math.round(median(ns)), minNs: Math.round(Math.min(...ns)) };
  if (build === 'current' && samples[`${app} base`]) row.vsBase = (median(ns) / median(samples[`${app} base`])).toFixed(2);
  return row;
});
console.table(rows);
console.log(`node ${process.version}, ${REQUESTS} requests x ${ROUNDS} rounds`);

// Microbenchmark for the node adapter's per-request objects (issue 11): an IncomingMessage and ServerResponse
// pair made as subclasses with overriding methods (before) against plain instances carrying the adapter's
// methods as own properties (src/interfaces/node.ts now), each given the fields the adapter sets. Rounds are
// interleaved; the median ns per pair is reported. Run: node bench/node-objects.js [pairs-per-round] [rounds]
import { IncomingMessage, ServerResponse } from 'node:http';
import { Socket } from 'node:net';

const PAIRS = Number(process.argv[2] ?? 200_000);
const ROUNDS = Number(process.argv[3] ?? 15);

class SubclassRequest extends IncomingMessage {
  source;
  _read() {
    this.source?.resume();
  }
}
class SubclassResponse extends ServerResponse {
  writeContinue(cb) {
    if (cb) process.nextTick(cb);
  }
  writeProcessing(cb) {
    if (cb) process.nextTick(cb);
  }
  writeEarlyHints(_hints, cb) {
    if (cb) process.nextTick(cb);
  }
}

const kExchange = Symbol('exchange');
function readBody() {
  if (this[kExchange].contentLength > 0) this[kExchange].body.resume();
}
function dropInformational(...args) {
  const cb = args[args.length - 1];
  if (typeof cb === 'function') process.nextTick(cb);
}

const socket = new Socket();
const exchange = { contentLength: 0, body: undefined };

function subclasses() {
  const req = new SubclassRequest(socket);
  req.method = 'GET';
  req.url = '/';
  const res = new SubclassResponse(req);
  res.useChunkedEncodingByDefault = false;
  res.shouldKeepAlive = false;
  return res;
}

function ownProperties() {
  const req = new IncomingMessage(socket);
  req[kExchange] = exchange;
  req._read = readBody;
  req.method = 'GET';
  req.url = '/';
  const res = new ServerResponse(req);
  res.writeContinue = dropInformational;
  res.writeProcessing = dropInformational;
  res.writeEarlyHints = dropInformational;
  res.useChunkedEncodingByDefault = false;
  res.shouldKeepAlive = false;
  return res;
}

const variants = { subclasses, ownProperties };
const samples = { subclasses: [], ownProperties: [] };
let sink;
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? ['subclasses', 'ownProperties'] : ['ownProperties', 'subclasses'];
  for (const name of order) {
    const make = variants[name];
    const start = process.hrtime.bigint();
    for (let i = 0; i < PAIRS; i++) sink = make();
    samples[name].push(Number(process.hrtime.bigint() - start) / PAIRS);
  }
}
if (sink === undefined) throw new Error('unreachable');
const median = (values) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)];
console.table(Object.entries(samples).map(([variant, ns]) => ({ variant, medianNsPerPair: Math.round(median(ns)), minNs: Math.round(Math.min(...ns)) })));
console.log(`node ${process.version}, ${PAIRS} pairs x ${ROUNDS} rounds`);

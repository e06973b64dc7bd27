// The watchdog thread of a worker started with --harakiri. When the worker's event loop stops ticking, the
// main thread can say nothing (its heartbeats stop, which is how the master notices); this thread can still read
// the in-flight table and write to the log. At --harakiri it logs which requests the worker was serving and for
// how long; the master kills the worker on its own clock a moment later.
//
// The JavaScript stack of the blocked code is not in this line: no API reaches a busy main thread from another
// thread (inspector sessions and diagnostic reports both wait for the event loop). See the closing note.
import { appendFileSync, writeSync } from 'node:fs';
import { workerData } from 'node:worker_threads';
import { readTable } from './inflight.js';

interface WatchdogData {
  buffer: SharedArrayBuffer;
  harakiriMs: number;
  worker: number;
  pid: number;
  hostname: string;
  /** --log-file, where the line goes instead of stdout (opened per line: logrotate may have moved it). */
  logFile?: string | undefined;
}

const data = workerData as WatchdogData;
const CHECK_MS = 50;
// The main thread's tick period (setInterval in main.ts). A tick is seen up to this late, so the loop may have
// run that much after `lastMove`: without the margin a line claimed a block past --harakiri for a request only
// 1989 ms old (--harakiri 2).
const TICK_MS = 50;
let lastTick = -1;
let lastMove = Date.now();
let reported = false;

setInterval(() => {
  const now = Date.now();
  const table = readTable(data.buffer);
  if (table.tick !== lastTick) {
    lastTick = table.tick;
    lastMove = now;
    reported = false;
    return;
  }
  const blockedMs = now - lastMove;
  if (reported || blockedMs < data.harakiriMs + TICK_MS) return;
  reported = true;
  // A pino-shaped line (level 50 = error), written straight to fd 1 or --log-file: the main thread's logger is blocked too.
  const line = {
    level: 50,
    time: now,
    pid: data.pid,
    hostname: data.hostname,
    worker: data.worker,
    code: 'ERR_WORKER_BLOCKED',
    blockedMs,
    harakiriMs: data.harakiriMs,
    inflight: table.inflight.map((r) => ({ method: r.method, uri: r.uri, ageMs: now - r.startedAt })),
    untracked: table.untracked,
    msg: 'worker event loop blocked longer than --harakiri: the master kills it',
  };
  const text = JSON.stringify(line) + '\n';
  if (data.logFile === undefined) writeSync(1, text);
  else {
    try {
      appendFileSync(data.logFile, text);
    } catch {
      writeSync(2, text);
    }
  }
}, CHECK_MS);

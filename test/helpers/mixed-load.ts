// Load through nginx for the deploy tests (test/integration/hosts.test.ts, deploy.test.ts): GETs and POSTs with
// bodies that the app (test/fixtures/apps/integration/hosts-app.mjs) echoes as length and hash, each request
// tagged with a phase (?phase=) so that nginx's access log (ACCESS_LOG_FORMAT) says which were retried when.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import { seededBytes } from '../integration/nginx.js';

const CONNECTIONS = 12;
const BODY = 4096;

/** nginx's log_format `hosts`: $upstream_addr with a comma is a request nginx passed to more than one server. */
export const ACCESS_LOG_FORMAT = `log_format hosts escape=json '{"uri":"$request_uri","status":$status,"upstream":"$upstream_addr","upstreamStatus":"$upstream_status"}';`;

export interface PhaseCounts {
  sent: number;
  ok: number;
  failedGet: number;
  failedPost: number;
  byHost: Record<string, number>;
  failures: string[];
}

export interface MixedLoad {
  /** Tags the requests sent from now on. */
  phase(name: string): void;
  readonly counts: Map<string, PhaseCounts>;
  stop(): Promise<void>;
}

/** Closed-loop load through nginx on 127.0.0.1:`port`: `connections` keep-alive connections, alternating GET and
 * POST (a BODY-byte body whose length and hash the app echoes), each request tagged with the current phase. */
export function startMixedLoad(port: number, connections = CONNECTIONS): MixedLoad {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  const counts = new Map<string, PhaseCounts>();
  const body = seededBytes(13, BODY);
  const sha256 = createHash('sha256').update(body).digest('hex');
  let phase = 'start';
  let stopped = false;
  let n = 0;
  const one = (method: 'GET' | 'POST', tag: string): Promise<void> =>
    new Promise<{ host: string } | { failure: string }>((resolve) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: `/?phase=${tag}&n=${n++}`, method, agent, headers: method === 'POST' ? { 'content-length': BODY } : {} },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('error', (err) => resolve({ failure: `${method} ${err.message}` }));
          res.on('end', () => {
            if (res.statusCode !== 200) return resolve({ failure: `${method} ${res.statusCode}` });
            const answer = JSON.parse(text) as { host: string; length: number; sha256: string };
            if (method === 'POST' && (answer.length !== BODY || answer.sha256 !== sha256)) return resolve({ failure: `${method} body mismatch` });
            resolve({ host: answer.host });
          });
        },
      );
      req.setTimeout(20_000, () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => resolve({ failure: `${method} ${err.code ?? err.message}` }));
      req.end(method === 'POST' ? body : undefined);
    }).then((outcome) => {
      let c = counts.get(tag);
      if (c === undefined) counts.set(tag, (c = { sent: 0, ok: 0, failedGet: 0, failedPost: 0, byHost: {}, failures: [] }));
      c.sent++;
      if ('host' in outcome) {
        c.ok++;
        c.byHost[outcome.host] = (c.byHost[outcome.host] ?? 0) + 1;
      } else {
        if (method === 'GET') c.failedGet++;
        else c.failedPost++;
        c.failures.push(outcome.failure);
      }
    });
  const loop = async (i: number): Promise<void> => {
    for (let k = i; !stopped; k++) await one(k % 2 === 0 ? 'GET' : 'POST', phase);
  };
  const loops = Promise.all(Array.from({ length: connections }, (_, i) => loop(i)));
  return {
    phase: (name) => (phase = name),
    counts,
    async stop() {
      stopped = true;
      await loops;
      agent.destroy();
    },
  };
}

/** Requests nginx passed to more than one host, by phase, from the access log ($upstream_addr "a, b"). */
export function retriedByPhase(file: string): Map<string, number> {
  const out = new Map<string, number>();
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n').filter(Boolean)) {
    const entry = JSON.parse(line) as { uri: string; upstream: string };
    if (!entry.upstream.includes(',')) continue;
    const phase = /phase=([^&]+)/.exec(entry.uri)?.[1] ?? '?';
    out.set(phase, (out.get(phase) ?? 0) + 1);
  }
  return out;
}

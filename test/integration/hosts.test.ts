// Several hosts behind one nginx upstream, tested as hosts, not as ports: three network namespaces with a veth
// link each (test/helpers/netns.ts), node-uwsgi in each on TCP with --allow-from nginx's side of the link, one nginx
// in the root namespace balancing over the three. Under load (GETs and POSTs with bodies) it kills and restarts
// hosts and counts what nginx's clients see: sent, failed, retried by nginx (a comma in $upstream_addr), per fault.
// README "Deploys that lose nothing".
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canCreateNamespaces, createHosts, type Host, type Hosts } from '../helpers/netns.js';
import { ROOT, seededBytes, startNginx, startServer, type NginxProcess, type ServerProcess } from './nginx.js';

const PORT = 3031;
const WORKERS = 2;
const CONNECTIONS = 12;
const BODY = 4096;

/** How node-uwsgi listens on a host. With the TLS work this becomes `--ssl-socket ADDR,CERT,KEY,CA` (mutual TLS,
 * nginx's client certificate signed by CA) and the allow-list stays. */
function hostListenArgs(host: Host): string[] {
  return ['--socket', `${host.address}:${PORT}`, '--allow-from', host.peer];
}

/** nginx's upstream over the hosts and the location's retry rules. TO BE REPLACED by the output of
 * `node-uwsgi nginx --upstream HOST:PORT,... [--ssl]` (suwsgi://, uwsgi_ssl_certificate, uwsgi_ssl_verify on,
 * uwsgi_ssl_trusted_certificate, uwsgi_ssl_name, session reuse) once that command exists. */
function upstreamBlock(hosts: readonly Host[]): { upstream: string; location: string } {
  return {
    upstream: `upstream app {
    ${hosts.map((host) => `server ${host.address}:${PORT} max_fails=1 fail_timeout=2s;`).join('\n    ')}
}`,
    // error timeout: a refused or timed-out connect goes to the next host for any method (nothing was sent); a
    // request already sent is retried only if idempotent (nginx 1.9.13+ without non_idempotent). A stopping host
    // drops new SYNs, so a short connect timeout bounds what a connect to it costs.
    location: `uwsgi_pass app;
        uwsgi_next_upstream error timeout;
        uwsgi_next_upstream_tries 3;
        uwsgi_connect_timeout 1s;`,
  };
}

function site(hosts: readonly Host[], prefix: string): (port: number) => string {
  const { upstream, location } = upstreamBlock(hosts);
  return (port) => `log_format hosts escape=json '{"uri":"$request_uri","status":$status,"upstream":"$upstream_addr","upstreamStatus":"$upstream_status"}';
${upstream}
server {
    listen 127.0.0.1:${port};
    access_log ${join(prefix, 'hosts.log')} hosts;
    location / {
        include ${join(ROOT, 'nginx/uwsgi_params')};
        ${location}
    }
}`;
}

interface Counts {
  sent: number;
  ok: number;
  failedGet: number;
  failedPost: number;
  byHost: Record<string, number>;
  failures: string[];
}

/** Closed-loop load through nginx: CONNECTIONS keep-alive connections, alternating GET and POST (a BODY-byte body
 * whose length and hash the app echoes), each request tagged with the current phase. */
function startLoad(port: number): { phase(name: string): void; counts: Map<string, Counts>; stop(): Promise<void> } {
  const agent = new http.Agent({ keepAlive: true, maxSockets: CONNECTIONS });
  const counts = new Map<string, Counts>();
  const body = seededBytes(13, BODY);
  const sha256 = createHash('sha256').update(body).digest('hex');
  let phase = 'start';
  let stopped = false;
  let n = 0;
  const one = (method: 'GET' | 'POST', tag: string): Promise<string | undefined> =>
    new Promise((resolve) => {
      const req = http.request(
        { host: '127.0.0.1', port, path: `/?phase=${tag}&n=${n++}`, method, agent, headers: method === 'POST' ? { 'content-length': BODY } : {} },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => (text += c));
          res.on('error', (err) => resolve(`${method} ${err.message}`));
          res.on('end', () => {
            if (res.statusCode !== 200) return resolve(`${method} ${res.statusCode}`);
            const answer = JSON.parse(text) as { host: string; length: number; sha256: string };
            if (method === 'POST' && (answer.length !== BODY || answer.sha256 !== sha256)) return resolve(`${method} body mismatch`);
            resolve(answer.host);
          });
        },
      );
      req.setTimeout(20_000, () => req.destroy(new Error('timeout')));
      req.on('error', (err: NodeJS.ErrnoException) => resolve(`${method} ${err.code ?? err.message}`));
      req.end(method === 'POST' ? body : undefined);
    }).then((outcome) => {
      let c = counts.get(tag);
      if (c === undefined) counts.set(tag, (c = { sent: 0, ok: 0, failedGet: 0, failedPost: 0, byHost: {}, failures: [] }));
      c.sent++;
      if (outcome !== undefined && /^h\d$/.test(outcome)) {
        c.ok++;
        c.byHost[outcome] = (c.byHost[outcome] ?? 0) + 1;
      } else {
        if (method === 'GET') c.failedGet++;
        else c.failedPost++;
        c.failures.push(outcome ?? method);
      }
      return outcome;
    });
  const loop = async (i: number): Promise<void> => {
    for (let k = i; !stopped; k++) await one(k % 2 === 0 ? 'GET' : 'POST', phase);
  };
  const loops = Promise.all(Array.from({ length: CONNECTIONS }, (_, i) => loop(i)));
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

const why = canCreateNamespaces();
if (why !== undefined) console.warn(`hosts.test.ts skipped: ${why}`);

describe.skipIf(why !== undefined)('three hosts behind one nginx upstream (network namespaces)', () => {
  let net: Hosts | undefined;
  let prefix = '';
  let nginx: NginxProcess | undefined;
  const servers: Array<ServerProcess | undefined> = [];
  let load: ReturnType<typeof startLoad> | undefined;

  /** Starts host i's node-uwsgi; a port still held by the previous run's draining workers is tried again. */
  async function startHost(i: number): Promise<ServerProcess> {
    const host = net!.hosts[i]!;
    for (let attempt = 0; ; attempt++) {
      try {
        const server = await startServer({
          app: 'hosts-app.mjs',
          socket: `${host.address}:${PORT}`,
          listenArgs: hostListenArgs(host),
          args: ['--workers', String(WORKERS)],
          env: { HOST_NAME: `h${i}` },
          wrapper: host.exec,
        });
        servers[i] = server;
        return server;
      } catch (err) {
        if (attempt >= 20 || !/ERR_SOCKET_IN_USE/.test((err as Error).message)) throw err;
        await sleep(100);
      }
    }
  }

  async function stopHost(i: number, signal: NodeJS.Signals): Promise<void> {
    const server = servers[i]!;
    const exited = new Promise<void>((resolve) => (server.alive() ? server.child.once('exit', () => resolve()) : resolve()));
    server.child.kill(signal);
    await exited;
  }

  beforeAll(async () => {
    net = createHosts(3);
    prefix = mkdtempSync(join(tmpdir(), 'nu-hosts-'));
    await Promise.all([0, 1, 2].map(startHost));
    nginx = await startNginx({ prefix, transport: 'tcp', upstream: '', site: site(net.hosts, prefix), workerConnections: 1024 });
    load = startLoad(nginx.port);
  }, 60_000);

  afterAll(async () => {
    await load?.stop();
    if (load !== undefined) {
      // The figures the closing note quotes.
      const retried = retriedByPhase(prefix);
      const table = [...load.counts].map(([phase, c]) => ({ phase, sent: c.sent, failedGet: c.failedGet, failedPost: c.failedPost, retried: retried.get(phase) ?? 0, byHost: JSON.stringify(c.byHost) }));
      console.log(`hosts.test.ts (${process.env.NODE_UWSGI_ACCEPT ?? 'auto'} accept):\n${table.map((row) => JSON.stringify(row)).join('\n')}`);
    }
    await nginx?.stop();
    await Promise.all(servers.map((server) => server?.stop()));
    net?.remove();
    if (prefix) rmSync(prefix, { recursive: true, force: true });
  }, 60_000);

  const run = async (phase: string, ms: number): Promise<Counts> => {
    load!.phase(phase);
    await sleep(ms);
    load!.phase(`${phase}-after`);
    await sleep(200);
    return load!.counts.get(phase) ?? { sent: 0, ok: 0, failedGet: 0, failedPost: 0, byHost: {}, failures: [] };
  };

  it('spreads requests over the three hosts', async () => {
    const c = await run('spread', 1500);
    expect(c.failures).toEqual([]);
    expect(Object.keys(c.byHost).sort()).toEqual(['h0', 'h1', 'h2']);
    for (const served of Object.values(c.byHost)) expect(served).toBeGreaterThan(c.sent / 10);
  });

  it('loses no GET when one host is killed (kill -9 of its master), and takes it back when it restarts', async () => {
    load!.phase('kill9');
    await stopHost(0, 'SIGKILL');
    await sleep(500);
    await startHost(0);
    const c = await run('kill9', 500);
    expect(c.sent).toBeGreaterThan(50);
    expect(c.failures.filter((f) => f.startsWith('GET'))).toEqual([]);
  }, 30_000);

  it('loses no request of any method when one host is stopped (SIGTERM) and started again', async () => {
    load!.phase('sigterm');
    await stopHost(1, 'SIGTERM');
    await sleep(300);
    await startHost(1);
    const c = await run('sigterm', 300);
    expect(c.sent).toBeGreaterThan(50);
    expect(c.failures).toEqual([]);
    expect(c.byHost.h1).toBeGreaterThan(0);
  }, 30_000);

  it('loses no request of any method in a rolling restart of all three (stop, start, ready, next)', async () => {
    load!.phase('rolling');
    for (const i of [0, 1, 2]) {
      await stopHost(i, 'SIGTERM');
      await startHost(i);
    }
    const c = await run('rolling', 300);
    expect(c.sent).toBeGreaterThan(100);
    expect(c.failures).toEqual([]);
    expect(Object.keys(c.byHost).sort()).toEqual(['h0', 'h1', 'h2']);
  }, 45_000);

  it('refuses and logs a peer outside the allow-list', async () => {
    const host = net!.hosts[2]!;
    // From inside the host, on its own link address: not nginx's side of the link, and not loopback.
    const probe = `const s = require('node:net').connect({ host: ${JSON.stringify(host.address)}, port: ${PORT} });
let got = 0; s.on('data', (d) => (got += d.length)); s.on('error', () => {});
s.on('connect', () => s.write(Buffer.from([0, 0, 0, 0]))); s.on('close', () => { console.log('closed after ' + got + ' bytes'); process.exit(0); });
setTimeout(() => { console.log('still open'); process.exit(1); }, 5000);`;
    const result = spawnSync(host.exec[0]!, [...host.exec.slice(1), process.execPath, '-e', probe], { encoding: 'utf8' });
    expect(result.stdout.trim()).toBe('closed after 0 bytes');
    const line = await servers[2]!.waitForLog((l) => l.code === 'ERR_PEER_NOT_ALLOWED');
    expect(line.peer).toBe(host.address);
  });
});

/** Requests nginx passed to more than one host, by phase, from the access log ($upstream_addr "a, b"). */
function retriedByPhase(prefix: string): Map<string, number> {
  const out = new Map<string, number>();
  let text = '';
  try {
    text = readFileSync(join(prefix, 'hosts.log'), 'utf8');
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

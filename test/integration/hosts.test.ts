// Several hosts behind one nginx upstream, tested as hosts, not as ports: three network namespaces with a veth
// link each (test/helpers/netns.ts), node-uwsgi in each on --ssl-socket with mutual TLS (certificates from the
// README's own openssl commands, "Several hosts") and --allow-from nginx's side of the link, one nginx in the root
// namespace with the upstream `node-uwsgi nginx --upstream ... --ssl` prints, balancing over the three. Under load (GETs and POSTs with bodies) it kills and restarts
// hosts and counts what nginx's clients see: sent, failed, retried by nginx (a comma in $upstream_addr), per fault.
// README "Deploys that lose nothing".
import { execFileSync, spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canCreateNamespaces, createHosts, type Host, type Hosts } from '../helpers/netns.js';
import { until } from '../helpers/wait.js';
import { REQUIRE_ALL } from '../helpers/ci.js';
import { ACCESS_LOG_FORMAT, retriedByPhase, startMixedLoad, type MixedLoad, type PhaseCounts } from '../helpers/mixed-load.js';
import { CLI, ROOT, startNginx, startServer, type NginxProcess, type ServerProcess } from './nginx.js';

const PORT = 3031;
const WORKERS = 2;

/** How node-uwsgi listens on host `i`: uwsgi over TLS with the README's appN certificate, peers must show a
 * certificate signed by the CA (nginx's). */
function hostListenArgs(host: Host, i: number, pki: string): string[] {
  return ['--ssl-socket', `${host.address}:${PORT},${pki}/app${i + 1}.crt,${pki}/app${i + 1}.key,${pki}/ca.crt`, '--allow-from', host.peer];
}

/** The site `node-uwsgi nginx --upstream ... --ssl` prints for the hosts (suwsgi://, nginx's client certificate,
 * uwsgi_ssl_verify, uwsgi_next_upstream error timeout, uwsgi_connect_timeout), with the test's access log added. */
function site(hosts: readonly Host[], pki: string, log: string): (port: number) => string {
  return (port) => {
    const printed = execFileSync(process.execPath, [
      CLI, 'nginx', '--upstream', hosts.map((host) => `${host.address}:${PORT}`).join(','), '--ssl', '--fail-timeout', '2',
      '--listen', `127.0.0.1:${port}`, '--server-name', 'localhost',
      '--ssl-certificate', `${pki}/client.crt`, '--ssl-certificate-key', `${pki}/client.key`, '--ssl-trusted-certificate', `${pki}/ca.crt`,
    ], { cwd: ROOT, encoding: 'utf8' });
    if (!printed.includes('uwsgi_pass suwsgi://') || !/^server \{$/m.test(printed)) throw new Error(`unexpected nginx --upstream output:\n${printed}`);
    return `${ACCESS_LOG_FORMAT}\n${printed.replace(/^server \{$/m, `server {\n    access_log ${log} hosts;`)}`;
  };
}

/** The README's "Several hosts" sh block `n` (0: the certificates, 2: the renewal of app1), run as written in
 * `dir`. */
function readmeCommands(n: number, dir: string): void {
  const readme = readFileSync(`${ROOT}/README.md`, 'utf8');
  const start = readme.indexOf('\n## Several hosts\n');
  if (start === -1) throw new Error('README has no "## Several hosts" section');
  const blocks = [...readme.slice(start, readme.indexOf('\n## ', start + 5)).matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
  if (blocks[n] === undefined) throw new Error(`README "Several hosts" has no sh block ${n}`);
  execFileSync('bash', ['-euo', 'pipefail', '-c', blocks[n]], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

// Skipped only off CI (a laptop without root); in CI (test/helpers/ci.ts) a missing privilege fails the test.
const why = canCreateNamespaces();
if (why !== undefined && !REQUIRE_ALL) console.warn(`hosts.test.ts skipped: ${why}`);

describe.skipIf(why !== undefined && !REQUIRE_ALL)('three hosts behind one nginx upstream (network namespaces)', () => {
  let net: Hosts | undefined;
  let prefix = '';
  let pki = '';
  let nginx: NginxProcess | undefined;
  const servers: Array<ServerProcess | undefined> = [];
  let load: MixedLoad | undefined;

  /** Starts host i's node-uwsgi; a port still held by the previous run's draining workers is tried again. */
  async function startHost(i: number): Promise<ServerProcess> {
    const host = net!.hosts[i]!;
    for (let attempt = 0; ; attempt++) {
      try {
        const server = await startServer({
          app: 'hosts-app.mjs',
          socket: `${host.address}:${PORT}`,
          listenArgs: hostListenArgs(host, i, pki),
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
    if (why !== undefined) throw new Error(`CI runs every test: ${why}`);
    net = createHosts(3);
    prefix = mkdtempSync(join(tmpdir(), 'nu-hosts-'));
    pki = join(prefix, 'pki');
    mkdirSync(pki);
    readmeCommands(0, pki);
    await Promise.all([0, 1, 2].map(startHost));
    nginx = await startNginx({ prefix, transport: 'tcp', upstream: '', site: site(net.hosts, pki, join(prefix, 'hosts.log')), workerConnections: 1024 });
    load = startMixedLoad(nginx.port);
  }, 60_000);

  afterAll(async () => {
    await load?.stop();
    if (load !== undefined) {
      // The figures the closing note quotes.
      const retried = retriedByPhase(join(prefix, 'hosts.log'));
      const table = [...load.counts].map(([phase, c]) => ({ phase, sent: c.sent, failedGet: c.failedGet, failedPost: c.failedPost, retried: retried.get(phase) ?? 0, byHost: JSON.stringify(c.byHost) }));
      console.log(`hosts.test.ts (${process.env.NODE_UWSGI_ACCEPT ?? 'auto'} accept):\n${table.map((row) => JSON.stringify(row)).join('\n')}`);
    }
    await nginx?.stop();
    await Promise.all(servers.map((server) => server?.stop()));
    net?.remove();
    if (prefix) rmSync(prefix, { recursive: true, force: true });
  }, 60_000);

  /** Waits until host `name` serves again (nginx holds a failed host out for fail_timeout, 2 s). */
  const servesAgain = (phase: string, name: string): Promise<true> => {
    const before = load!.counts.get(phase)?.byHost[name] ?? 0;
    return until(`${name} to serve again`, () => ((load!.counts.get(phase)?.byHost[name] ?? 0) > before ? true : undefined), 10_000);
  };

  const run = async (phase: string, ms: number): Promise<PhaseCounts> => {
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
    await servesAgain('sigterm', 'h1');
    const c = await run('sigterm', 300);
    expect(c.sent).toBeGreaterThan(50);
    expect(c.failures).toEqual([]);
  }, 30_000);

  it('loses no request of any method in a rolling restart of all three (stop, start, ready, next)', async () => {
    load!.phase('rolling');
    for (const i of [0, 1, 2]) {
      await stopHost(i, 'SIGTERM');
      await startHost(i);
      await servesAgain('rolling', `h${i}`);
    }
    const c = await run('rolling', 300);
    expect(c.sent).toBeGreaterThan(100);
    expect(c.failures).toEqual([]);
    expect(Object.keys(c.byHost).sort()).toEqual(['h0', 'h1', 'h2']);
  }, 45_000);

  it('loses nothing when one host renews its certificate (the README\'s command, then SIGHUP) under load', async () => {
    load!.phase('renew');
    const serial = (): string => new X509Certificate(readFileSync(join(pki, 'app1.crt'))).serialNumber;
    const before = serial();
    readmeCommands(2, pki);
    expect(serial()).not.toBe(before);
    const from = servers[0]!.logs.length;
    servers[0]!.child.kill('SIGHUP');
    await servers[0]!.waitForLog((l) => l.msg === 'TLS certificates reloaded' && l.serial === serial(), 20_000);
    await servers[0]!.waitForLog((l) => l.msg === 'reload complete' && servers[0]!.logs.indexOf(l) >= from, 30_000);
    const c = await run('renew', 300);
    expect(c.sent).toBeGreaterThan(50);
    expect(c.failures).toEqual([]);
  }, 45_000);

  it('refuses and logs a peer without a client certificate', async () => {
    const host = net!.hosts[1]!;
    // From nginx's side of the link (allowed), with the CA but no certificate of its own.
    const outcome = await new Promise<string>((resolve) => {
      const socket = tls.connect({ host: host.address, port: PORT, servername: 'node-uwsgi', ca: readFileSync(join(pki, 'ca.crt')) }, () => socket.write(Buffer.from([0, 0, 0, 0])));
      let got = 0;
      socket.on('data', (d: Buffer) => (got += d.length));
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      socket.on('close', () => resolve(`closed after ${got} bytes`));
    });
    expect(outcome).not.toMatch(/^closed after [1-9]/);
    const line = await servers[1]!.waitForLog((l) => l.code === 'ERR_TLS_HANDSHAKE' && String(l.cause).includes('no client certificate'));
    expect(line.peer).toBe(host.peer);
  });

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

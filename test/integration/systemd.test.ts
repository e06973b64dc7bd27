// systemd with the real tools Debian ships, where no systemd runs: systemd-socket-activate hands Unix and TCP
// sockets to dist/cli.js as systemd would (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES, and it starts the server on
// the first connection); a Unix datagram listener in python3 (test/fixtures/systemd/notify-listener.py) stands
// in for the manager on NOTIFY_SOCKET and records what systemd-notify, run by the master, sends; the shipped
// units in systemd/ go through systemd-analyze verify.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeRequest } from '../../src/protocol/encoder.js';
import { nginxVars } from '../helpers/serve.js';
import { APPS, CLI, ROOT, TIME_SCALE, freePort, httpRequest, parseResponse, rawExchange, readLogLines, startNginx, type LogLine, type NginxProcess } from './nginx.js';

const ACTIVATE = '/usr/bin/systemd-socket-activate';
const ANALYZE = '/usr/bin/systemd-analyze';
const PYTHON = process.env.PYTHON ?? 'python3';
const LISTENER = join(ROOT, 'test/fixtures/systemd/notify-listener.py');
const APP = join(APPS, 'systemd-app.mjs');
const WAIT = 30_000 * TIME_SCALE;

function requireTools(): void {
  for (const tool of [ACTIVATE, ANALYZE]) {
    if (!existsSync(tool)) throw new Error(`${tool} not found: the systemd tests need the Debian package systemd (apt-get install systemd)`);
  }
  if (spawnSync(PYTHON, ['--version']).status !== 0) throw new Error(`${PYTHON} not found: the notify listener needs python3 (apt-get install python3)`);
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (\`npm test\` builds).`);
}

/** Resolves with the first value `probe` returns (checked on every `changed` call), or rejects after `ms`. */
function waiter<T>() {
  const waiting = new Set<() => void>();
  return {
    changed: () => waiting.forEach((check) => check()),
    until(probe: () => T | undefined, ms: number, what: () => string): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const check = (): void => {
          const value = probe();
          if (value === undefined) return;
          waiting.delete(check);
          clearTimeout(timer);
          resolve(value);
        };
        const timer = setTimeout(() => {
          waiting.delete(check);
          reject(new Error(`timed out after ${ms} ms waiting for ${what()}`));
        }, ms);
        waiting.add(check);
        check();
      });
    },
  };
}

// --- the manager's end of NOTIFY_SOCKET ------------------------------------------------------------------

interface Notification {
  message: string;
  pid: number;
  fds: number;
  /** The listener's CLOCK_MONOTONIC, µs, when the datagram arrived. */
  monotonicUs: number;
}

interface NotifyListener {
  readonly path: string;
  readonly messages: Notification[];
  /** The messages other than systemd-notify's BARRIER=1. */
  notifications(): Notification[];
  waitFor(match: (n: Notification, index: number) => boolean, what: string, ms?: number): Promise<Notification>;
  /** Resolves once the last datagram is a BARRIER=1: the sender in flight is done. */
  settled(): Promise<unknown>;
  stop(): void;
}

async function startNotifyListener(path: string): Promise<NotifyListener> {
  const child = spawn(PYTHON, [LISTENER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  const messages: Notification[] = [];
  const events = waiter<Notification | true>();
  let partial = '';
  let stderr = '';
  let listening = false;
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    let nl: number;
    while ((nl = partial.indexOf('\n')) !== -1) {
      const line = JSON.parse(partial.slice(0, nl)) as Notification & { listening?: string };
      partial = partial.slice(nl + 1);
      if (line.listening) listening = true;
      else messages.push(line);
    }
    events.changed();
  });
  await events.until(() => (listening ? true : undefined), WAIT, () => `the notify listener to bind ${path}\n${stderr}`);
  const notifications = (): Notification[] => messages.filter((m) => m.message !== 'BARRIER=1');
  return {
    path,
    messages,
    notifications,
    waitFor: (match, what, ms = WAIT) =>
      events.until(
        () => notifications().find(match),
        ms,
        () => `${what}; received: ${JSON.stringify(notifications().map((n) => n.message))}`,
      ) as Promise<Notification>,
    settled: () => events.until(() => (messages.at(-1)?.message === 'BARRIER=1' ? true : undefined), WAIT, () => 'the last BARRIER=1'),
    stop: () => child.kill(),
  };
}

// --- the server, started by systemd-socket-activate -------------------------------------------------------

interface Activated {
  readonly child: ChildProcess;
  readonly logs: LogLine[];
  readonly exited: Promise<number | null>;
  /** Resolves once systemd-socket-activate listens on every address ("Listening on ... as N."). */
  bound(): Promise<unknown>;
  waitForLog(match: (line: LogLine) => boolean, what: string, ms?: number): Promise<LogLine>;
  describe(): string;
  stop(): Promise<number | null>;
}

interface ActivateOptions {
  /** systemd-socket-activate -l addresses: a Unix socket path or host:port. */
  listen: string[];
  fdnames?: string[];
  /** Passed with -E: systemd-socket-activate gives its child only these, PATH, HOME, TERM and LISTEN_*. */
  env?: Record<string, string>;
  /** The command after systemd-socket-activate's options; default node dist/cli.js <app> + args. */
  command?: string[];
  args?: string[];
}

/** The accept path the server must announce: CI runs the suite with NODE_UWSGI_ACCEPT=js too (passed on below). */
const EXPECTED_ACCEPT = process.env.NODE_UWSGI_ACCEPT === 'js' ? 'accept: js' : 'accept: native';

function activate(opts: ActivateOptions): Activated {
  // systemd-socket-activate passes its child no other variable: the ones that shape the run go on explicitly
  // (the accept path; scripts/asan.sh's sanitizer runtime, without which the sanitized addon aborts the master).
  const passed = ['NODE_UWSGI_ACCEPT', 'LD_PRELOAD', 'ASAN_OPTIONS', 'UBSAN_OPTIONS'].flatMap((name) => {
    const value = process.env[name];
    return value ? [[name, value] as const] : [];
  });
  const env = { ...Object.fromEntries(passed), ...opts.env };
  const argv = [
    ...opts.listen.flatMap((address) => ['-l', address]),
    ...(opts.fdnames ? [`--fdname=${opts.fdnames.join(':')}`] : []),
    ...Object.entries(env).flatMap(([name, value]) => ['-E', `${name}=${value}`]),
    ...(opts.command ?? [process.execPath, CLI, APP, ...(opts.args ?? [])]),
  ];
  const child = spawn(ACTIVATE, argv, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const events = waiter<LogLine>();
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => {
    stderr += c;
    events.changed();
  });
  const stdout = readLogLines(child.stdout!, (line) => {
    logs.push(line);
    events.changed();
  });
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const describe = (): string => `${ACTIVATE} ${argv.join(' ')}\n--- stderr ---\n${stderr}\n--- stdout ---\n${stdout()}`;
  return {
    child,
    logs,
    exited,
    describe,
    bound: () =>
      events.until(
        () => ((stderr.match(/^Listening on .* as \d+\.$/gm)?.length ?? 0) >= opts.listen.length ? logs[0] ?? {} : undefined),
        WAIT,
        () => `systemd-socket-activate to listen\n${describe()}`,
      ),
    waitForLog: (match, what, ms = WAIT) => events.until(() => logs.find(match), ms, () => `${what}\n${describe()}`),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), WAIT);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

function uwsgiGet(target: { port: number } | { path: string }, uri: string): Promise<{ status: number; body: string }> {
  const request = encodeRequest(nginxVars({ REQUEST_URI: uri, PATH_INFO: uri, REMOTE_ADDR: '127.0.0.1' }));
  return rawExchange(target, request).then(({ raw }) => {
    const res = parseResponse(raw);
    return { status: res.status, body: res.body.toString('utf8') };
  });
}

function monotonicUs(): bigint {
  // libuv's hrtime is CLOCK_MONOTONIC on Linux, the clock of python's time.CLOCK_MONOTONIC and MONOTONIC_USEC.
  return process.hrtime.bigint() / 1000n;
}

// --- the tests ---------------------------------------------------------------------------------------------

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'nu-systemd-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

describe('Type=notify and socket activation', () => {
  requireTools();

  it('behind nginx on an activated Unix socket: READY once all workers are, STATUS, WATCHDOG, RELOADING and READY around HUP, STOPPING', async () => {
    const dir = tempDir();
    const socket = join(dir, 'app.sock');
    const notify = await startNotifyListener(join(dir, 'notify.sock'));
    cleanups.push(() => notify.stop());
    const server = activate({
      listen: [socket],
      fdnames: ['uwsgi'],
      env: { NOTIFY_SOCKET: notify.path, WATCHDOG_USEC: '2000000' },
      args: ['--workers', '2', '--socket', '127.0.0.1:1'],
    });
    cleanups.push(() => server.stop());
    await server.bound();
    const nginx: NginxProcess = await startNginx({ prefix: dir, transport: 'unix', upstream: socket });
    cleanups.push(() => nginx.stop());

    // The first connection starts the server (systemd-socket-activate waits for it); nginx's request waits in the
    // socket's backlog meanwhile.
    const first = await httpRequest(`http://127.0.0.1:${nginx.port}/`);
    expect(first.status).toBe(200);
    // Neither the workers nor the app see systemd's variables.
    expect(JSON.parse(first.body.toString('utf8'))).toMatchObject({ seen: [] });
    const passed = await server.waitForLog((l) => l.msg === 'socket activation: listening socket passed by systemd', 'the activated socket logged');
    expect(passed).toMatchObject({ fd: 3, name: 'uwsgi', socket: `unix:${socket}` });
    expect(await server.waitForLog((l) => String(l.msg).startsWith('accept: '), 'the accept path')).toMatchObject({ msg: EXPECTED_ACCEPT });
    expect(await server.waitForLog((l) => l.msg === 'socket activation: --socket is ignored', 'the --socket notice')).toMatchObject({ ignored: ['127.0.0.1:1'] });

    const ready = await notify.waitFor((n) => n.message.startsWith('READY=1'), 'READY=1');
    expect(ready.message).toMatch(/^READY=1\nSTATUS=2 of 2 workers ready, \d+ requests? served$/);

    for (let i = 0; i < 3; i++) expect((await httpRequest(`http://127.0.0.1:${nginx.port}/`)).status).toBe(200);
    // STATUS= comes from heartbeats, at most every 2 s: wait for it to count the 4 requests.
    await notify.waitFor((n) => /^STATUS=2 of 2 workers ready, ([4-9]|\d\d+) requests served$/.test(n.message), 'STATUS= with 4 requests');
    const readyIndex = notify.notifications().indexOf(ready);
    await notify.waitFor((n, i) => i > readyIndex && n.message === 'WATCHDOG=1' && notify.notifications().slice(readyIndex + 1, i).some((m) => m.message === 'WATCHDOG=1'), 'two WATCHDOG=1 after READY=1');

    const hupAt = monotonicUs();
    process.kill(server.child.pid!, 'SIGHUP');
    const reloading = await notify.waitFor((n) => n.message.startsWith('RELOADING=1'), 'RELOADING=1');
    const sent = /^RELOADING=1\nMONOTONIC_USEC=(\d+)\nSTATUS=reloading: 2 of 2 workers ready, \d+ requests served$/.exec(reloading.message);
    expect(sent, reloading.message).not.toBeNull();
    // Taken when the reload started: after the signal, before the datagram arrived.
    expect(BigInt(sent![1]!)).toBeGreaterThanOrEqual(hupAt);
    expect(BigInt(sent![1]!)).toBeLessThanOrEqual(BigInt(reloading.monotonicUs));
    const reloadingIndex = notify.notifications().indexOf(reloading);
    await notify.waitFor((n, i) => i > reloadingIndex && n.message.startsWith('READY=1'), 'READY=1 after the reload');
    await server.waitForLog((l) => l.msg === 'reload complete', 'the reload to complete');
    expect((await httpRequest(`http://127.0.0.1:${nginx.port}/`)).status).toBe(200);

    process.kill(server.child.pid!, 'SIGTERM');
    await notify.waitFor((n) => n.message.startsWith('STOPPING=1'), 'STOPPING=1');
    expect(await server.exited).toBe(0);

    const states = notify.notifications().map((n) => n.message.split('\n')[0]).filter((m) => /^(READY|RELOADING|STOPPING)=/.test(m!));
    expect(states).toEqual(['READY=1', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
    // Every message went out through systemd-notify's barrier: the next datagram is its BARRIER=1 with a pipe fd,
    // so the manager had handled the message before systemd-notify exited.
    await notify.settled();
    for (const [i, m] of notify.messages.entries()) {
      if (m.message !== 'BARRIER=1') expect(notify.messages[i + 1], m.message).toMatchObject({ message: 'BARRIER=1', fds: 1 });
    }
  }, 120_000);

  it('on an activated TCP socket: the socket outlives the only worker; a NOTIFY_SOCKET nobody reads is logged, not fatal', async () => {
    const port = await freePort();
    const server = activate({
      listen: [`127.0.0.1:${port}`],
      fdnames: ['web'],
      env: { NOTIFY_SOCKET: join(tempDir(), 'nobody.sock') },
      args: ['--workers', '1'],
    });
    cleanups.push(() => server.stop());
    await server.bound();
    const first = await uwsgiGet({ port }, '/');
    expect(first.status).toBe(200);
    const { pid } = JSON.parse(first.body) as { pid: number };
    expect(await server.waitForLog((l) => l.msg === 'socket activation: listening socket passed by systemd', 'the activated socket logged')).toMatchObject({
      fd: 3,
      name: 'web',
      socket: `127.0.0.1:${port}`,
    });
    expect(await server.waitForLog((l) => String(l.msg).startsWith('accept: '), 'the accept path')).toMatchObject({ msg: EXPECTED_ACCEPT });

    // The only worker dies. Through cluster's shared handle the master closed its fd with it and the socket was
    // gone; the replacement must serve on it again. The request waits in the backlog meanwhile.
    expect((await uwsgiGet({ port }, '/exit')).status).toBe(200);
    await server.waitForLog((l) => l.msg === 'worker died', 'the worker to die');
    const after = await uwsgiGet({ port }, '/');
    expect(after.status).toBe(200);
    expect((JSON.parse(after.body) as { pid: number }).pid).not.toBe(pid);

    // systemd-notify fails (no such socket): said once, at error level, and serving goes on.
    expect(await server.waitForLog((l) => l.code === 'ERR_SYSTEMD_NOTIFY', 'the notify error')).toMatchObject({
      level: 50,
      msg: 'cannot notify systemd: systemd-notify failed',
    });
    expect(await server.stop()).toBe(0);
    expect(server.logs.filter((l) => l.code === 'ERR_SYSTEMD_NOTIFY')).toHaveLength(1);
  }, 90_000);

  it('serves an activated fd named by --ssl-socket fd://N over TLS, the other activated fd plain', async () => {
    const dir = tempDir();
    const subject = ['-subj', '/CN=node-uwsgi', '-addext', 'subjectAltName=DNS:node-uwsgi'];
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', ...subject, '-keyout', 'server.key', '-out', 'server.crt'], { cwd: dir, stdio: 'ignore' });
    const [plainPort, tlsPort] = [await freePort(), await freePort()];
    const server = activate({
      listen: [`127.0.0.1:${plainPort}`, `127.0.0.1:${tlsPort}`],
      fdnames: ['plain', 'tls'],
      args: ['--workers', '1', '--ssl-socket', `fd://4,${join(dir, 'server.crt')},${join(dir, 'server.key')}`],
    });
    cleanups.push(() => server.stop());
    await server.bound();
    expect((await uwsgiGet({ port: plainPort }, '/')).status).toBe(200);
    const answer = await new Promise<{ serial: string; raw: string }>((resolve, reject) => {
      let raw = '';
      let serial = '';
      const socket = tls.connect({ port: tlsPort, host: '127.0.0.1', ca: readFileSync(join(dir, 'server.crt')), servername: 'node-uwsgi' }, () => {
        serial = socket.getPeerCertificate().serialNumber;
        socket.write(encodeRequest(nginxVars({ REMOTE_ADDR: '127.0.0.1' })));
      });
      socket.on('data', (d: Buffer) => (raw += d.toString('latin1')));
      socket.on('error', reject);
      socket.on('close', () => resolve({ serial, raw }));
    });
    expect(answer.serial).toBe(new X509Certificate(readFileSync(join(dir, 'server.crt'))).serialNumber);
    expect(parseResponse(Buffer.from(answer.raw, 'latin1')).status).toBe(200);
    const ready = await server.waitForLog((l) => l.msg === 'ready', 'ready');
    expect(ready.sockets).toEqual(['fd://3', 'fd://4']);
    // Plain uwsgi to the TLS fd is a handshake failure, not a request.
    await rawExchange({ port: tlsPort }, encodeRequest(nginxVars())).catch(() => undefined);
    expect(await server.waitForLog((l) => l.code === 'ERR_TLS_HANDSHAKE', 'the handshake failure')).toMatchObject({ address: 'fd://4' });
    expect(await server.stop()).toBe(0);
  }, 60_000);

  it('refuses an activated TCP socket on a non-loopback address without --allow-from', async () => {
    const port = await freePort();
    const server = activate({ listen: [`0.0.0.0:${port}`] });
    cleanups.push(() => server.stop());
    await server.bound();
    // Starts the server; it refuses to serve, so this connection is closed unanswered.
    await rawExchange({ port }, encodeRequest(nginxVars())).catch(() => undefined);
    expect(await server.exited).toBe(1);
    const fatal = await server.waitForLog((l) => l.msg === 'cannot start', 'the start-up error');
    expect(fatal).toMatchObject({ code: 'ERR_ALLOW_FROM_REQUIRED' });
    expect(JSON.stringify(fatal)).toContain(`0.0.0.0:${port}`);
  }, 60_000);

  it('re-listens an activated Unix socket with --backlog (Node calls listen() on it again), and reads its queue for --stats', async () => {
    const dir = tempDir();
    const socket = join(dir, 'app.sock');
    const statsPath = join(dir, 'stats.sock');
    const server = activate({ listen: [socket], fdnames: ['uwsgi'], args: ['--backlog', '64', '--stats', statsPath] });
    cleanups.push(() => server.stop());
    await server.bound();
    expect((await uwsgiGet({ path: socket }, '/')).status).toBe(200);
    expect(await server.waitForLog((l) => String(l.msg).startsWith('accept: '), 'the accept path')).toMatchObject({ msg: EXPECTED_ACCEPT });
    const line = execFileSync('ss', ['-xlnH', 'src', socket], { encoding: 'utf8' });
    expect(line).toMatch(/^\S+\s+LISTEN\s+0\s+64\s/);
    const doc = await new Promise<string>((resolve, reject) => {
      const client = net.connect({ path: statsPath });
      let text = '';
      client.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
      client.on('end', () => resolve(text));
      client.on('error', reject);
    });
    expect((JSON.parse(doc) as { sockets: unknown[] }).sockets).toEqual([expect.objectContaining({ name: 'fd://3', queue: 0, max_queue: 64 })]);
  });

  it('leaves LISTEN_FDS meant for another process alone and listens on --socket', async () => {
    const dir = tempDir();
    const own = join(dir, 'own.sock');
    const port = await freePort();
    // sh is systemd-socket-activate's child, so LISTEN_PID is the shell's, not node's: the case of a wrapper
    // script that does not exec. It passes TERM on, so that stop() stops node too.
    const wrapper = 'trap \'kill -TERM "$child"; wait "$child"; exit $?\' TERM; "$0" "$@" & child=$!; wait "$child"';
    const server = activate({
      listen: [`127.0.0.1:${port}`],
      command: ['/bin/sh', '-c', wrapper, process.execPath, CLI, APP, '--socket', `unix:${own}`],
    });
    cleanups.push(() => server.stop());
    await server.bound();
    // Starts the server; nobody will accept this connection, which closes when the server stops.
    void rawExchange({ port }, encodeRequest(nginxVars()), { end: true }).catch(() => undefined);
    const warning = await server.waitForLog((l) => l.code === 'ERR_LISTEN_FDS', 'the LISTEN_PID warning');
    expect(warning.level).toBe(40);
    await server.waitForLog((l) => l.msg === 'ready', 'ready');
    expect(server.logs.find((l) => l.msg === 'listening')).toMatchObject({ address: `unix:${own}` });
    expect((await uwsgiGet({ path: own }, '/')).status).toBe(200);
    expect(await server.stop()).toBe(0);
  }, 60_000);
});

describe('the shipped units', () => {
  requireTools();
  const UNITS = join(ROOT, 'systemd');

  /**
   * systemd-analyze verify in a fake root: the units under etc/systemd/system, a copy of the system's own units
   * (sysinit.target... which every service depends on), and a stub for each command the units run, for an
   * instance named `demo`. Without the root it would check /srv/demo/node_modules/.bin/node-uwsgi on this machine.
   */
  function verify(mutate?: (root: string) => void): { status: number | null; stderr: string } {
    const root = tempDir();
    mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
    cpSync('/lib/systemd/system', join(root, 'usr/lib/systemd/system'), { recursive: true });
    for (const file of readdirSync(UNITS)) {
      const text = readFileSync(join(UNITS, file), 'utf8');
      writeFileSync(join(root, 'etc/systemd/system', file), text);
      for (const [, command] of text.matchAll(/^Exec\w+=[-@+!:]*(\/\S+)/gm)) {
        const stub = join(root, command!.replaceAll('%i', 'demo'));
        mkdirSync(dirname(stub), { recursive: true });
        writeFileSync(stub, '#!/bin/sh\n');
        chmodSync(stub, 0o755);
      }
    }
    mutate?.(root);
    const run = spawnSync(ANALYZE, ['verify', `--root=${root}`, '--man=no', '--generators=no', 'node-uwsgi@demo.service', 'node-uwsgi@demo.socket'], {
      encoding: 'utf8',
    });
    return { status: run.status, stderr: run.stderr };
  }

  it('pass systemd-analyze verify without a warning', () => {
    expect(verify()).toEqual({ status: 0, stderr: '' });
  });

  it('are really checked: a missing ExecStart binary fails the same verify', () => {
    const broken = verify((root) => rmSync(join(root, 'srv/demo/node_modules/.bin/node-uwsgi')));
    expect(broken.status).not.toBe(0);
    expect(broken.stderr).toContain('/srv/demo/node_modules/.bin/node-uwsgi');
  });

  it('say what the code relies on: Type=notify, NotifyAccess=all, HUP for reload, the socket named', () => {
    const service = readFileSync(join(UNITS, 'node-uwsgi@.service'), 'utf8');
    const socket = readFileSync(join(UNITS, 'node-uwsgi@.socket'), 'utf8');
    for (const line of ['Type=notify', 'NotifyAccess=all', 'ExecReload=/bin/kill -HUP $MAINPID', 'KillMode=mixed', 'DynamicUser=yes', 'ProtectSystem=strict', 'NoNewPrivileges=yes', 'PrivateTmp=yes']) {
      expect(service.split('\n'), line).toContain(line);
    }
    expect(service).toMatch(/^Requires=node-uwsgi@%i\.socket$/m);
    expect(socket).toMatch(/^ListenStream=\/run\/node-uwsgi\/%i\.sock$/m);
    expect(socket).toMatch(/^FileDescriptorName=uwsgi$/m);
    // The listen queue before the first start; then --backlog's default, somaxconn (4096 since Linux 5.4).
    expect(socket).toMatch(/^Backlog=4096$/m);
    expect(service).toMatch(/^LimitNOFILE=65536$/m);
  });
});

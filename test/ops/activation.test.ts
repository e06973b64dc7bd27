// Socket activation (src/ops/activation.ts): LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES read from an injected
// environment and taken out of it, each malformed value refused by name, the workers' stdio; and real fds, passed
// to a child Node at 3.. as systemd passes them (a listening Unix socket, a listening TCP socket, a connected one),
// read back from /proc by the child with dist/ops/activation.js.
import { spawn } from 'node:child_process';
import net from 'node:net';
import { readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { isUwsgiError, UwsgiError } from '../../src/errors.js';
import { activateSockets, takeListenFds, workerStdio } from '../../src/ops/activation.js';
import type { Options } from '../../src/options.js';
import { useCleanups } from '../helpers/cleanup.js';
import { memoryLogger } from '../helpers/serve.js';

const { defer, tempDir } = useCleanups('nu-activation-');
const ACTIVATION = new URL('../../dist/ops/activation.js', import.meta.url).href;
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The error takeListenFds throws, which must be ERR_LISTEN_FDS. */
function refusal(env: NodeJS.ProcessEnv, pid = 4242): UwsgiError {
  const { log } = memoryLogger();
  try {
    takeListenFds(env, pid, log);
  } catch (err) {
    expect(isUwsgiError(err, 'ERR_LISTEN_FDS'), String(err)).toBe(true);
    return err as UwsgiError;
  }
  throw new Error(`takeListenFds accepted ${JSON.stringify(env)}`);
}

describe('takeListenFds, from the environment', () => {
  it('is undefined without LISTEN_FDS and LISTEN_PID, and leaves the rest of the environment alone', () => {
    const { log, records } = memoryLogger();
    const env = { PATH: '/usr/bin', LISTEN_FDNAMES: 'stray' };
    expect(takeListenFds(env, 4242, log)).toBeUndefined();
    expect(env).toEqual({ PATH: '/usr/bin' });
    expect(records).toEqual([]);
  });

  it('ignores, with one warning, sockets meant for another process, and still takes the variables out', () => {
    const { log, records } = memoryLogger();
    const env = { LISTEN_PID: '4241', LISTEN_FDS: '1', LISTEN_FDNAMES: 'web', HOME: '/srv' };
    expect(takeListenFds(env, 4242, log)).toBeUndefined();
    expect(env).toEqual({ HOME: '/srv' });
    expect(records).toMatchObject([{ level: 40, code: 'ERR_LISTEN_FDS', listenPid: '4241', pid: 4242 }]);
    expect(records[0]!.msg).toContain('start node with exec');
    // LISTEN_FDS without LISTEN_PID is meant for nobody in particular: not for this process either.
    const orphan = memoryLogger();
    expect(takeListenFds({ LISTEN_FDS: '1' }, 4242, orphan.log)).toBeUndefined();
    expect(orphan.records).toMatchObject([{ code: 'ERR_LISTEN_FDS', pid: 4242 }]);
  });

  it('refuses a LISTEN_FDS that is not a positive whole number, quoting it', () => {
    for (const value of ['0', '-1', 'two', '', '1.5', ' 1', '0x2']) {
      const err = refusal({ LISTEN_PID: '4242', LISTEN_FDS: value });
      expect(err.message, value).toContain(`LISTEN_FDS=${JSON.stringify(value)} is not a positive number of sockets`);
      expect(err.message).toContain('ListenStream=');
    }
    expect(refusal({ LISTEN_PID: '4242' }).message).toContain('LISTEN_FDS=undefined');
  });

  it('refuses LISTEN_FDNAMES that name more or fewer sockets than LISTEN_FDS says', () => {
    expect(refusal({ LISTEN_PID: '4242', LISTEN_FDS: '2', LISTEN_FDNAMES: 'web' }).message).toContain(
      'LISTEN_FDNAMES names 1 sockets, LISTEN_FDS says 2',
    );
    expect(refusal({ LISTEN_PID: '4242', LISTEN_FDS: '1', LISTEN_FDNAMES: 'a:b:c' }).message).toContain(
      'LISTEN_FDNAMES names 3 sockets, LISTEN_FDS says 1',
    );
  });

  it('leaves the options as they are without activation', () => {
    const { log } = memoryLogger();
    const options = { socket: [{ kind: 'tcp', host: '127.0.0.1', port: 3031 }], sslSocket: [] } as unknown as Options;
    expect(activateSockets(options, log, {}, 4242)).toBe(options);
  });
});

describe('workerStdio', () => {
  it("is cluster's default without fds, and otherwise puts each fd at its own number, the IPC channel after them", () => {
    expect(workerStdio([{ kind: 'unix', path: '/run/a.sock' }])).toBeUndefined();
    expect(workerStdio([{ kind: 'fd', fd: 3 }])).toEqual(['inherit', 'inherit', 'inherit', 3, 'ipc']);
    expect(workerStdio([{ kind: 'fd', fd: 5 }, { kind: 'tcp', host: '127.0.0.1', port: 1 }, { kind: 'fd', fd: 3 }, { kind: 'fd', fd: 5 }])).toEqual([
      'inherit',
      'inherit',
      'inherit',
      3,
      'ignore',
      5,
      'ipc',
    ]);
  });
});

interface ChildReport {
  taken?: unknown;
  error?: { code?: string; message: string };
}

/** This process's socket fds, from /proc (Node says no fd of its own sockets but through internals). */
function socketFds(): Set<number> {
  const fds = new Set<number>();
  for (const name of readdirSync('/proc/self/fd')) {
    try {
      if (readlinkSync(`/proc/self/fd/${name}`).startsWith('socket:')) fds.add(Number(name));
    } catch {
      // Closed meanwhile (the directory's own fd among them).
    }
  }
  return fds;
}

/** Runs `open` and returns the socket fd it opened in this process (the first, if it opened more). */
async function fdOf(open: () => Promise<unknown>): Promise<number> {
  const before = socketFds();
  await open();
  const opened = [...socketFds()].filter((fd) => !before.has(fd));
  expect(opened.length, 'new socket fds').toBeGreaterThan(0);
  return opened[0]!;
}

/** Runs `body` (a module's statements; `m` is dist/ops/activation.js, `log` a recording logger) in a child Node
 * whose fds 3.. are `fds`, and returns what it prints as JSON. */
async function inChild(fds: number[], body: string): Promise<Record<string, ChildReport>> {
  const script = `
    const m = await import(${JSON.stringify(ACTIVATION)});
    const logs = [];
    const log = { info: (fields, msg) => logs.push({ msg, ...fields }), warn: (fields, msg) => logs.push({ msg, ...fields }), debug() {} };
    const out = {};
    const report = (name, fn) => {
      try { out[name] = { taken: fn() }; } catch (err) { out[name] = { error: { code: err.code, message: err.message } }; }
    };
    ${body}
    out.logs = { taken: logs };
    process.stdout.write(JSON.stringify(out));`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe', ...fds] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  expect(code, stderr).toBe(0);
  return JSON.parse(stdout) as Record<string, ChildReport>;
}

/** A listening server and its fd. */
async function listening(...args: unknown[]): Promise<{ server: net.Server; fd: number }> {
  const server = net.createServer();
  const fd = await fdOf(
    () =>
      new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        (server.listen as (...a: unknown[]) => void)(...args, () => resolve());
      }),
  );
  defer(() => new Promise((resolve) => server.close(resolve)));
  return { server, fd };
}

describe('takeListenFds and inspectFd, with real fds', () => {
  it('reads what each passed fd is bound to, with its name, and refuses one that is not listening', async () => {
    const path = join(tempDir(), 'web app.sock');
    const unix = await listening(path);
    const tcp = await listening(0, '127.0.0.1');
    const port = (tcp.server.address() as net.AddressInfo).port;
    // A connected stream socket (a connection to the TCP listener): not what ListenStream= passes.
    let connected: net.Socket | undefined;
    const peer = await fdOf(async () => {
      connected = net.connect({ host: '127.0.0.1', port });
      await new Promise((resolve) => connected!.once('connect', resolve));
    });
    defer(() => connected?.destroy());

    const report = await inChild(
      [unix.fd, tcp.fd, peer],
      `const pid = String(process.pid);
       report('named', () => m.takeListenFds({ LISTEN_PID: pid, LISTEN_FDS: '2', LISTEN_FDNAMES: 'web:' }, process.pid, log));
       report('unnamed', () => m.takeListenFds({ LISTEN_PID: pid, LISTEN_FDS: '2' }, process.pid, log));
       report('connected', () => m.takeListenFds({ LISTEN_PID: pid, LISTEN_FDS: '3', LISTEN_FDNAMES: 'a:b:peer' }, process.pid, log));
       report('closed', () => m.inspectFd(1000));
       report('devnull', () => m.inspectFd(0) ?? 'not a socket');
       report('socketpair', () => m.inspectFd(1));
       report('options', () => m.activateSockets({ socket: [{ kind: 'tcp', host: '127.0.0.1', port: 3031 }], sslSocket: [] }, log, { LISTEN_PID: pid, LISTEN_FDS: '2', LISTEN_FDNAMES: 'web:api' }, process.pid).socket);`,
    );
    const unixSocket = { kind: 'unix', path, listening: true, stream: true };
    const tcpSocket = { kind: 'tcp', host: '127.0.0.1', port, listening: true, stream: true };
    expect(report.named).toEqual({
      taken: [
        { fd: 3, name: 'web', socket: unixSocket },
        // An empty name is systemd's default for a socket without FileDescriptorName=.
        { fd: 4, name: 'unknown', socket: tcpSocket },
      ],
    });
    expect(report.unnamed).toEqual({
      taken: [
        { fd: 3, name: 'unknown', socket: unixSocket },
        { fd: 4, name: 'unknown', socket: tcpSocket },
      ],
    });
    expect(report.connected!.error).toEqual({
      code: 'ERR_LISTEN_FDS',
      message: expect.stringContaining('fd 5 (peer) is not a listening stream socket: use ListenStream= in the socket unit'),
    });
    expect(report.closed!.error).toEqual({ code: 'ERR_LISTEN_FDS', message: expect.stringContaining('fd 1000 is not open') });
    // stdin is /dev/null: not a socket, nothing to say about it; stdout is libuv's pipe, an unnamed socketpair.
    expect(report.devnull).toEqual({ taken: 'not a socket' });
    expect(report.socketpair).toEqual({ taken: { kind: 'unix', path: '', listening: false, stream: true } });
    expect(report.options).toEqual({
      taken: [
        { kind: 'fd', fd: 3 },
        { kind: 'fd', fd: 4 },
      ],
    });
    expect(report.logs!.taken).toEqual([
      { msg: 'socket activation: listening socket passed by systemd', fd: 3, name: 'web', socket: `unix:${path}` },
      { msg: 'socket activation: listening socket passed by systemd', fd: 4, name: 'api', socket: `127.0.0.1:${port}` },
      { msg: 'socket activation: --socket is ignored', ignored: ['127.0.0.1:3031'] },
    ]);
  });

  it('asks for --allow-from for a passed TCP socket bound beyond loopback, not for one on loopback', async () => {
    const wide = await listening(0, '0.0.0.0');
    const loopback = await listening(0, '127.0.0.1');
    const report = await inChild(
      [wide.fd, loopback.fd],
      `report('wide', () => m.requireAllowListForFds([{ kind: 'fd', fd: 3 }], undefined) ?? 'allowed');
       report('wideListed', () => m.requireAllowListForFds([{ kind: 'fd', fd: 3 }], ['10.0.0.0/8']) ?? 'allowed');
       report('loopback', () => m.requireAllowListForFds([{ kind: 'fd', fd: 4 }], undefined) ?? 'allowed');
       report('wideSocket', () => m.inspectFd(3));`,
    );
    const port = (wide.server.address() as net.AddressInfo).port;
    expect(report.wideSocket).toEqual({ taken: { kind: 'tcp', host: '0.0.0.0', port, listening: true, stream: true } });
    expect(report.wide!.error).toEqual({ code: 'ERR_ALLOW_FROM_REQUIRED', message: expect.stringContaining(`0.0.0.0:${port}`) });
    expect(report.wideListed).toEqual({ taken: 'allowed' });
    expect(report.loopback).toEqual({ taken: 'allowed' });
  });
});

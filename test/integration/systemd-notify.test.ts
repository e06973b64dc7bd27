// The systemd notifier (src/ops/systemd.ts) with the real systemd-notify on a real NOTIFY_SOCKET: a Unix datagram
// socket in a temp dir, bound and read by test/fixtures/systemd/notify-listener.py (Node has no AF_UNIX datagrams).
// What the datagrams say, in which order, and that each state message is followed by systemd-notify's barrier.
// The notifier's decisions alone are test/ops/systemd.test.ts; the whole server under systemd is systemd.test.ts.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createSystemdNotifier, type StatusView } from '../../src/ops/systemd.js';
import { memoryLogger } from '../helpers/serve.js';
import { ROOT } from './nginx.js';

const PYTHON = process.env.PYTHON ?? 'python3';
const LISTENER = join(ROOT, 'test/fixtures/systemd/notify-listener.py');

interface Datagram {
  message: string;
  fds: number;
}

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const fn of cleanups.splice(0).reverse()) fn();
});

function requireTools(): void {
  if (spawnSync('systemd-notify', ['--version']).status !== 0) {
    throw new Error('systemd-notify not found on PATH: the notify tests need the Debian package systemd (apt-get install systemd)');
  }
  if (spawnSync(PYTHON, ['--version']).status !== 0) throw new Error(`${PYTHON} not found: the notify listener needs python3 (apt-get install python3)`);
}

/** The manager's end: the listener bound at a fresh path; `received(n)` resolves once n datagrams are in. */
async function listen(): Promise<{ path: string; datagrams: Datagram[]; received(n: number): Promise<Datagram[]> }> {
  const dir = mkdtempSync(join(tmpdir(), 'nu-notify-'));
  const path = join(dir, 'notify.sock');
  const child = spawn(PYTHON, [LISTENER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(() => {
    child.kill();
    rmSync(dir, { recursive: true, force: true });
  });
  const datagrams: Datagram[] = [];
  const waiting = new Set<() => void>();
  let partial = '';
  let stderr = '';
  let bound = false;
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    let nl: number;
    while ((nl = partial.indexOf('\n')) !== -1) {
      const line = JSON.parse(partial.slice(0, nl)) as Datagram & { listening?: string };
      partial = partial.slice(nl + 1);
      if (line.listening) bound = true;
      else datagrams.push({ message: line.message, fds: line.fds });
    }
    for (const check of waiting) check();
  });
  const until = (done: () => boolean, what: () => string): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what()}\n${stderr}`)), 20_000);
      const check = (): void => {
        if (!done()) return;
        waiting.delete(check);
        clearTimeout(timer);
        resolve();
      };
      waiting.add(check);
      child.once('exit', (code) => reject(new Error(`the notify listener exited (${code})\n${stderr}`)));
      check();
    });
  await until(() => bound, () => `the notify listener to bind ${path}`);
  return {
    path,
    datagrams,
    received: async (n) => {
      await until(() => datagrams.length >= n, () => `${n} datagrams; received ${JSON.stringify(datagrams)}`);
      return datagrams;
    },
  };
}

describe('the systemd notifier, on a real NOTIFY_SOCKET', () => {
  it('sends each state with its status in one datagram, in order, each followed by the barrier, and pings the watchdog', async () => {
    requireTools();
    const manager = await listen();
    const view: StatusView = { readyWorkers: () => 1, requestsServed: () => 2, desiredWorkers: 1 };
    const { log, records } = memoryLogger();
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: manager.path, WATCHDOG_USEC: '60000000', PATH: process.env.PATH };
    const notifier = createSystemdNotifier(view, log, env, process.pid);
    expect(existsSync(manager.path)).toBe(true);
    notifier.action({ type: 'ready', reason: 'boot', workers: 1, ms: 5 });
    notifier.tick();
    notifier.action({ type: 'stopping', graceful: true });
    await notifier.flush();
    // systemd-notify exits only once the manager has closed the barrier's fd: by then each message was read.
    const datagrams = await manager.received(6);
    expect(datagrams).toEqual([
      { message: 'READY=1\nSTATUS=1 of 1 workers ready, 2 requests served', fds: 0 },
      { message: 'BARRIER=1', fds: 1 },
      { message: 'WATCHDOG=1', fds: 0 },
      { message: 'BARRIER=1', fds: 1 },
      { message: 'STOPPING=1\nSTATUS=stopping: 1 of 1 workers ready, 2 requests served', fds: 0 },
      { message: 'BARRIER=1', fds: 1 },
    ]);
    expect(records.filter((r) => r.code === 'ERR_SYSTEMD_NOTIFY')).toEqual([]);
    expect(env.NOTIFY_SOCKET).toBeUndefined();
  });

  it('logs ERR_SYSTEMD_NOTIFY once with systemd-notify\'s own words when nobody listens on NOTIFY_SOCKET', async () => {
    requireTools();
    const dir = mkdtempSync(join(tmpdir(), 'nu-notify-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const { log, records } = memoryLogger();
    const notifier = createSystemdNotifier({ readyWorkers: () => 0, requestsServed: () => 0, desiredWorkers: 1 }, log, { NOTIFY_SOCKET: join(dir, 'nobody.sock'), PATH: process.env.PATH }, process.pid);
    notifier.action({ type: 'ready', reason: 'boot', workers: 0, ms: 5 });
    notifier.action({ type: 'stopping', graceful: true });
    await notifier.flush();
    const errors = records.filter((r) => r.code === 'ERR_SYSTEMD_NOTIFY');
    expect(errors).toHaveLength(1);
    expect(String(errors[0]!.stderr)).not.toBe('');
  });
});

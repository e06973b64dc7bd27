// `node-uwsgi top ADDR`: uwsgitop for node-uwsgi. Reads the --stats document (or any uWSGI stats server's) every
// --interval seconds and draws the workers in the terminal; --once prints one plain frame and exits.
import net from 'node:net';
import { hostname } from 'node:os';
import { Command, Option } from 'commander';
import { UwsgiError } from '../errors.js';
import { parseSocketAddress, type SocketAddress } from '../address.js';
import type { UwsgiStats, UwsgiWorkerStats } from '../ops/stats.js';

const READ_TIMEOUT_MS = 5000;

/** Reads one stats document: connect, read until the server closes, parse. */
export function readStats(address: Exclude<SocketAddress, { kind: 'fd' }>, label: string): Promise<UwsgiStats> {
  return new Promise((resolve, reject) => {
    const fail = (detail: string): void => reject(new UwsgiError('ERR_STATS_UNAVAILABLE', { address: label, detail }));
    const socket = address.kind === 'unix' ? net.connect({ path: address.path }) : net.connect({ host: address.host, port: address.port });
    const chunks: Buffer[] = [];
    socket.setTimeout(READ_TIMEOUT_MS, () => {
      socket.destroy();
      fail(`no complete document within ${READ_TIMEOUT_MS} ms`);
    });
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err: NodeJS.ErrnoException) => fail(err.code ?? err.message));
    socket.on('end', () => {
      try {
        const doc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as UwsgiStats;
        if (typeof doc !== 'object' || doc === null || !Array.isArray(doc.workers)) throw new Error('no workers list');
        resolve(doc);
      } catch (err) {
        fail(`not a stats document (${(err as Error).message})`);
      }
    });
  });
}

/** B, K, M, G as uwsgitop prints sizes. */
export function humanSize(n: number): string {
  if (n >= 1024 ** 3) return `${(n / 1024 ** 3).toFixed(1)}G`;
  if (n >= 1024 ** 2) return `${(n / 1024 ** 2).toFixed(1)}M`;
  if (n >= 1024) return `${(n / 1024).toFixed(1)}K`;
  return String(Math.trunc(n));
}

function clock(epochSeconds: number): string {
  if (!epochSeconds) return '--:--:--';
  return new Date(epochSeconds * 1000).toTimeString().slice(0, 8);
}

const COLUMNS = ['WID', '%', 'PID', 'REQ', 'DELTA', 'RPS', 'EXC', 'STATUS', 'AVG', 'RSS', 'VSZ', 'TX', 'RESPAWN', 'HARAKIRI', 'RUNT', 'LASTSPAWN'] as const;

/**
 * One frame as lines of text. `previous` (the last document and when it was read) gives requests per second;
 * without it RPS is '-'.
 */
export function renderFrame(doc: UwsgiStats, host: string, now: number, previous?: { doc: UwsgiStats; at: number }): string[] {
  const workers = [...doc.workers].sort((a, b) => b.requests - a.requests);
  const total = workers.reduce((n, w) => n + w.requests, 0);
  const tx = workers.reduce((n, w) => n + w.tx, 0);
  const seconds = previous ? (now - previous.at) / 1000 : 0;
  const rpsOf = (w: UwsgiWorkerStats): number | undefined => {
    if (!previous || seconds <= 0) return undefined;
    const before = previous.doc.workers.find((p) => p.id === w.id)?.requests ?? 0;
    return Math.max(0, w.requests - before) / seconds;
  };
  const rates = workers.map(rpsOf);
  const totalRps = previous ? rates.reduce<number>((n, r) => n + (r ?? 0), 0) : undefined;
  const busy = workers.filter((w) => w.status === 'busy').length;
  const lines = [
    `node-uwsgi ${doc.version ?? ''} - ${new Date(now).toString().slice(0, 24)} - req: ${total} - RPS: ${totalRps === undefined ? '-' : Math.round(totalRps)} - lq: ${doc.listen_queue ?? 0} - tx: ${humanSize(tx)}`,
    `node: ${host} - cwd: ${doc.cwd ?? ''} - uid: ${doc.uid ?? '-'} - gid: ${doc.gid ?? '-'} - masterpid: ${doc.pid ?? '-'} - workers: ${workers.length} (${busy} busy)`,
  ];
  const rows: string[][] = workers.map((w, i) => {
    const rps = rates[i];
    return [
      String(w.id),
      (total === 0 ? 0 : (100 * w.requests) / total).toFixed(1),
      String(w.pid),
      String(w.requests),
      String(w.delta_requests ?? 0),
      rps === undefined ? '-' : String(Math.round(rps)),
      String(w.exceptions),
      w.status,
      `${Math.round(w.avg_rt / 1000)}ms`,
      humanSize(w.rss),
      humanSize(w.vsz),
      humanSize(w.tx),
      String(w.respawn_count),
      String(w.harakiri_count),
      `${Math.round(w.running_time / 1000)}ms`,
      clock(w.last_spawn),
    ];
  });
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
  const format = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  lines.push('', format(COLUMNS), ...rows.map(format));
  return lines;
}

export async function run(args: string[]): Promise<number> {
  const program = new Command('node-uwsgi top')
    .description('Show the workers of a node-uwsgi (or uWSGI) stats server, refreshed live, like uwsgitop')
    .argument('<address>', 'the --stats address: unix:/path, /path or host:port')
    .addOption(new Option('--once', 'print one frame as plain text and exit'))
    .addOption(new Option('--interval <seconds>', 'seconds between refreshes').default('1'))
    .exitOverride();
  program.parse(args, { from: 'user' });
  const raw = program.args[0]!;
  const opts = program.opts<{ once?: boolean; interval: string }>();
  const interval = Number(opts.interval);
  if (!Number.isFinite(interval) || interval <= 0) {
    throw new UwsgiError('ERR_OPTION_INVALID', { option: '--interval', value: JSON.stringify(opts.interval), detail: 'expected a positive number of seconds' });
  }
  const address = parseSocketAddress(raw);
  if (address.kind === 'fd') throw new UwsgiError('ERR_SOCKET_ADDRESS', { value: JSON.stringify(raw) });
  const host = address.kind === 'tcp' ? address.host : hostname();

  if (opts.once) {
    const doc = await readStats(address, raw);
    process.stdout.write(`${renderFrame(doc, host, Date.now()).join('\n')}\n`);
    return 0;
  }

  const tty = process.stdout.isTTY === true;
  let previous: { doc: UwsgiStats; at: number } | undefined;
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => (stop = resolve));
  const onKey = (key: Buffer): void => {
    // q, Ctrl-C, Ctrl-D
    if (key[0] === 0x71 || key[0] === 0x03 || key[0] === 0x04) stop();
  };
  if (process.stdin.isTTY) {
    process.stdin.setRawMode(true);
    process.stdin.on('data', onKey).resume();
  }
  process.once('SIGINT', () => stop());
  process.once('SIGTERM', () => stop());
  if (tty) process.stdout.write('\x1b[?25l');
  try {
    for (;;) {
      const doc = await readStats(address, raw);
      const at = Date.now();
      const frame = renderFrame(doc, host, at, previous).join('\n');
      previous = { doc, at };
      // Home, clear, draw: the whole frame in one write, so that it does not flicker.
      process.stdout.write(tty ? `\x1b[H\x1b[2J${frame}\n` : `${frame}\n\n`);
      let timer: NodeJS.Timeout | undefined;
      const next = await Promise.race([
        stopped.then(() => 'stop' as const),
        new Promise<'tick'>((resolve) => (timer = setTimeout(() => resolve('tick'), interval * 1000))),
      ]);
      clearTimeout(timer);
      if (next === 'stop') return 0;
    }
  } finally {
    if (tty) process.stdout.write('\x1b[?25h');
    if (process.stdin.isTTY) {
      process.stdin.setRawMode(false);
      process.stdin.off('data', onKey).pause();
    }
  }
}

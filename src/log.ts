// Builds the pino logger of the master and of each worker from the options: JSON lines on stdout by default
// (journald stores them as they are), pretty on a terminal (--log-format), or appended to --log-file and reopened
// on SIGUSR1, which logrotate's postrotate sends to the master (the master passes it on to its workers).
//
// Pretty output goes through pino-pretty's prettyFactory in this thread, not its worker-thread transport: one
// formatting call per line, no thread per process (master and every worker), nothing lost at process.exit, and
// the --log-file stream stays ours to reopen. Pretty is for a developer's terminal; production logs are JSON:
// an access line costs 44-72 us pretty against 9-12 us as JSON (100,000 lines to /dev/null, Node 20, a busy
// 2-core machine, 2026-11-30).
import { closeSync, openSync } from 'node:fs';
import pino, { type DestinationStream, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import { UwsgiError } from './errors.js';
import type { Options } from './options.js';

export interface LogSetup {
  readonly log: Logger;
  readonly pretty: boolean;
  /** Reopens --log-file by its path (after logrotate moved it); a no-op when logging to stdout. */
  reopen(): void;
}

export interface LogTarget {
  /** Whether stdout is a terminal; process.stdout.isTTY unless given (tests). */
  readonly tty?: boolean;
}

export function createLogger(
  options: Pick<Options, 'logLevel' | 'logFormat' | 'logFile'>,
  base: Record<string, unknown>,
  target: LogTarget = {},
): LogSetup {
  const tty = target.tty ?? process.stdout.isTTY === true;
  const file = options.logFile === undefined ? undefined : openLogFile(options.logFile);
  const pretty = options.logFormat === 'pretty' || (options.logFormat === 'auto' && file === undefined && tty);
  const sink = file ?? pino.destination({ dest: 1, sync: false });
  const stream: DestinationStream = pretty ? prettyStream(sink, file === undefined && tty) : sink;
  const log = pino({ level: options.logLevel, base }, stream);
  return {
    log,
    pretty,
    reopen: () => file?.reopen(),
  };
}

/** An appending SonicBoom on the file; opened once synchronously first, so that a bad path fails at start. */
function openLogFile(path: string): pino.DestinationStream & { reopen(): void; on(event: 'error', listener: (err: Error) => void): unknown } {
  try {
    closeSync(openSync(path, 'a'));
  } catch (err) {
    throw new UwsgiError('ERR_LOG_FILE', { file: path, detail: (err as Error).message }, { cause: err });
  }
  const stream = pino.destination({ dest: path, append: true, sync: false });
  // A reopen that fails later (the directory removed, permissions changed) must not take the process down; the
  // logger itself cannot say so.
  stream.on('error', (err: Error) => {
    process.stderr.write(`node-uwsgi: ${new UwsgiError('ERR_LOG_FILE', { file: path, detail: err.message }).message}\n`);
  });
  return stream;
}

function prettyStream(sink: DestinationStream, colorize: boolean): DestinationStream {
  const format = prettyFactory({ colorize, translateTime: 'SYS:HH:MM:ss.l', ignore: 'hostname' });
  return { write: (line: string) => void sink.write(format(line)) };
}

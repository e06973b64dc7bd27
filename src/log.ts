// Builds the pino logger of the master and of each worker from the options: JSON lines on stdout by default
// (journald stores them as they are), pretty on a terminal (--log-format), or appended to --log-file and reopened
// on SIGUSR1, which logrotate's postrotate sends to the master (the master passes it on to its workers); the file
// destination, which a full disk cannot turn against serving, is log-file.ts.
//
// Pretty output goes through pino-pretty's prettyFactory in this thread, not its worker-thread transport: one
// formatting call per line, no thread per process (master and every worker), nothing lost at process.exit, and
// the --log-file stream stays ours to reopen. Pretty is for a developer's terminal; production logs are JSON:
// an access line costs several times more pretty than as JSON (bench/README.md, "Figures the source cites").
import pino, { type DestinationStream, type Logger } from 'pino';
import { prettyFactory } from 'pino-pretty';
import { LogFile } from './log-file.js';
import { DEFAULT_LOG_BUFFER, type Options } from './options.js';

/** The longest a stopping process waits for its log lines to reach --log-file before it exits anyway. */
export const LOG_FLUSH_MS = 1_000;

export interface LogSetup {
  readonly log: Logger;
  readonly pretty: boolean;
  /** Reopens --log-file by its path (after logrotate moved it); a no-op when logging to stdout. */
  reopen(): void;
  /**
   * Before a planned exit: resolves once --log-file has every line, is failing, or after `timeoutMs`. On stdout,
   * at once (pino flushes its stdout stream at exit).
   */
  flush(timeoutMs?: number): Promise<void>;
}

export interface LogTarget {
  /** Whether stdout is a terminal; process.stdout.isTTY unless given (tests). */
  readonly tty?: boolean;
}

export function createLogger(
  options: Pick<Options, 'logLevel' | 'logFormat' | 'logFile'> & Partial<Pick<Options, 'logBuffer'>>,
  base: Record<string, unknown>,
  target: LogTarget = {},
): LogSetup {
  const tty = target.tty ?? process.stdout.isTTY === true;
  const file =
    options.logFile === undefined
      ? undefined
      : new LogFile(options.logFile, {
          limit: options.logBuffer ?? DEFAULT_LOG_BUFFER,
          resumed: ({ dropped, failedMs, error }) =>
            // Called from a write's callback, after `log` below exists.
            log.warn({ code: 'ERR_LOG_WRITE', file: options.logFile, dropped, failedMs, error }, 'log file writing resumed'),
        });
  // The file's own exit flush: one attempt, no retry (pino's flushSync on its SonicBoom retried for ever).
  if (file !== undefined) process.once('exit', () => file.flushSync());
  const pretty = options.logFormat === 'pretty' || (options.logFormat === 'auto' && file === undefined && tty);
  const sink: DestinationStream = file ?? pino.destination({ dest: 1, sync: false });
  const stream: DestinationStream = pretty ? prettyStream(sink, file === undefined && tty) : sink;
  const log: Logger = pino({ level: options.logLevel, base }, stream);
  return {
    log,
    pretty,
    reopen: () => file?.reopen(),
    flush: (timeoutMs = LOG_FLUSH_MS) => file?.flush(timeoutMs) ?? Promise.resolve(),
  };
}

function prettyStream(sink: DestinationStream, colorize: boolean): DestinationStream {
  const format = prettyFactory({ colorize, translateTime: 'SYS:HH:MM:ss.l', ignore: 'hostname' });
  return { write: (line: string) => void sink.write(format(line)) };
}

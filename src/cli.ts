#!/usr/bin/env node
// The command line: options come from the one table in options.ts; this file wires the loaded app to an
// adapter and the adapter to the server.
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command, CommanderError, Option } from 'commander';
import { configPath, formatConfig, readConfigFile, resolveConfig } from './config.js';
import { UwsgiError, isUwsgiError } from './errors.js';
import { createLogger } from './log.js';
import { OPTIONS, type Options } from './options.js';
import { runMaster } from './master/master.js';
import { activateSockets } from './ops/activation.js';

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command('node-uwsgi')
    .description('Serve a Node.js app (WSGI-style, (req, res) or fetch) over the uwsgi protocol, behind nginx or Apache')
    .argument('[app]', 'module path or package, optionally :export or :factory() (e.g. ./app.js, ./app.mjs:handler); else app = in the --config file or NODE_UWSGI_APP')
    .version(pkg.version, '-v, --version')
    .showHelpAfterError()
    .exitOverride();
  for (const spec of OPTIONS) {
    const option = new Option(spec.arg ? `--${spec.flag} <${spec.arg}>` : `--${spec.flag}`, spec.help);
    if (spec.arg) {
      option.argParser((raw: string, previous: unknown) =>
        (spec.parse as (r: string, p: unknown) => unknown)(raw, previous ?? (spec.repeatable ? [] : spec.default)),
      );
    }
    program.addOption(option);
  }
  return program;
}

/** Subcommands, each a module in src/commands/ exporting run(args) -> exit code; loaded only when used. An app
 * whose path is one of these names is written with its ./ prefix. */
const SUBCOMMANDS: Record<string, () => Promise<{ run(args: string[]): Promise<number> }>> = {
  request: () => import('./commands/request.js'),
  top: () => import('./commands/top.js'),
  nginx: () => import('./commands/nginx.js'),
};

export async function main(argv: string[]): Promise<number> {
  const sub = argv[2];
  if (sub !== undefined && Object.hasOwn(SUBCOMMANDS, sub)) {
    try {
      return await (await SUBCOMMANDS[sub]!()).run(argv.slice(3));
    } catch (err) {
      if (err instanceof CommanderError) return err.exitCode;
      process.stderr.write(`node-uwsgi ${sub}: ${(err as Error).message}\n`);
      return isUwsgiError(err) ? 2 : 1;
    }
  }
  // First of all: USR1's default opens Node's inspector. The master reopens --log-file on it once running
  // (master.ts); until then, and while it stops, a USR1 from logrotate does nothing.
  process.on('SIGUSR1', () => {});
  const program = buildProgram();
  let options: Options;
  let spec: string;
  let logging: ReturnType<typeof createLogger>;
  try {
    program.parse(argv);
    // Precedence: command line > NODE_UWSGI_* > the config file > defaults (config.ts). commander leaves an
    // option undefined unless its flag is given, so what it returns is the command line's alone.
    const cli = program.opts();
    const path = configPath(cli, process.env);
    const resolved = resolveConfig({
      cli,
      cliApp: program.args[0],
      env: process.env,
      file: path === undefined ? undefined : readConfigFile(path),
    });
    if (resolved.options.printConfig) {
      process.stdout.write(formatConfig(resolved));
      return 0;
    }
    if (resolved.app === undefined) throw new UwsgiError('ERR_CONFIG_NO_APP');
    options = resolved.options;
    spec = resolved.app;
    logging = createLogger(options, { pid: process.pid, role: 'master' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    process.stderr.write(`node-uwsgi: ${(err as Error).message}${isUwsgiError(err) ? ` (${err.code})` : ''}\n`);
    return 2;
  }

  const { log } = logging;
  // A stray error in the master must be seen, and must not take the workers' requests down.
  process.on('unhandledRejection', (err) => log.error({ err }, 'unhandled promise rejection in the master'));
  process.on('uncaughtException', (err) => log.error({ err }, 'uncaught exception in the master'));
  try {
    // systemd's sockets (LISTEN_FDS), when it passed some, take the place of --socket.
    const code = await runMaster({ spec, cwd: process.cwd(), options: activateSockets(options, log), log, reopenLog: logging.reopen });
    // The last lines (stopped) reach --log-file before run() exits, unless it fails or is slow (LOG_FLUSH_MS).
    await logging.flush();
    return code;
  } catch (err) {
    const code = isUwsgiError(err) ? err.code : undefined;
    log.fatal({ err, code }, 'cannot start');
    process.stderr.write(`node-uwsgi: ${(err as Error).message}\n`);
    await logging.flush();
    return 1;
  }
}

/** Runs the CLI; exits the process on errors, keeps it serving otherwise. */
export function run(argv: string[]): void {
  void main(argv).then((code) => {
    process.exitCode = code;
    // Nothing is left to serve: do not wait for stray handles (an app's timers live in the workers anyway).
    setImmediate(() => process.exit(code));
  });
}

/** True when this module is the process's entry (also through npm's bin symlink). */
function isMain(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMain()) run(process.argv);

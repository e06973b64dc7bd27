// Where a start-up error comes from, for the log and the terminal: the file:line of a SyntaxError with its source
// line and caret, as Node prints an uncaught one, or the first frames of any other error's stack outside Node and
// node-uwsgi.
import { execFile } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { isUwsgiError } from '../errors.js';

const MAX_FRAMES = 5;
const PROBE_TIMEOUT_MS = 10_000;
// node-uwsgi's own code (dist/, or src/ under the tests): its frames say nothing about the app.
const OWN_DIR = fileURLToPath(new URL('..', import.meta.url));
const OWN_URL = pathToFileURL(OWN_DIR).href;
const LOCATION = /^(?:file:\/\/|\/|[A-Za-z]:\\).*:\d+$/;
const NODE_FRAME = /(?:^at (?:async )?|\()node:/;

/** The lines that say where `err` was raised: the location block Node put at the top of its stack (a SyntaxError
 * from CommonJS, or an ESM import of a missing export), else the app's frames (at most five). */
export function traceOf(err: unknown): string[] {
  if (!(err instanceof Error) || typeof err.stack !== 'string') return [];
  const stack = err.stack;
  const header = stack.indexOf(String(err));
  const location = header > 0 ? locationBlock(stack.slice(0, header)) : [];
  if (location.length > 0) return location;
  const frames: string[] = [];
  for (const line of stack.split('\n')) {
    const frame = line.trim();
    if (!frame.startsWith('at ') || NODE_FRAME.test(frame) || frame.includes(OWN_DIR) || frame.includes(OWN_URL)) continue;
    frames.push(frame);
    if (frames.length === MAX_FRAMES) break;
  }
  return frames;
}

/**
 * traceOf, and for a SyntaxError that carries no location (an ES module that does not parse: Node keeps its
 * file:line out of err.stack and prints it only for an uncaught error), Node's own report from a child process
 * that imports the app's module graph statically. Linking parses the whole graph before any module runs, and the
 * first import, which runs first, exits: nothing of the app is evaluated.
 */
export async function locateError(err: unknown, file: string, cwd: string): Promise<string[]> {
  const trace = traceOf(err);
  if (trace.length > 0 || !(err instanceof SyntaxError)) return trace;
  const stderr = await probeImport(file, cwd);
  const header = stderr.indexOf(`\n${String(err)}`);
  return header === -1 ? [] : locationBlock(stderr.slice(0, header));
}

function probeImport(file: string, cwd: string): Promise<string> {
  const source = `import 'data:text/javascript,process.exit(0)'; import ${JSON.stringify(pathToFileURL(file).href)};`;
  // The worker's loaders (--import, --loader, --conditions) shape the graph; an inspector port would clash.
  const execArgv = process.execArgv.filter((arg) => !/^--(?:inspect|debug)/.test(arg));
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [...execArgv, '--input-type=module', '-e', source],
      { cwd, timeout: PROBE_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024 },
      (_err, _stdout, stderr) => resolve(String(stderr)),
    );
  });
}

/** The `file:line`, source and caret lines Node writes above the error's name, without what came before them
 * (a warning on the probe's stderr). */
function locationBlock(text: string): string[] {
  const lines = text.replace(/\s+$/, '').split('\n');
  const n = lines.length;
  if (n >= 3 && /^\s*\^+$/.test(lines[n - 1]!) && LOCATION.test(lines[n - 3]!)) return lines.slice(n - 3);
  for (let i = n - 1; i >= 0; i--) if (LOCATION.test(lines[i]!)) return lines.slice(i);
  return [];
}

/** What a worker reports of an error that stopped it starting: where the loader found the app's error, else the
 * first frames of an unexpected one; nothing for node-uwsgi's own errors (their message says it all). */
export function startupTrace(err: unknown): string[] {
  if (isUwsgiError(err)) {
    const at = err.details.at;
    return Array.isArray(at) ? at.map(String) : [];
  }
  return traceOf(err);
}

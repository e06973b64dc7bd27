// Where every option's value comes from: the command line, NODE_UWSGI_* environment variables, a TOML config
// file (--config), or the options table's default, in that order of precedence, all driven by the one table in
// options.ts. Values from every source go through the same spec.parse as the command line's.
//
// Why TOML (https://toml.io/en/v1.0.0): uWSGI's users write `key = value` ini files, and a flat TOML file reads
// the same; Node users meet TOML in many tools; and unlike ini it is typed, so `workers = 4`,
// `access-log = true` and `socket = ["unix:/run/a.sock", "127.0.0.1:3031"]` (a repeatable option) need no
// conventions of our own. JSON has no comments; YAML's implicit typing reads `0660` as a number and `no` as false.
import { readFileSync } from 'node:fs';
import { parse as parseToml, TomlError } from 'smol-toml';
import { UwsgiError, isUwsgiError } from './errors.js';
import { describeValue } from './values.js';
import { OPTIONS, defaultOptions, type OptionSpec, type Options } from './options.js';
import { formatSocketAddress, formatSslSocket, type SocketAddress, type SslSocket } from './address.js';

export type Source = 'default' | 'file' | 'environment' | 'command line';

/** Where one value came from; `where` names the file or the environment variable. */
export interface Origin {
  readonly source: Source;
  readonly where?: string;
}

export const ENV_PREFIX = 'NODE_UWSGI_';
/** The app spec, besides the command line's first argument and the file's `app` key. */
export const APP_KEY = 'app';
export const APP_ENV = `${ENV_PREFIX}APP`;
/** Variables under the prefix that are not options: the master's message to its workers (master/messages.ts) and
 * the scheduling switch for measuring (master/master.ts). */
export const INTERNAL_ENV: readonly string[] = ['NODE_UWSGI_WORKER', 'NODE_UWSGI_SCHED'];
/** Options that make no sense inside a config file: which file to read, and whether to print instead of serve. */
const NOT_IN_FILE: ReadonlySet<string> = new Set(['config', 'print-config']);
const TRUE = new Set(['1', 'true']);
const FALSE = new Set(['0', 'false']);

/** NODE_UWSGI_ and the flag in upper snake case: --max-body-size is NODE_UWSGI_MAX_BODY_SIZE. */
export function envName(flag: string): string {
  return ENV_PREFIX + flag.toUpperCase().replaceAll('-', '_');
}

export interface ConfigFile {
  /** As given (--config or NODE_UWSGI_CONFIG); named in errors and in --print-config. */
  readonly path: string;
  readonly text: string;
}

export interface ConfigInput {
  /** commander's parsed options: a key is present only when its flag was on the command line. */
  readonly cli: Readonly<Record<string, unknown>>;
  /** The command line's app argument. */
  readonly cliApp?: string | undefined;
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly file?: ConfigFile | undefined;
}

export interface ResolvedConfig {
  readonly options: Options;
  readonly app: string | undefined;
  readonly origins: Readonly<Record<keyof Options | typeof APP_KEY, Origin>>;
}

type AnySpec = OptionSpec<keyof Options>;
const SPECS = OPTIONS as ReadonlyArray<AnySpec>;

/** The config file to read: --config, else NODE_UWSGI_CONFIG; undefined when neither is set. */
export function configPath(cli: Readonly<Record<string, unknown>>, env: Readonly<Record<string, string | undefined>>): string | undefined {
  if (typeof cli.config === 'string') return cli.config;
  const fromEnv = env[envName('config')];
  return fromEnv === undefined || fromEnv === '' ? undefined : fromEnv;
}

/** Reads the config file; its absence or unreadability is ERR_CONFIG_FILE. */
export function readConfigFile(path: string): ConfigFile {
  try {
    return { path, text: readFileSync(path, 'utf8') };
  } catch (err) {
    throw new UwsgiError('ERR_CONFIG_FILE', { file: path, detail: (err as Error).message }, { cause: err });
  }
}

/** Merges defaults < file < environment < command line. Pure: throws UwsgiErrors naming the source and key. */
export function resolveConfig(input: ConfigInput): ResolvedConfig {
  const options = defaultOptions() as unknown as Record<string, unknown>;
  const origins: Record<string, Origin> = {};
  for (const spec of SPECS) origins[spec.name] = { source: 'default' };
  let app: string | undefined;
  origins[APP_KEY] = { source: 'default' };

  if (input.file !== undefined) {
    const { path, text } = input.file;
    const where = path;
    for (const [key, value] of Object.entries(parseFile(input.file))) {
      if (key === APP_KEY) {
        if (typeof value !== 'string' || value === '') throw valueError(key, where, lineOf(text, key), 'expected the app spec as a string, e.g. app = "./app.js"');
        app = value;
        origins[APP_KEY] = { source: 'file', where };
        continue;
      }
      const spec = SPECS.find((s) => s.flag === key);
      if (spec === undefined || NOT_IN_FILE.has(key)) {
        const known = [APP_KEY, ...SPECS.map((s) => s.flag).filter((f) => !NOT_IN_FILE.has(f))];
        throw new UwsgiError('ERR_CONFIG_UNKNOWN_KEY', {
          key: JSON.stringify(key),
          source: `${path}${lineSuffix(lineOf(text, key))}`,
          hint:
            spec !== undefined
              ? `--${key} is for the command line and ${envName(key)} only`
              : `did you mean ${JSON.stringify(nearest(key, known))}? Keys are the long option names of node-uwsgi --help`,
        });
      }
      options[spec.name] = fromFileValue(spec, value, where, lineOf(text, key));
      origins[spec.name] = { source: 'file', where };
    }
  }

  const envKeys = new Map<string, AnySpec>(SPECS.map((s) => [envName(s.flag), s]));
  for (const [name, raw] of Object.entries(input.env)) {
    if (!name.startsWith(ENV_PREFIX) || raw === undefined || INTERNAL_ENV.includes(name)) continue;
    if (name === APP_ENV) {
      // Empty means unset, as systemd's `Environment=NAME=` clears a variable.
      if (raw !== '') {
        app = raw;
        origins[APP_KEY] = { source: 'environment', where: name };
      }
      continue;
    }
    const spec = envKeys.get(name);
    if (spec === undefined) {
      throw new UwsgiError('ERR_CONFIG_UNKNOWN_KEY', {
        key: name,
        source: 'the environment',
        hint: `did you mean ${nearest(name, [APP_ENV, ...envKeys.keys()])}? Variables are ${ENV_PREFIX} and a long option name in upper snake case`,
      });
    }
    if (raw === '') continue;
    options[spec.name] = fromEnvValue(spec, raw, name);
    origins[spec.name] = { source: 'environment', where: name };
  }

  for (const spec of SPECS) {
    if (input.cli[spec.name] === undefined) continue;
    options[spec.name] = input.cli[spec.name];
    origins[spec.name] = { source: 'command line' };
  }
  if (input.cliApp !== undefined) {
    app = input.cliApp;
    origins[APP_KEY] = { source: 'command line' };
  }
  // --socket's default (127.0.0.1:3031) is for a server with no socket given: one given only --ssl-socket has no
  // plain socket besides.
  if (origins.socket!.source === 'default' && (options.sslSocket as unknown[]).length > 0) options.socket = [];
  return { options: options as unknown as Options, app, origins: origins as ResolvedConfig['origins'] };
}

function parseFile(file: ConfigFile): Record<string, unknown> {
  try {
    return parseToml(file.text) as Record<string, unknown>;
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    throw new UwsgiError('ERR_CONFIG_PARSE', {
      file: file.path,
      line: err.line,
      column: err.column,
      detail: err.message.split('\n')[0]!.replace(/^Invalid TOML document: /, ''),
    }, { cause: err });
  }
}

/** A file value, converted to the raw string form the command line would have given, then parsed by the table. */
function fromFileValue(spec: AnySpec, value: unknown, where: string, line: number | undefined): unknown {
  const fail = (detail: string): never => {
    throw valueError(spec.flag, where, line, detail);
  };
  if (spec.arg === undefined) {
    if (typeof value !== 'boolean') fail(`expected true or false, e.g. ${spec.flag} = true`);
    return value ? parseWith(spec, [''], (d) => fail(d)) : false;
  }
  const scalar = (v: unknown): string => {
    if (typeof v === 'string') return v;
    // TOML's 0o660 is the number 432, whose digits pass as another octal mode: modes are strings.
    if (typeof v === 'number' && spec.arg === 'mode') return fail(`write the octal mode as a string, e.g. ${spec.flag} = "660"`);
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
    return fail(`expected ${spec.repeatable ? 'a string, a number or an array of them' : 'a string or a number'}, not ${describe(v)}`);
  };
  if (Array.isArray(value)) {
    if (!spec.repeatable) fail(`expected one value, not an array: --${spec.flag} is not repeatable`);
    return parseWith(spec, value.map(scalar), (d) => fail(d));
  }
  return parseWith(spec, [scalar(value)], (d) => fail(d));
}

/** An environment value: switches take 1/true/0/false, repeatable options a comma-separated list. */
function fromEnvValue(spec: AnySpec, raw: string, name: string): unknown {
  const fail = (detail: string): never => {
    throw valueError(spec.flag, name, undefined, detail);
  };
  if (spec.arg === undefined) {
    const word = raw.trim().toLowerCase();
    if (TRUE.has(word)) return parseWith(spec, [''], (d) => fail(d));
    if (FALSE.has(word)) return false;
    return fail(`expected 1, true, 0 or false, not ${JSON.stringify(raw)}`);
  }
  const raws = spec.repeatable ? raw.split(spec.envSeparator ?? ',').map((s) => s.trim()).filter((s) => s !== '') : [raw];
  return parseWith(spec, raws, (d) => fail(d));
}

/** Runs the table's parse over raw values as commander does: repeatable ones accumulate from an empty list. */
function parseWith(spec: AnySpec, raws: string[], fail: (detail: string) => never): unknown {
  const parse = spec.parse as (raw: string, previous: unknown) => unknown;
  let value: unknown = spec.repeatable ? [] : spec.default;
  for (const raw of raws) {
    try {
      value = parse(raw, value);
    } catch (err) {
      if (!isUwsgiError(err)) throw err;
      fail(err.message);
    }
  }
  return value;
}

function valueError(key: string, where: string, line: number | undefined, detail: string): UwsgiError {
  return new UwsgiError('ERR_CONFIG_VALUE', { key, source: `${where}${lineSuffix(line)}`, detail });
}

function lineSuffix(line: number | undefined): string {
  return line === undefined ? '' : ` line ${line}`;
}

/** The line of a top-level `key =` in the file, for messages (TOML parsers give values, not positions). */
function lineOf(text: string, key: string): number | undefined {
  const escaped = key.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  const pattern = new RegExp(`^\\s*(?:${escaped}|"${escaped}"|'${escaped}')\\s*=`);
  const index = text.split(/\r?\n/).findIndex((l) => pattern.test(l));
  return index === -1 ? undefined : index + 1;
}

/** TOML's words for its values: every object that is not an array or a date is a table. */
function describe(value: unknown): string {
  const described = describeValue(value);
  return described.startsWith('an object') ? 'a table' : described;
}

/** The candidate closest to `word` by edit distance (case-insensitive), for "did you mean"; a candidate that the
 * word begins (max-body for max-body-size) counts as one edit away. */
export function nearest(word: string, candidates: readonly string[]): string {
  let best = candidates[0] ?? '';
  let bestDistance = Infinity;
  const lower = word.toLowerCase();
  for (const candidate of candidates) {
    const other = candidate.toLowerCase();
    const distance = other.startsWith(lower) ? Math.min(1, editDistance(lower, other)) : editDistance(lower, other);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return best;
}

/** Levenshtein distance. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j]! + 1, current[j - 1]! + 1, previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length]!;
}

// --- --print-config ----------------------------------------------------------------------------------------

/** The chmod mode is printed in octal, as it is written; everything else from its parsed value. */
const RAW_FORM: Partial<Record<keyof Options, (value: never) => string>> = {
  chmodSocket: (mode: number) => mode.toString(8).padStart(3, '0'),
  sslSocket: (ssl: SslSocket) => formatSslSocket(ssl),
};

/**
 * One line per option, `key = value  # source`: itself a valid config file (options that cannot be in a file,
 * and unset ones, are commented out), so that `--print-config > app.toml` captures a running set-up.
 */
export function formatConfig(resolved: ResolvedConfig): string {
  const rows: Array<[string, string]> = [];
  const origin = (o: Origin): string => (o.where === undefined ? o.source : `${o.source} ${o.where}`);
  rows.push(
    resolved.app === undefined
      ? [`# ${APP_KEY} is unset`, origin(resolved.origins.app)]
      : [`${APP_KEY} = ${JSON.stringify(resolved.app)}`, origin(resolved.origins.app)],
  );
  for (const spec of SPECS) {
    const value = resolved.options[spec.name] as unknown;
    const from = origin(resolved.origins[spec.name]);
    if (value === undefined) rows.push([`# ${spec.flag} is unset`, from]);
    else {
      const line = `${spec.flag} = ${tomlValue(spec.name, value)}`;
      rows.push([NOT_IN_FILE.has(spec.flag) ? `# ${line}` : line, from]);
    }
  }
  const width = Math.max(...rows.map(([left]) => left.length));
  return rows.map(([left, from]) => `${left.padEnd(width)}  # ${from}\n`).join('');
}

function tomlValue(name: keyof Options, value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((v) => tomlValue(name, v)).join(', ')}]`;
  const custom = RAW_FORM[name] as ((v: unknown) => string) | undefined;
  if (custom !== undefined) return JSON.stringify(custom(value));
  if (typeof value === 'object' && value !== null && 'kind' in value) return JSON.stringify(formatSocketAddress(value as SocketAddress));
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(String(value));
}

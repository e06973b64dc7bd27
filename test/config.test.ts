// Where options come from (src/config.ts): command line > NODE_UWSGI_* > TOML file > defaults, every value through
// the options table's own parse, unknown keys named with the nearest known one, and --print-config's output.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../src/cli.js';
import {
  configPath,
  editDistance,
  envName,
  formatConfig,
  nearest,
  readConfigFile,
  resolveConfig,
  type ConfigInput,
  type ResolvedConfig,
} from '../src/config.js';
import { UwsgiError, isUwsgiError, type ErrorCode } from '../src/errors.js';
import { OPTIONS, defaultOptions } from '../src/options.js';

const FILE = '/etc/node-uwsgi/app.toml';

/** commander's view of a command line, as cli.ts hands it to resolveConfig. */
function commandLine(...args: string[]): Pick<ConfigInput, 'cli' | 'cliApp'> {
  const program = buildProgram();
  program.parse(['node', 'node-uwsgi', ...args]);
  return { cli: program.opts(), cliApp: program.args[0] };
}

function resolve(opts: { args?: string[]; env?: Record<string, string>; toml?: string }): ResolvedConfig {
  return resolveConfig({
    ...commandLine(...(opts.args ?? [])),
    env: opts.env ?? {},
    file: opts.toml === undefined ? undefined : { path: FILE, text: opts.toml },
  });
}

function failure(run: () => unknown, code: ErrorCode): UwsgiError {
  try {
    run();
  } catch (err) {
    if (isUwsgiError(err, code)) return err;
    throw new Error(`expected ${code}, got ${String(err)}`);
  }
  throw new Error(`expected ${code}, nothing was thrown`);
}

describe('resolveConfig: sources and precedence', () => {
  it('gives every default, from "default", with nothing set; commander leaves unset flags undefined', () => {
    const { cli } = commandLine('./app.js');
    for (const spec of OPTIONS) expect(cli[spec.name], spec.flag).toBeUndefined();
    const resolved = resolve({ args: ['./app.js'] });
    expect(resolved.options).toEqual(defaultOptions());
    for (const spec of OPTIONS) expect(resolved.origins[spec.name], spec.flag).toEqual({ source: 'default' });
    expect(resolved.app).toBe('./app.js');
    expect(resolved.origins.app).toEqual({ source: 'command line' });
  });

  it('takes the command line over the environment over the file over the default, option by option', () => {
    const toml = 'workers = 2\nmax-requests = 100\nharakiri = 30\n';
    const env = { NODE_UWSGI_WORKERS: '3', NODE_UWSGI_MAX_REQUESTS: '200' };
    const all = resolve({ args: ['--workers', '4'], env, toml });
    expect([all.options.workers, all.options.maxRequests, all.options.harakiri, all.options.maxRss]).toEqual([4, 200, 30, 0]);
    expect(all.origins.workers).toEqual({ source: 'command line' });
    expect(all.origins.maxRequests).toEqual({ source: 'environment', where: 'NODE_UWSGI_MAX_REQUESTS' });
    expect(all.origins.harakiri).toEqual({ source: 'file', where: FILE });
    expect(all.origins.maxRss).toEqual({ source: 'default' });

    expect(resolve({ env, toml }).options.workers).toBe(3);
    expect(resolve({ toml }).options.workers).toBe(2);
    expect(resolve({}).options.workers).toBe(1);
  });

  it('replaces a repeatable option from a lower source whole, never merges it', () => {
    const toml = 'socket = ["unix:/run/a.sock", "unix:/run/b.sock"]\n';
    expect(resolve({ toml }).options.socket).toEqual([
      { kind: 'unix', path: '/run/a.sock' },
      { kind: 'unix', path: '/run/b.sock' },
    ]);
    expect(resolve({ toml, env: { NODE_UWSGI_SOCKET: '127.0.0.1:4000' } }).options.socket).toEqual([{ kind: 'tcp', host: '127.0.0.1', port: 4000 }]);
    expect(resolve({ toml, args: ['--socket', '/run/c.sock', '--socket', ':5000'] }).options.socket).toEqual([
      { kind: 'unix', path: '/run/c.sock' },
      { kind: 'tcp', host: '127.0.0.1', port: 5000 },
    ]);
  });

  it('takes the app from the command line, NODE_UWSGI_APP or the file, in that order', () => {
    const toml = 'app = "./from-file.js"\n';
    expect(resolve({ toml }).app).toBe('./from-file.js');
    expect(resolve({ toml }).origins.app).toEqual({ source: 'file', where: FILE });
    expect(resolve({ toml, env: { NODE_UWSGI_APP: './from-env.js' } }).app).toBe('./from-env.js');
    expect(resolve({ toml, env: { NODE_UWSGI_APP: './from-env.js' }, args: ['./cli.js'] }).app).toBe('./cli.js');
    expect(resolve({}).app).toBeUndefined();
    expect(failure(() => resolve({ toml: 'app = 3\n' }), 'ERR_CONFIG_VALUE').message).toContain(`${FILE} line 1`);
  });
});

describe('resolveConfig: the TOML file', () => {
  it('converts typed values to the raw form and parses them with the table', () => {
    const toml = [
      '# a comment',
      'max-body-size = "10m"',
      'workers = 4',
      'graceful-timeout = 0.5',
      'access-log = true',
      'chmod-socket = "660"',
      'interface = "node"',
      'socket = ["unix:/run/a.sock"]',
      'allow-from = ["10.0.0.0/8", "192.0.2.1"]',
      'http = "127.0.0.1:8080"',
      'log-file = "/var/log/app.log"',
      'reload-on-change = false',
      '',
    ].join('\n');
    const { options, origins } = resolve({ toml });
    expect(options).toMatchObject({
      maxBodySize: 10 * 1024 * 1024,
      workers: 4,
      gracefulTimeout: 0.5,
      accessLog: true,
      chmodSocket: 0o660,
      interface: 'node',
      socket: [{ kind: 'unix', path: '/run/a.sock' }],
      allowFrom: ['10.0.0.0/8', '192.0.2.1'],
      http: [{ kind: 'tcp', host: '127.0.0.1', port: 8080 }],
      logFile: '/var/log/app.log',
      reloadOnChange: false,
    });
    expect(origins.reloadOnChange).toEqual({ source: 'file', where: FILE });
    expect(resolve({ toml: 'workers = "auto"\n' }).options.workers).toBe('auto');
  });

  it('refuses a socket mode written as a TOML number: 0o660 is 432, whose digits would pass as another mode', () => {
    for (const value of ['0o660', '660']) {
      const err = failure(() => resolve({ toml: `chmod-socket = ${value}\n` }), 'ERR_CONFIG_VALUE');
      expect(err.message).toContain('chmod-socket = "660"');
    }
  });

  it('names the nearest known key for an unknown one, with the file and line', () => {
    const err = failure(() => resolve({ toml: 'workers = 2\nmax-body-sise = "1m"\n' }), 'ERR_CONFIG_UNKNOWN_KEY');
    expect(err.message).toContain('"max-body-sise"');
    expect(err.message).toContain(`${FILE} line 2`);
    expect(err.message).toContain('did you mean "max-body-size"?');
    expect(failure(() => resolve({ toml: 'sockets = []\n' }), 'ERR_CONFIG_UNKNOWN_KEY').message).toContain('"socket"');
    expect(failure(() => resolve({ toml: 'ap = "./x.js"\n' }), 'ERR_CONFIG_UNKNOWN_KEY').message).toContain('"app"');
    // A table is not a way to nest options: its name is an unknown key.
    expect(failure(() => resolve({ toml: '[server]\nworkers = 2\n' }), 'ERR_CONFIG_UNKNOWN_KEY').message).toContain('"server"');
  });

  it('refuses config and print-config inside a file: they are for the command line and the environment', () => {
    const err = failure(() => resolve({ toml: 'config = "/etc/other.toml"\n' }), 'ERR_CONFIG_UNKNOWN_KEY');
    expect(err.message).toContain('NODE_UWSGI_CONFIG');
    failure(() => resolve({ toml: 'print-config = true\n' }), 'ERR_CONFIG_UNKNOWN_KEY');
  });

  it.each([
    ['max-body-size = "10x"', 'max-body-size', 'a size in bytes'],
    ['workers = 0', 'workers', 'an integer from 1 to 1024'],
    ['workers = true', 'workers', 'a string or a number'],
    ['access-log = "yes"', 'access-log', 'expected true or false'],
    ['interface = ["wsgi"]', 'interface', 'not repeatable'],
    ['socket = [true]', 'socket', 'an array of them'],
    ['socket = ["nowhere"]', 'socket', 'invalid socket address'],
    ['harakiri = 1979-05-27', 'harakiri', 'a date'],
    ['interface = { a = 1 }', 'interface', 'a table'],
    ['allow-from = ["10.0.0.0/33"]', 'allow-from', 'CIDR'],
  ])('names the file, line and key of a bad value: %s', (line, key, detail) => {
    const err = failure(() => resolve({ toml: `log-level = "info"\n\n${line}\n` }), 'ERR_CONFIG_VALUE');
    expect(err.message).toContain(`invalid ${key} in ${FILE} line 3`);
    expect(err.message).toContain(detail);
  });

  it('reports TOML syntax errors with the file, line and column', () => {
    const err = failure(() => resolve({ toml: 'workers = 2\nsocket = = "x"\n' }), 'ERR_CONFIG_PARSE');
    expect(err.message).toContain(FILE);
    expect(err.details).toMatchObject({ file: FILE, line: 2 });
    expect(failure(() => resolve({ toml: 'workers = 2\nworkers = 3\n' }), 'ERR_CONFIG_PARSE').details.line).toBe(2);
  });

  it('reads the file named by --config, else NODE_UWSGI_CONFIG; a missing one is ERR_CONFIG_FILE', () => {
    expect(configPath(commandLine('--config', '/a.toml').cli, { NODE_UWSGI_CONFIG: '/b.toml' })).toBe('/a.toml');
    expect(configPath({}, { NODE_UWSGI_CONFIG: '/b.toml' })).toBe('/b.toml');
    expect(configPath({}, { NODE_UWSGI_CONFIG: '' })).toBeUndefined();
    const dir = mkdtempSync(join(tmpdir(), 'nu-config-'));
    try {
      const err = failure(() => readConfigFile(join(dir, 'missing.toml')), 'ERR_CONFIG_FILE');
      expect(err.message).toContain(join(dir, 'missing.toml'));
      expect(err.message).toContain('ENOENT');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('resolveConfig: NODE_UWSGI_* variables', () => {
  it('names each variable after its flag in upper snake case', () => {
    expect(envName('max-body-size')).toBe('NODE_UWSGI_MAX_BODY_SIZE');
    expect(envName('workers')).toBe('NODE_UWSGI_WORKERS');
    for (const spec of OPTIONS) expect(envName(spec.flag)).toMatch(/^NODE_UWSGI_[A-Z_]+$/);
  });

  it('parses values as the command line does; switches take 1, true, 0 or false; lists are comma-separated', () => {
    const { options, origins } = resolve({
      env: {
        NODE_UWSGI_MAX_BODY_SIZE: '2k',
        NODE_UWSGI_SOCKET: 'unix:/run/a.sock, 127.0.0.1:4000',
        NODE_UWSGI_ALLOW_FROM: '10.0.0.0/8,192.0.2.1',
        NODE_UWSGI_ACCESS_LOG: 'TRUE',
        NODE_UWSGI_RELOAD_ON_CHANGE: '0',
        NODE_UWSGI_WORKERS: 'auto',
      },
    });
    expect(options).toMatchObject({
      maxBodySize: 2048,
      socket: [
        { kind: 'unix', path: '/run/a.sock' },
        { kind: 'tcp', host: '127.0.0.1', port: 4000 },
      ],
      allowFrom: ['10.0.0.0/8', '192.0.2.1'],
      accessLog: true,
      reloadOnChange: false,
      workers: 'auto',
    });
    expect(origins.reloadOnChange).toEqual({ source: 'environment', where: 'NODE_UWSGI_RELOAD_ON_CHANGE' });
    expect(resolve({ env: { NODE_UWSGI_ACCESS_LOG: '1' } }).options.accessLog).toBe(true);
    // false in the environment turns off what the file turned on.
    expect(resolve({ toml: 'access-log = true\n', env: { NODE_UWSGI_ACCESS_LOG: 'false' } }).options.accessLog).toBe(false);
  });

  it('treats an empty variable as unset', () => {
    const resolved = resolve({ toml: 'workers = 2\n', env: { NODE_UWSGI_WORKERS: '', NODE_UWSGI_APP: '' } });
    expect(resolved.options.workers).toBe(2);
    expect(resolved.origins.workers.source).toBe('file');
    expect(resolved.app).toBeUndefined();
  });

  it('names the variable of a bad value', () => {
    const err = failure(() => resolve({ env: { NODE_UWSGI_MAX_BODY_SIZE: 'lots' } }), 'ERR_CONFIG_VALUE');
    expect(err.message).toContain('invalid max-body-size in NODE_UWSGI_MAX_BODY_SIZE');
    expect(failure(() => resolve({ env: { NODE_UWSGI_ACCESS_LOG: 'yes' } }), 'ERR_CONFIG_VALUE').message).toContain('expected 1, true, 0 or false');
  });

  it('refuses an unknown variable, naming the nearest one, and ignores the internal ones and other prefixes', () => {
    const err = failure(() => resolve({ env: { NODE_UWSGI_WORKRES: '2' } }), 'ERR_CONFIG_UNKNOWN_KEY');
    expect(err.message).toContain('NODE_UWSGI_WORKRES');
    expect(err.message).toContain('did you mean NODE_UWSGI_WORKERS?');
    expect(failure(() => resolve({ env: { NODE_UWSGI_MAX_BODY: '1m' } }), 'ERR_CONFIG_UNKNOWN_KEY').message).toContain('NODE_UWSGI_MAX_BODY_SIZE');
    const internal = resolve({ env: { NODE_UWSGI_WORKER: '{}', NODE_UWSGI_SCHED: 'rr', NODE_UWSGI: 'x', UWSGI_WORKERS: '9' } });
    expect(internal.options).toEqual(defaultOptions());
  });
});

describe('nearest', () => {
  it('is the smallest edit distance', () => {
    expect(editDistance('kitten', 'sitting')).toBe(3);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('same', 'same')).toBe(0);
    expect(nearest('wokers', ['socket', 'workers', 'harakiri'])).toBe('workers');
    expect(nearest('LOG-FILE', ['log-file', 'log-level'])).toBe('log-file');
    expect(nearest('max-body', ['max-vars', 'max-body-size'])).toBe('max-body-size');
  });
});

describe('formatConfig (--print-config)', () => {
  const toml = 'app = "./app.js"\nworkers = 2\nchmod-socket = "660"\nsocket = ["unix:/run/a.sock", "[::1]:4000"]\n';
  const resolved = (): ResolvedConfig =>
    resolve({ toml, env: { NODE_UWSGI_MAX_BODY_SIZE: '10m' }, args: ['--access-log', '--config', FILE, '--print-config'] });

  it('prints every option once, with its value and where it came from', () => {
    const lines = formatConfig(resolved()).trimEnd().split('\n');
    expect(lines).toHaveLength(OPTIONS.length + 1);
    const line = (key: string): string => lines.find((l) => new RegExp(`^(# )?${key}[ =]`).test(l)) ?? `(no line for ${key})`;
    expect(line('app')).toMatch(/^app += "\.\/app\.js" +# file \/etc\/node-uwsgi\/app\.toml$/);
    expect(line('workers')).toMatch(/^workers += 2 +# file \/etc\/node-uwsgi\/app\.toml$/);
    expect(line('chmod-socket')).toMatch(/= "660" +# file/);
    expect(line('socket')).toMatch(/^socket += \["unix:\/run\/a\.sock", "\[::1\]:4000"\] +# file/);
    expect(line('max-body-size')).toMatch(/^max-body-size += 10485760 +# environment NODE_UWSGI_MAX_BODY_SIZE$/);
    expect(line('access-log')).toMatch(/^access-log += true +# command line$/);
    expect(line('interface')).toMatch(/^interface += "auto" +# default$/);
    expect(line('log-file')).toMatch(/^# log-file is unset +# default$/);
    // Options a file cannot hold are printed as comments.
    expect(line('config')).toMatch(/^# config = "\/etc\/node-uwsgi\/app\.toml" +# command line$/);
    expect(line('print-config')).toMatch(/^# print-config = true +# command line$/);
    for (const spec of OPTIONS) expect(lines.filter((l) => new RegExp(`^(# )?${spec.flag}[ =]`).test(l)), spec.flag).toHaveLength(1);
  });

  it('is itself a config file that gives the same options back', () => {
    const first = resolved();
    const again = resolve({ toml: formatConfig(first) });
    expect(again.app).toBe(first.app);
    expect({ ...again.options, config: first.options.config, printConfig: true }).toEqual(first.options);
  });
});

describe('--backlog', () => {
  it('comes from the command line, NODE_UWSGI_BACKLOG or the file key backlog; unset means somaxconn', () => {
    expect(resolve({}).options.backlog).toBeUndefined();
    expect(resolve({ toml: 'backlog = 64\n' }).options.backlog).toBe(64);
    expect(resolve({ toml: 'backlog = 64\n', env: { NODE_UWSGI_BACKLOG: '128' } }).options.backlog).toBe(128);
    expect(resolve({ args: ['--backlog', '4096'], env: { NODE_UWSGI_BACKLOG: '128' } }).options.backlog).toBe(4096);
    expect(failure(() => resolve({ args: ['--backlog', '0'] }), 'ERR_OPTION_INVALID').message).toContain('--backlog');
    expect(failure(() => resolve({ env: { NODE_UWSGI_BACKLOG: 'lots' } }), 'ERR_CONFIG_VALUE').message).toContain('NODE_UWSGI_BACKLOG');
  });
});

describe('--ssl-socket', () => {
  const A = '10.0.0.11:3031,/etc/node-uwsgi/server.crt,/etc/node-uwsgi/server.key,/etc/node-uwsgi/ca.crt';
  const B = 'unix:/run/app/tls.sock,/srv/cert.pem,/srv/key.pem';
  const parsed = [
    { address: { kind: 'tcp', host: '10.0.0.11', port: 3031 }, cert: '/etc/node-uwsgi/server.crt', key: '/etc/node-uwsgi/server.key', ca: '/etc/node-uwsgi/ca.crt' },
    { address: { kind: 'unix', path: '/run/app/tls.sock' }, cert: '/srv/cert.pem', key: '/srv/key.pem' },
  ];

  it('comes from the command line (repeatable), the file (an array) or the environment (; between sockets)', () => {
    expect(resolve({}).options.sslSocket).toEqual([]);
    expect(resolve({ args: ['app.js', '--ssl-socket', A, '--ssl-socket', B] }).options.sslSocket).toEqual(parsed);
    expect(resolve({ toml: `ssl-socket = [${JSON.stringify(A)}, ${JSON.stringify(B)}]\n` }).options.sslSocket).toEqual(parsed);
    expect(resolve({ env: { NODE_UWSGI_SSL_SOCKET: `${A}; ${B}` } }).options.sslSocket).toEqual(parsed);
  });

  it('refuses a value without its files, or an address --socket would refuse, naming the option', () => {
    expect(failure(() => resolve({ args: ['app.js', '--ssl-socket', '10.0.0.11:3031,/a.crt'] }), 'ERR_OPTION_INVALID').message).toContain('--ssl-socket');
    expect(failure(() => resolve({ args: ['app.js', '--ssl-socket', '10.0.0.11:3031,/a.crt,,/ca.crt'] }), 'ERR_OPTION_INVALID').message).toContain('ADDR,CERT,KEY');
    failure(() => resolve({ args: ['app.js', '--ssl-socket', 'nowhere,/a.crt,/a.key'] }), 'ERR_SOCKET_ADDRESS');
    expect(failure(() => resolve({ env: { NODE_UWSGI_SSL_SOCKET: `${A},extra` } }), 'ERR_CONFIG_VALUE').message).toContain('NODE_UWSGI_SSL_SOCKET');
  });

  it('leaves out the default --socket when only --ssl-socket is given, not one given as well', () => {
    expect(resolve({ args: ['app.js', '--ssl-socket', B] }).options.socket).toEqual([]);
    expect(resolve({ toml: `ssl-socket = ${JSON.stringify(B)}\n` }).options.socket).toEqual([]);
    expect(resolve({ args: ['app.js', '--ssl-socket', B, '--socket', 'unix:/run/a.sock'] }).options.socket).toEqual([{ kind: 'unix', path: '/run/a.sock' }]);
    expect(resolve({ args: ['app.js'] }).options.socket).toEqual([{ kind: 'tcp', host: '127.0.0.1', port: 3031 }]);
  });

  it('prints as it is written, and --print-config gives the same sockets back', () => {
    const first = resolve({ args: ['app.js', '--ssl-socket', A, '--ssl-socket', B] });
    const text = formatConfig(first);
    expect(text).toContain(`ssl-socket = [${JSON.stringify(A)}, ${JSON.stringify(B)}]`);
    expect(resolve({ toml: text }).options.sslSocket).toEqual(parsed);
  });
});

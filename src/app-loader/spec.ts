// The app spec `path-or-package[:export]` (`:name()` calls a factory): parsed here, without importing anything,
// for the loader and for the master's --reload-on-change watcher (which must not load the app).
import { isAbsolute } from 'node:path';
import { UwsgiError } from '../errors.js';

export interface AppSpec {
  /** The module: a path (relative to cwd) or a package name. */
  module: string;
  /** The export to use; undefined means default, then application, app, handler. */
  exportName: string | undefined;
  /** `:name()`: call the export (a factory) and use what it returns (awaited). */
  factory: boolean;
}

const EXPORT = /^(?:[A-Za-z_$][\w$]*)(?:\(\))?$/;

/** Splits `./app.js:createApp()` into module, export and whether to call it. A colon that is not followed by an
 * identifier belongs to the path. */
export function parseAppSpec(spec: string, cwd = process.cwd()): AppSpec {
  if (typeof spec !== 'string' || spec.trim() === '') {
    throw new UwsgiError('ERR_APP_NOT_FOUND', { spec: JSON.stringify(spec), cwd });
  }
  const colon = spec.lastIndexOf(':');
  const tail = colon === -1 ? '' : spec.slice(colon + 1);
  if (colon > 0 && EXPORT.test(tail)) {
    const factory = tail.endsWith('()');
    return { module: spec.slice(0, colon), exportName: factory ? tail.slice(0, -2) : tail, factory };
  }
  return { module: spec, exportName: undefined, factory: false };
}

/** A module named as a path (`./app.js`, `/srv/app`, `app.mjs`) rather than a package name. */
export function looksLikePath(module: string): boolean {
  return module.startsWith('.') || isAbsolute(module) || /\.(?:[cm]?js|[cm]?ts|json)$/.test(module);
}

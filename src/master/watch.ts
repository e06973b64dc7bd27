// --reload-on-change (development): watches the app's directory tree and reports changed files, debounced, so
// that the master can start the same rolling reload as SIGHUP.
//
// One non-recursive fs.watch per directory, walked here, rather than fs.watch's `recursive`: on Linux, Node 20
// implements `recursive` by walking the whole tree itself, node_modules included (thousands of inotify watches for
// a framework app), with no way to leave a directory out.
import { readdirSync, statSync, watch, type FSWatcher } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { looksLikePath, parseAppSpec } from '../app-loader/spec.js';

export const DEBOUNCE_MS = 300;
/** A guard against watching a whole disk by mistake (the cwd of a service started in /). */
export const MAX_DIRECTORIES = 2000;

/** The directory to watch: the app file's, when the spec is a path; the cwd for a package name. */
export function watchRoot(spec: string, cwd: string): string {
  const module = parseAppSpec(spec, cwd).module;
  return looksLikePath(module) ? dirname(resolve(cwd, module)) : cwd;
}

/** node_modules, .git and every dotfile or dot-directory, editors' backups (`app.js~`), and `also` (the log file
 * and Unix sockets, which change while serving). */
export function isIgnored(root: string, path: string, also: readonly string[] = []): boolean {
  if (also.some((p) => path === p || path.startsWith(`${p}.`))) return true;
  const parts = relative(root, path).split(sep);
  return parts.some((part) => part === 'node_modules' || part.startsWith('.') || part.endsWith('~'));
}

export interface TreeWatcher {
  readonly directories: number;
  close(): void;
}

/**
 * Calls `onChange` with the files changed, once they have been quiet for `debounceMs`. New directories are
 * watched as they appear; a directory that goes away drops its watcher.
 */
export function watchTree(
  root: string,
  onChange: (files: string[]) => void,
  opts: { ignore?: readonly string[]; debounceMs?: number; onError?: (err: Error, directory: string) => void } = {},
): TreeWatcher {
  const watchers = new Map<string, FSWatcher>();
  const pending = new Set<string>();
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  const flush = (): void => {
    timer = undefined;
    const files = [...pending];
    pending.clear();
    if (!closed && files.length > 0) onChange(files);
  };

  const add = (directory: string): void => {
    if (closed || watchers.has(directory) || watchers.size >= MAX_DIRECTORIES) return;
    let watcher: FSWatcher;
    try {
      watcher = watch(directory, (_event, name) => {
        const path = name === null ? directory : join(directory, name.toString());
        if (isIgnored(root, path, opts.ignore)) return;
        try {
          if (statSync(path).isDirectory() && !watchers.has(path)) walk(path);
        } catch {
          // Gone (a rename, a deletion): the change still counts, and a directory's watchers go with it (Linux
          // raises no error on them), so that one re-created there (rm -rf dist && build) is watched anew.
          drop(path);
        }
        pending.add(path);
        if (timer !== undefined) clearTimeout(timer);
        timer = setTimeout(flush, opts.debounceMs ?? DEBOUNCE_MS);
      });
    } catch (err) {
      opts.onError?.(err as Error, directory);
      return;
    }
    watcher.on('error', () => {
      watcher.close();
      watchers.delete(directory);
    });
    watchers.set(directory, watcher);
  };

  const drop = (path: string): void => {
    for (const [directory, watcher] of watchers) {
      if (directory === path || directory.startsWith(path + sep)) {
        watcher.close();
        watchers.delete(directory);
      }
    }
  };

  const walk = (directory: string): void => {
    if (watchers.size >= MAX_DIRECTORIES) return;
    add(directory);
    let entries;
    try {
      entries = readdirSync(directory, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const path = join(directory, entry.name);
      if (entry.isDirectory() && !isIgnored(root, path, opts.ignore)) walk(path);
    }
  };

  walk(root);
  return {
    get directories() {
      return watchers.size;
    },
    close() {
      closed = true;
      if (timer !== undefined) clearTimeout(timer);
      for (const watcher of watchers.values()) watcher.close();
      watchers.clear();
    },
  };
}

// Per-test clean-up for tests that start processes and make temp dirs: what a test defers runs after it, last
// first, whether it passed or not.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

export interface Cleanups {
  /** Runs `fn` after the current test. */
  defer(fn: () => unknown): void;
  /** A fresh temp dir, removed after the current test. */
  tempDir(): string;
}

/** Call once at a test file's top level: registers the afterEach hook. */
export function useCleanups(prefix: string): Cleanups {
  let pending: Array<() => unknown> = [];
  afterEach(async () => {
    const run = pending.reverse();
    pending = [];
    for (const fn of run) await fn();
  });
  return {
    defer: (fn) => pending.push(fn),
    tempDir() {
      const dir = mkdtempSync(join(tmpdir(), prefix));
      pending.push(() => rmSync(dir, { recursive: true, force: true }));
      return dir;
    },
  };
}

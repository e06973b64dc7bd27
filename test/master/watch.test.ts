// --reload-on-change's tree watcher on the real file system.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { watchTree, type TreeWatcher } from '../../src/master/watch.js';

let watcher: TreeWatcher | undefined;
let dir = '';
afterEach(() => {
  watcher?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function until(check: () => boolean, what: string): Promise<void> {
  const started = Date.now();
  while (!check()) {
    if (Date.now() - started > 10_000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('watchTree', () => {
  it('sees a file written in a directory that was deleted and created again (rm -rf dist && build)', async () => {
    dir = mkdtempSync(join(tmpdir(), 'nu-watch-'));
    mkdirSync(join(dir, 'lib'));
    const changes: string[] = [];
    watcher = watchTree(dir, (files) => changes.push(...files), { debounceMs: 50 });
    expect(watcher.directories).toBe(2);

    rmSync(join(dir, 'lib'), { recursive: true });
    await until(() => changes.includes(join(dir, 'lib')), 'the deletion');
    await until(() => watcher!.directories === 1, 'the watcher of lib/ dropped');
    mkdirSync(join(dir, 'lib'));
    await until(() => watcher!.directories === 2, 'the new lib/ watched');
    writeFileSync(join(dir, 'lib', 'x.js'), 'export {};\n');
    await until(() => changes.includes(join(dir, 'lib', 'x.js')), 'the new file in the new lib/');
  });

  it('ignores node_modules and dotfiles', async () => {
    dir = mkdtempSync(join(tmpdir(), 'nu-watch-'));
    mkdirSync(join(dir, 'node_modules'));
    const changes: string[] = [];
    watcher = watchTree(dir, (files) => changes.push(...files), { debounceMs: 50 });
    expect(watcher.directories).toBe(1);
    writeFileSync(join(dir, 'node_modules', 'a.js'), '');
    writeFileSync(join(dir, '.hidden'), '');
    writeFileSync(join(dir, 'app.js'), '');
    await until(() => changes.includes(join(dir, 'app.js')), 'the app file');
    expect(changes.filter((f) => f.includes('node_modules') || f.includes('.hidden'))).toEqual([]);
  });
});

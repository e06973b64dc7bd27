// The Node flags a worker is started with (master.ts workerExecArgv): the master's own, V8's allocation-site
// pretenuring off unless the master was given the flag itself, and --disable-sigusr1 where Node has it.
import { describe, expect, it } from 'vitest';
import { workerExecArgv } from '../../src/master/master.js';

describe('workerExecArgv', () => {
  it("keeps the master's flags and turns V8's allocation-site pretenuring off", () => {
    const argv = workerExecArgv(['--enable-source-maps']);
    expect(argv[0]).toBe('--enable-source-maps');
    expect(argv).toContain('--no-allocation-site-pretenuring');
    expect(argv.includes('--disable-sigusr1')).toBe(process.allowedNodeEnvironmentFlags.has('--disable-sigusr1'));
  });

  it('leaves pretenuring as the master was told, in either spelling', () => {
    for (const flag of ['--allocation-site-pretenuring', '--allocation_site_pretenuring', '--no-allocation-site-pretenuring', '--noallocation-site-pretenuring']) {
      expect(workerExecArgv([flag]).filter((f) => /pretenuring/.test(f))).toEqual([flag]);
    }
  });

  it('is a flag this Node accepts: a process started with it runs', async () => {
    const { spawnSync } = await import('node:child_process');
    const run = spawnSync(process.execPath, [...workerExecArgv([]), '-e', 'process.stdout.write(process.execArgv.join(" "))'], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toContain('--no-allocation-site-pretenuring');
  });
});

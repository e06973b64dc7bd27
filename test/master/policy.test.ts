// The master's policy driven with a fake clock: plain numbers as `now`, a fixed `random`, no processes or timers.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BACKOFF_MAX,
  BACKOFF_MIN,
  Policy,
  STABLE_AFTER,
  type Action,
  type Cause,
  type InflightRequest,
  type LogLevel,
  type PolicyConfig,
  type PolicyEvent,
} from '../../src/master/policy.js';

/** master.ts ticks every 100 ms. */
const TICK = 100;

const DEFAULTS: PolicyConfig = {
  workers: 3,
  gracefulTimeout: 30_000,
  harakiri: 0,
  bootTimeout: 60_000,
  maxRequests: 0,
  maxRequestsJitter: 0,
  maxRss: 0,
  rssSamples: 3,
  reloadBatch: 1,
  random: () => 0,
};

type Signal = Extract<PolicyEvent, { type: 'signal' }>['signal'];
type Stamped = Action & { at: number };

/**
 * Feeds events to a Policy at a fake clock and records every action. It also checks, after each event, what
 * must hold whatever the sequence: actions name only live workers, no worker is drained or killed twice, and
 * while running, counted workers plus scheduled respawns equal the desired number.
 */
class Sim {
  now = 0;
  readonly policy: Policy;
  readonly log: Stamped[] = [];
  /** Spawned and not yet exited. */
  readonly live = new Set<number>();
  private readonly drained = new Set<number>();
  private readonly killed = new Set<number>();
  private mark = 0;
  /** Called after every event; the ready-count tests hook in here. */
  onStep: (() => void) | undefined;

  constructor(config: Partial<PolicyConfig> = {}) {
    this.policy = new Policy({ ...DEFAULTS, ...config });
  }

  feed(event: PolicyEvent): Action[] {
    const actions = this.policy.handle(event, this.now);
    for (const action of actions) {
      this.log.push({ ...action, at: this.now });
      if (action.type === 'spawn') {
        check(!this.live.has(action.id), `spawn of a worker id in use: ${action.id}`);
        this.live.add(action.id);
      } else if (action.type === 'drain' || action.type === 'kill') {
        check(this.live.has(action.id), `${action.type} of unknown worker ${action.id}`);
        const seen = action.type === 'drain' ? this.drained : this.killed;
        check(!seen.has(action.id), `${action.type} of worker ${action.id} twice`);
        check(!(action.type === 'drain' && this.killed.has(action.id)), `drain of killed worker ${action.id}`);
        seen.add(action.id);
      }
    }
    if (this.policy.running) {
      // Never short, counting workers killed and not yet exited, whose exit brings their replacement. A surplus
      // after TTOU waits for the next tick and for starting workers to be ready (replacements and the last ready
      // worker are not taken); then it is exact.
      const planned = this.counted() + this.scheduledRespawns();
      const awaiting = this.awaitingReplacement();
      const desired = this.policy.desiredWorkers;
      check(planned + awaiting >= desired, `short of workers: ${planned} + ${awaiting} awaiting < ${desired}`);
      if (event.type === 'tick' && awaiting === 0 && this.ids('starting').length === 0) check(planned === desired, `${planned} workers, ${desired} desired`);
    }
    this.onStep?.();
    return actions;
  }

  /** Actions since the previous call. */
  take(): Stamped[] {
    const out = this.log.slice(this.mark);
    this.mark = this.log.length;
    return out;
  }

  start(): Action[] {
    return this.feed({ type: 'start' });
  }

  ready(id: number): Action[] {
    return this.feed({ type: 'ready', id });
  }

  readyAll(): Action[] {
    return this.ids('starting').flatMap((id) => this.ready(id));
  }

  exit(id: number, code: number | null = 1, signal: string | null = null): Action[] {
    this.live.delete(id);
    return this.feed({ type: 'exit', id, code, signal });
  }

  /** Exits every worker the policy drained or killed, as the real processes would. */
  exitRetired(): Action[] {
    return [...this.ids('draining'), ...this.ids('killed')].flatMap((id) => this.exit(id, 0));
  }

  beat(id: number, requests = 0, rss = 0, inflight?: InflightRequest[]): Action[] {
    return this.feed({ type: 'heartbeat', id, requests, rss, ...(inflight ? { inflight } : {}) });
  }

  signal(signal: Signal): Action[] {
    return this.feed({ type: 'signal', signal });
  }

  /** Advances the clock by `ms`, with a 'tick' every 100 ms as master.ts does. */
  tick(ms: number): Action[] {
    const out: Action[] = [];
    for (let left = ms; left > 0; left -= TICK) {
      this.now += Math.min(TICK, left);
      out.push(...this.feed({ type: 'tick' }));
    }
    return out;
  }

  /** Ticks until the policy spawns a worker; returns that tick's actions. */
  tickUntilSpawn(limit = 60_000): Action[] {
    for (let waited = 0; waited <= limit; waited += TICK) {
      const actions = this.tick(TICK);
      if (actions.some((a) => a.type === 'spawn')) return actions;
    }
    throw new Error('no spawn');
  }

  ids(state: 'starting' | 'ready' | 'draining' | 'killed'): number[] {
    return [...this.policy.workers.values()].filter((w) => w.state === state).map((w) => w.id);
  }

  /** Workers that count towards the desired number: starting or ready, and not being replaced. */
  counted(): number {
    return [...this.policy.workers.values()].filter((w) => (w.state === 'starting' || w.state === 'ready') && w.retiring === undefined).length;
  }

  /** Killed for harakiri or boot-timeout and not yet gone: their exit is what brings a replacement. */
  awaitingReplacement(): number {
    return [...this.policy.workers.values()].filter((w) => w.state === 'killed' && w.retiring === undefined && (w.cause === 'harakiri' || w.cause === 'boot-timeout')).length;
  }

  scheduledRespawns(): number {
    // Private, and the invariant's other half: read it rather than widen the class for a test.
    return (this.policy as unknown as { respawns: number[] }).respawns.length;
  }

  /** A booted pool: start, all ready. */
  static booted(config: Partial<PolicyConfig> = {}): Sim {
    const sim = new Sim(config);
    sim.start();
    sim.readyAll();
    expect(sim.policy.running).toBe(true);
    sim.take();
    return sim;
  }
}

/** Cheaper than expect() on the hot path of the property test, which feeds thousands of events per run. */
function check(condition: boolean, message: string): void {
  if (!condition) throw new Error(message);
}

/** Actions other than logs; spawn actions without their maxRequests (asserted on its own below). */
function effects(actions: Action[]): Action[] {
  return actions.filter((a) => a.type !== 'log').map(withoutThreshold);
}

function withoutThreshold(action: Action): Action {
  if (action.type !== 'spawn') return action;
  const { maxRequests: _threshold, ...rest } = action;
  return rest as Action;
}

function logs(actions: Action[], level?: LogLevel): Array<Extract<Action, { type: 'log' }>> {
  return actions.filter((a): a is Extract<Action, { type: 'log' }> => a.type === 'log' && (level === undefined || a.level === level));
}

function spawns(actions: Action[]): Array<Extract<Action, { type: 'spawn' }>> {
  return actions.filter((a): a is Extract<Action, { type: 'spawn' }> => a.type === 'spawn').map(withoutThreshold) as Array<Extract<Action, { type: 'spawn' }>>;
}

function byCause(actions: Action[], type: 'drain' | 'kill', cause?: Cause): number[] {
  return actions.filter((a) => a.type === type && (cause === undefined || a.cause === cause)).map((a) => (a as { id: number }).id);
}

describe('boot', () => {
  it('spawns N workers and reports ready, with the boot time, once all are ready and not before', () => {
    const sim = new Sim();
    expect(sim.start()).toEqual([
      { type: 'spawn', id: 1, generation: 1, maxRequests: 0 },
      { type: 'spawn', id: 2, generation: 1, maxRequests: 0 },
      { type: 'spawn', id: 3, generation: 1, maxRequests: 0 },
    ]);
    sim.tick(300);
    expect(effects(sim.ready(2))).toEqual([]);
    sim.tick(200);
    expect(effects(sim.ready(1))).toEqual([]);
    expect(sim.policy.running).toBe(false);
    sim.tick(250);
    expect(effects(sim.ready(3))).toEqual([{ type: 'ready', reason: 'boot', workers: 3, ms: 750 }]);
    expect(sim.policy.running).toBe(true);
    expect(effects(sim.tick(5000))).toEqual([]);
  });

  it('halts with the loader error and exit code 1 when a worker cannot load the app, without respawning', () => {
    const sim = new Sim();
    sim.start();
    sim.ready(1);
    sim.take();
    sim.feed({ type: 'boot-failed', id: 2, code: 'ERR_APP_IMPORT', message: 'cannot import app.js: SyntaxError' });
    const actions = sim.exit(2, 1);
    expect(logs(actions, 'fatal')).toEqual([
      {
        type: 'log',
        level: 'fatal',
        msg: 'a worker failed to start the app: stopping',
        fields: { worker: 2, code: 1, signal: null, errorCode: 'ERR_APP_IMPORT', error: 'cannot import app.js: SyntaxError' },
      },
    ]);
    expect(effects(actions)).toEqual([
      { type: 'kill', id: 1, cause: 'halt' },
      { type: 'kill', id: 3, cause: 'halt' },
    ]);
    // The others fail the same way, or are killed: no respawn, and exit 1 only when the last has gone.
    sim.feed({ type: 'boot-failed', id: 3, code: 'ERR_APP_IMPORT', message: 'cannot import app.js: SyntaxError' });
    expect(effects(sim.exit(3, 1))).toEqual([]);
    expect(effects(sim.tick(20_000))).toEqual([]);
    expect(effects(sim.exit(1, null, 'SIGKILL'))).toEqual([{ type: 'exit', code: 1 }]);
    expect(spawns(sim.log)).toHaveLength(3);
    expect(effects(sim.tick(1000))).toEqual([]);
  });

  it('logs where the app\'s error was raised with the halt, at fatal level', () => {
    const sim = new Sim();
    sim.start();
    const at = ['file:///srv/app/lib/dep.mjs:3', 'const broken = ;', '               ^'];
    sim.feed({ type: 'boot-failed', id: 1, code: 'ERR_APP_IMPORT_FAILED', message: "importing the app module /srv/app/app.mjs failed: Unexpected token ';'", at });
    expect(logs(sim.exit(1, 3), 'fatal')[0]).toMatchObject({ fields: { errorCode: 'ERR_APP_IMPORT_FAILED', errorAt: at } });
  });

  it('halts when a worker does not become ready within bootTimeout', () => {
    const sim = new Sim({ workers: 2, bootTimeout: 5000 });
    sim.start();
    sim.ready(1);
    expect(effects(sim.tick(5000))).toEqual([]);
    const timedOut = sim.tick(TICK);
    expect(effects(timedOut)).toEqual([{ type: 'kill', id: 2, cause: 'boot-timeout' }]);
    expect(logs(timedOut, 'error')[0]).toMatchObject({ msg: 'worker did not become ready in time: killed', fields: { worker: 2, bootTimeoutMs: 5000 } });
    const actions = sim.exit(2, null, 'SIGKILL');
    expect(logs(actions, 'fatal')).toHaveLength(1);
    expect(effects(actions)).toEqual([{ type: 'kill', id: 1, cause: 'halt' }]);
    expect(effects(sim.exit(1, null, 'SIGKILL'))).toEqual([{ type: 'exit', code: 1 }]);
    expect(spawns(sim.log)).toHaveLength(2);
  });
});

describe('crash recovery', () => {
  it('respawns at once a worker that dies after good service', () => {
    const sim = Sim.booted();
    sim.tick(STABLE_AFTER + TICK);
    sim.take();
    const actions = sim.exit(2, null, 'SIGKILL');
    expect(effects(actions)).toEqual([{ type: 'spawn', id: 4, generation: 1 }]);
    expect(logs(actions, 'error')).toEqual([
      { type: 'log', level: 'error', msg: 'worker died', fields: { worker: 2, code: null, signal: 'SIGKILL', requests: 0 } },
    ]);
  });

  it('backs off a worker that keeps dying: BACKOFF_MIN doubling to BACKOFF_MAX, and stays there', () => {
    const sim = Sim.booted({ workers: 1 });
    let id = 1;
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      sim.tick(1000);
      const crashedAt = sim.now;
      const died = sim.exit(id);
      expect(effects(died)).toEqual([]);
      const spawned = spawns(sim.tickUntilSpawn());
      expect(spawned).toHaveLength(1);
      delays.push(sim.now - crashedAt);
      id = spawned[0]!.id;
      sim.tick(500);
      sim.ready(id);
    }
    expect(BACKOFF_MIN).toBe(100);
    expect(delays).toEqual([100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
    expect(Math.max(...delays)).toBe(BACKOFF_MAX);
    expect(logs(sim.log, 'warn').filter((l) => l.msg === 'respawning after a delay: workers keep dying').map((l) => l.fields.delayMs)).toEqual(delays);
  });

  it('forgets the failures after STABLE_AFTER of good service', () => {
    const sim = Sim.booted({ workers: 1 });
    let id = 1;
    for (let i = 0; i < 3; i++) {
      sim.tick(1000);
      sim.exit(id);
      id = spawns(sim.tickUntilSpawn())[0]!.id;
      sim.ready(id);
    }
    sim.tick(STABLE_AFTER + TICK);
    // After good service a crash is a new first failure.
    expect(effects(sim.exit(id))).toEqual([{ type: 'spawn', id: id + 1, generation: 1 }]);
    id++;
    sim.ready(id);
    sim.tick(1000);
    const crashedAt = sim.now;
    sim.exit(id);
    sim.tickUntilSpawn();
    expect(sim.now - crashedAt).toBe(BACKOFF_MIN);
  });

  it('does not reset the backoff while the respawned worker has yet to serve', () => {
    // Regression: failures were forgotten STABLE_AFTER after the last crash, so a 10 s backoff wait counted as
    // good service and a worker that dies soon after each start went back to 100 ms respawns.
    const sim = Sim.booted({ workers: 1 });
    let id = 1;
    for (let i = 0; i < 7; i++) {
      sim.tick(4000);
      sim.exit(id);
      id = spawns(sim.tickUntilSpawn())[0]!.id;
      sim.tick(500);
      sim.ready(id);
    }
    // The last wait was 6400 ms: 6400 + 500 boot + 4000 serving is past STABLE_AFTER since the crash.
    sim.tick(4000);
    const crashedAt = sim.now;
    sim.exit(id);
    sim.tickUntilSpawn();
    expect(sim.now - crashedAt).toBe(BACKOFF_MAX);
  });
});

describe('stop', () => {
  it('SIGTERM drains the ready workers, kills the starting ones, and exits 0 once all have gone', () => {
    const sim = Sim.booted({ gracefulTimeout: 2000 });
    sim.signal('SIGTTIN');
    sim.take();
    const actions = sim.signal('SIGTERM');
    expect(effects(actions)).toEqual([
      { type: 'stopping', graceful: true },
      { type: 'drain', id: 1, cause: 'stop' },
      { type: 'drain', id: 2, cause: 'stop' },
      { type: 'drain', id: 3, cause: 'stop' },
      { type: 'kill', id: 4, cause: 'stop' },
    ]);
    expect(logs(actions, 'info')[0]).toMatchObject({ msg: 'stopping: listening sockets closed, finishing in-flight requests', fields: { signal: 'SIGTERM' } });
    expect(sim.policy.running).toBe(false);
    // No respawns while stopping, whatever happens.
    expect(effects(sim.exit(4, null, 'SIGKILL'))).toEqual([]);
    expect(effects(sim.exit(1, 0))).toEqual([]);
    expect(effects(sim.exit(2, 1))).toEqual([]);
    expect(effects(sim.tick(2000))).toEqual([]);
    const late = sim.tick(TICK);
    expect(effects(late)).toEqual([{ type: 'kill', id: 3, cause: 'graceful-timeout' }]);
    expect(logs(late, 'warn')[0]).toMatchObject({ msg: 'worker still busy after --graceful-timeout: killed', fields: { worker: 3 } });
    expect(effects(sim.exit(3, null, 'SIGKILL'))).toEqual([{ type: 'exit', code: 0 }]);
    expect(spawns(sim.log)).toHaveLength(4);
  });

  it('SIGTERM cancels scheduled respawns', () => {
    const sim = Sim.booted();
    sim.exit(1);
    expect(sim.scheduledRespawns()).toBe(1);
    sim.signal('SIGTERM');
    sim.exitRetired();
    expect(sim.log.at(-1)).toMatchObject({ type: 'exit', code: 0 });
    expect(spawns(sim.take())).toHaveLength(0);
  });

  it('SIGQUIT kills every worker and exits 0', () => {
    const sim = Sim.booted();
    const actions = sim.signal('SIGQUIT');
    expect(effects(actions)).toEqual([{ type: 'stopping', graceful: false }, ...[1, 2, 3].map((id) => ({ type: 'kill', id, cause: 'quit' }))]);
    sim.exit(1, null, 'SIGKILL');
    sim.exit(2, null, 'SIGKILL');
    expect(effects(sim.exit(3, null, 'SIGKILL'))).toEqual([{ type: 'exit', code: 0 }]);
  });

  it('a second SIGINT while stopping kills the draining workers; a second SIGTERM does not', () => {
    const sim = Sim.booted();
    sim.signal('SIGINT');
    sim.exit(1, 0);
    sim.take();
    expect(effects(sim.signal('SIGTERM'))).toEqual([]);
    expect(effects(sim.signal('SIGINT'))).toEqual([
      { type: 'kill', id: 2, cause: 'quit' },
      { type: 'kill', id: 3, cause: 'quit' },
    ]);
    sim.exit(2, null, 'SIGKILL');
    expect(effects(sim.exit(3, null, 'SIGKILL'))).toEqual([{ type: 'exit', code: 0 }]);
  });

  it('says in one log line which signal it ignores while stopping, and why', () => {
    const ignored = (actions: Action[]): Array<{ level: LogLevel; fields: Record<string, unknown> }> =>
      logs(actions)
        .filter((l) => l.msg === 'signal ignored: the server is stopping')
        .map((l) => ({ level: l.level, fields: l.fields }));
    const sim = Sim.booted();
    sim.signal('SIGTERM');
    const hint = 'SIGQUIT or SIGINT stops at once';
    for (const signal of ['SIGHUP', 'SIGTTIN', 'SIGTTOU'] as const) {
      const actions = sim.signal(signal);
      expect(effects(actions)).toEqual([]);
      expect(logs(actions)).toHaveLength(1);
      expect(ignored(actions)).toEqual([{ level: 'warn', fields: { signal, stopping: 'gracefully', hint } }]);
    }
    const term = sim.signal('SIGTERM');
    expect(effects(term)).toEqual([]);
    expect(ignored(term)).toEqual([{ level: 'info', fields: { signal: 'SIGTERM', stopping: 'gracefully', hint } }]);
    // The second INT is not ignored: it stops at once. After that, nothing is left to escalate to.
    expect(ignored(sim.signal('SIGINT'))).toEqual([]);
    for (const signal of ['SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGHUP'] as const) {
      const actions = sim.signal(signal);
      expect(effects(actions)).toEqual([]);
      expect(logs(actions)).toHaveLength(1);
      expect(ignored(actions)[0]?.fields).toEqual({ signal, stopping: 'at once' });
    }
  });

  it('ignores signals, saying so, while halting after a worker failed to start the app', () => {
    const sim = new Sim({ workers: 2 });
    sim.start();
    sim.ready(1);
    sim.exit(2, 1);
    for (const signal of ['SIGTERM', 'SIGQUIT', 'SIGTTIN'] as const) {
      const actions = sim.signal(signal);
      expect(effects(actions)).toEqual([]);
      expect(logs(actions)).toEqual([
        { type: 'log', level: signal === 'SIGTTIN' ? 'warn' : 'info', msg: 'signal ignored: the server is stopping', fields: { signal, stopping: 'at once' } },
      ]);
    }
    expect(effects(sim.exit(1, null, 'SIGKILL'))).toEqual([{ type: 'exit', code: 1 }]);
  });
});

describe('SIGHUP rolling reload', () => {
  for (const reloadBatch of [1, 2]) {
    it(`replaces every worker, at most ${reloadBatch} starting at a time, never fewer than N ready (batch ${reloadBatch})`, () => {
      const sim = Sim.booted({ workers: 3, reloadBatch });
      let minReady = Infinity;
      sim.onStep = () => {
        const starting = [...sim.policy.workers.values()].filter((w) => w.state === 'starting' && w.generation === 2).length;
        expect(starting).toBeLessThanOrEqual(reloadBatch);
        minReady = Math.min(minReady, sim.ids('ready').length);
      };
      const hup = sim.signal('SIGHUP');
      expect(spawns(hup)).toEqual([4, 5].slice(0, reloadBatch).map((id) => ({ type: 'spawn', id, generation: 2 })));
      // Announced before anything else happens (systemd: RELOADING=1), once.
      expect(effects(hup)[0]).toEqual({ type: 'reloading', generation: 2, workers: 3 });
      let guard = 0;
      while (!sim.log.some((a) => a.type === 'ready' && a.reason === 'reload') && guard++ < 10) {
        for (const id of sim.ids('starting')) {
          const replaced = sim.policy.workers.get(id)!.replaces!;
          // The old worker is drained only when its replacement is ready.
          expect(sim.policy.workers.get(replaced)!.state).toBe('ready');
          sim.tick(200);
          const drains = sim.ready(id).filter((a) => a.type === 'drain');
          expect(drains).toEqual([{ type: 'drain', id: replaced, cause: 'reload' }]);
          sim.tick(50);
          sim.exit(replaced, 0);
        }
      }
      expect(minReady).toBeGreaterThanOrEqual(3);
      const all = sim.take();
      expect(spawns(all).map((s) => s.generation)).toEqual([2, 2, 2]);
      expect(byCause(all, 'drain')).toEqual([1, 2, 3]);
      expect(all.filter((a) => a.type === 'ready')).toEqual([{ type: 'ready', reason: 'reload', workers: 3, ms: 700, at: expect.any(Number) }]);
      expect(all.filter((a) => a.type === 'reloading')).toHaveLength(1);
      expect(sim.ids('ready')).toEqual([4, 5, 6]);
      expect([...sim.policy.workers.values()].every((w) => w.generation === 2)).toBe(true);
    });
  }

  it('is ignored while booting', () => {
    const sim = new Sim();
    sim.start();
    const actions = sim.signal('SIGHUP');
    // Nothing for systemd either: no RELOADING=1 for a reload that does not happen.
    expect(effects(actions)).toEqual([]);
    expect(logs(actions, 'warn')[0]?.msg).toBe('reload ignored: the workers are not all ready yet');
  });

  it('keeps the old workers serving when a new one cannot start, and logs why', () => {
    const sim = Sim.booted({ workers: 3, reloadBatch: 1 });
    sim.signal('SIGHUP');
    sim.ready(4);
    sim.exit(1, 0);
    sim.take();
    // The second new worker fails to load the (now broken) app.
    sim.feed({ type: 'boot-failed', id: 5, code: 'ERR_APP_IMPORT', message: 'boom' });
    const actions = sim.exit(5, 1);
    // Ready again with the old workers: systemd leaves its reloading state (READY=1 after RELOADING=1).
    expect(effects(actions)).toEqual([{ type: 'ready', reason: 'reload-aborted', workers: 3, ms: 0 }]);
    expect(logs(actions, 'error')).toEqual([
      {
        type: 'log',
        level: 'error',
        msg: 'reload aborted: a new worker failed to start; the old workers go on serving',
        fields: { worker: 5, code: 1, signal: null, errorCode: 'ERR_APP_IMPORT', error: 'boom' },
      },
    ]);
    expect(sim.ids('ready')).toEqual([2, 3, 4]);
    expect(sim.policy.workers.get(2)!.retiring).toBeUndefined();
    expect(effects(sim.tick(30_000))).toEqual([]);
    expect(sim.log.some((a) => a.type === 'ready' && a.reason === 'reload')).toBe(false);
    // Old workers count again: one that crashes is replaced.
    sim.tick(STABLE_AFTER);
    expect(spawns(sim.exit(2, null, 'SIGSEGV'))).toHaveLength(1);
  });

  it('replaces a counted worker that fails to start during a reload', () => {
    // Regression: a crash-respawned (or TTIN) worker is of the new generation; when it failed to start, the
    // reload-aborted branch treated it as a replacement and nothing made up the loss: N-1 workers for good.
    const sim = Sim.booted({ workers: 3, reloadBatch: 1 });
    sim.tick(STABLE_AFTER + TICK);
    sim.signal('SIGHUP');
    const respawn = spawns(sim.exit(3, null, 'SIGKILL'));
    expect(respawn).toEqual([{ type: 'spawn', id: 5, generation: 2 }]);
    sim.take();
    const actions = sim.exit(5, 1);
    expect(logs(actions, 'error')[0]?.msg).toBe('reload aborted: a new worker failed to start; the old workers go on serving');
    sim.tickUntilSpawn();
    expect(sim.counted() + sim.scheduledRespawns()).toBe(3);
  });

  it('replaces a new worker that fails to start after the old worker it was to replace has died', () => {
    // Regression: the failed replacement handed the count back to a worker that no longer existed: no workers.
    const sim = Sim.booted({ workers: 1 });
    sim.signal('SIGHUP');
    expect(spawns(sim.exit(1, null, 'SIGKILL'))).toEqual([]);
    sim.exit(2, 1);
    expect(sim.scheduledRespawns()).toBe(1);
    expect(spawns(sim.tickUntilSpawn())).toHaveLength(1);
  });

  it('a second SIGHUP during a reload does not strand the worker the first one was replacing', () => {
    // Regression: the second reload replaced the still-starting new worker; its replacement drained it, but the
    // old worker it stood in for stayed `retiring` for good: one worker too many, the reload never complete.
    const sim = Sim.booted({ workers: 2, reloadBatch: 1 });
    sim.signal('SIGHUP');
    expect(spawns(sim.signal('SIGHUP'))).toEqual([{ type: 'spawn', id: 4, generation: 3 }]);
    sim.take();
    expect(effects(sim.ready(4))).toEqual([
      { type: 'drain', id: 2, cause: 'reload' },
      { type: 'spawn', id: 5, generation: 3 },
    ]);
    // 5 replaces 3, which was to replace 1 and is not ready yet.
    expect(effects(sim.ready(5))).toEqual([
      { type: 'drain', id: 3, cause: 'reload' },
      { type: 'drain', id: 1, cause: 'reload' },
      { type: 'ready', reason: 'reload', workers: 2, ms: 0 },
    ]);
    sim.exitRetired();
    expect(sim.ids('ready')).toEqual([4, 5]);
    expect(sim.log.filter((a) => a.type === 'ready' && a.reason === 'reload')).toHaveLength(1);
  });

  it('a SIGHUP while a worker is being recycled drains the recycled worker too', () => {
    const sim = Sim.booted({ workers: 2, maxRequests: 10 });
    expect(spawns(sim.beat(1, 10))).toEqual([{ type: 'spawn', id: 3, generation: 1 }]);
    expect(spawns(sim.signal('SIGHUP'))).toEqual([{ type: 'spawn', id: 4, generation: 2 }]);
    // The reload's new workers are ready before the recycling replacement (3), which is itself replaced by 5.
    expect(effects(sim.ready(4))).toEqual([
      { type: 'drain', id: 2, cause: 'reload' },
      { type: 'spawn', id: 5, generation: 2 },
    ]);
    expect(effects(sim.ready(5))).toEqual([
      { type: 'drain', id: 3, cause: 'reload' },
      { type: 'drain', id: 1, cause: 'max-requests' },
      { type: 'ready', reason: 'reload', workers: 2, ms: 0 },
    ]);
    sim.exitRetired();
    expect(sim.ids('ready')).toEqual([4, 5]);
    expect(sim.log.some((a) => a.type === 'ready' && a.reason === 'reload')).toBe(true);
    // Recycling is not left blocked behind a worker that never went.
    const [a] = sim.ids('ready');
    expect(spawns(sim.beat(a!, 10))).toHaveLength(1);
  });

  it('a replacement that times out at boot aborts the reload and the old worker goes on counting', () => {
    // Regression: a boot-timeout kill of a replacement took the path of a lost counted worker, so a fresh worker
    // was spawned while the old one stayed `retiring` for good: never drained, the reload never complete, and
    // recycling blocked behind it.
    const sim = Sim.booted({ workers: 2, bootTimeout: 5000, maxRequests: 10 });
    sim.signal('SIGHUP');
    sim.take();
    const timedOut = sim.tick(5100);
    expect(effects(timedOut)).toEqual([{ type: 'kill', id: 3, cause: 'boot-timeout' }]);
    const actions = sim.exit(3, null, 'SIGKILL');
    expect(spawns(actions)).toEqual([]);
    expect(logs(actions, 'error')[0]?.msg).toBe('reload aborted: a new worker failed to start; the old workers go on serving');
    expect(actions.filter((a) => a.type === 'ready')).toEqual([{ type: 'ready', reason: 'reload-aborted', workers: 2, ms: 5100 }]);
    expect(sim.policy.workers.get(1)!.retiring).toBeUndefined();
    // Recycling still works afterwards.
    expect(spawns(sim.beat(1, 10))).toHaveLength(1);
  });
});

describe('SIGTTIN / SIGTTOU', () => {
  it('TTIN adds a worker, TTOU drains the newest, never below 1', () => {
    const sim = Sim.booted({ workers: 2 });
    expect(effects(sim.signal('SIGTTIN'))).toEqual([{ type: 'spawn', id: 3, generation: 1 }]);
    expect(sim.policy.desiredWorkers).toBe(3);
    sim.ready(3);
    expect(effects(sim.signal('SIGTTOU'))).toEqual([{ type: 'drain', id: 3, cause: 'scale-down' }]);
    expect(effects(sim.exit(3, 0))).toEqual([]);
    expect(effects(sim.signal('SIGTTOU'))).toEqual([{ type: 'drain', id: 2, cause: 'scale-down' }]);
    sim.exit(2, 0);
    const last = sim.signal('SIGTTOU');
    expect(effects(last)).toEqual([]);
    expect(logs(last, 'warn')).toEqual([{ type: 'log', level: 'warn', msg: 'not removing the last worker', fields: { signal: 'SIGTTOU', workers: 1 } }]);
    expect(sim.policy.desiredWorkers).toBe(1);
    expect(effects(sim.tick(5000))).toEqual([]);
  });

  it('TTOU kills a starting worker rather than draining a ready one', () => {
    const sim = Sim.booted({ workers: 2 });
    sim.signal('SIGTTIN');
    expect(effects(sim.signal('SIGTTOU'))).toEqual([{ type: 'kill', id: 3, cause: 'scale-down' }]);
    expect(effects(sim.exit(3, null, 'SIGKILL'))).toEqual([]);
  });

  it('TTOU while a killed worker is on its way out does not spawn a worker only to remove it', () => {
    const sim = Sim.booted({ workers: 2, harakiri: 1000 });
    let killed: Action[] = [];
    while (killed.length === 0) {
      sim.beat(1);
      killed = effects(sim.tick(TICK));
    }
    expect(killed).toEqual([{ type: 'kill', id: 2, cause: 'harakiri' }]);
    sim.signal('SIGTTOU');
    sim.take();
    expect(effects(sim.exit(2, null, 'SIGKILL'))).toEqual([]);
    sim.beat(1);
    expect(effects(sim.tick(TICK))).toEqual([]);
  });

  it('TTOU during a reload does not strand the worker being replaced', () => {
    // Regression: scale-down killed the starting replacement, and the old worker it was to replace stayed
    // `retiring` for good: serving but uncounted (one worker too many), the reload never complete.
    const sim = Sim.booted({ workers: 3, reloadBatch: 1 });
    sim.signal('SIGHUP');
    sim.signal('SIGTTOU');
    for (let i = 0; i < 10; i++) {
      sim.readyAll();
      sim.exitRetired();
      sim.tick(TICK);
    }
    expect(sim.ids('ready')).toHaveLength(2);
    expect(sim.log.some((a) => a.type === 'ready' && a.reason === 'reload')).toBe(true);
  });
});

describe('recycling', () => {
  it('gives each worker a threshold of maxRequests + floor(random * (jitter + 1))', () => {
    const draws = [0, 0.5, 0.999];
    const sim = Sim.booted({ maxRequests: 100, maxRequestsJitter: 20, random: () => draws.shift()! });
    expect([1, 2, 3].map((id) => sim.policy.workers.get(id)!.maxRequests)).toEqual([100, 110, 120]);
    // The worker is told its own threshold, so that it reports the moment it gets there.
    const started = new Sim({ workers: 2, maxRequests: 100, maxRequestsJitter: 20, random: () => 0.5 }).start();
    expect(started.filter((a) => a.type === 'spawn').map((a) => (a as { maxRequests: number }).maxRequests)).toEqual([110, 110]);
    expect(effects(sim.beat(3, 119))).toEqual([]);
    expect(effects(sim.beat(2, 109))).toEqual([]);
    expect(effects(sim.beat(2, 110))).toEqual([{ type: 'spawn', id: 4, generation: 1 }]);
  });

  it('replaces first and drains after, one worker at a time, however many are over', () => {
    const sim = Sim.booted({ maxRequests: 100 });
    const first = sim.beat(1, 100);
    expect(effects(first)).toEqual([{ type: 'spawn', id: 4, generation: 1 }]);
    expect(logs(first, 'info')[0]).toMatchObject({ msg: 'recycling a worker: its replacement starts first', fields: { worker: 1, cause: 'max-requests', requests: 100 } });
    // All over: still one at a time.
    expect(effects(sim.beat(2, 500))).toEqual([]);
    expect(effects(sim.beat(3, 500))).toEqual([]);
    expect(effects(sim.beat(1, 200))).toEqual([]);
    expect(effects(sim.ready(4))).toEqual([{ type: 'drain', id: 1, cause: 'max-requests' }]);
    // Still one at a time until the drained one has gone.
    expect(effects(sim.beat(2, 501))).toEqual([]);
    expect(effects(sim.exit(1, 0))).toEqual([{ type: 'spawn', id: 5, generation: 1 }]);
    expect(sim.policy.workers.get(5)!.replaces).toBe(2);
    expect(effects(sim.ready(5))).toEqual([{ type: 'drain', id: 2, cause: 'max-requests' }]);
    expect(effects(sim.exit(2, 0))).toEqual([{ type: 'spawn', id: 6, generation: 1 }]);
    sim.ready(6);
    expect(effects(sim.exit(3, 0))).toEqual([]);
    expect(sim.ids('ready')).toEqual([4, 5, 6]);
  });

  it('never recycles the last ready worker: with one worker there are two before the old one drains', () => {
    const sim = Sim.booted({ workers: 1, maxRequests: 10 });
    expect(effects(sim.beat(1, 10))).toEqual([{ type: 'spawn', id: 2, generation: 1 }]);
    expect(sim.ids('ready')).toEqual([1]);
    sim.tick(300);
    sim.onStep = () => expect(sim.ids('ready').length).toBeGreaterThanOrEqual(1);
    expect(effects(sim.ready(2))).toEqual([{ type: 'drain', id: 1, cause: 'max-requests' }]);
    expect(effects(sim.exit(1, 0))).toEqual([]);
    expect(effects(sim.tick(1000))).toEqual([]);
  });

  it('backs off recycling when its replacements keep failing to start, instead of retrying at heartbeat rate', () => {
    const sim = Sim.booted({ workers: 1, maxRequests: 10 });
    expect(effects(sim.beat(1, 10))).toEqual([{ type: 'spawn', id: 2, generation: 1 }]);
    const failed = sim.exit(2, 3);
    expect(logs(failed, 'error')[0]?.fields).toMatchObject({ retryInMs: 100 });
    // The old worker goes on serving and beating: no new replacement until the delay has passed.
    expect(effects(sim.beat(1, 11))).toEqual([]);
    sim.tick(100);
    expect(effects(sim.beat(1, 12))).toEqual([{ type: 'spawn', id: 3, generation: 1 }]);
    sim.exit(3, 3);
    sim.tick(100);
    // Second failure: 200 ms.
    expect(effects(sim.beat(1, 13))).toEqual([]);
    sim.tick(100);
    expect(effects(sim.beat(1, 14))).toEqual([{ type: 'spawn', id: 4, generation: 1 }]);
    expect(sim.ids('ready')).toEqual([1]);
  });

  it('max-rss needs rssSamples consecutive heartbeats over the limit; one under starts the count again', () => {
    const sim = Sim.booted({ maxRss: 1000, rssSamples: 3 });
    sim.beat(2, 0, 1001);
    sim.beat(2, 0, 1001);
    expect(effects(sim.beat(2, 0, 1000))).toEqual([]);
    sim.beat(2, 0, 2000);
    expect(effects(sim.beat(2, 0, 2000))).toEqual([]);
    const third = sim.beat(2, 0, 2000);
    // Others accept: it stops taking requests at once, as uWSGI's reload-on-rss does, while its replacement boots.
    expect(effects(third)).toEqual([
      { type: 'spawn', id: 4, generation: 1 },
      { type: 'drain', id: 2, cause: 'max-rss' },
    ]);
    expect(logs(third, 'info')[0]?.fields).toMatchObject({ worker: 2, cause: 'max-rss', rss: 2000 });
    expect(effects(sim.ready(4))).toEqual([]);
  });

  it('max-rss: the only worker accepting waits for its replacement, unless the master holds the sockets (native accept)', () => {
    const shared = Sim.booted({ workers: 1, maxRss: 1000, rssSamples: 1 });
    expect(effects(shared.beat(1, 0, 1500))).toEqual([{ type: 'spawn', id: 2, generation: 1 }]);
    expect(effects(shared.ready(2))).toEqual([{ type: 'drain', id: 1, cause: 'max-rss' }]);

    // As uWSGI's reload-on-rss: connections wait in the socket's queue while the replacement boots.
    const held = Sim.booted({ workers: 1, maxRss: 1000, rssSamples: 1, socketsOutliveWorkers: true });
    expect(effects(held.beat(1, 0, 1500))).toEqual([
      { type: 'spawn', id: 2, generation: 1 },
      { type: 'drain', id: 1, cause: 'max-rss' },
    ]);
    expect(effects(held.ready(2))).toEqual([]);
    held.exitRetired();
    expect(held.ids('ready')).toEqual([2]);
  });

  it('max-rss does not queue behind a recycling under way; max-requests waits for any', () => {
    const sim = Sim.booted({ maxRss: 1000, rssSamples: 2, maxRequests: 100 });
    expect(effects(sim.beat(1, 100))).toEqual([{ type: 'spawn', id: 4, generation: 1 }]);
    sim.beat(2, 0, 1500);
    sim.beat(3, 0, 1500);
    expect(effects(sim.beat(2, 0, 1500))).toEqual([
      { type: 'spawn', id: 5, generation: 1 },
      { type: 'drain', id: 2, cause: 'max-rss' },
    ]);
    // Worker 1 (waiting for its max-requests replacement) still accepts: 3 may stop at once too.
    expect(effects(sim.beat(3, 0, 1500))).toEqual([
      { type: 'spawn', id: 6, generation: 1 },
      { type: 'drain', id: 3, cause: 'max-rss' },
    ]);
    expect([4, 5, 6].map((id) => sim.policy.workers.get(id)!.replaces)).toEqual([1, 2, 3]);
    sim.take();
    for (const id of [4, 5, 6]) sim.ready(id);
    expect(byCause(sim.take(), 'drain')).toEqual([1]);
    sim.exit(2, 0);
    sim.exit(3, 0);
    // Worker 1 is still draining: a worker at its --max-requests waits until it has gone.
    expect(effects(sim.beat(4, 100))).toEqual([]);
    expect(effects(sim.exit(1, 0))).toEqual([{ type: 'spawn', id: 7, generation: 1 }]);
  });

  it('past twice maxRss: recycles at the first heartbeat, drains at once, and does not wait for a recycling under way', () => {
    const sim = Sim.booted({ maxRss: 1000, rssSamples: 3 });
    sim.beat(1, 0, 1500);
    sim.beat(1, 0, 1500);
    expect(effects(sim.beat(1, 0, 1500))).toEqual([
      { type: 'spawn', id: 4, generation: 1 },
      { type: 'drain', id: 1, cause: 'max-rss' },
    ]);
    // Twice the limit is still the small overshoot: counted, not at once.
    expect(effects(sim.beat(2, 0, 2000))).toEqual([]);
    const hard = sim.beat(2, 0, 2001);
    expect(effects(hard)).toEqual([
      { type: 'spawn', id: 5, generation: 1 },
      { type: 'drain', id: 2, cause: 'max-rss' },
    ]);
    expect(logs(hard, 'warn')).toEqual([
      {
        type: 'log',
        level: 'warn',
        msg: 'recycling a worker at once: its resident memory is past twice --max-rss',
        fields: { worker: 2, cause: 'max-rss', requests: 0, rss: 2001, maxRss: 1000 },
      },
    ]);
    expect(sim.policy.workers.get(5)!.replaces).toBe(2);
    // A draining worker past twice: neither a second replacement nor a second drain.
    expect(effects(sim.beat(1, 0, 2500))).toEqual([]);
    expect(effects(sim.ready(4))).toEqual([]);
    expect(effects(sim.ready(5))).toEqual([]);
    sim.exit(1, 0);
    sim.exit(2, 0);
    expect(sim.ids('ready')).toEqual([3, 4, 5]);
    expect(effects(sim.tick(1000))).toEqual([]);
  });

  it('past twice maxRss, the only worker accepting drains when its replacement is ready: the socket must stay open', () => {
    const sim = Sim.booted({ workers: 2, maxRss: 1000 });
    expect(effects(sim.beat(1, 0, 3000))).toEqual([
      { type: 'spawn', id: 3, generation: 1 },
      { type: 'drain', id: 1, cause: 'max-rss' },
    ]);
    // Worker 2 is now the only one accepting: replaced at once, drained when the replacement can take over.
    expect(effects(sim.beat(2, 0, 3000))).toEqual([{ type: 'spawn', id: 4, generation: 1 }]);
    expect(effects(sim.beat(2, 0, 3100))).toEqual([]);
    sim.onStep = () => expect(sim.ids('ready').length).toBeGreaterThanOrEqual(1);
    // Another worker accepts now: it drains at once, before its own replacement is ready.
    expect(effects(sim.ready(3))).toEqual([{ type: 'drain', id: 2, cause: 'max-rss' }]);
    expect(effects(sim.beat(2, 0, 3200))).toEqual([]);
    expect(effects(sim.ready(4))).toEqual([]);
    sim.exitRetired();
    expect(sim.ids('ready')).toEqual([3, 4]);

    const single = Sim.booted({ workers: 1, maxRss: 1000 });
    single.onStep = () => expect(single.ids('ready').length).toBeGreaterThanOrEqual(1);
    expect(effects(single.beat(1, 0, 2500))).toEqual([{ type: 'spawn', id: 2, generation: 1 }]);
    expect(effects(single.beat(1, 0, 2600))).toEqual([]);
    expect(effects(single.ready(2))).toEqual([{ type: 'drain', id: 1, cause: 'max-rss' }]);
  });

  it('past twice maxRss, a replacement that fails to start backs off instead of respawning at heartbeat rate', () => {
    const sim = Sim.booted({ workers: 1, maxRss: 1000 });
    expect(effects(sim.beat(1, 0, 2500))).toEqual([{ type: 'spawn', id: 2, generation: 1 }]);
    sim.exit(2, 3);
    expect(effects(sim.beat(1, 0, 2600))).toEqual([]);
    sim.tick(100);
    expect(effects(sim.beat(1, 0, 2700))).toEqual([{ type: 'spawn', id: 3, generation: 1 }]);
  });
});

describe('harakiri', () => {
  it('kills a ready worker whose heartbeats stop, names its requests in flight, and replaces it on exit', () => {
    const sim = Sim.booted({ harakiri: 2000 });
    sim.tick(1000);
    for (const id of [1, 2, 3]) sim.beat(id, 5, 0, id === 2 ? [{ method: 'GET', uri: '/spin?n=1', startedAt: 900 }, { method: 'POST', uri: '/upload', startedAt: 950 }] : []);
    sim.take();
    const beats = (): void => void [1, 3].forEach((id) => sim.beat(id));
    for (let i = 0; i < 20; i++) {
      beats();
      sim.tick(TICK);
    }
    beats();
    const actions = sim.tick(TICK);
    expect(effects(actions)).toEqual([{ type: 'kill', id: 2, cause: 'harakiri' }]);
    expect(logs(actions, 'error')).toEqual([
      {
        type: 'log',
        level: 'error',
        msg: 'worker event loop blocked longer than --harakiri: killed',
        fields: {
          code: 'ERR_WORKER_BLOCKED',
          worker: 2,
          blockedMs: 2100,
          harakiriMs: 2000,
          inflight: [
            { method: 'GET', uri: '/spin?n=1', ageMs: 2200 },
            { method: 'POST', uri: '/upload', ageMs: 2150 },
          ],
        },
      },
    ]);
    expect(effects(sim.exit(2, null, 'SIGKILL'))).toEqual([{ type: 'spawn', id: 4, generation: 1 }]);
  });

  it('waits harakiriGrace beyond harakiri', () => {
    const sim = Sim.booted({ workers: 1, harakiri: 1000, harakiriGrace: 700 });
    expect(effects(sim.tick(1700))).toEqual([]);
    expect(effects(sim.tick(TICK))).toEqual([{ type: 'kill', id: 1, cause: 'harakiri' }]);
  });

  it('is off with harakiri 0', () => {
    const sim = Sim.booted({ harakiri: 0 });
    expect(effects(sim.tick(25_000))).toEqual([]);
  });

  it('kills a blocked draining worker and does not replace it', () => {
    const sim = Sim.booted({ workers: 2, harakiri: 1000 });
    const beats = (): void => void sim.ids('ready').forEach((id) => sim.beat(id));
    sim.signal('SIGTTIN');
    sim.ready(3);
    sim.signal('SIGTTOU');
    sim.take();
    let killed: Action[] = [];
    for (let i = 0; i < 12 && killed.length === 0; i++) {
      beats();
      killed = effects(sim.tick(TICK));
    }
    expect(killed).toEqual([{ type: 'kill', id: 3, cause: 'harakiri' }]);
    expect(effects(sim.exit(3, null, 'SIGKILL'))).toEqual([]);
    beats();
    expect(effects(sim.tick(TICK))).toEqual([]);
    expect(sim.ids('ready')).toEqual([1, 2]);
  });
});

describe('properties', () => {
  type Op =
    | { k: 'ready'; pick: number }
    | { k: 'exit'; pick: number; code: number | null }
    | { k: 'beat'; pick: number; requests: number; rss: number; inflight: number }
    | { k: 'signal'; signal: 'SIGHUP' | 'SIGTTIN' | 'SIGTTOU' }
    | { k: 'tick'; ms: number };

  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 4, arbitrary: fc.record({ k: fc.constant('ready' as const), pick: fc.nat() }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('exit' as const), pick: fc.nat(), code: fc.constantFrom(0, 1, null) }) },
    {
      weight: 3,
      arbitrary: fc.record({
        k: fc.constant('beat' as const),
        pick: fc.nat(),
        requests: fc.nat({ max: 300 }),
        rss: fc.nat({ max: 4000 }),
        inflight: fc.nat({ max: 3 }),
      }),
    },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('signal' as const), signal: fc.constantFrom('SIGHUP' as const, 'SIGTTIN' as const, 'SIGTTOU' as const) }) },
    { weight: 3, arbitrary: fc.record({ k: fc.constant('tick' as const), ms: fc.integer({ min: 1, max: 15_000 }) }) },
  );

  const config = fc.record({
    workers: fc.integer({ min: 1, max: 4 }),
    reloadBatch: fc.integer({ min: 1, max: 3 }),
    maxRequests: fc.constantFrom(0, 100),
    maxRequestsJitter: fc.integer({ min: 0, max: 50 }),
    maxRss: fc.constantFrom(0, 1500),
    rssSamples: fc.integer({ min: 1, max: 3 }),
    socketsOutliveWorkers: fc.boolean(),
    harakiri: fc.constantFrom(0, 2000, 5000),
    bootTimeout: fc.constantFrom(3000, 60_000),
    gracefulTimeout: fc.constantFrom(1000, 30_000),
    seed: fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }),
  });

  it('any sequence: actions name live workers, none drained or killed twice, and the pool settles at the desired size', () => {
    fc.assert(
      fc.property(config, fc.array(op, { maxLength: 60 }), ({ seed, ...cfg }, ops) => {
        const sim = Sim.booted({ ...cfg, random: () => seed });
        const live = (): number[] => [...sim.policy.workers.keys()];
        const pick = (ids: number[], n: number): number | undefined => ids[n % Math.max(ids.length, 1)];
        for (const o of ops) {
          switch (o.k) {
            case 'ready': {
              const id = pick(sim.ids('starting'), o.pick);
              if (id !== undefined) sim.ready(id);
              break;
            }
            case 'exit': {
              const id = pick(live(), o.pick);
              if (id !== undefined) sim.exit(id, o.code, o.code === null ? 'SIGKILL' : null);
              break;
            }
            case 'beat': {
              const id = pick(live(), o.pick);
              const inflight = Array.from({ length: o.inflight }, (_, i) => ({ method: 'GET', uri: `/r${i}`, startedAt: sim.now - i }));
              if (id !== undefined) sim.beat(id, o.requests, o.rss, inflight);
              break;
            }
            case 'signal':
              sim.signal(o.signal);
              break;
            case 'tick':
              sim.tick(o.ms);
              break;
          }
          expect(sim.policy.running).toBe(true);
        }
        // Settle: workers start, beat with nothing to recycle, and retired ones exit; long enough for any backoff.
        for (let t = 0; t < 2 * BACKOFF_MAX; t += TICK) {
          sim.readyAll();
          for (const id of sim.ids('ready')) sim.beat(id);
          for (const id of sim.ids('draining')) sim.beat(id);
          sim.exitRetired();
          sim.tick(TICK);
        }
        expect(sim.ids('starting')).toEqual([]);
        expect(sim.ids('ready')).toHaveLength(sim.policy.desiredWorkers);
        expect(sim.scheduledRespawns()).toBe(0);
      }),
      { numRuns: 300 },
    );
  });
});

// systemd's notify protocol for Type=notify services (sd_notify(3)): READY=1, STATUS=, RELOADING=1 with
// MONOTONIC_USEC, STOPPING=1 and WATCHDOG=1, driven by the master's policy actions and its tick. Off unless
// NOTIFY_SOCKET is set.
//
// How a message gets out without a compiler on the target: Node cannot send an AF_UNIX datagram (dgram is UDP
// only; net is streams), so each message is one run of systemd-notify(1), which ships with systemd itself. What
// was checked, with systemd 252 (Debian 12) and test/fixtures/systemd/notify-listener.py on NOTIFY_SOCKET:
// - systemd-notify sends our message, then BARRIER=1 with the write end of a pipe, and exits only once the
//   receiver has closed it (sd_notify_barrier; --no-block would skip it). The manager attributes a message to a
//   unit through the sender's PID, so without the barrier a sender that exits first can be ignored; with it, the
//   message is handled while systemd-notify is still alive, in the unit's cgroup. 19 ms per run on this machine.
// - Unprivileged (DynamicUser=), its attempt to send with the master's PID fails and it sends with its own: the
//   unit needs NotifyAccess=all (systemd/node-uwsgi@.service). --pid is not passed: the master already is the
//   main PID, and MAINPID= from a helper would only be a way to get that wrong.
// - Runs are serialised, one at a time, so that messages arrive in the order the policy decided them.
import { execFile } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';

const SYSTEMD_NOTIFY = 'systemd-notify';
/** systemd-notify waits up to 5 s for its barrier; beyond that it is stuck. */
const NOTIFY_TIMEOUT_MS = 10_000;
/** STATUS= at most this often, and only when it changed: never per request. */
export const STATUS_INTERVAL_MS = 2_000;
const FLUSH_TIMEOUT_MS = 5_000;
const NOTIFY_VARS = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const;

/** What the notifier reads: the master's collector (src/ops/collector.ts) and the policy's desired count. */
export interface StatusView {
  readyWorkers(): number;
  requestsServed(): number;
  readonly desiredWorkers: number;
}

/** An action the master's policy returns (src/master/policy.ts Action): only its type is read here, so that ops
 * does not import the master. */
export interface PolicyAction {
  readonly type: string;
  readonly [field: string]: unknown;
}

export interface SystemdNotifier {
  /** Every action the policy returns: ready, reloading and stopping are told to systemd. */
  action(action: PolicyAction): void;
  /** Every master tick: STATUS= when due, WATCHDOG=1 when due and at least one worker is ready. */
  tick(): void;
  /** Resolves once the queued messages are out (or after a bound): before the master exits. */
  flush(): Promise<void>;
}

const OFF: SystemdNotifier = { action() {}, tick() {}, flush: () => Promise.resolve() };

/**
 * A notifier for NOTIFY_SOCKET, or one that does nothing. Removes NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID
 * from `env` (sd_notify's unset_environment) so that the workers and the app do not see them.
 */
export function createSystemdNotifier(view: StatusView, log: Logger, env: NodeJS.ProcessEnv = process.env, pid = process.pid): SystemdNotifier {
  const [socket, watchdogUsec, watchdogPid] = NOTIFY_VARS.map((name) => env[name]);
  for (const name of NOTIFY_VARS) delete env[name];
  if (socket === undefined || socket === '') return OFF;
  let watchdogMs = 0;
  if (watchdogUsec !== undefined && (watchdogPid === undefined || watchdogPid === String(pid))) {
    const usec = Number(watchdogUsec);
    if (Number.isSafeInteger(usec) && usec > 0) watchdogMs = usec / 1000;
    else log.warn({ code: 'ERR_SYSTEMD_NOTIFY', watchdogUsec }, 'WATCHDOG_USEC is not a positive number of microseconds: no watchdog pings');
  }
  log.debug({ notifySocket: socket, watchdogMs }, 'systemd notify protocol on');
  return new Notifier(view, log, { NOTIFY_SOCKET: socket, PATH: env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' }, watchdogMs);
}

type Kind = 'state' | 'status' | 'watchdog';

class Notifier implements SystemdNotifier {
  private readonly queue: Array<{ kind: Kind; lines: string[] }> = [];
  private sending = false;
  private idle: Array<() => void> = [];
  private phase: 'starting' | 'reloading' | 'stopping' | 'running' = 'starting';
  private lastStatus = '';
  private lastStatusAt = -Infinity;
  private lastPingAt = -Infinity;
  private failing = false;

  constructor(
    private readonly view: StatusView,
    private readonly log: Logger,
    private readonly childEnv: NodeJS.ProcessEnv,
    private readonly watchdogMs: number,
  ) {}

  action(action: PolicyAction): void {
    switch (action.type) {
      case 'ready':
        this.phase = 'running';
        this.state(['READY=1']);
        break;
      case 'reloading':
        this.phase = 'reloading';
        // CLOCK_MONOTONIC: libuv's hrtime reads it on Linux; systemd 253+ compares it with the reload request.
        this.state(['RELOADING=1', `MONOTONIC_USEC=${process.hrtime.bigint() / 1000n}`]);
        break;
      case 'stopping':
        this.phase = 'stopping';
        this.state(['STOPPING=1']);
        break;
    }
  }

  tick(): void {
    const now = performance.now();
    if (this.watchdogMs > 0 && now - this.lastPingAt >= this.watchdogMs / 2 && this.view.readyWorkers() > 0) {
      this.lastPingAt = now;
      if (!this.queue.some((m) => m.kind === 'watchdog')) this.enqueue('watchdog', ['WATCHDOG=1']);
    }
    if (now - this.lastStatusAt >= STATUS_INTERVAL_MS) {
      this.lastStatusAt = now;
      const status = this.status();
      if (status !== this.lastStatus) {
        this.lastStatus = status;
        const pending = this.queue.find((m) => m.kind === 'status');
        if (pending) pending.lines = [status];
        else this.enqueue('status', [status]);
      }
    }
  }

  flush(): Promise<void> {
    if (!this.sending && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, FLUSH_TIMEOUT_MS);
      this.idle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** A state change, with the status line that goes with it in the same datagram. */
  private state(lines: string[]): void {
    this.lastStatus = this.status();
    this.enqueue('state', [...lines, this.lastStatus]);
  }

  private status(): string {
    const prefix = this.phase === 'running' ? '' : `${this.phase}: `;
    const requests = this.view.requestsServed();
    return `STATUS=${prefix}${this.view.readyWorkers()} of ${this.view.desiredWorkers} workers ready, ${requests} request${requests === 1 ? '' : 's'} served`;
  }


  private enqueue(kind: Kind, lines: string[]): void {
    this.queue.push({ kind, lines });
    this.pump();
  }

  private pump(): void {
    if (this.sending) return;
    const message = this.queue.shift();
    if (message === undefined) {
      for (const resolve of this.idle.splice(0)) resolve();
      return;
    }
    this.sending = true;
    execFile(SYSTEMD_NOTIFY, message.lines, { env: this.childEnv, timeout: NOTIFY_TIMEOUT_MS }, (err, _stdout, stderr) => {
      this.sending = false;
      if (err && !this.failing) {
        this.failing = true;
        this.log.error(
          { code: 'ERR_SYSTEMD_NOTIFY', err, stderr: stderr.trim(), message: message.lines },
          'cannot notify systemd: systemd-notify failed',
        );
      } else if (err) {
        this.log.debug({ err, message: message.lines }, 'systemd-notify failed again');
      } else if (this.failing) {
        this.failing = false;
        this.log.info({}, 'systemd-notify works again');
      }
      this.pump();
    });
  }
}

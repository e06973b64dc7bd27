// "Hosts" for the integration tests: Linux network namespaces of the test's own, each joined to the root
// namespace by a veth pair on a /30 of 10.213.0.0/16 (root side .1, host side .2; the addresses exist only on
// these pairs), so that node-uwsgi runs on a real non-loopback TCP address and nginx reaches it over a link.
// Needs root (CAP_NET_ADMIN): canCreateNamespaces() says why not.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface Host {
  /** The namespace's name (`ip netns exec <ns> ...`). */
  readonly ns: string;
  /** The host's address, inside the namespace. */
  readonly address: string;
  /** The root namespace's end of the link: where the host's peers (nginx) come from. */
  readonly peer: string;
  /** The command prefix that runs a program on this host. */
  readonly exec: string[];
}

export interface Hosts {
  readonly hosts: readonly Host[];
  /** Removes the namespaces and links (idempotent; also run at process exit if the test could not). */
  remove(): void;
}

/** Undefined where namespaces can be made here; else why not (a message for a skip). */
export function canCreateNamespaces(): string | undefined {
  if (process.platform !== 'linux') return `network namespaces are Linux only (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'creating network namespaces and veth pairs needs root (CAP_NET_ADMIN); run as root (CI does)';
  return undefined;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** The third octets of 10.213.x.0 in use on this machine (another run's links, or anyone's). */
function usedOctets(): Set<number> {
  const out = execFileSync('ip', ['-4', '-o', 'addr', 'show'], { encoding: 'utf8' });
  return new Set([...out.matchAll(/inet 10\.213\.(\d+)\./g)].map((m) => Number(m[1])));
}

/** Creates `count` hosts with names unique to this run; on any failure removes what it made and throws. */
export function createHosts(count: number): Hosts {
  const run = randomBytes(3).toString('hex');
  const used = usedOctets();
  const free = (s: number): boolean => Array.from({ length: count }, (_, i) => s + i).every((octet) => !used.has(octet));
  const start = Array.from({ length: 64 }, () => Math.floor(Math.random() * (256 - count))).find(free);
  if (start === undefined) throw new Error('no free 10.213.x.0/30 blocks for the test hosts');
  const made: Array<{ ns: string; link: string }> = [];
  const remove = (): void => {
    for (const { ns, link } of made.splice(0)) {
      // Whatever still runs there (a worker orphaned by a killed master) goes first: a namespace outlives its
      // deletion while a process holds it.
      const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout ?? '';
      for (const pid of pids.split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          // Gone meanwhile.
        }
      }
      // Deleting the namespace deletes its veth end, and with it the root end; the link is removed too in case the
      // namespace was never made.
      spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      spawnSync('ip', ['link', 'del', link], { stdio: 'ignore' });
    }
    process.off('exit', remove);
  };
  process.on('exit', remove);
  const hosts: Host[] = [];
  try {
    for (let i = 0; i < count; i++) {
      const ns = `nu-host-${run}-${i}`;
      // Interface names: at most 15 bytes.
      const link = `nu${run}r${i}`;
      const inner = `nu${run}h${i}`;
      const octet = start + i;
      made.push({ ns, link });
      ip('netns', 'add', ns);
      ip('link', 'add', link, 'type', 'veth', 'peer', 'name', inner, 'netns', ns);
      ip('addr', 'add', `10.213.${octet}.1/30`, 'dev', link);
      ip('link', 'set', link, 'up');
      ip('-n', ns, 'addr', 'add', `10.213.${octet}.2/30`, 'dev', inner);
      ip('-n', ns, 'link', 'set', inner, 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      hosts.push({ ns, address: `10.213.${octet}.2`, peer: `10.213.${octet}.1`, exec: ['ip', 'netns', 'exec', ns] });
    }
  } catch (err) {
    remove();
    throw err;
  }
  return { hosts, remove };
}

// Small waits shared by the tests: a condition polled until it holds, one TCP connection attempt.
import net from 'node:net';

/** Resolves with `check`'s first value other than undefined, polled every 50 ms; rejects after `timeout` ms. */
export async function until<T>(what: string, check: () => T | undefined, timeout = 20_000): Promise<T> {
  const deadline = Date.now() + timeout;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether one connection to host:port is accepted (closed at once). */
export function connects(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

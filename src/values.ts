// Small questions about a value that several layers ask (is it a promise? what is it, for an error message?):
// one answer each. Imports nothing.

/** Promises/A+'s thenable: an object or function with a `then` method. */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}

/**
 * A value as an error message names it: `null`, `a promise`, `a function of 2 parameters`, `an array of 2`,
 * `a date`, `an object`, `an object (Hono)`, `"text"`, `number 5`.
 */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  if (isThenable(value)) return 'a promise';
  if (typeof value === 'function') return `a function of ${value.length} parameter${value.length === 1 ? '' : 's'}`;
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === 'object') {
    const name = (value as { constructor?: { name?: string } }).constructor?.name;
    if (value instanceof Date || name === 'TomlDate') return 'a date';
    return name === 'Object' ? 'an object' : `an object (${name ?? 'no prototype'})`;
  }
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value);
  return `${typeof value} ${String(value)}`;
}

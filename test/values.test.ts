// The one isThenable and the one describeValue that the adapters, the app loader and the config file share.
import { describe, expect, it } from 'vitest';
import { describeValue, isThenable } from '../src/values.js';

describe('isThenable', () => {
  it('is true of promises and of any object or function with a then method (Promises/A+)', () => {
    const thenableFunction = Object.assign(() => {}, { then: () => {} });
    expect([Promise.resolve(), { then: () => {} }, thenableFunction].map(isThenable)).toEqual([true, true, true]);
  });

  it('is false of everything else', () => {
    expect([null, undefined, 0, 'then', { then: 1 }, () => {}, []].map(isThenable)).toEqual([false, false, false, false, false, false, false]);
  });
});

describe('describeValue', () => {
  it.each([
    [null, 'null'],
    [Promise.resolve(), 'a promise'],
    [(a: number, b: number) => a + b, 'a function of 2 parameters'],
    [(a: number) => a, 'a function of 1 parameter'],
    [undefined, 'undefined undefined'],
    [[1, 2], 'an array of 2'],
    [new Date(0), 'a date'],
    [{}, 'an object'],
    [Object.create(null), 'an object (no prototype)'],
    [new (class Hono {})(), 'an object (Hono)'],
    ['text', '"text"'],
    ['x'.repeat(50), JSON.stringify('x'.repeat(40) + '...')],
    [5, 'number 5'],
    [true, 'boolean true'],
  ])('%o -> %s', (value, text) => {
    expect(describeValue(value)).toBe(text);
  });
});

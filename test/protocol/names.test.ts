import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { nameAt } from '../../src/protocol/names.js';

function at(bytes: Buffer, start = 0, length = bytes.length): string {
  return nameAt(bytes, bytes.toString('latin1'), start, length);
}

describe('shared var names', () => {
  it('gives the same string for the same bytes, wherever they are', () => {
    const a = at(Buffer.from('HTTP_USER_AGENT'));
    const b = at(Buffer.from('xxHTTP_USER_AGENTyy'), 2, 15);
    expect(a).toBe('HTTP_USER_AGENT');
    expect(b).toBe('HTTP_USER_AGENT');
  });

  it('never confuses two names, however many hash to the same slot', () => {
    // 5000 names over 1024 slots: collisions are certain; every lookup must still give its own bytes back.
    const names = Array.from({ length: 5000 }, (_, i) => `HTTP_X_${i.toString(36).toUpperCase()}`);
    for (let round = 0; round < 2; round++) {
      for (const name of names) expect(at(Buffer.from(name, 'latin1'))).toBe(name);
    }
  });

  it('decodes as latin1 slices do, for any bytes and lengths (empty and past the shared size too)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 80 }), fc.nat(), fc.nat(), (raw, a, b) => {
        const bytes = Buffer.from(raw);
        const start = bytes.length === 0 ? 0 : a % (bytes.length + 1);
        const length = (bytes.length - start === 0 ? 0 : b % (bytes.length - start + 1));
        const text = bytes.toString('latin1');
        expect(nameAt(bytes, text, start, length)).toBe(text.slice(start, start + length));
        expect(nameAt(bytes, text, start, length)).toBe(text.slice(start, start + length));
      }),
      { numRuns: 5000 },
    );
  });
});

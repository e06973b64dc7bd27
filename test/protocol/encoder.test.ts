// The encoder reproduces nginx's packets byte for byte, and a vector worked out by hand from the uwsgi spec.
import { describe, expect, it } from 'vitest';
import { MAX_VARS_SIZE, encodeRequest, encodeRequestHead } from '../../src/protocol/index.js';
import { bytesOf, decodeChunks, fixtureFiles, hex, readFixture } from './helpers.js';

describe('encodeRequest against nginx', () => {
  it.each(fixtureFiles())('re-encodes the vars and body of %s to the captured bytes', (file) => {
    const packet = readFixture(file);
    // encodeRequest writes modifier1 = modifier2 = 0; so does nginx, and so must the fixture for this to hold.
    expect([packet[0], packet[3]]).toEqual([0, 0]);
    const { head, body } = decodeChunks([packet]);
    expect(encodeRequest(head.vars, body)).toEqual(packet);
  });
});

describe('encodeRequest by hand', () => {
  it('writes little-endian sizes, latin1 bytes, empty values, then the body', () => {
    const packet = encodeRequest(['A', 'b\u00e9', 'KEY', ''], bytesOf('xy'));
    // modifier1 0, vars size 14 (3 + 4 + 5 + 2), modifier2 0 | "A" | "bé" (é is one latin1 byte) | "KEY" | "" | body
    expect(packet).toEqual(hex('00 0e 00 00 | 01 00 41 | 02 00 62 e9 | 03 00 4b 45 59 | 00 00 | 78 79'));
  });

  it('puts the high byte of a size second', () => {
    const head = encodeRequestHead(['K', 'v'.repeat(300)]);
    // size 3 + 2 + 300 = 305 = 0x0131; the value length 300 = 0x012c.
    expect(head.subarray(0, 9)).toEqual(hex('00 31 01 00 | 01 00 4b | 2c 01'));
    expect(head).toHaveLength(4 + 305);
  });

  it('takes byte arrays as they are', () => {
    expect(encodeRequestHead([Uint8Array.of(0x41), Uint8Array.of(0xff, 0x00)])).toEqual(
      hex('00 07 00 00 | 01 00 41 | 02 00 ff 00'),
    );
  });

  it('writes the modifiers it is given', () => {
    expect(encodeRequestHead([], 5, 9)).toEqual(hex('05 00 00 09'));
  });

  it('sends no body bytes for an empty or absent body', () => {
    expect(encodeRequest(['A', 'b'])).toEqual(hex('00 06 00 00 | 01 00 41 | 01 00 62'));
    expect(encodeRequest(['A', 'b'], new Uint8Array(0))).toEqual(hex('00 06 00 00 | 01 00 41 | 01 00 62'));
  });
});

describe('encodeRequestHead limits', () => {
  // One var: 2 + 1 ("K") + 2 + value = the whole block.
  const valueFilling = (size: number): string => 'v'.repeat(size - 5);

  it('encodes a vars block of exactly 65535 bytes, which the decoder accepts', () => {
    const head = encodeRequestHead(['K', valueFilling(MAX_VARS_SIZE)]);
    expect(head.readUInt16LE(1)).toBe(MAX_VARS_SIZE);
    expect(decodeChunks([head]).head.vars[1]).toHaveLength(MAX_VARS_SIZE - 5);
  });

  it('refuses a block of 65536 bytes rather than wrap the 16-bit size', () => {
    expect(() => encodeRequestHead(['K', valueFilling(MAX_VARS_SIZE + 1)])).toThrow(RangeError);
  });

  it('refuses a single var longer than a 16-bit length', () => {
    expect(() => encodeRequestHead(['K', 'v'.repeat(0x10000)])).toThrow(/65536 bytes exceeds 65535/);
  });
});

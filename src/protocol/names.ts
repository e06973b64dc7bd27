// The names of the vars, shared between requests: a front server sends the same twenty-odd names in every vars
// block, so each is made into a string once and found again from its bytes. A shared name is an internalized
// string: the environ's keyed stores, the switch on names in vars.ts and the header-name map compare it by
// identity instead of hashing and comparing a new string per var per request (measured under valgrind, about a
// sixth of the JavaScript instructions of a wsgi hello request). Pure; no I/O.

/** Names up to this many bytes are shared (the longest common ones: HTTP_ACCEPT_ENCODING, 20). */
const MAX_SHARED = 40;
const SLOT_BITS = 10;
const SLOTS = 1 << SLOT_BITS;

const slotBytes = new Uint8Array(SLOTS * MAX_SHARED);
/** 0: an empty slot (an empty name is never shared). */
const slotLength = new Uint8Array(SLOTS);
const slotName: string[] = new Array<string>(SLOTS).fill('');

/**
 * The name at `block[start, start + length)`, whose latin1 decoding is `text` (one decode of the whole block; byte
 * offsets are string offsets). A slot is keyed by a hash of the bytes and holds the last name that hashed there:
 * names a peer makes up only evict each other, and memory stays fixed.
 */
export function nameAt(block: Uint8Array, text: string, start: number, length: number): string {
  if (length === 0 || length > MAX_SHARED) return text.slice(start, start + length);
  const end = start + length;
  let hash = 0x811c9dc5; // FNV-1a over the bytes, then a multiplicative mix for the slot
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ block[i]!, 0x01000193);
  const slot = Math.imul(hash, 0x9e3779b1) >>> (32 - SLOT_BITS);
  const base = slot * MAX_SHARED;
  if (slotLength[slot] === length) {
    let i = 0;
    while (i < length && slotBytes[base + i] === block[start + i]) i++;
    if (i === length) return slotName[slot]!;
  }
  const name = internalized(text.slice(start, start + length));
  for (let i = 0; i < length; i++) slotBytes[base + i] = block[start + i]!;
  slotLength[slot] = length;
  slotName[slot] = name;
  return name;
}

/** The engine's one copy of `s`: a string used as a property key is internalized, and a for-in gives that copy. */
function internalized(s: string): string {
  const holder: Record<string, number> = {};
  holder[s] = 0;
  for (const key in holder) return key;
  return s;
}

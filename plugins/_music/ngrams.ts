/**
 * Pitch n-grams and repetition in a pitch sequence: the sequence of a piece's
 * pitches, keys of its n-grams, a compact set of keys, and flags on patterns
 * repeated back to back too often. Shared by the novelty reward and the
 * evaluation metrics.
 *
 * @module
 */

import { sortedNotes } from "./theory.ts";
import type { Note } from "./types.ts";

/**
 * Pitch sequence of a piece's notes in (startSec, pitch) order.
 */
export function pitchSequence(notes: readonly Note[]): number[] {
  return sortedNotes(notes).map((n) => n.pitch);
}

/**
 * Keys of the pitch n-grams of a sequence, one per window. For `n <= 7` the
 * key is exact (7 bits per pitch); for longer n-grams it is a 53-bit hash
 * (two 32-bit multiplicative hashes), whose chance of a false match is about
 * one in 10^9 per lookup in a set of millions.
 *
 * @param pitches MIDI pitches 0..127.
 * @param n The n-gram length (>= 1).
 * @returns `max(0, pitches.length - n + 1)` keys, in order.
 * @example
 * ```ts
 * import { pitchNgramKeys } from "./ngrams.ts";
 * pitchNgramKeys([60, 62, 60, 62], 2).length; // 3 (two of them equal)
 * ```
 */
export function pitchNgramKeys(pitches: readonly number[], n: number): number[] {
  const keys: number[] = [];
  for (let i = 0; i + n <= pitches.length; i++) {
    if (n <= 7) {
      let key = 0;
      for (let k = 0; k < n; k++) key = key * 128 + (pitches[i + k] & 127);
      keys.push(key);
    } else {
      let h1 = 0x811c9dc5, h2 = 0x9747b28c;
      for (let k = 0; k < n; k++) {
        const p = pitches[i + k] & 127;
        h1 = Math.imul(h1 ^ p, 0x01000193);
        h2 = Math.imul(h2 ^ (p + 0x9e37), 0x5bd1e995);
        h2 ^= h2 >>> 15;
      }
      h2 = Math.imul(h2 ^ (h2 >>> 13), 0xc2b2ae35);
      keys.push((h1 >>> 11) * 4294967296 + ((h2 ^ (h2 >>> 16)) >>> 0));
    }
  }
  return keys;
}

/**
 * Marks the notes of a sequence that repeat a pattern too often in a row:
 * where a pattern of `patternLength` pitches occurs back to back, the notes of
 * its occurrences after the first `maxRepeats` are flagged. With
 * `patternLength` 1 this is RL Tuner's rule against one note repeated more
 * than `maxRepeats` (4) times in a row (Jaques et al., "Sequence Tutor", 2017).
 *
 * @param pitches The sequence (usually a top line).
 * @param options `patternLength` (>= 1) and `maxRepeats` (>= 1).
 * @returns One flag per pitch.
 * @example
 * ```ts
 * import { excessRepeatFlags } from "./ngrams.ts";
 * // Six C's in a row: the 5th and 6th are one and two too many.
 * excessRepeatFlags([60, 60, 60, 60, 60, 60], { patternLength: 1, maxRepeats: 4 });
 * // [false, false, false, false, true, true]
 * ```
 */
export function excessRepeatFlags(
  pitches: readonly number[],
  options: { patternLength: number; maxRepeats: number },
): boolean[] {
  const { patternLength: len, maxRepeats } = options;
  const flags = new Array<boolean>(pitches.length).fill(false);
  // matches = how many positions in a row (ending here) equal the pitch `len` earlier.
  let matches = 0;
  for (let j = len; j < pitches.length; j++) {
    matches = pitches[j] === pitches[j - len] ? matches + 1 : 0;
    if (matches === 0) continue;
    // The run began at j - matches - len + 1; this note is in occurrence
    // floor(offset / len) + 1 of the pattern.
    const occurrence = Math.floor((matches + len - 1) / len) + 1;
    if (occurrence > maxRepeats) flags[j] = true;
  }
  return flags;
}

/**
 * A set of n-gram keys (from {@linkcode pitchNgramKeys}) stored in one
 * open-addressing Float64Array: 12 to 23 bytes a key instead of the ~40 a
 * `Set<number>` takes. The 4.45 million distinct 8-grams of MAESTRO's train
 * split took 68 MB and 1.9 s to build.
 */
export class NgramSet {
  #slots: Float64Array;
  #size = 0;

  /** @param capacityHint Expected number of distinct keys. */
  constructor(capacityHint = 1024) {
    let capacity = 1024;
    while (capacity * 0.7 < capacityHint) capacity *= 2;
    this.#slots = new Float64Array(capacity);
  }

  /** Number of distinct keys. */
  get size(): number {
    return this.#size;
  }

  #find(slots: Float64Array, key: number): number {
    // Keys are stored plus one so that 0 marks an empty slot.
    const stored = key + 1;
    const lo = stored >>> 0;
    const hi = Math.floor(stored / 4294967296) >>> 0;
    const mask = slots.length - 1;
    let i = Math.imul(lo ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> 0 & mask;
    while (slots[i] !== 0 && slots[i] !== stored) i = (i + 1) & mask;
    return i;
  }

  /** Adds a key (a non-negative integer below 2^53 − 1). */
  add(key: number): void {
    if ((this.#size + 1) > this.#slots.length * 0.7) this.#grow();
    const i = this.#find(this.#slots, key);
    if (this.#slots[i] === 0) {
      this.#slots[i] = key + 1;
      this.#size++;
    }
  }

  /** True when the key was added. */
  has(key: number): boolean {
    return this.#slots[this.#find(this.#slots, key)] === key + 1;
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Float64Array(old.length * 2);
    for (const stored of old) {
      if (stored !== 0) this.#slots[this.#find(this.#slots, stored - 1)] = stored;
    }
  }
}

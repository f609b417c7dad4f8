/**
 * Data augmentation for pretraining: pitch transposition and time stretch,
 * the two augmentations Music Transformer used on MAESTRO (Huang et al.,
 * "Music Transformer", ICLR 2019, section 5.2: transpositions up to a minor
 * third, time stretches up to ±5%).
 *
 * Pieces are augmented before encoding (`augmentPiece`); token windows of the
 * performance encoding can be transposed directly (`transposeTokens`), which
 * is what a pretraining loop over fixed windows needs.
 *
 * @module
 */

import type { Rng } from "../../mod.ts";
import type { Piece } from "./types.ts";

/** Lowest key of an 88-key piano (A0). */
export const PIANO_MIN_PITCH = 21;
/** Highest key of an 88-key piano (C8). */
export const PIANO_MAX_PITCH = 108;

/** A pitch range, inclusive. */
export interface PitchRange {
  /** Lowest pitch kept (default 21, A0). */
  minPitch?: number;
  /** Highest pitch kept (default 108, C8). */
  maxPitch?: number;
}

/**
 * Transposes a piece, dropping notes that leave the pitch range.
 *
 * @param piece The piece; not modified.
 * @param semitones Integer shift, positive is up.
 * @param options Pitch range to keep (default: the piano's 21..108).
 * @returns A new piece with shifted notes.
 * @throws {Error} When `semitones` is not an integer.
 * @example
 * ```ts
 * import { transposePiece } from "./augment.ts";
 * const piece = { id: "a", tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5],
 *   notes: [{ pitch: 60, startSec: 0, endSec: 1, velocity: 80 }] };
 * console.assert(transposePiece(piece, 3).notes[0].pitch === 63);
 * ```
 */
export function transposePiece(piece: Piece, semitones: number, options: PitchRange = {}): Piece {
  if (!Number.isInteger(semitones)) {
    throw new Error(
      `Cannot transpose "${piece.id}": semitones must be an integer, received ${semitones}`,
    );
  }
  const min = options.minPitch ?? PIANO_MIN_PITCH;
  const max = options.maxPitch ?? PIANO_MAX_PITCH;
  const notes = [];
  for (const note of piece.notes) {
    const pitch = note.pitch + semitones;
    if (pitch >= min && pitch <= max) notes.push({ ...note, pitch });
  }
  return { ...piece, notes, beatsSec: [...piece.beatsSec] };
}

/**
 * Stretches a piece in time: every time (notes and beats) is multiplied by
 * `factor`, and the tempo divided by it.
 *
 * @param piece The piece; not modified.
 * @param factor Time factor > 0; 1.05 is 5% slower.
 * @returns A new piece.
 * @throws {Error} When `factor` is not a positive finite number.
 */
export function stretchPiece(piece: Piece, factor: number): Piece {
  if (!(factor > 0) || !Number.isFinite(factor)) {
    throw new Error(
      `Cannot stretch "${piece.id}": factor must be a number > 0, received ${factor}`,
    );
  }
  return {
    ...piece,
    notes: piece.notes.map((note) => ({
      ...note,
      startSec: note.startSec * factor,
      endSec: note.endSec * factor,
    })),
    tempoBpm: piece.tempoBpm / factor,
    beatsSec: piece.beatsSec.map((t) => t * factor),
  };
}

/** Options of {@linkcode augmentPiece}. */
export interface AugmentOptions extends PitchRange {
  /** Largest transposition either way in semitones (default 3). */
  maxTransposeSemitones?: number;
  /** Smallest time factor (default 0.95). */
  minStretch?: number;
  /** Largest time factor (default 1.05). */
  maxStretch?: number;
}

/**
 * Transposes by a uniform random integer in ±`maxTransposeSemitones` and
 * stretches by a uniform random factor in [`minStretch`, `maxStretch`].
 *
 * @param piece The piece; not modified.
 * @param rng Seeded generator (two draws per call).
 * @param options Ranges; defaults ±3 semitones and 0.95–1.05.
 * @returns A new piece.
 */
export function augmentPiece(piece: Piece, rng: Rng, options: AugmentOptions = {}): Piece {
  const maxShift = options.maxTransposeSemitones ?? 3;
  const minStretch = options.minStretch ?? 0.95;
  const maxStretch = options.maxStretch ?? 1.05;
  const semitones = rng.int(2 * maxShift + 1) - maxShift;
  const factor = minStretch + rng.next() * (maxStretch - minStretch);
  return stretchPiece(transposePiece(piece, semitones, options), factor);
}

/**
 * Transposes a token sequence of the performance encoding (`tokenizer/performance`,
 * any params: NOTE_ON is ids 0..127 and NOTE_OFF 128..255 in every
 * configuration) by shifting its NOTE_ON and NOTE_OFF ids. Other tokens are
 * copied.
 *
 * @param tokens Performance tokens.
 * @param semitones Integer shift, positive is up.
 * @param options Pitch range every note must stay in (default: the piano's 21..108).
 * @returns The shifted tokens, or null when a note would leave the range.
 * @throws {Error} When `semitones` is not an integer.
 * @example
 * ```ts
 * import { transposeTokens } from "./augment.ts";
 * // NOTE_ON_60, TIME_SHIFT_1, NOTE_OFF_60
 * const up = transposeTokens(Int32Array.from([60, 256, 188]), 2);
 * console.assert(up !== null && up[0] === 62 && up[2] === 190);
 * ```
 */
export function transposeTokens(
  tokens: ArrayLike<number>,
  semitones: number,
  options: PitchRange = {},
): Int32Array | null {
  if (!Number.isInteger(semitones)) {
    throw new Error(`Cannot transpose tokens: semitones must be an integer, received ${semitones}`);
  }
  const min = options.minPitch ?? PIANO_MIN_PITCH;
  const max = options.maxPitch ?? PIANO_MAX_PITCH;
  const out = Int32Array.from(tokens);
  for (let i = 0; i < out.length; i++) {
    const id = out[i];
    if (id < 0 || id >= 256) continue;
    const pitch = (id & 127) + semitones;
    if (pitch < min || pitch > max) return null;
    out[i] = id + semitones;
  }
  return out;
}

/**
 * Time-stretches a performance-encoding token sequence by `factor`: every run
 * of TIME_SHIFT tokens is replaced by the shifts of its stretched length,
 * rounded against the running total so that rounding never drifts. Other
 * tokens are kept in order. Music Transformer stretched MAESTRO by
 * 0.95–1.05 this way (Huang et al. 2019).
 *
 * @param tokens Performance-encoding ids (TIME_SHIFT ids are `shiftBase + steps - 1`).
 * @param factor Time factor, e.g. 1.05 plays 5% slower.
 * @param options Layout of the encoding (defaults: ids 256..355 for 1..100 steps).
 * @returns The stretched sequence (its length may differ from the input's).
 */
export function stretchTokens(
  tokens: ArrayLike<number>,
  factor: number,
  options: { shiftBase?: number; maxShiftSteps?: number } = {},
): Int32Array {
  if (!(factor > 0) || !Number.isFinite(factor)) {
    throw new Error(`Cannot stretch tokens: factor must be a number > 0, received ${factor}`);
  }
  const base = options.shiftBase ?? 256;
  const maxSteps = options.maxShiftSteps ?? 100;
  const out: number[] = [];
  let sourceSteps = 0;
  let emittedSteps = 0;
  const flush = () => {
    let steps = Math.round(sourceSteps * factor) - emittedSteps;
    emittedSteps += Math.max(0, steps);
    while (steps > 0) {
      const step = Math.min(steps, maxSteps);
      out.push(base + step - 1);
      steps -= step;
    }
  };
  for (let i = 0; i < tokens.length; i++) {
    const id = tokens[i];
    if (id >= base && id < base + maxSteps) {
      sourceSteps += id - base + 1;
      continue;
    }
    flush();
    out.push(id);
  }
  flush();
  return Int32Array.from(out);
}

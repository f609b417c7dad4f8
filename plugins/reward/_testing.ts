/**
 * Fixtures shared by the reward terms' tests: a small synthetic reference
 * corpus and excerpts of real pieces.
 *
 * @module
 */

import { createRng } from "../../mod.ts";
import { generateSyntheticPiece } from "../load/_synthetic.ts";
import { cropPiece, pieceEndSec } from "../_music/theory.ts";
import type { MidiCorpus, Piece } from "../_music/types.ts";

/**
 * `count` synthetic 8-bar pieces at 120 bpm (seed 11), every tenth in the
 * validation split unless `validation` is false.
 */
export function syntheticCorpus(count = 60, validation = true): MidiCorpus {
  const rng = createRng(11);
  const pieces = Array.from({ length: count }, (_, i) => ({
    ...generateSyntheticPiece(rng, { id: `s${i}`, bars: 8, tempoMinBpm: 120, tempoMaxBpm: 120 })
      .piece,
    split: validation && i % 10 === 9 ? "validation" as const : "train" as const,
  }));
  return { pieces, skipped: [] };
}

/** One excerpt of `sec` seconds per piece, at a seeded offset, ids `x0`, `x1`, ... */
export function excerpts(pieces: readonly Piece[], sec: number, seed: number): Piece[] {
  const rng = createRng(seed);
  return pieces.map((p, i) => ({
    ...cropPiece(p, {
      startSec: rng.next() * Math.max(0, pieceEndSec(p.notes) - sec),
      durationSec: sec,
    }),
    id: `x${i}`,
  }));
}

/** The mean of a list. */
export const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

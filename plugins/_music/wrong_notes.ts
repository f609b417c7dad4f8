/**
 * Planted wrong notes, to measure what a refinement repairs and what it
 * spoils: {@linkcode plantWrongNotes} moves a share of a piece's notes a
 * minor second up or down (timing and velocity unchanged), and
 * {@linkcode scoreRepair} compares a refined piece with the clean original
 * note by note. Used by `bench/refine_wrong_notes.ts` and the refinement
 * tests.
 *
 * @module
 */

import type { Rng } from "../../mod.ts";
import { clashRate } from "./metrics.ts";
import type { Note, Piece } from "./types.ts";

/** A piece with planted wrong notes and which of its notes they are. */
export interface PlantedPiece {
  piece: Piece;
  /** One flag per note, in the order of the clean piece's notes (planting keeps the order). */
  wrong: boolean[];
}

/**
 * Moves each note, with probability `share`, a semitone up or down (equally
 * likely), keeping its onset, duration and velocity. Notes stay in the clean
 * piece's order, so note `i` of the result is note `i` of the original.
 *
 * @param rng Seeded randomness.
 * @param piece The clean piece.
 * @param share Probability that a note is made wrong, in [0, 1].
 * @returns The planted piece and the wrong-note flags.
 */
export function plantWrongNotes(rng: Rng, piece: Piece, share: number): PlantedPiece {
  const wrong: boolean[] = [];
  const notes = piece.notes.map((n) => {
    const isWrong = rng.next() < share;
    wrong.push(isWrong);
    return isWrong ? { ...n, pitch: n.pitch + (rng.next() < 0.5 ? -1 : 1) } : n;
  });
  return { piece: { ...piece, notes }, wrong };
}

/** Counts of a repair, summed over pieces by {@linkcode addRepair}. */
export interface RepairCounts {
  /** Notes of the clean pieces. */
  notes: number;
  /** Notes the planting left alone. */
  right: number;
  /** Right notes that leave the refinement identical (pitch, onset, duration, velocity). */
  rightKept: number;
  /** Planted wrong notes. */
  wrong: number;
  /** Wrong notes moved back to their original pitch (timing and velocity kept). */
  wrongRestored: number;
  /** Wrong notes removed. */
  wrongRemoved: number;
  /** Wrong notes left exactly as planted. */
  wrongLeft: number;
  /** Input (planted) notes that leave the refinement identical. */
  inputKept: number;
  /** Notes in the refined pieces that match no input note's onset, duration and velocity. */
  added: number;
  /** Sums of per-piece clash rates (see `clashRate`), and the number of pieces. */
  clashClean: number;
  clashPlanted: number;
  clashRefined: number;
  pieces: number;
}

/** Zero counts, to sum pieces into. */
export function emptyRepair(): RepairCounts {
  return {
    notes: 0,
    right: 0,
    rightKept: 0,
    wrong: 0,
    wrongRestored: 0,
    wrongRemoved: 0,
    wrongLeft: 0,
    inputKept: 0,
    added: 0,
    clashClean: 0,
    clashPlanted: 0,
    clashRefined: 0,
    pieces: 0,
  };
}

const timing = (n: Note) => `${n.startSec}|${n.endSec}|${n.velocity}`;
const exact = (n: Note) => `${n.pitch}|${timing(n)}`;

/**
 * Scores one refined piece against its clean original and adds the counts
 * to `into`. A note counts as kept only when a refined note has exactly its
 * pitch, onset, duration and velocity; a wrong note is restored when a
 * refined note has its original pitch and its exact timing and velocity.
 *
 * @param into The running counts (modified).
 * @param clean The piece before planting.
 * @param planted The planted piece and flags.
 * @param refined The refinement's output for the planted piece.
 * @returns `into`.
 */
export function addRepair(
  into: RepairCounts,
  clean: Piece,
  planted: PlantedPiece,
  refined: Piece,
): RepairCounts {
  const out = new Map<string, number>();
  for (const n of refined.notes) out.set(exact(n), (out.get(exact(n)) ?? 0) + 1);
  const take = (key: string) => {
    const count = out.get(key) ?? 0;
    if (count === 0) return false;
    out.set(key, count - 1);
    return true;
  };
  // Exact survivors first, so a restored note cannot take a right note's match.
  const survived = planted.piece.notes.map((n) => take(exact(n)));
  const restored = clean.notes.map((n, i) => planted.wrong[i] && !survived[i] && take(exact(n)));
  // What is left of the output is notes moved elsewhere (or added): count them by timing.
  const leftByTiming = new Map<string, number>();
  for (const [key, count] of out) {
    const t = key.slice(key.indexOf("|") + 1);
    leftByTiming.set(t, (leftByTiming.get(t) ?? 0) + count);
  }
  clean.notes.forEach((original, i) => {
    into.notes++;
    if (survived[i]) into.inputKept++;
    if (!planted.wrong[i]) {
      into.right++;
      if (survived[i]) into.rightKept++;
      return;
    }
    into.wrong++;
    if (survived[i]) into.wrongLeft++;
    else if (restored[i]) into.wrongRestored++;
    else if (!((leftByTiming.get(timing(original)) ?? 0) > 0)) into.wrongRemoved++;
  });
  const inputTimings = new Set(planted.piece.notes.map(timing));
  into.added += refined.notes.filter((n) => !inputTimings.has(timing(n))).length;
  into.clashClean += clashRate(clean);
  into.clashPlanted += clashRate(planted.piece);
  into.clashRefined += clashRate(refined);
  into.pieces++;
  return into;
}

/** The headline figures of summed repair counts, as shares in [0, 1]. */
export function repairSummary(c: RepairCounts): {
  clashClean: number;
  clashPlanted: number;
  clashRefined: number;
  /** clashRefined / clashPlanted: at most 0.5 means the clashes fell by at least half. */
  clashRatio: number;
  rightKept: number;
  inputKept: number;
  cleanRestored: number;
  wrongRestored: number;
  wrongRemoved: number;
  wrongLeft: number;
} {
  const clashPlanted = c.clashPlanted / c.pieces;
  const clashRefined = c.clashRefined / c.pieces;
  return {
    clashClean: c.clashClean / c.pieces,
    clashPlanted,
    clashRefined,
    clashRatio: clashRefined / clashPlanted,
    rightKept: c.rightKept / c.right,
    inputKept: c.inputKept / c.notes,
    cleanRestored: (c.rightKept + c.wrongRestored) / c.notes,
    wrongRestored: c.wrongRestored / c.wrong,
    wrongRemoved: c.wrongRemoved / c.wrong,
    wrongLeft: c.wrongLeft / c.wrong,
  };
}

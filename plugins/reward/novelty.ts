/**
 * `reward/novelty`: originality of a piece, in [0, 1].
 *
 * score = (wC·c(C) + wL·c(L) + wB·c(B)) / (wC + wL + wB), where c()
 * calibrates each raw part on real excerpts of the piece's length (see
 * `plugins/_music/calibration.ts`), and, with a piece's pitch n-grams taken
 * from its pitch sequence in (startSec, pitch) order, n = `ngramLength`:
 * - C, not copied: 1 − share of the piece's n-grams (counted with
 *   repetition) that occur anywhere in the training corpus. C is matched to
 *   how novel held-out real pieces are: it is calibrated on excerpts of the
 *   corpus's validation and test pieces measured against its train pieces,
 *   so a copy of the corpus (C near 0) scores low, and so does noise, whose
 *   n-grams real music never shares (C near 1, above held-out real music).
 *   The corpus n-gram set is built once per corpus array and memoised.
 * - L, no loops: 1 − share of top-line notes that repeat too much. After RL
 *   Tuner (Jaques et al., "Sequence Tutor", ICML 2017), a note repeated more
 *   than `maxRepeats` times in a row is flagged from its (maxRepeats+1)-th
 *   occurrence on; likewise a pattern of 2..`maxPatternLength` notes repeated
 *   back to back more than `maxPatternRepeats` times is flagged from its
 *   (maxPatternRepeats+1)-th occurrence on.
 * - B, batch variety: share of the piece's distinct n-grams that no other
 *   piece of the batch contains. A batch of identical pieces scores 0, a
 *   batch with nothing in common 1. This is the per-piece form of the
 *   distinct n-gram ratio across the batch, so each piece gets its own credit.
 *
 * L and B are calibrated on train excerpts (higher is better), B in batches of
 * 32 excerpts. A part undefined for a piece (C and B with fewer than n notes,
 * B in a batch of one) is not dropped: it scores as often as real excerpts of
 * that length leave it undefined. A piece without notes scores 0.
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import type { RewardContext, RewardTerm } from "../_music/components.ts";
import {
  excessRepeatFlags,
  NgramSet,
  pitchNgramKeys,
  pitchSequence,
  topLine,
} from "../_music/theory.ts";
import { calibratedTerm } from "./_calibrated.ts";
import type { Piece } from "../_music/types.ts";

/** Memo: corpus array → n → its n-gram set. Dropped with the corpus array. */
const corpusNgrams = new WeakMap<readonly Piece[], Map<number, NgramSet>>();

/**
 * The set of all pitch n-grams of a corpus, built once per corpus array and n.
 *
 * @param corpus The training pieces (keep passing the same array to hit the memo).
 * @param n The n-gram length.
 * @returns The set.
 */
export function corpusNgramSet(corpus: readonly Piece[], n: number): NgramSet {
  let byN = corpusNgrams.get(corpus);
  if (!byN) {
    byN = new Map();
    corpusNgrams.set(corpus, byN);
  }
  let set = byN.get(n);
  if (!set) {
    const total = corpus.reduce((sum, piece) => sum + piece.notes.length, 0);
    set = new NgramSet(total);
    for (const piece of corpus) {
      for (const key of pitchNgramKeys(pitchSequence(piece.notes), n)) set.add(key);
    }
    byN.set(n, set);
  }
  return set;
}

/** Options of {@linkcode noveltyParts}; the plugin's params of the same names. */
export interface NoveltyOptions {
  ngramLength: number;
  maxRepeats: number;
  maxPatternLength: number;
  maxPatternRepeats: number;
}

/** The three parts of the novelty score of each piece (NaN where undefined). */
export interface NoveltyParts {
  notCopied: number;
  noLoops: number;
  batchVariety: number;
}

/**
 * Share of a top line's notes flagged by {@linkcode excessRepeatFlags} for any
 * pattern length 1..maxPatternLength.
 */
export function loopShare(pitches: readonly number[], options: NoveltyOptions): number {
  if (pitches.length === 0) return NaN;
  const flagged = new Array<boolean>(pitches.length).fill(false);
  for (let len = 1; len <= options.maxPatternLength; len++) {
    const maxRepeats = len === 1 ? options.maxRepeats : options.maxPatternRepeats;
    excessRepeatFlags(pitches, { patternLength: len, maxRepeats }).forEach((f, i) => {
      if (f) flagged[i] = true;
    });
  }
  return flagged.filter(Boolean).length / pitches.length;
}

/**
 * Computes C, L and B (see the module doc) for every piece of a batch.
 *
 * @param pieces The batch.
 * @param context `corpus` for C.
 * @param options n-gram and repetition settings; `corpus` overrides the
 *   context's corpus for C.
 * @returns One set of parts per piece.
 */
export function noveltyParts(
  pieces: readonly Piece[],
  context: RewardContext,
  options: NoveltyOptions & { corpus?: readonly Piece[] },
): NoveltyParts[] {
  const n = options.ngramLength;
  const corpus = options.corpus ?? context.corpus;
  const corpusSet = corpus ? corpusNgramSet(corpus, n) : undefined;
  const keysOf = pieces.map((piece) => pitchNgramKeys(pitchSequence(piece.notes), n));
  // How many pieces of the batch contain each n-gram (each piece counted once).
  const piecesWith = new Map<number, number>();
  for (const keys of keysOf) {
    for (const key of new Set(keys)) piecesWith.set(key, (piecesWith.get(key) ?? 0) + 1);
  }
  return pieces.map((piece, i) => {
    const keys = keysOf[i];
    let notCopied = NaN;
    if (corpusSet && keys.length > 0) {
      notCopied = 1 - keys.filter((key) => corpusSet.has(key)).length / keys.length;
    }
    let batchVariety = NaN;
    if (pieces.length > 1 && keys.length > 0) {
      const distinct = [...new Set(keys)];
      batchVariety = distinct.filter((key) => piecesWith.get(key) === 1).length / distinct.length;
    }
    const line = topLine(piece.notes).map((note) => note.pitch);
    return { notCopied, noLoops: 1 - loopShare(line, options), batchVariety };
  });
}

export default definePlugin({
  name: "reward/novelty",
  kind: "reward",
  version: "2.0.0",
  description:
    "Rewards pieces that do not copy the training corpus, do not loop, and differ from the rest of the batch",
  params: {
    ngramLength: p.integer({
      default: 4,
      min: 2,
      description: "Length of the pitch n-grams compared with the corpus and across the batch",
    }),
    maxRepeats: p.integer({
      default: 4,
      min: 1,
      description: "Times one note may sound in a row on the top line before repeats are penalised",
    }),
    maxPatternLength: p.integer({
      default: 4,
      min: 1,
      description: "Longest pattern (in notes) checked for back-to-back repetition",
    }),
    maxPatternRepeats: p.integer({
      default: 4,
      min: 1,
      description:
        "Times a pattern of 2 or more notes may repeat back to back before it is penalised",
    }),
    corpusWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of the share of n-grams not found in the training corpus",
    }),
    repetitionWeight: p.number({
      default: 1,
      min: 0,
      description: "Weight of the share of top-line notes that are not excessive repeats or loops",
    }),
    batchWeight: p.number({
      default: 1,
      min: 0,
      description:
        "Weight of the share of the piece's n-grams found in no other piece of the batch",
    }),
  },
  create(params): RewardTerm {
    const specs = [
      { name: "notCopied", weight: params.corpusWeight, direction: "match", minScale: 0.02 },
      { name: "noLoops", weight: params.repetitionWeight, direction: "higher", minScale: 0.02 },
      { name: "batchVariety", weight: params.batchWeight, direction: "higher", minScale: 0.02 },
    ] as const;
    const partsOf = (pieces: readonly Piece[], context: RewardContext, corpus: readonly Piece[]) =>
      noveltyParts(pieces, context, { ...params, corpus }).map((parts) => ({ ...parts }));
    // C is calibrated on held-out pieces, L and B on train excerpts: two calibrated halves.
    const weightC = params.corpusWeight;
    const weightLB = params.repetitionWeight + params.batchWeight;
    if (!(weightC >= 0 && weightLB >= 0) || weightC + weightLB <= 0) {
      throw new Error(
        `Cannot create reward term "reward/novelty": corpusWeight, repetitionWeight and batchWeight must be >= 0 and not all 0, received ${params.corpusWeight}, ${params.repetitionWeight}, ${params.batchWeight}`,
      );
    }
    const copied = weightC > 0 && calibratedTerm({
      name: "reward/novelty#copied",
      params,
      specs: [specs[0]],
      excerpts: "heldOut",
      parts: (pieces, context, role) =>
        partsOf(
          pieces,
          context,
          role === "reference" ? context.reference!.trainForHeldOut : context.reference!.train,
        ),
    });
    const variety = weightLB > 0 && calibratedTerm({
      name: "reward/novelty#variety",
      params,
      specs: [specs[1], specs[2]],
      parts: (pieces, context) => partsOf(pieces, context, context.reference!.train),
    });
    return {
      score(pieces, context) {
        const c = copied ? copied.score(pieces, context) : pieces.map(() => 0);
        const lb = variety ? variety.score(pieces, context) : pieces.map(() => 0);
        return pieces.map((_, i) => (weightC * c[i] + weightLB * lb[i]) / (weightC + weightLB));
      },
    };
  },
});

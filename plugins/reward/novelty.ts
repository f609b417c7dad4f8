/**
 * `reward/novelty`: originality of a piece, in [0, 1].
 *
 * score = (wC·C + wL·L + wB·B) / (wC + wL + wB), where, with a piece's pitch
 * n-grams taken from its pitch sequence in (startSec, pitch) order,
 * n = `ngramLength`:
 * - C, not copied: 1 − share of the piece's n-grams (counted with
 *   repetition) that occur anywhere in the training corpus
 *   (`context.corpus`). The corpus n-gram set is built once per corpus array
 *   and memoised.
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
 * A part undefined for a piece is left out and the other weights renormalised:
 * C without a corpus or with fewer than n notes, B with fewer than n notes or
 * a batch of one. A piece without notes scores 0.
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
  weightedMean,
} from "../_music/theory.ts";
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
 * @param options n-gram and repetition settings.
 * @returns One set of parts per piece.
 */
export function noveltyParts(
  pieces: readonly Piece[],
  context: RewardContext,
  options: NoveltyOptions,
): NoveltyParts[] {
  const n = options.ngramLength;
  const corpusSet = context.corpus ? corpusNgramSet(context.corpus, n) : undefined;
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
  version: "1.0.0",
  description:
    "Rewards pieces that do not copy the training corpus, do not loop, and differ from the rest of the batch",
  params: {
    ngramLength: p.integer({
      default: 8,
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
    const weights = [params.corpusWeight, params.repetitionWeight, params.batchWeight];
    if (!weights.every((w) => w >= 0) || weights.every((w) => w === 0)) {
      throw new Error(
        `Cannot create reward term "reward/novelty": corpusWeight, repetitionWeight and batchWeight must be >= 0 and not all 0, received ${
          weights.join(", ")
        }`,
      );
    }
    return {
      score(pieces, context) {
        const parts = noveltyParts(pieces, context ?? {}, params);
        return pieces.map((piece, i) => {
          if (piece.notes.length === 0) return 0;
          return weightedMean([
            { weight: params.corpusWeight, value: parts[i].notCopied },
            { weight: params.repetitionWeight, value: parts[i].noLoops },
            { weight: params.batchWeight, value: parts[i].batchVariety },
          ], 0.5);
        });
      },
    };
  },
});

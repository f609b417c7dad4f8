/**
 * `reward/novelty`: originality of a piece, in [0, 1].
 *
 * score = weighted geometric mean of four calibrated parts (see
 * `plugins/_music/calibration.ts`), with a piece's pitch n-grams taken from
 * its pitch sequence in (startSec, pitch) order:
 * - C, not copied: 1 − share of the piece's `copyNgramLength`-grams (8) found
 *   in the train pieces. A shared 8-gram is a quotation, so a copy of the
 *   corpus has C near 0.
 * - F, unfamiliar: 1 − share of its `ngramLength`-grams (4) found in the
 *   train pieces. Real music shares many short figures with its corpus; noise
 *   shares none (F = 1).
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
 * C and F (weight `corpusWeight` each) are matched to how novel held-out real
 * pieces are: calibrated on excerpts of the corpus's validation and test
 * pieces measured against its train pieces. So both a copy of the corpus (C
 * near 0, below real music) and noise (F = 1, above it) score low. L and B
 * (higher is better) are calibrated on train excerpts, B in batches of 32
 * excerpts of distinct pieces. A part undefined for a piece (fewer than n
 * notes, a batch of one) scores as often as real excerpts of that length leave
 * it undefined. The n-gram sets are built once per reference corpus and n,
 * memoised on it.
 * A piece without notes scores 0.
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import type { RewardContext, RewardTerm } from "../_music/components.ts";
import { topLine } from "../_music/theory.ts";
import { excessRepeatFlags, NgramSet, pitchNgramKeys, pitchSequence } from "../_music/ngrams.ts";
import { calibratedTerm } from "./_calibrated.ts";
import type { Piece } from "../_music/types.ts";

/**
 * The set of all pitch n-grams of a corpus. The plugin memoises it on the
 * reference corpus (`context.reference.memo`), so it is built once per stage
 * and n.
 *
 * @param corpus The training pieces.
 * @param n The n-gram length.
 * @returns The set.
 */
export function corpusNgramSet(corpus: readonly Piece[], n: number): NgramSet {
  const total = corpus.reduce((sum, piece) => sum + piece.notes.length, 0);
  const set = new NgramSet(total);
  for (const piece of corpus) {
    for (const key of pitchNgramKeys(pitchSequence(piece.notes), n)) set.add(key);
  }
  return set;
}

/** Options of {@linkcode noveltyParts}; the plugin's params of the same names. */
export interface NoveltyOptions {
  ngramLength: number;
  /** n of the copy check (long n-grams: a shared 8-gram is a quotation); default 8. */
  copyNgramLength?: number;
  maxRepeats: number;
  maxPatternLength: number;
  maxPatternRepeats: number;
}

/** The three parts of the novelty score of each piece (NaN where undefined). */
export interface NoveltyParts {
  /** 1 − share of the piece's `copyNgramLength`-grams found in the corpus. */
  notCopied: number;
  /** 1 − share of the piece's `ngramLength`-grams found in the corpus. */
  unfamiliar: number;
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
  options: NoveltyOptions & {
    corpus?: readonly Piece[];
    ngramSet?: (corpus: readonly Piece[], n: number) => NgramSet;
  },
): NoveltyParts[] {
  const n = options.ngramLength;
  const nCopy = options.copyNgramLength ?? 8;
  const corpus = options.corpus ?? context.corpus;
  const ngramSet = options.ngramSet ?? corpusNgramSet;
  const corpusSet = corpus ? ngramSet(corpus, n) : undefined;
  const copySet = corpus ? ngramSet(corpus, nCopy) : undefined;
  const keysOf = pieces.map((piece) => pitchNgramKeys(pitchSequence(piece.notes), n));
  const unseenShare = (keys: number[], set: NgramSet | undefined) =>
    set && keys.length > 0 ? 1 - keys.filter((key) => set.has(key)).length / keys.length : NaN;
  // How many pieces of the batch contain each n-gram (each piece counted once).
  const piecesWith = new Map<number, number>();
  for (const keys of keysOf) {
    for (const key of new Set(keys)) piecesWith.set(key, (piecesWith.get(key) ?? 0) + 1);
  }
  return pieces.map((piece, i) => {
    const keys = keysOf[i];
    const notCopied = nCopy === n
      ? unseenShare(keys, copySet)
      : unseenShare(pitchNgramKeys(pitchSequence(piece.notes), nCopy), copySet);
    const unfamiliar = unseenShare(keys, corpusSet);
    let batchVariety = NaN;
    if (pieces.length > 1 && keys.length > 0) {
      const distinct = [...new Set(keys)];
      batchVariety = distinct.filter((key) => piecesWith.get(key) === 1).length / distinct.length;
    }
    const line = topLine(piece.notes).map((note) => note.pitch);
    return { notCopied, unfamiliar, noLoops: 1 - loopShare(line, options), batchVariety };
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
      description:
        "Length of the short pitch n-grams: familiarity with the corpus (noise shares none) and variety across the batch",
    }),
    copyNgramLength: p.integer({
      default: 8,
      min: 2,
      description:
        "Length of the long pitch n-grams of the copy check (a shared 8-gram is a quotation)",
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
      description:
        "Weight of the comparison with the corpus (long n-grams not copied, short n-grams familiar), matched to held-out real pieces",
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
      {
        name: "notCopied",
        param: "corpusWeight",
        weight: params.corpusWeight,
        direction: "match",
        minScale: 0.02,
        excerpts: "heldOut",
      },
      {
        name: "unfamiliar",
        param: "corpusWeight",
        weight: params.corpusWeight,
        direction: "match",
        minScale: 0.02,
        excerpts: "heldOut",
      },
      {
        name: "noLoops",
        param: "repetitionWeight",
        weight: params.repetitionWeight,
        direction: "higher",
        minScale: 0.02,
      },
      {
        name: "batchVariety",
        param: "batchWeight",
        weight: params.batchWeight,
        direction: "higher",
        minScale: 0.02,
      },
    ] as const;
    // Parts that compare with the corpus are calibrated on held-out pieces, the rest on train.
    return calibratedTerm({
      name: "reward/novelty",
      params,
      specs: [...specs],
      parts: (pieces, context, role, source) => {
        const reference = context.reference!;
        // Held-out real pieces are compared with the train pieces they are not part of.
        const corpus = role === "reference" && source === "heldOut"
          ? reference.trainForHeldOut
          : reference.train;
        // The n-gram sets are built once per reference corpus (so once per stage) and n;
        // trainForHeldOut is often train itself, and then shares its sets.
        const which = corpus === reference.train ? "train" : "trainForHeldOut";
        const ngramSet = (pieces: readonly Piece[], n: number) =>
          reference.memo(`reward/novelty|ngrams|${which}|${n}`, () => corpusNgramSet(pieces, n));
        return noveltyParts(pieces, context, { ...params, corpus, ngramSet }).map((parts) => ({
          ...parts,
        }));
      },
    });
  },
});

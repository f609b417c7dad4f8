/**
 * Detects a collapsed policy: one that still produces finite losses but has
 * stopped writing music. RL fine-tuning with too high a learning rate ends
 * there (the policy writes empty pieces, or two notes, or one pattern again
 * and again, with near-certainty), and nothing else in a run fails. The
 * signs, any of which flags a batch:
 *
 * - far fewer notes per piece than a reference (the corpus, or the policy
 *   before fine-tuning), or, with no reference, than the tokens sampled could
 *   hold (a healthy model writes a note every 3-5 tokens of the performance or
 *   REMI encoding; a collapsed one fewer than one per {@linkcode TOKENS_PER_NOTE_FLOOR});
 * - a distinct pitch n-gram ratio near zero (the pieces repeat one pattern);
 * - a mean log-probability per sampled token near zero (the policy samples
 *   one token with certainty: its entropy is gone).
 *
 * @module
 */

import { distinctNgramRatio } from "./metrics.ts";
import type { Piece } from "./types.ts";

/** A batch below this share of the reference's notes per piece is flagged. */
export const NOTES_SHARE_FLOOR = 0.25;
/** A distinct n-gram ratio below this is flagged. */
export const DISTINCT_NGRAMS_FLOOR = 0.1;
/** With no reference, fewer notes per piece than one per this many sampled tokens is flagged. */
export const TOKENS_PER_NOTE_FLOOR = 64;
/** A mean log-probability per sampled token above this (nats) is flagged. */
export const LOG_PROB_CEILING = -0.01;

/** What {@linkcode collapseReason} looks at. */
export interface BatchStats {
  /** Mean notes per piece. */
  notesPerPiece: number;
  /** Distinct pitch n-grams over all (NaN when no piece is long enough). */
  distinctNgramRatio: number;
  /** Mean log-probability of the sampled tokens (nats; undefined when unknown). */
  meanLogProb?: number;
}

/**
 * Measures a batch of pieces for {@linkcode collapseReason}.
 *
 * @param pieces The decoded pieces.
 * @param options `ngramLength` of the distinct n-gram ratio (default 4) and the
 *   mean log-probability of the sampled tokens, when known.
 * @returns Notes per piece, distinct n-gram ratio and mean log-probability.
 */
export function batchStats(
  pieces: readonly Piece[],
  options: { ngramLength?: number; meanLogProb?: number } = {},
): BatchStats {
  const notes = pieces.reduce((sum, piece) => sum + piece.notes.length, 0);
  return {
    notesPerPiece: pieces.length > 0 ? notes / pieces.length : 0,
    distinctNgramRatio: distinctNgramRatio(pieces, { ngramLength: options.ngramLength ?? 4 }),
    meanLogProb: options.meanLogProb,
  };
}

/**
 * Says why a batch looks collapsed, or nothing when it looks healthy.
 *
 * @param stats From {@linkcode batchStats}.
 * @param reference `notesPerPiece` of the corpus or of the policy before
 *   fine-tuning (same length budget), or else `tokensSampled`, the tokens each
 *   piece could have used.
 * @returns One sentence naming every sign found, or undefined.
 * @example
 * ```ts
 * import { collapseReason } from "./collapse.ts";
 * const reason = collapseReason(
 *   { notesPerPiece: 2, distinctNgramRatio: NaN },
 *   { notesPerPiece: 46 },
 * );
 * console.log(reason); // "2.0 notes per piece, far below the reference's 46.0"
 * ```
 */
export function collapseReason(
  stats: BatchStats,
  reference: { notesPerPiece?: number; tokensSampled?: number },
): string | undefined {
  const signs: string[] = [];
  const notes = stats.notesPerPiece.toFixed(1);
  if (reference.notesPerPiece !== undefined && reference.notesPerPiece > 0) {
    if (stats.notesPerPiece < NOTES_SHARE_FLOOR * reference.notesPerPiece) {
      signs.push(
        `${notes} notes per piece, far below the reference's ${reference.notesPerPiece.toFixed(1)}`,
      );
    }
  } else if (reference.tokensSampled !== undefined && reference.tokensSampled > 0) {
    if (stats.notesPerPiece < reference.tokensSampled / TOKENS_PER_NOTE_FLOOR) {
      signs.push(
        `${notes} notes per piece in ${reference.tokensSampled} tokens (a healthy model writes ` +
          `one note every 3-5 tokens)`,
      );
    }
  }
  if (
    Number.isFinite(stats.distinctNgramRatio) && stats.distinctNgramRatio < DISTINCT_NGRAMS_FLOOR
  ) {
    signs.push(
      `a distinct n-gram ratio of ${
        stats.distinctNgramRatio.toFixed(3)
      } (the pieces repeat one pattern)`,
    );
  }
  if (stats.meanLogProb !== undefined && stats.meanLogProb > LOG_PROB_CEILING) {
    signs.push(
      `a mean log-probability of ${
        stats.meanLogProb.toFixed(4)
      } per token (the policy samples with near-certainty)`,
    );
  }
  return signs.length > 0 ? signs.join("; ") : undefined;
}

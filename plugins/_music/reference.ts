/**
 * The reference corpus that calibrated reward terms measure pieces against.
 *
 * A generated piece runs for seconds while a real piece runs for minutes, and
 * most features (pitch range, scale fit, loops) depend on length. So a piece
 * is compared with real excerpts of about its own length: durations are
 * bucketed on a log2 grid (`bucketOf`: 1 s, 2 s, 4 s, ... 64 s, the nearest on
 * a log scale), and for each bucket used, `excerptsPerBucket` excerpts of that
 * length are cut from the reference pieces at seeded random offsets.
 *
 * Excerpts come from the train split (`train`), and for terms that must judge
 * novelty from held-out real pieces, from the validation and test splits
 * (`heldOut`); a corpus without such pieces holds out a seeded tenth of its
 * train pieces instead, and `train` then excludes them (`trainForHeldOut`).
 *
 * Everything is deterministic: the excerpts depend only on the corpus, the
 * bucket and the fixed seed, never on the batch being scored.
 *
 * @module
 */

import { createRng } from "../../mod.ts";
import { cropPiece, pieceEndSec } from "./theory.ts";
import type { Piece, Split } from "./types.ts";

/** Shortest and longest excerpt lengths, in seconds. */
export const MIN_BUCKET_SEC = 1;
export const MAX_BUCKET_SEC = 64;

/**
 * The excerpt length (a power of two seconds) nearest to a piece's length on a
 * log scale, within [MIN_BUCKET_SEC, MAX_BUCKET_SEC].
 *
 * @param durationSec The piece's length in seconds.
 * @returns The bucket's length in seconds.
 * @example
 * ```ts
 * import { bucketOf } from "./reference.ts";
 * bucketOf(5); // 4
 * bucketOf(6); // 8
 * bucketOf(0); // 1
 * ```
 */
export function bucketOf(durationSec: number): number {
  if (!(durationSec > MIN_BUCKET_SEC)) return MIN_BUCKET_SEC;
  const k = Math.round(Math.log2(durationSec));
  return Math.min(MAX_BUCKET_SEC, Math.max(MIN_BUCKET_SEC, 2 ** k));
}

/** A piece's length for bucketing: its last note end (0 without notes). */
export function pieceDurationSec(piece: Piece): number {
  return pieceEndSec(piece.notes);
}

/** Excerpts of one calibration batch: within a block, pieces are not repeated. */
export const EXCERPT_BLOCK = 32;

/** Options of {@linkcode ReferenceCorpus}. */
export interface ReferenceOptions {
  /** Excerpts cut per length bucket (default 192). */
  excerptsPerBucket?: number;
  /** Seed of the excerpt offsets (default 1). */
  seed?: number;
}

/**
 * Real pieces, their excerpts by length bucket, and a memo for calibrations
 * (so a term calibrates once per corpus, bucket and params, however many
 * batches it scores).
 */
export class ReferenceCorpus {
  /** Train pieces that calibration excerpts are cut from. */
  readonly train: readonly Piece[];
  /** Held-out real pieces (validation/test split, or a tenth of train). */
  readonly heldOut: readonly Piece[];
  /**
   * The train pieces that held-out pieces must be compared with: all of
   * `train` when held-out pieces come from other splits, else train less the
   * held-out tenth.
   */
  readonly trainForHeldOut: readonly Piece[];
  readonly excerptsPerBucket: number;
  readonly seed: number;
  #excerpts = new Map<string, Piece[]>();
  #memo = new Map<string, unknown>();

  /**
   * @param pieces The reference pieces with their splits.
   * @param options Excerpt count and seed.
   * @throws {Error} When no piece has notes.
   */
  constructor(pieces: ReadonlyArray<Piece & { split?: Split }>, options: ReferenceOptions = {}) {
    this.excerptsPerBucket = options.excerptsPerBucket ?? 192;
    this.seed = options.seed ?? 1;
    const withNotes = pieces.filter((piece) => piece.notes.length > 0);
    if (withNotes.length === 0) {
      throw new Error(
        "Cannot calibrate reward terms: the reference corpus has no piece with notes",
      );
    }
    const train = withNotes.filter((piece) => (piece.split ?? "train") === "train");
    const others = withNotes.filter((piece) => (piece.split ?? "train") !== "train");
    if (train.length > 0 && others.length > 0) {
      this.train = train;
      this.heldOut = others;
      this.trainForHeldOut = train;
    } else {
      // One split only: hold out every tenth piece (sorted by id, so the choice is stable).
      const all = [...(train.length > 0 ? train : others)].sort((a, b) =>
        a.id < b.id ? -1 : a.id > b.id ? 1 : 0
      );
      const held = all.filter((_, i) => i % 10 === 9);
      this.train = all;
      this.heldOut = held.length > 0 ? held : all.slice(-1);
      this.trainForHeldOut = all.filter((piece) => !this.heldOut.includes(piece));
    }
  }

  /**
   * Excerpts of `bucketSec` seconds cut from train (or held-out) pieces at
   * seeded offsets, each piece chosen with probability proportional to its
   * length; excerpts with fewer than 2 notes are redrawn (at most 10 times).
   * Within each run of {@linkcode EXCERPT_BLOCK} excerpts no piece is used
   * twice while the corpus has enough pieces, so a calibration batch of real
   * excerpts is as varied as real music (batch-level parts compare them).
   */
  excerpts(bucketSec: number, from: "train" | "heldOut" = "train"): Piece[] {
    const key = `${from}:${bucketSec}`;
    let cached = this.#excerpts.get(key);
    if (cached) return cached;
    const pieces = from === "train" ? this.train : this.heldOut;
    const ends = pieces.map((piece) => pieceEndSec(piece.notes));
    const cumulative: number[] = [];
    let total = 0;
    for (const end of ends) cumulative.push(total += Math.max(end, 1e-3));
    const rng = createRng(this.seed * 7919 + bucketSec * 104729 + (from === "train" ? 0 : 1));
    cached = [];
    let used = new Set<number>();
    for (let k = 0; k < this.excerptsPerBucket; k++) {
      if (k % EXCERPT_BLOCK === 0) used = new Set();
      let excerpt: Piece | undefined;
      for (let attempt = 0; attempt < 10; attempt++) {
        let i = -1;
        for (let draw = 0; draw < 50 && (i < 0 || used.has(i)); draw++) {
          const target = rng.next() * total;
          i = cumulative.findIndex((c) => c > target);
          if (i < 0) i = pieces.length - 1;
        }
        used.add(i);
        const spare = Math.max(0, ends[i] - bucketSec);
        const startSec = rng.next() * spare;
        excerpt = cropPiece(pieces[i], { startSec, durationSec: bucketSec });
        if (excerpt.notes.length >= 2) break;
      }
      cached.push(excerpt!);
    }
    this.#excerpts.set(key, cached);
    return cached;
  }

  /** Memoises `compute()` under `key` for the life of this reference corpus. */
  memo<T>(key: string, compute: () => T): T {
    if (!this.#memo.has(key)) this.#memo.set(key, compute());
    return this.#memo.get(key) as T;
  }
}

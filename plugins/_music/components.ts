/**
 * Interfaces of the music components that stages use: what a tokenizer
 * plugin's and a reward plugin's `create()` return.
 *
 * @module
 */

import type { FullComponentRef } from "../../mod.ts";
import type { ReferenceCorpus } from "./reference.ts";
import type { Piece, Split } from "./types.ts";

/** Turns pieces into event tokens and back. Made by `tokenizer/*` plugins. */
export interface Tokenizer {
  /** Plugin name, e.g. `"tokenizer/performance"`. */
  name: string;
  /** Number of token ids, special tokens included. */
  vocabSize: number;
  /**
   * The plugin name and full params that built this tokenizer, so that a
   * worker or a later stage can rebuild it (`{use, with}` as in YAML).
   */
  spec?: FullComponentRef;
  /** Special token ids. `bos` starts every encoded sequence, `eos` ends it. */
  special: { pad: number; bos: number; eos: number };
  /** Encodes a piece as `[bos, ...events, eos]`. */
  encode(piece: Piece): Int32Array;
  /**
   * Decodes tokens into a piece. Never throws on model output: orphan note-offs
   * are ignored, notes left open are closed after a cap, invalid orders skipped.
   */
  decode(tokens: ArrayLike<number>, options?: { id?: string }): Piece;
  /** Human-readable name of a token id, e.g. `"NOTE_ON_60"`. */
  tokenName(id: number): string;
}

/** Token sequences of a corpus, stored compactly (see the token-corpus codec). */
export interface TokenCorpus {
  /** The tokenizer plugin name and its params, so decoding can rebuild it. */
  tokenizer: FullComponentRef;
  vocabSize: number;
  /** All sequences concatenated. */
  tokens: Int32Array;
  /** `offsets[i]..offsets[i+1]` is sequence i; length = count + 1. */
  offsets: Uint32Array;
  ids: string[];
  splits: Split[];
}

/** What a reward term may look at besides the pieces it scores. */
export interface RewardContext {
  /** Training pieces, for terms that compare with the corpus (novelty). */
  corpus?: Piece[];
  /**
   * The reference corpus that calibrated terms measure pieces against (real
   * excerpts of the length of the scored piece, held-out pieces, a memo).
   * Given by `reward/composite` when it has a `corpus` input.
   */
  reference?: ReferenceCorpus;
  /**
   * A trained critic (the `critic` input of `reward/composite`), for learned
   * reward terms such as `reward/discriminator`.
   */
  critic?: unknown;
}

/**
 * Scores decoded pieces. Made by reward plugins. Scores are in [0, 1], higher
 * is better, so that weights in YAML compare like with like.
 */
export interface RewardTerm {
  /**
   * Scores a batch. Terms that judge the batch as a whole (diversity) see all
   * pieces at once.
   *
   * @returns One score per piece, each in [0, 1].
   */
  score(pieces: Piece[], context: RewardContext): number[];
}

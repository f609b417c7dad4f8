/**
 * The artifacts that pass between the RL stages, one type each: what
 * `rollout/sample` writes and the updates read (`Rollouts`), and what
 * `reward/composite` writes and the updates read (`Rewards`).
 *
 * @module
 */

import type { Piece } from "./types.ts";

/** The `rollouts` artifact: sampled sequences, their log-probabilities and pieces. */
export interface Rollouts {
  /** BOS, the primer, then sampled tokens (through EOS when it was sampled). */
  tokens: Int32Array[];
  /** Primer tokens after BOS: the first `primerLen + 1` tokens were given, not sampled. */
  primerLen: number;
  /** Per sampled token: log π(token) under the model at temperature 1 (what updates recompute). */
  logProbs: Float32Array[];
  /** Per sampled token: log-probability under the sampling distribution actually used. */
  samplingLogProbs: Float32Array[];
  /** How the tokens were drawn. */
  sampling: { temperature: number; topK: number; topP: number };
  /** The sequences decoded with the checkpoint's tokenizer. */
  pieces: Piece[];
  /** The tokenizer spec (`{use, with}`) the tokens belong to. */
  tokenizer: unknown;
  /** Optimizer step of the checkpoint that sampled them. */
  modelStep: number;
}

/** What the `rewards` output holds. */
export interface Rewards {
  /** Weighted mean of the terms per piece, in [0, 1]. */
  total: number[];
  /** Each term's scores per piece, by term key (`"harmony"`, ...). */
  terms: Record<string, number[]>;
  /** Each term's weight, by the same keys. */
  weights: Record<string, number>;
  /** The length guard min(1, notes / minNotes) applied to each total (1 when off). */
  lengthFactor: number[];
}

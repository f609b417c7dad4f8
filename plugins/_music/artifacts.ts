/**
 * The artifacts that pass between the RL stages, one type each: what
 * `rollout/sample` writes and the updates read (`Rollouts`), what
 * `reward/composite` writes and the updates read (`Rewards`), and what
 * `reward/train-critic` writes and `reward/composite` reads (`Critic`), what
 * `export/midi` writes (`ExportedFiles`) and the `metrics` of evaluations. The
 * corpora and checkpoints have theirs beside their code: `MidiCorpus`
 * (types.ts), `TokenCorpus` (components.ts), `ModelCheckpoint` (_tf/model.ts).
 *
 * @module
 */

import type { AdamWState, FullComponentRef, TensorData } from "../../mod.ts";
import type { Tokenizer } from "./components.ts";
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
  tokenizer: FullComponentRef;
  /** Optimizer step of the checkpoint that sampled them. */
  modelStep: number;
}

/**
 * The part of a `rollouts` artifact that every reader may count on: the
 * tokens, and the rest when present (a user's rollout stage may give tokens
 * only). The updates take this.
 */
export type PartialRollouts = Pick<Rollouts, "tokens"> & Partial<Omit<Rollouts, "tokens">>;

/**
 * The part of a `rollouts` artifact that the stages which score, export or
 * refine the samples count on: their decoded pieces, and the rest when present
 * (a user's rollout stage may give pieces only).
 */
export type RolloutPieces = Pick<Rollouts, "pieces"> & Partial<Omit<Rollouts, "pieces">>;

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

/**
 * The part of a `rewards` artifact that every reader may count on: totals and
 * per-term scores, and the rest when present (a user's reward stage may give
 * no more). The updates take this.
 */
export type PartialRewards = Pick<Rewards, "total" | "terms"> & Partial<Rewards>;

/** The `files` artifact that `export/midi` writes: the directory and the paths of the files in it. */
export interface ExportedFiles {
  dir: string;
  /** Paths of the written files (`<dir>/<name>.mid`), in input order. */
  files: string[];
}

/**
 * A `metrics` artifact: figures by name, as a JSON object whose shape depends
 * on the stage that wrote it (`eval/metrics`, `eval/policies`, `eval/score`,
 * the refinement figures of `diffuse/pianoroll`).
 */
export type Metrics = Record<string, unknown>;

/** The critic's architecture: a plain serialisable object with a `type` field. */
export interface CriticConfig {
  type: "ngram-cnn";
  /** Token ids of the critic's tokenizer. */
  vocabSize: number;
  /** Token embedding size d. */
  embedDim: number;
  /** Filters F per window width. */
  filters: number;
  /** Window widths in tokens (distinct, ascending). */
  widths: number[];
  /** Hidden units H of the head. */
  hiddenDim: number;
  /** Tokens of a piece the critic reads (from its start); longer encodings are cut. */
  maxTokens: number;
}

/** A trained critic: the `critic` artifact (see plugins/reward/_critic.ts). */
export interface Critic {
  config: CriticConfig;
  /** The tokenizer plugin and its params (`{use, with}`) that encodes pieces for it. */
  tokenizerSpec: FullComponentRef;
  /** The tokenizer itself (rebuilt from `tokenizerSpec` when loaded). */
  tokenizer: Tokenizer;
  /** Optimizer steps so far, over every run that trained it. */
  step: number;
  /** Weights by name (see `criticParamShapes`). */
  weights: Record<string, TensorData>;
  /** AdamW moments, so a later stage continues training where this one stopped. */
  optimizer?: AdamWState;
  /** Figures of the last training run (`critic/accuracy`, ...). */
  metrics: Record<string, number>;
}

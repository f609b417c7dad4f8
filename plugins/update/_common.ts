/**
 * Ports and params shared by the update plugins.
 *
 * @module
 */

import { p, port } from "../../mod.ts";
import { type ModelCheckpoint } from "../_tf/model.ts";
import { modelCodec } from "../_tf/checkpoint.ts";
import type { PartialRewards, PartialRollouts } from "../_music/artifacts.ts";

/** Inputs of every update stage. */
export const updateInputs = {
  model: port<ModelCheckpoint>({
    type: "model",
    description: "The current policy (carried through the RL loop)",
  }),
  reference: port<ModelCheckpoint>({
    type: "model",
    description: "The frozen pretrained policy for the KL penalty (leave out to turn KL off)",
    optional: true,
  }),
  rollouts: port<PartialRollouts>({
    type: "rollouts",
    description: "Sampled sequences from the current policy",
  }),
  rewards: port<PartialRewards>({
    type: "rewards",
    description: "Reward of each rollout (reward/composite)",
  }),
};

/** Outputs of every update stage. */
export const updateOutputs = {
  model: { type: "model", description: "The updated policy", codec: modelCodec },
};

/** Params shared by every update stage (seed config: lr 1e-5, baseline 0.95, entropy 0.005). */
export const updateParams = {
  lr: p.number({ default: 1e-5, min: 0, description: "Learning rate (AdamW)" }),
  baselineBeta: p.number({
    default: 0.95,
    min: 0,
    max: 1,
    description: "Decay of the exponential-moving-average reward baseline",
  }),
  entropyCoef: p.number({ default: 0.005, min: 0, description: "Weight of the entropy bonus" }),
  klCoef: p.number({
    default: 0.1,
    min: 0,
    description:
      "Weight of KL(policy || reference) per token; needs the reference input (RL Tuner)",
  }),
  klTarget: p.number({
    default: 0,
    min: 0,
    description:
      "Target KL per token for the adaptive KL controller (Ziegler et al. 2019): β grows when KL is above it, shrinks below; 0 keeps klCoef fixed",
  }),
  klGain: p.number({
    default: 0.1,
    min: 0,
    max: 1,
    description:
      "Gain K of the adaptive KL controller: β ← β·(1 + K·clip((KL − target)/target, ±0.2))",
  }),
  clipNorm: p.number({ default: 1, min: 0, description: "Global gradient-norm clip (0 = off)" }),
  advantage: p.string({
    default: "per-term",
    enum: ["per-term", "total"],
    description:
      "per-term: standardise each reward term in the batch and weight them (each term pulls as its weight says); total: one advantage from the composite total",
  }),
  normalizeAdvantages: p.boolean({
    default: true,
    description:
      "Standardise advantages in the batch: subtract the batch mean, divide by max(batch standard deviation, advantageStdFloor); off: subtract the EMA baseline only",
  }),
  advantageStdFloor: p.number({
    default: 0.01,
    min: 1e-6,
    description:
      "Floor of the batch standard deviation when standardising (a term constant in the batch gives 0 advantage)",
  }),
  importanceWeights: p.string({
    default: "truncated",
    enum: ["truncated", "off"],
    description:
      "Rollouts sampled with temperature/top-k/top-p are off-policy: truncated = weight each token by min(rhoMax, π/q); off = refuse them with an error",
  }),
  rhoMax: p.number({
    default: 1,
    min: 0,
    description: "Truncation of the importance weights (1: never up-weight a token)",
  }),
  weightDecay: p.number({ default: 0, min: 0, description: "AdamW decoupled weight decay" }),
  microBatch: p.integer({
    default: 4,
    min: 1,
    description:
      "Rollouts per forward/backward pass (gradients are accumulated; lowers peak memory)",
  }),
};

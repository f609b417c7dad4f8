/**
 * Policy-gradient maths shared by `update/reinforce` and `update/ppo`.
 *
 * References: Williams (1992), "Simple statistical gradient-following
 * algorithms" (REINFORCE with a baseline); Schulman et al. (2017), "Proximal
 * Policy Optimization Algorithms" (clipped ratio); Jaques et al. (2017),
 * "Sequence Tutor / RL Tuner" (a KL penalty to the pretrained policy keeps the
 * model musical); cleanrl's `ppo.py` for the shape of an update.
 *
 * A rollout is a token sequence `tokens[0..T]` whose first `primerLen + 1`
 * tokens (BOS and the primer) were given, not sampled. The policy's action at
 * position t is `tokens[t + 1]`; only sampled positions before the first EOS
 * (inclusive) are scored.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { Logger, StageContext } from "../../mod.ts";
import { createTokenizerFromSpec } from "../_music/tokenizer_spec.ts";
import { loadModelFromCheckpoint } from "../model/_build.ts";
import {
  AdamW,
  checkpointFromModel,
  clipByGlobalNorm,
  type ModelCheckpoint,
  type SequenceModel,
} from "./model.ts";

/** The rollouts a rollout stage produces (the fields the update reads). */
export interface RolloutBatch {
  /** One sequence per piece, BOS first. */
  tokens: Int32Array[];
  /** Primer tokens after BOS at the start of each sequence: given, not sampled (default 0). */
  primerLen?: number;
}

/** The rewards a reward stage produces. */
export interface RewardBatch {
  total: number[];
  terms: Record<string, number[]>;
  weights?: Record<string, number>;
  /** The composite's length guard per piece (1 when absent). */
  lengthFactor?: number[];
}

/** Live models behind checkpoints, so an RL loop does not rebuild its policy every episode. */
interface Trainable {
  model: SequenceModel;
  optimizer: AdamW;
}
const trainables = new WeakMap<ModelCheckpoint, Trainable>();
const frozen = new WeakMap<ModelCheckpoint, Promise<SequenceModel>>();

/**
 * A read-only model for a checkpoint: the live policy when the checkpoint came
 * from an update in this process, else one built once and kept while the
 * checkpoint object lives.
 */
export function modelFor(ckpt: ModelCheckpoint): Promise<SequenceModel> {
  const live = trainables.get(ckpt);
  if (live) return Promise.resolve(live.model);
  let pending = frozen.get(ckpt);
  if (!pending) {
    pending = loadModelFromCheckpoint(ckpt);
    frozen.set(ckpt, pending);
  }
  return pending;
}

/**
 * The trainable policy for a checkpoint. A checkpoint made by a previous update
 * in this process hands over its live model and optimizer; any other one
 * (pretrained, or loaded from disk on resume) is built fresh, so the frozen
 * reference is never modified.
 */
export async function trainableFor(
  ckpt: ModelCheckpoint,
  options: { weightDecay: number },
): Promise<Trainable> {
  const live = trainables.get(ckpt);
  if (live) return live;
  const model = await loadModelFromCheckpoint(ckpt);
  const optimizer = new AdamW(model.variables, { weightDecay: options.weightDecay });
  // A checkpoint written by an RL update carries that update's optimizer state.
  if (ckpt.optimizer && ckpt.metrics["rl/episodes"] !== undefined) {
    optimizer.setState(ckpt.optimizer);
  }
  return { model, optimizer };
}

/** Records that `ckpt` is the state of this live policy (the next episode starts from it). */
export function registerTrainable(ckpt: ModelCheckpoint, trainable: Trainable): void {
  trainables.set(ckpt, trainable);
}

/** Pads rollouts to one length and marks the scored positions. */
export function batchTensors(rollouts: RolloutBatch, eosId: number): {
  inputs: number[][];
  targets: number[][];
  mask: number[][];
} {
  const length = Math.max(...rollouts.tokens.map((t) => t.length));
  // BOS and the primer were given; the first sampled token is at index `given`.
  const given = 1 + (rollouts.primerLen ?? 0);
  const inputs: number[][] = [];
  const targets: number[][] = [];
  const mask: number[][] = [];
  for (const seq of rollouts.tokens) {
    const row = Array.from({ length }, (_, i) => (i < seq.length ? seq[i] : eosId));
    inputs.push(row.slice(0, length - 1));
    targets.push(row.slice(1));
    let ended = false;
    mask.push(
      row.slice(1).map((token, t) => {
        // Target at t is token t+1; it was sampled when t + 1 >= given.
        const scored = !ended && t + 1 >= given && t + 1 < seq.length;
        if (token === eosId && t + 1 >= given) ended = true;
        return scored ? 1 : 0;
      }),
    );
  }
  return { inputs, targets, mask };
}

/**
 * Per-token log-probabilities of the targets, entropies, and (with a
 * reference) KL(π || π_ref) of the full next-token distributions.
 *
 * @returns tensors of shape `[batch, time]`
 */
export function tokenTerms(
  model: SequenceModel,
  inputs: tf.Tensor2D,
  targets: tf.Tensor2D,
  referenceLogits?: tf.Tensor3D,
): { logProb: tf.Tensor2D; entropy: tf.Tensor2D; kl?: tf.Tensor2D } {
  const logits = model.forward(inputs, { training: false }); // [B, T, V]
  const vocab = logits.shape[2];
  const logP = tf.logSoftmax(logits); // [B, T, V]
  const probs = tf.exp(logP);
  const logProb = tf.sum(tf.mul(logP, tf.oneHot(targets, vocab)), 2) as tf.Tensor2D; // [B, T]
  const entropy = tf.neg(tf.sum(tf.mul(probs, logP), 2)) as tf.Tensor2D; // [B, T]
  if (!referenceLogits) return { logProb, entropy };
  const logRef = tf.logSoftmax(referenceLogits); // [B, T, V]
  const kl = tf.sum(tf.mul(probs, tf.sub(logP, logRef)), 2) as tf.Tensor2D; // [B, T]
  return { logProb, entropy, kl };
}

/** Hyperparameters shared by both updates. */
export interface UpdateParams {
  lr: number;
  entropyCoef: number;
  klCoef: number;
  clipNorm: number;
  baselineBeta: number;
  normalizeAdvantages: boolean;
  weightDecay: number;
  microBatch: number;
}

/** What one gradient pass computes, summed over micro-batches. */
export interface PassResult {
  loss: number;
  policyLoss: number;
  entropy: number;
  kl: number;
  clipFraction: number;
  finite: boolean;
}

/**
 * Runs one optimisation step over a batch: the loss is built per micro-batch
 * of rows (gradients accumulated) so long rollouts fit in memory.
 *
 * @param lossOf builds the policy part of the loss for a micro-batch, given its
 *   per-token log-probs `[b, T]`, mask `[b, T]` and row indices; returns a scalar
 *   summed over scored tokens plus the count of clipped tokens (PPO).
 */
export async function gradientStep(
  trainable: Trainable,
  batch: { inputs: number[][]; targets: number[][]; mask: number[][] },
  reference: SequenceModel | undefined,
  params: UpdateParams,
  lossOf: (
    logProb: tf.Tensor2D,
    mask: tf.Tensor2D,
    rows: number[],
  ) => { loss: tf.Scalar; clipped?: tf.Scalar },
): Promise<PassResult> {
  const { model, optimizer } = trainable;
  const rows = batch.inputs.length;
  const scoredTokens = batch.mask.flat().reduce((a, b) => a + b, 0);
  const denom = Math.max(1, scoredTokens);
  const sums = { loss: 0, policyLoss: 0, entropy: 0, kl: 0, clipped: 0 };
  let accumulated: Map<string, tf.Tensor> | undefined;
  const variables = [...model.variables.entries()];
  for (let start = 0; start < rows; start += params.microBatch) {
    const idx = Array.from(
      { length: Math.min(params.microBatch, rows - start) },
      (_, i) => start + i,
    );
    const inputs = tf.tensor2d(idx.map((i) => batch.inputs[i]), undefined, "int32");
    const targets = tf.tensor2d(idx.map((i) => batch.targets[i]), undefined, "int32");
    const mask = tf.tensor2d(idx.map((i) => batch.mask[i]), undefined, "float32");
    const refLogits = reference
      ? tf.tidy(() => reference.forward(inputs, { training: false }))
      : undefined;
    const parts: tf.Tensor[] = [];
    const { value, grads } = tf.variableGrads(() => {
      const terms = tokenTerms(model, inputs, targets, refLogits);
      const policy = lossOf(terms.logProb, mask, idx);
      const entropySum = tf.sum(tf.mul(terms.entropy, mask));
      const klSum = terms.kl ? tf.sum(tf.mul(terms.kl, mask)) : tf.scalar(0);
      parts.push(
        tf.keep(policy.loss),
        tf.keep(entropySum),
        tf.keep(klSum),
        tf.keep(policy.clipped ?? tf.scalar(0)),
      );
      // Mean over all scored tokens of the batch: each micro-batch adds its share.
      return tf.div(
        tf.add(
          tf.sub(policy.loss, tf.mul(entropySum, params.entropyCoef)),
          tf.mul(klSum, params.klCoef),
        ),
        denom,
      ) as tf.Scalar;
    }, variables.map(([, v]) => v));
    const [policySum, entropySum, klSum, clipped] = await Promise.all(parts.map((t) => t.data()));
    sums.loss += (await value.data())[0];
    sums.policyLoss += policySum[0] / denom;
    sums.entropy += entropySum[0] / denom;
    sums.kl += klSum[0] / denom;
    sums.clipped += clipped[0];
    tf.dispose([inputs, targets, mask, value, ...parts]);
    if (refLogits) refLogits.dispose();
    const named = new Map(variables.map(([name, v]) => [name, grads[v.name]]));
    if (!accumulated) accumulated = named;
    else {
      const next = new Map<string, tf.Tensor>();
      for (const [name, g] of named) {
        next.set(name, tf.add(accumulated.get(name)!, g));
        g.dispose();
        accumulated.get(name)!.dispose();
      }
      accumulated = next;
    }
  }
  const result: PassResult = {
    loss: sums.loss,
    policyLoss: sums.policyLoss,
    entropy: sums.entropy,
    kl: sums.kl,
    clipFraction: sums.clipped / denom,
    finite: Number.isFinite(sums.loss),
  };
  if (!accumulated) return { ...result, finite: false };
  const { grads, norm } = await clipByGlobalNorm(accumulated, params.clipNorm);
  tf.dispose([...accumulated.values()]);
  if (result.finite && Number.isFinite(norm)) optimizer.apply(grads, params.lr);
  else result.finite = false;
  tf.dispose([...grads.values()]);
  return result;
}

/** How advantages are formed from the rewards (see {@linkcode computeAdvantages}). */
export type AdvantageMode = "total" | "per-term";

const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** Subtracts a baseline and, optionally, divides by the standard deviation of the result. */
function centre(values: number[], baseline: number, scale: boolean): number[] {
  // A non-finite reward poisons the whole batch: the loss becomes NaN and the update is
  // skipped and logged (standardising would otherwise quietly turn it into zeros).
  if (!values.every(Number.isFinite) || !Number.isFinite(baseline)) return values.map(() => NaN);
  const out = values.map((v) => v - baseline);
  if (!scale || out.length < 2) return out;
  const std = Math.sqrt(out.reduce((a, x) => a + x * x, 0) / out.length);
  return std > 1e-8 ? out.map((x) => x / std) : out.map(() => 0);
}

/**
 * Advantages of a batch and the next exponential-moving-average baselines.
 *
 * - `"total"`: A = R − b with R the composite total and b its EMA baseline.
 * - `"per-term"`: each weighted term k gets its own EMA baseline b_k and is
 *   standardised in the batch, z_k = (L·r_k − b_k) / σ_k (L the composite's
 *   length guard), and A = Σ w_k z_k / Σ w_k. A term whose scores vary little
 *   (rhythm on a steady corpus) then pulls as hard as one that varies a lot
 *   (harmony), which is what its weight in YAML asks for; with one total the
 *   high-variance term decides the sign of nearly every advantage.
 *
 * Baselines are stored in the checkpoint's metrics (`rl/baseline`,
 * `rl/baseline/<term>`); the first episode uses the batch mean.
 *
 * @returns Per-rollout advantages (divided by their standard deviation when
 *   `normalize`) and the baselines to store for the next episode.
 */
export function computeAdvantages(
  rewards: RewardBatch,
  previous: Record<string, number>,
  options: { mode: AdvantageMode; baselineBeta: number; normalize: boolean },
): { advantages: number[]; baselines: Record<string, number> } {
  const baselines: Record<string, number> = {};
  const ema = (key: string, values: number[]) => {
    const before = previous[key];
    const batchMean = mean(values);
    const next = before === undefined
      ? batchMean
      : options.baselineBeta * before + (1 - options.baselineBeta) * batchMean;
    // A batch with a non-finite reward leaves the stored baseline as it was.
    const kept = Number.isFinite(next) ? next : before;
    if (kept !== undefined) baselines[key] = kept;
    return { used: before ?? batchMean };
  };
  const total = ema("rl/baseline", rewards.total);
  const termKeys = Object.keys(rewards.terms ?? {});
  if (options.mode === "total" || termKeys.length === 0) {
    return { advantages: centre(rewards.total, total.used, options.normalize), baselines };
  }
  const guard = rewards.lengthFactor ?? rewards.total.map(() => 1);
  const weights = termKeys.map((k) => rewards.weights?.[k] ?? 1);
  const weightSum = weights.reduce((a, b) => a + b, 0) || 1;
  const advantages = rewards.total.map(() => 0);
  termKeys.forEach((key, t) => {
    const scores = rewards.terms[key].map((r, i) => r * guard[i]);
    const base = ema(`rl/baseline/${key}`, scores);
    centre(scores, base.used, true).forEach((z, i) =>
      advantages[i] += (weights[t] * z) / weightSum
    );
  });
  return { advantages: centre(advantages, 0, options.normalize), baselines };
}

/** EMA baselines stored in a checkpoint by an earlier RL update (none for a pretrained one). */
export function storedBaselines(ckpt: ModelCheckpoint): Record<string, number> {
  if (ckpt.metrics["rl/episodes"] === undefined) return {};
  return Object.fromEntries(
    Object.entries(ckpt.metrics).filter(([key]) => key.startsWith("rl/baseline")),
  );
}

/** Everything an update step needs, prepared the same way for REINFORCE and PPO. */
export interface PreparedUpdate {
  ckpt: ModelCheckpoint;
  rewards: RewardBatch;
  trainable: Trainable;
  reference?: SequenceModel;
  advantages: number[];
  baselines: Record<string, number>;
  batch: { inputs: number[][]; targets: number[][]; mask: number[][] };
}

/**
 * Checks an update's inputs and prepares it: the live policy, the frozen
 * reference, the advantages and the padded batch.
 *
 * @param inputs The update stage's inputs (`model`, `reference`, `rollouts`, `rewards`).
 * @param params The shared update params.
 * @throws {Error} When the rollouts are empty or the rewards do not match them.
 */
export async function prepareUpdate(
  inputs: Record<string, unknown>,
  params: UpdateParams & { advantage: string; normalizeAdvantages: boolean },
): Promise<PreparedUpdate> {
  const ckpt = inputs.model as ModelCheckpoint;
  const rollouts = inputs.rollouts as RolloutBatch;
  const rewards = inputs.rewards as RewardBatch;
  checkBatch(rollouts, rewards);
  const eos = (await createTokenizerFromSpec(ckpt.tokenizer)).special.eos;
  const { advantages, baselines } = computeAdvantages(rewards, storedBaselines(ckpt), {
    mode: params.advantage as AdvantageMode,
    baselineBeta: params.baselineBeta,
    normalize: params.normalizeAdvantages,
  });
  return {
    ckpt,
    rewards,
    trainable: await trainableFor(ckpt, params),
    reference: inputs.reference ? await modelFor(inputs.reference as ModelCheckpoint) : undefined,
    advantages,
    baselines,
    batch: batchTensors(rollouts, eos),
  };
}

/** Checks the inputs of an update and returns the rewards. */
export function checkBatch(rollouts: RolloutBatch, rewards: RewardBatch): number[] {
  if (!Array.isArray(rollouts?.tokens) || rollouts.tokens.length === 0) {
    throw new Error("Cannot update: the rollouts hold no sequences");
  }
  if (!Array.isArray(rewards?.total) || rewards.total.length !== rollouts.tokens.length) {
    throw new Error(
      `Cannot update: ${
        rewards?.total?.length ?? 0
      } rewards for ${rollouts.tokens.length} rollouts`,
    );
  }
  return rewards.total;
}

/**
 * Finishes an update: logs metrics, writes the new checkpoint and registers
 * the live policy under it.
 */
export async function finishUpdate(
  ctx: StageContext,
  trainable: Trainable,
  previous: ModelCheckpoint,
  info: {
    baselines: Record<string, number>;
    rewards: RewardBatch;
    pass: PassResult;
    log: Logger;
    extra?: Record<string, number>;
  },
): Promise<ModelCheckpoint> {
  const episode = (previous.metrics["rl/episodes"] ?? 0) + 1;
  const meanReward = info.rewards.total.reduce((a, b) => a + b, 0) / info.rewards.total.length;
  const values: Record<string, number> = {
    "reward/total": meanReward,
    "loss/policy": info.pass.policyLoss,
    "loss/total": info.pass.loss,
    "policy/entropy": info.pass.entropy,
    "policy/kl": info.pass.kl,
    "rl/baseline": info.baselines["rl/baseline"],
    "update/skipped": info.pass.finite ? 0 : 1,
    ...info.extra,
  };
  if (!info.pass.finite) {
    info.log.warn(`Skipped the update of episode ${episode}: the loss or a gradient is not finite`);
  }
  ctx.metrics(ctx.iteration ?? episode - 1, values);
  const ckpt = await checkpointFromModel(trainable.model, {
    tokenizer: previous.tokenizer,
    optimizer: trainable.optimizer,
    rngState: ctx.rng.getState(),
    metrics: { ...previous.metrics, ...info.baselines, "rl/episodes": episode },
  });
  registerTrainable(ckpt, trainable);
  return ckpt;
}

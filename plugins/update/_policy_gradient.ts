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
import type { Tokenizer } from "../_music/components.ts";
import type { PartialRewards, PartialRollouts } from "../_music/artifacts.ts";
import { AdamW, clipByGlobalNorm } from "../_tf/optim.ts";
import {
  checkpointFromModel,
  liveModelOf,
  modelComponentOf,
  modelFromCheckpoint,
} from "../_tf/checkpoint.ts";
import { type LiveModel, type ModelCheckpoint, type SequenceModel } from "../_tf/model.ts";

/** A policy being trained: its model and optimizer. */
type Trainable = Required<LiveModel>;

/**
 * The trainable policy for a checkpoint. A checkpoint made by a previous update
 * in this process carries its live model and optimizer (`ckpt.live`), so an RL
 * loop does not rebuild its policy every episode; any other one (pretrained,
 * or loaded from disk on resume) is built fresh, so the frozen reference is
 * never modified.
 */
export async function trainableFor(
  ctx: Pick<StageContext, "component">,
  ckpt: ModelCheckpoint,
  options: { weightDecay: number },
): Promise<Trainable> {
  if (ckpt.live?.optimizer) return { model: ckpt.live.model, optimizer: ckpt.live.optimizer };
  const model = await modelFromCheckpoint(ctx, ckpt);
  const optimizer = new AdamW(model.variables, { weightDecay: options.weightDecay });
  // A checkpoint written by an RL update carries that update's optimizer state.
  if (ckpt.optimizer && ckpt.metrics["rl/episodes"] !== undefined) {
    optimizer.setState(ckpt.optimizer);
  }
  return { model, optimizer };
}

/** True when rollouts were drawn from the policy itself (temperature 1, no top-k/top-p). */
export function isOnPolicy(rollouts: PartialRollouts): boolean {
  const s = rollouts.sampling;
  return !s || (s.temperature === 1 && (s.topK === 0 || s.topK === undefined) &&
    (s.topP === 1 || s.topP === undefined));
}

/**
 * Per-token truncated importance weights ρ_t = min(ρ̄, π(a_t) / q(a_t)) for
 * rollouts sampled from q ≠ π (temperature, top-k, top-p), as in IMPALA's
 * V-trace truncation (Espeholt et al. 2018): the policy gradient of a token is
 * scaled by ρ_t, a constant. Rows are aligned with {@linkcode batchTensors}'s
 * targets; positions that were not sampled get 1.
 *
 * @param rollouts The rollouts, with `logProbs` and `samplingLogProbs`.
 * @param length Target length of the padded batch (T).
 * @param rhoMax The truncation ρ̄ (1: never up-weight a token).
 * @returns Weights `[rows][T]`.
 * @throws {Error} When the rollouts lack the log-probabilities.
 */
export function importanceWeights(
  rollouts: PartialRollouts,
  length: number,
  rhoMax: number,
): number[][] {
  const given = 1 + (rollouts.primerLen ?? 0);
  if (!rollouts.logProbs || !rollouts.samplingLogProbs) {
    throw new Error(
      "Cannot correct for off-policy sampling: the rollouts carry no logProbs and samplingLogProbs",
    );
  }
  return rollouts.tokens.map((_, r) => {
    const lp = rollouts.logProbs![r], lq = rollouts.samplingLogProbs![r];
    return Array.from({ length }, (_, t) => {
      const k = t + 1 - given; // index of target t among the sampled tokens
      if (k < 0 || k >= lp.length || k >= lq.length) return 1;
      return Math.min(rhoMax, Math.exp(lp[k] - lq[k]));
    });
  });
}

/** Pads rollouts to one length and marks the scored positions. */
export function batchTensors(rollouts: PartialRollouts, eosId: number): {
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
  /** KL coefficient β (the starting value when `klTarget` > 0). */
  klCoef: number;
  /** Target KL per token of the adaptive controller; 0 keeps β fixed. */
  klTarget: number;
  /** Gain K of the adaptive KL controller. */
  klGain: number;
  clipNorm: number;
  baselineBeta: number;
  normalizeAdvantages: boolean;
  /** Floor of the batch standard deviation when standardising advantages. */
  advantageStdFloor: number;
  /** `"truncated"`: correct off-policy sampling with truncated importance weights; `"off"`: refuse it. */
  importanceWeights: string;
  /** Truncation ρ̄ of the importance weights. */
  rhoMax: number;
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
  batch: { inputs: number[][]; targets: number[][]; mask: number[][]; rho?: number[][] },
  reference: SequenceModel | undefined,
  params: UpdateParams,
  lossOf: (
    logProb: tf.Tensor2D,
    mask: tf.Tensor2D,
    rows: number[],
    rho: tf.Tensor2D,
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
    // Importance weights of off-policy tokens (1 on-policy): [b, T], constants.
    const rho = batch.rho
      ? tf.tensor2d(idx.map((i) => batch.rho![i]), undefined, "float32")
      : tf.onesLike(mask);
    const refLogits = reference
      ? tf.tidy(() => reference.forward(inputs, { training: false }))
      : undefined;
    const parts: tf.Tensor[] = [];
    const { value, grads } = tf.variableGrads(() => {
      const terms = tokenTerms(model, inputs, targets, refLogits);
      const policy = lossOf(terms.logProb, mask, idx, rho);
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
    tf.dispose([inputs, targets, mask, rho, value, ...parts]);
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

/**
 * Standardises a batch of rewards: (x − centre) / max(σ, floor), with σ the
 * batch standard deviation (about the batch mean). A term that is constant in
 * the batch says nothing about which rollout did better: σ = 0 gives 0 for
 * every rollout, whatever the centre (the floor keeps float noise from being
 * blown up to ±1).
 */
export function standardise(values: number[], centre: number, floor: number): number[] {
  // A non-finite reward poisons the whole batch: the loss becomes NaN and the update is
  // skipped and logged (standardising would otherwise quietly turn it into zeros).
  if (!values.every(Number.isFinite) || !Number.isFinite(centre)) return values.map(() => NaN);
  const m = mean(values);
  const std = Math.sqrt(values.reduce((a, x) => a + (x - m) ** 2, 0) / values.length);
  if (values.length < 2 || std <= 1e-12) return values.map(() => 0);
  return values.map((x) => (x - centre) / Math.max(std, floor));
}

/**
 * Advantages of a batch and the next exponential-moving-average baselines.
 *
 * - `"total"`: with `normalize`, A = (R − mean(R)) / max(σ(R), floor): the
 *   batch mean is the baseline; without it, A = R − b with b the EMA baseline.
 * - `"per-term"`: each weighted term k is standardised in the batch,
 *   z_k = (L·r_k − mean) / max(σ_k, floor) (L the composite's length guard),
 *   and A = Σ w_k z_k / Σ w_k, divided once more by its own standard deviation
 *   when `normalize`. A term whose scores vary little (rhythm on a steady
 *   corpus) then pulls as hard as one that varies a lot (harmony), which is
 *   what its weight in YAML asks for; with one total the high-variance term
 *   decides the sign of nearly every advantage. A term constant in the batch
 *   gives every rollout 0.
 *
 * EMA baselines are kept in the checkpoint's metrics (`rl/baseline`,
 * `rl/baseline/<term>`) for the unnormalised total and for the log.
 *
 * @returns Per-rollout advantages and the baselines to store for the next episode.
 */
export function computeAdvantages(
  rewards: PartialRewards,
  previous: Record<string, number>,
  options: { mode: AdvantageMode; baselineBeta: number; normalize: boolean; stdFloor?: number },
): { advantages: number[]; baselines: Record<string, number> } {
  const floor = options.stdFloor ?? 0.01;
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
    return { used: before ?? batchMean, batchMean };
  };
  const total = ema("rl/baseline", rewards.total);
  const termKeys = Object.keys(rewards.terms ?? {});
  if (options.mode === "total" || termKeys.length === 0) {
    const advantages = options.normalize
      ? standardise(rewards.total, total.batchMean, floor)
      : rewards.total.map((r) => (Number.isFinite(total.used) ? r - total.used : NaN));
    return { advantages, baselines };
  }
  const guard = rewards.lengthFactor ?? rewards.total.map(() => 1);
  const weights = termKeys.map((k) => rewards.weights?.[k] ?? 1);
  const weightSum = weights.reduce((a, b) => a + b, 0) || 1;
  const advantages = rewards.total.map(() => 0);
  termKeys.forEach((key, t) => {
    const scores = rewards.terms[key].map((r, i) => r * guard[i]);
    const base = ema(`rl/baseline/${key}`, scores);
    standardise(scores, base.batchMean, floor).forEach((z, i) =>
      advantages[i] += (weights[t] * z) / weightSum
    );
  });
  if (!options.normalize) return { advantages, baselines };
  // Already centred: rescale only, with the same floor.
  return { advantages: standardise(advantages, 0, floor), baselines };
}

/**
 * The adaptive KL coefficient of Ziegler et al. (2019), "Fine-Tuning Language
 * Models from Human Preferences": β ← β·(1 + K·e), e = clip((KL − KL_target) /
 * KL_target, −0.2, 0.2), with KL the measured mean KL per token.
 *
 * @param beta The current coefficient.
 * @param klPerToken The KL measured in this update.
 * @param options `target` KL per token (> 0) and `gain` K.
 * @returns The next coefficient.
 * @example
 * ```ts
 * import { adaptiveKlCoef } from "./_policy_gradient.ts";
 * adaptiveKlCoef(0.1, 0.2, { target: 0.1, gain: 0.1 }); // 0.102: KL too high, β grows
 * adaptiveKlCoef(0.1, 0.05, { target: 0.1, gain: 0.1 }); // 0.098: KL too low, β shrinks
 * ```
 */
export function adaptiveKlCoef(
  beta: number,
  klPerToken: number,
  options: { target: number; gain: number },
): number {
  if (!Number.isFinite(klPerToken)) return beta;
  const error = Math.min(0.2, Math.max(-0.2, (klPerToken - options.target) / options.target));
  return beta * (1 + options.gain * error);
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
  rewards: PartialRewards;
  trainable: Trainable;
  reference?: SequenceModel;
  advantages: number[];
  baselines: Record<string, number>;
  batch: { inputs: number[][]; targets: number[][]; mask: number[][]; rho?: number[][] };
  /** The update's params with the KL coefficient β in force for this episode. */
  params: UpdateParams;
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
  ctx: Pick<StageContext, "component">,
  inputs: {
    model: ModelCheckpoint;
    reference?: ModelCheckpoint;
    rollouts: PartialRollouts;
    rewards: PartialRewards;
  },
  params: UpdateParams & { advantage: string; normalizeAdvantages: boolean },
): Promise<PreparedUpdate> {
  const { model: ckpt, rollouts, rewards } = inputs;
  checkBatch(rollouts, rewards);
  const eos = (await ctx.component<Tokenizer>(ckpt.tokenizer, "tokenizer")).special.eos;
  const { advantages, baselines } = computeAdvantages(rewards, storedBaselines(ckpt), {
    mode: params.advantage as AdvantageMode,
    baselineBeta: params.baselineBeta,
    normalize: params.normalizeAdvantages,
    stdFloor: params.advantageStdFloor,
  });
  const batch: PreparedUpdate["batch"] = batchTensors(rollouts, eos);
  if (!isOnPolicy(rollouts)) {
    if (params.importanceWeights !== "truncated") {
      const s = rollouts.sampling!;
      throw new Error(
        `Cannot update from off-policy rollouts: they were sampled with temperature ${s.temperature}, topK ${s.topK}, topP ${s.topP}, not from the policy itself; set the update's importanceWeights to "truncated" or sample with temperature 1, topK 0 and topP 1`,
      );
    }
    batch.rho = importanceWeights(rollouts, batch.targets[0]?.length ?? 0, params.rhoMax);
  }
  // The adaptive controller's β lives in the checkpoint; the first episode starts at klCoef.
  const storedBeta = ckpt.metrics["rl/episodes"] !== undefined
    ? ckpt.metrics["rl/klCoef"]
    : undefined;
  const klCoef = params.klTarget > 0 && storedBeta !== undefined ? storedBeta : params.klCoef;
  return {
    ckpt,
    rewards,
    trainable: await trainableFor(ctx, ckpt, params),
    reference: inputs.reference ? await liveModelOf(ctx, inputs.reference) : undefined,
    advantages,
    baselines,
    batch,
    params: { ...params, klCoef },
  };
}

/** Checks the inputs of an update and returns the rewards. */
export function checkBatch(rollouts: PartialRollouts, rewards: PartialRewards): number[] {
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
    rewards: PartialRewards;
    pass: PassResult;
    log: Logger;
    params: UpdateParams;
    extra?: Record<string, number>;
  },
): Promise<ModelCheckpoint> {
  const episode = (previous.metrics["rl/episodes"] ?? 0) + 1;
  const beta = info.params.klCoef;
  const nextBeta = info.params.klTarget > 0
    ? adaptiveKlCoef(beta, info.pass.kl, { target: info.params.klTarget, gain: info.params.klGain })
    : beta;
  const meanReward = info.rewards.total.reduce((a, b) => a + b, 0) / info.rewards.total.length;
  const values: Record<string, number> = {
    "reward/total": meanReward,
    "loss/policy": info.pass.policyLoss,
    "loss/total": info.pass.loss,
    "policy/entropy": info.pass.entropy,
    "policy/kl": info.pass.kl,
    "policy/klCoef": beta,
    "rl/baseline": info.baselines["rl/baseline"],
    "update/skipped": info.pass.finite ? 0 : 1,
    ...info.extra,
  };
  if (!info.pass.finite) {
    info.log.warn(`Skipped the update of episode ${episode}: the loss or a gradient is not finite`);
  }
  ctx.metrics(ctx.iteration ?? episode - 1, values);
  const ckpt = await checkpointFromModel(trainable.model, {
    component: modelComponentOf(previous),
    tokenizer: previous.tokenizer,
    optimizer: trainable.optimizer,
    rngState: ctx.rng.getState(),
    metrics: {
      ...previous.metrics,
      ...info.baselines,
      "rl/klCoef": nextBeta,
      "rl/episodes": episode,
    },
  });
  // The next episode goes on from this live policy and optimizer.
  ckpt.live = trainable;
  return ckpt;
}

/**
 * `update/ppo`: Proximal Policy Optimization with the clipped surrogate
 * (Schulman et al. 2017), several epochs over each rollout batch, and the
 * same entropy bonus and KL penalty to the pretrained policy as
 * `update/reinforce`. Each rollout is one trajectory with one terminal reward,
 * so every token of a sequence shares its advantage R − b.
 *
 *   r_t = π(a_t|s_t) / π_old(a_t|s_t)
 *   loss = −Σ_t min(r_t·A, clip(r_t, 1−ε, 1+ε)·A) − c_H·H + c_KL·KL(π ‖ π_ref)
 *
 * π_old is the policy before this update (log-probs computed once, then
 * held fixed across the epochs).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { definePlugin, p } from "../../mod.ts";
import {
  finishUpdate,
  gradientStep,
  type PassResult,
  prepareUpdate,
  tokenTerms,
} from "./_policy_gradient.ts";
import { updateInputs, updateOutputs, updateParams } from "./_common.ts";

export default definePlugin({
  name: "update/ppo",
  kind: "update",
  headlineMetrics: ["reward/total", "policy/kl", "loss/policy"],
  version: "1.0.0",
  description:
    "PPO clipped-ratio update, several epochs per rollout batch, with entropy bonus and KL penalty",
  params: {
    ...updateParams,
    epochs: p.integer({
      default: 4,
      min: 1,
      description: "Optimisation passes over each rollout batch",
    }),
    clipRatio: p.number({ default: 0.2, min: 0, max: 1, description: "PPO clip range ε" }),
  },
  inputs: updateInputs,
  outputs: updateOutputs,
  async run(ctx, inputs, params) {
    const prepared = await prepareUpdate(ctx, inputs, params);
    const { ckpt, rewards, trainable, reference, advantages, baselines, batch } = prepared;
    // Log-probs of the policy before this update: [rows][time].
    const oldLogProb = tf.tidy(() => {
      const inputsT = tf.tensor2d(batch.inputs, undefined, "int32");
      const targetsT = tf.tensor2d(batch.targets, undefined, "int32");
      return tokenTerms(trainable.model, inputsT, targetsT).logProb;
    });
    const old = (await oldLogProb.array()) as number[][];
    oldLogProb.dispose();
    let pass: PassResult | undefined;
    let clipSum = 0;
    for (let epoch = 0; epoch < params.epochs; epoch++) {
      if (ctx.signal.aborted) break;
      pass = await gradientStep(trainable, batch, reference, prepared.params, (
        logProb,
        mask,
        rows,
        rho,
      ) => {
        const oldT = tf.tensor2d(rows.map((i) => old[i])); // [b, T]
        const advT = tf.tensor2d(rows.map((i) => [advantages[i]])); // [b, 1]
        const ratio = tf.exp(tf.sub(logProb, oldT)); // [b, T]
        const clippedRatio = tf.clipByValue(ratio, 1 - params.clipRatio, 1 + params.clipRatio);
        const surrogate = tf.minimum(tf.mul(ratio, advT), tf.mul(clippedRatio, advT)); // [b, T]
        const clipped = tf.sum(
          tf.mul(tf.cast(tf.greater(tf.abs(tf.sub(ratio, 1)), params.clipRatio), "float32"), mask),
        );
        return {
          // ρ: truncated importance weight of the sampling distribution (1 on-policy).
          loss: tf.neg(tf.sum(tf.mul(tf.mul(surrogate, mask), rho))) as tf.Scalar,
          clipped: clipped as tf.Scalar,
        };
      });
      clipSum += pass.clipFraction;
      if (!pass.finite) break;
    }
    const model = await finishUpdate(ctx, trainable, ckpt, {
      baselines,
      rewards,
      pass: pass!,
      log: ctx.log,
      params: prepared.params,
      extra: { "ppo/clipFraction": clipSum / params.epochs },
    });
    return { model };
  },
});

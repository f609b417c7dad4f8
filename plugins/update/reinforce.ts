/**
 * `update/reinforce`: REINFORCE with a baseline, an entropy bonus and a KL
 * penalty to the pretrained policy.
 *
 *   ∇J = E[(R − b) ∇ log π(a|s)]   (Williams 1992)
 *   loss = −Σ_t ρ_t·A·log π(a_t|s_t) − c_H·H(π(·|s_t)) + β·KL(π(·|s_t) ‖ π_ref(·|s_t)),
 *
 * averaged over the sampled tokens of the batch; A is the advantage
 * (standardised in the batch, see `computeAdvantages`), ρ_t a truncated
 * importance weight when the rollouts were not sampled from the policy itself
 * (temperature, top-k, top-p), and β the KL coefficient, fixed or adapted to a
 * target KL per token (`klTarget`, Ziegler et al. 2019). Without a KL or prior
 * term the policy collapses to noise (Jaques et al. 2017, RL Tuner), so the KL
 * term is on by default. See `plugins/update/_policy_gradient.ts`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { definePlugin } from "../../mod.ts";
import { finishUpdate, gradientStep, prepareUpdate } from "./_policy_gradient.ts";
import { updateInputs, updateOutputs, updateParams } from "./_common.ts";

export default definePlugin({
  name: "update/reinforce",
  kind: "update",
  headlineMetrics: ["reward/total", "policy/kl", "loss/policy"],
  version: "1.0.0",
  description: "REINFORCE policy gradient with an EMA baseline, entropy bonus and KL penalty",
  params: updateParams,
  inputs: updateInputs,
  outputs: updateOutputs,
  async run(ctx, inputs, params) {
    const prepared = await prepareUpdate(ctx, inputs, params);
    const { ckpt, rewards, trainable, reference, advantages, baselines, batch } = prepared;
    const pass = await gradientStep(
      trainable,
      batch,
      reference,
      prepared.params,
      (logProb, mask, rows, rho) => {
        const weights = tf.tensor2d(rows.map((i) => [advantages[i]])); // [b, 1]
        // −Σ ρ·A·log π over scored tokens (ρ = 1 on-policy).
        return {
          loss: tf.neg(tf.sum(tf.mul(tf.mul(tf.mul(logProb, mask), rho), weights))) as tf.Scalar,
        };
      },
    );
    const model = await finishUpdate(ctx, trainable, ckpt, {
      baselines,
      rewards,
      pass,
      log: ctx.log,
      params: prepared.params,
    });
    return { model };
  },
});

/**
 * `update/reinforce`: REINFORCE with a baseline, an entropy bonus and a KL
 * penalty to the pretrained policy.
 *
 *   ∇J = E[(R − b) ∇ log π(a|s)]   (Williams 1992)
 *   loss = −Σ_t (R − b)·log π(a_t|s_t) − c_H·H(π(·|s_t)) + c_KL·KL(π(·|s_t) ‖ π_ref(·|s_t)),
 *
 * averaged over the sampled tokens of the batch; b is an exponential moving
 * average of the batch mean reward (`baselineBeta`). Without a KL or prior
 * term the policy collapses to noise (Jaques et al. 2017, RL Tuner), so the KL
 * term is on by default. See `plugins/_tf/policy_gradient.ts`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { definePlugin } from "../../mod.ts";
import { finishUpdate, gradientStep, prepareUpdate } from "../_tf/policy_gradient.ts";
import { updateInputs, updateOutputs, updateParams } from "./_common.ts";

export default definePlugin({
  name: "update/reinforce",
  kind: "update",
  version: "1.0.0",
  description: "REINFORCE policy gradient with an EMA baseline, entropy bonus and KL penalty",
  params: updateParams,
  inputs: updateInputs,
  outputs: updateOutputs,
  async run(ctx, inputs, params) {
    const { ckpt, rewards, trainable, reference, advantages, baselines, batch } =
      await prepareUpdate(inputs, params);
    const pass = await gradientStep(trainable, batch, reference, params, (logProb, mask, rows) => {
      const weights = tf.tensor2d(rows.map((i) => [advantages[i]])); // [b, 1]
      // −Σ A·log π over scored tokens.
      return { loss: tf.neg(tf.sum(tf.mul(tf.mul(logProb, mask), weights))) as tf.Scalar };
    });
    const model = await finishUpdate(ctx, trainable, ckpt, {
      baselines,
      rewards,
      pass,
      log: ctx.log,
    });
    return { model };
  },
});

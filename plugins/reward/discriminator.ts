/**
 * `reward/discriminator`: a learned reward term. A piece's score is the
 * trained critic's probability that it is real music of the corpus,
 * σ(logit / temperature), in [0, 1] (SeqGAN, Yu et al. 2017: the
 * discriminator's probability is the generator's reward; GAIL, Ho & Ermon
 * 2016, uses a function of the same probability).
 *
 * The critic comes from a `reward/train-critic` stage, wired to the `critic`
 * input of `reward/composite`, which passes it to every term as
 * `context.critic`. The critic encodes each piece with its own tokenizer, so
 * the term scores pieces from any source (rollouts, MIDI files).
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import type { RewardTerm } from "../_music/components.ts";
import { criticLogits, isCritic } from "./_critic.ts";

export default definePlugin({
  name: "reward/discriminator",
  kind: "reward",
  version: "1.0.0",
  description:
    "Learned reward: a trained critic's probability that a piece is real corpus music (needs reward/composite's critic input)",
  params: {
    temperature: p.number({
      default: 1,
      min: 0.01,
      description:
        "Divides the critic's logit before the sigmoid; above 1 softens a confident critic's scores",
    }),
    batchSize: p.integer({ default: 32, min: 1, description: "Pieces per critic forward pass" }),
  },
  create(params): RewardTerm {
    if (!(params.temperature > 0)) {
      throw new Error(
        `Cannot create reward term "reward/discriminator": temperature must be a number > 0, received ${params.temperature}`,
      );
    }
    return {
      score(pieces, context) {
        const critic = context.critic;
        if (critic === undefined) {
          throw new Error(
            'Cannot score with "reward/discriminator": no critic is given; connect the "critic" output of a reward/train-critic stage to the "critic" input of reward/composite',
          );
        }
        if (!isCritic(critic)) {
          throw new Error(
            'Cannot score with "reward/discriminator": the "critic" input is not a critic made by reward/train-critic',
          );
        }
        return criticLogits(critic, pieces, { batchSize: params.batchSize }).map((z) =>
          1 / (1 + Math.exp(-z / params.temperature))
        );
      },
    };
  },
});

/**
 * `reward/composite` stage: scores a batch of rollouts with a weighted list of
 * reward terms.
 *
 * total_i = L_i · Σ_t w_t · score_t,i / Σ_t w_t, so the total stays in [0, 1] like
 * each term. L_i = min(1, notes_i / minNotes) is a length guard: without it a
 * policy learns that a piece of three notes has no dissonance, no unresolved
 * leap and no empty beat, and ends every piece at once (seen in the default
 * graph: notes per piece fell from 46 to 4 in 40 episodes). Every term sees the whole batch (so batch-level terms such as
 * novelty's variety can compare pieces) and, when a `corpus` input is given,
 * its train pieces as `context.corpus`. Logs `reward/<term>` (batch mean of
 * each term) and `reward/total` at step `ctx.iteration` (0 outside a loop).
 *
 * @module
 */

import { definePlugin, p, port } from "../../mod.ts";
import { DEFAULT_TERMS, scoreWithTerms, stageContext } from "../_music/scoring.ts";
import type { MidiCorpus } from "../_music/types.ts";
import type { Critic, Rewards, RolloutPieces } from "../_music/artifacts.ts";

export type { Rewards };

function mean(values: number[]): number {
  return values.length > 0 ? values.reduce((a, b) => a + b, 0) / values.length : 0;
}

export default definePlugin({
  name: "reward/composite",
  kind: "reward",
  headlineMetrics: ["reward/total"],
  version: "2.0.0",
  description: "Scores rollouts with a weighted mean of reward terms",
  params: {
    terms: p.components({
      kind: "reward",
      default: DEFAULT_TERMS,
      minItems: 1,
      description: "Reward terms and their weights (>= 0); the total is their weighted mean",
    }),
    excerptsPerBucket: p.integer({
      default: 192,
      min: 16,
      description:
        "Real excerpts per length bucket that calibrated terms are measured against (more: steadier calibration, slower first batch)",
    }),
    minNotes: p.integer({
      default: 16,
      min: 0,
      description:
        "Length guard: a piece with fewer notes has its total scaled by notes / minNotes (0 = off)",
    }),
  },
  inputs: {
    rollouts: port<RolloutPieces>({
      type: "rollouts",
      description: "Sampled sequences with their decoded pieces",
    }),
    corpus: port<MidiCorpus>({
      type: "midi-corpus",
      description:
        "Reference corpus: the real pieces every calibrated term is measured against (train split for excerpts, other splits held out)",
      optional: true,
    }),
    critic: port<Critic>({
      type: "critic",
      description: "A trained critic for learned reward terms (reward/discriminator)",
      optional: true,
    }),
  },
  outputs: {
    rewards: {
      type: "rewards",
      description: "Total and per-term scores per piece, and the weights",
    },
  },
  run(ctx, inputs, params) {
    // The executor turns a throw into a rejected promise.
    return new Promise((resolve) => {
      const { rollouts } = inputs;
      if (!rollouts || !Array.isArray(rollouts.pieces)) {
        throw new Error('Cannot score rollouts: input "rollouts" has no "pieces" list');
      }
      const pieces = rollouts.pieces;
      const context = stageContext(ctx, inputs, params.excerptsPerBucket);
      const rewards = scoreWithTerms(pieces, params.terms, context, { minNotes: params.minNotes });
      const logged: Record<string, number> = {};
      for (const [key, scores] of Object.entries(rewards.terms)) {
        logged[`reward/${key}`] = mean(scores);
      }
      logged["reward/total"] = mean(rewards.total);
      logged["reward/lengthFactor"] = mean(rewards.lengthFactor);
      ctx.metrics(ctx.iteration ?? 0, logged);
      resolve({ rewards });
    });
  },
});

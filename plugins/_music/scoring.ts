/**
 * Scoring pieces with weighted reward terms, shared by the stages that do it
 * (`reward/composite`, `eval/score`, `eval/policies`): the weighted mean with
 * its length guard, the terms' short keys, the default terms, and the reward
 * context a stage's terms see.
 *
 * @module
 */

import { errorMessage, type StageContext, type WeightedComponent } from "../../mod.ts";
import type { RewardContext, RewardTerm } from "./components.ts";
import { ReferenceCorpus } from "./reference.ts";
import type { MidiCorpus, Piece } from "./types.ts";
import type { Critic, Rewards } from "./artifacts.ts";

/**
 * The reward context of a corpus: its train pieces and its reference corpus
 * for calibration. Builds a new one at each call: a stage gets its own, kept
 * for the run, from {@linkcode stageContext}.
 *
 * @param corpus The reference corpus (all splits).
 * @param excerptsPerBucket Calibration excerpts per length bucket.
 * @returns The context (without a critic).
 */
export function corpusContext(corpus: MidiCorpus, excerptsPerBucket = 192): RewardContext {
  return {
    corpus: corpus.pieces.filter((piece) => piece.split === "train"),
    reference: new ReferenceCorpus(corpus.pieces, { excerptsPerBucket }),
  };
}

/**
 * The context a stage's reward terms see: the corpus's context (when a corpus
 * input is given) and the critic (when one is given). The corpus's context is
 * memoised with `ctx.memo` per corpus object and excerpt count, so a stage in a
 * loop calibrates its terms once, not at every episode.
 *
 * @param ctx The stage's context (its memo).
 * @param inputs The stage's `corpus` and `critic` inputs, either may be absent.
 * @param excerptsPerBucket Calibration excerpts per length bucket.
 * @returns A new context object (the memoised corpus context is not modified).
 */
export function stageContext(
  ctx: Pick<StageContext, "memo">,
  inputs: { corpus?: MidiCorpus; critic?: Critic },
  excerptsPerBucket = 192,
): RewardContext {
  const corpus = inputs.corpus;
  let context: RewardContext = {};
  if (corpus) {
    // Holds the context of the last corpus object seen: a new corpus gets a new context.
    const held = ctx.memo(
      `reward/corpus-context|${excerptsPerBucket}`,
      (): { corpus?: MidiCorpus; context?: RewardContext } => ({}),
    );
    if (held.corpus !== corpus || !held.context) {
      held.corpus = corpus;
      held.context = corpusContext(corpus, excerptsPerBucket);
    }
    context = { ...held.context };
  }
  if (inputs.critic !== undefined) context.critic = inputs.critic;
  return context;
}

/** Keys the composite logs itself (`reward/total`, `reward/lengthFactor`): no term may take them. */
const OWN_KEYS = ["total", "lengthFactor"];

/**
 * Short key of a term for `terms`, `weights` and metric names:
 * `"reward/harmony"` → `"harmony"`, `"./my/reward.ts"` → `"reward"`.
 */
export function termKey(name: string): string {
  const base = name.replace(/\\/g, "/").split("/").pop() ?? name;
  return base.replace(/\.[jt]sx?$/, "") || name;
}

/**
 * Scores pieces with weighted terms.
 *
 * @param pieces The batch.
 * @param terms The weighted terms (weights >= 0, at least one positive).
 * @param context What the terms may look at besides the pieces.
 * @param options `minNotes`: pieces with fewer notes have their total scaled by
 *   notes / minNotes (0 = off, the default).
 * @returns Total and per-term scores.
 * @throws {Error} When a weight is invalid, or a term returns the wrong number
 *   of scores or a score that is not a number in [0, 1]; the message names the term.
 */
export function scoreWithTerms(
  pieces: readonly Piece[],
  terms: readonly WeightedComponent[],
  context: RewardContext,
  options: { minNotes?: number } = {},
): Rewards {
  if (terms.length === 0) throw new Error("Cannot score rollouts: no reward terms are given");
  const keys: string[] = [];
  for (const term of terms) {
    if (!(Number.isFinite(term.weight) && term.weight >= 0)) {
      throw new Error(
        `Cannot score rollouts with reward term "${term.name}": weight must be a number >= 0, received ${term.weight}`,
      );
    }
    // The same term listed twice (with different params) gets "harmony_2"; a term named like
    // the composite's own figures gets "total_2", so it cannot overwrite reward/total.
    const base = termKey(term.name);
    let key = base;
    for (let k = 2; keys.includes(key) || OWN_KEYS.includes(key); k++) key = `${base}_${k}`;
    keys.push(key);
  }
  const weightSum = terms.reduce((sum, t) => sum + t.weight, 0);
  if (weightSum <= 0) {
    throw new Error(
      "Cannot score rollouts: every reward term has weight 0; give one a positive weight",
    );
  }

  const total = new Array<number>(pieces.length).fill(0);
  const minNotes = options.minNotes ?? 0;
  const lengthFactor = pieces.map((piece) =>
    minNotes > 0 ? Math.min(1, piece.notes.length / minNotes) : 1
  );
  const out: Rewards = { total, terms: {}, weights: {}, lengthFactor };
  terms.forEach((term, t) => {
    let scores: number[];
    try {
      scores = (term.component as RewardTerm).score(pieces as Piece[], context);
    } catch (error) {
      const reason = errorMessage(error);
      throw new Error(`Cannot score rollouts with reward term "${term.name}": ${reason}`, {
        cause: error,
      });
    }
    if (!Array.isArray(scores) || scores.length !== pieces.length) {
      throw new Error(
        `Cannot score rollouts with reward term "${term.name}": it returned ${
          Array.isArray(scores) ? scores.length : "no list of"
        } scores for ${pieces.length} pieces`,
      );
    }
    scores.forEach((score, i) => {
      // A hair outside [0, 1] is float noise; more is a broken term.
      if (
        typeof score !== "number" || !Number.isFinite(score) || score < -1e-9 || score > 1 + 1e-9
      ) {
        throw new Error(
          `Cannot score rollouts with reward term "${term.name}": score ${score} for piece ${
            JSON.stringify(pieces[i].id)
          } is not a number in [0, 1]`,
        );
      }
    });
    const clamped = scores.map((s) => Math.min(1, Math.max(0, s)));
    out.terms[keys[t]] = clamped;
    out.weights[keys[t]] = term.weight;
    clamped.forEach((s, i) => total[i] += (lengthFactor[i] * term.weight * s) / weightSum);
  });
  return out;
}

/** The default terms of `reward/composite` and `eval/score`, each of weight 1. */
export const DEFAULT_TERMS = [
  { use: "reward/harmony", weight: 1 },
  { use: "reward/rhythm", weight: 1 },
  { use: "reward/novelty", weight: 1 },
  { use: "reward/smoothness", weight: 1 },
  { use: "reward/corpus-match", weight: 1 },
] as const;

/**
 * `reward/batch-match`: rewards the pieces of a batch that bring the batch's
 * spread of statistics towards the corpus's, in [0, 1].
 *
 * A per-piece term such as `reward/corpus-match` gives full marks anywhere in
 * the central 80% of real music, so a policy that puts every piece in the
 * middle of that band wins it while its samples become more alike than real
 * pieces are: the set moves away from real music even as each piece is
 * "typical". This term looks at the batch instead. For each feature f of
 * `reward/corpus-match` (polyphony, density, pitch-class entropy, velocity
 * spread, inter-onset time, range, interval, note length, register):
 *
 * - the real values of f on excerpts of the piece's length are cut into
 *   `bins` bins of equal real mass at their quantiles, so a real piece falls
 *   in each bin with P = 1 / bins;
 * - Q(b) = (n_b + 1) / (n + bins) is the batch's smoothed share in bin b
 *   (n pieces of the same length bucket, n_b of them in b);
 * - a piece in bin b gets r_f = log(P / Q(b)): negative where the batch
 *   crowds, positive where it is thinner than real music.
 *
 * score = min(1, exp(Σ w_f·r_f / Σ w_f)): 1 for a piece in a bin the batch
 * does not over-fill, lower the more crowded its bins. The batch mean of r is
 * −KL(Q‖P) over the binned features, so a policy-gradient step on this
 * reward lowers that divergence: it spreads a batch that has collapsed and
 * draws it to where real music is dense. A batch of real excerpts scores about
 * 0.8, one piece repeated about 0.25 (five bins, 16 pieces). A feature
 * undefined for a piece (interval and inter-onset time with one note) counts
 * as its own bin with the real share of undefined values (at least 0.01).
 * A piece without notes scores 0.
 *
 * The term only means something on a batch: a piece scored alone always
 * scores min(1, P·(1 + bins)) per feature.
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import type { RewardContext, RewardTerm } from "../_music/components.ts";
import { quantile } from "../_music/calibration.ts";
import { bucketOf, pieceDurationSec, type ReferenceCorpus } from "../_music/reference.ts";
import type { Piece } from "../_music/types.ts";
import {
  CORPUS_MATCH_FEATURES,
  type CorpusMatchFeature,
  corpusMatchFeatures,
} from "./corpus_match.ts";

/** Smallest share given to undefined values (a piece undefined where real music never is). */
const MIN_UNDEFINED_SHARE = 0.01;

/** Where real values of one feature lie, for one length bucket. */
interface FeatureBins {
  /** Inner bin edges: the real quantiles 1/bins, ..., (bins−1)/bins. */
  edges: number[];
  /** Share of real excerpts for which the feature is undefined. */
  undefinedShare: number;
}

/**
 * The bin of a value: 0..edges.length, or -1 when undefined.
 *
 * @param value The raw feature value (NaN when undefined).
 * @param edges Inner edges, ascending.
 * @returns The bin index.
 */
export function binOf(value: number, edges: readonly number[]): number {
  if (!Number.isFinite(value)) return -1;
  let bin = 0;
  while (bin < edges.length && value > edges[bin]) bin++;
  return bin;
}

/** Real bins of every feature for one bucket, memoised on the reference corpus. */
function binsFor(
  reference: ReferenceCorpus,
  bucketSec: number,
  bins: number,
): Record<CorpusMatchFeature, FeatureBins> {
  return reference.memo(`reward/batch-match|${bins}|${bucketSec}`, () => {
    // Per-piece features: the excerpts' blocks of distinct pieces do not matter here.
    const raw = reference.excerpts(bucketSec, "train").map(corpusMatchFeatures);
    const out = {} as Record<CorpusMatchFeature, FeatureBins>;
    for (const name of Object.keys(CORPUS_MATCH_FEATURES) as CorpusMatchFeature[]) {
      const values = raw.map((r) => r[name]);
      const defined = values.filter(Number.isFinite).sort((a, b) => a - b);
      out[name] = {
        edges: Array.from({ length: bins - 1 }, (_, k) => quantile(defined, (k + 1) / bins)),
        undefinedShare: values.length > 0 ? (values.length - defined.length) / values.length : 0,
      };
    }
    return out;
  });
}

/** Params of the term (the plugin's params with defaults filled in). */
export interface BatchMatchParams {
  bins: number;
  weights: Record<CorpusMatchFeature, number>;
}

/**
 * Scores a batch (see the module doc).
 *
 * @param pieces The batch.
 * @param reference Real excerpts by length bucket.
 * @param params Bins and feature weights.
 * @returns One score per piece, in [0, 1].
 */
export function batchMatchScores(
  pieces: readonly Piece[],
  reference: ReferenceCorpus,
  params: BatchMatchParams,
): number[] {
  const names = (Object.keys(CORPUS_MATCH_FEATURES) as CorpusMatchFeature[])
    .filter((name) => params.weights[name] > 0);
  const totalWeight = names.reduce((a, name) => a + params.weights[name], 0);
  const features = pieces.map(corpusMatchFeatures);
  const buckets = pieces.map((piece) => bucketOf(pieceDurationSec(piece)));
  const scores = new Array<number>(pieces.length).fill(0);
  for (const bucket of new Set(buckets)) {
    const members = pieces.map((_, i) => i)
      .filter((i) => buckets[i] === bucket && pieces[i].notes.length > 0);
    if (members.length === 0) continue;
    const real = binsFor(reference, bucket, params.bins);
    const logRatio = new Map<number, number>(members.map((i) => [i, 0]));
    for (const name of names) {
      const { edges, undefinedShare } = real[name];
      const binOfMember = members.map((i) => binOf(features[i][name], edges));
      const counts = new Map<number, number>();
      for (const bin of binOfMember) counts.set(bin, (counts.get(bin) ?? 0) + 1);
      // One more bin (undefined) in the smoothing only when real music has undefined values.
      const slots = params.bins + (undefinedShare > 0 ? 1 : 0);
      members.forEach((i, k) => {
        const bin = binOfMember[k];
        const pReal = bin < 0
          ? Math.max(MIN_UNDEFINED_SHARE, undefinedShare)
          : (1 - undefinedShare) / params.bins;
        const qBatch = (counts.get(bin)! + 1) / (members.length + slots);
        logRatio.set(i, logRatio.get(i)! + params.weights[name] * Math.log(pReal / qBatch));
      });
    }
    for (const i of members) scores[i] = Math.min(1, Math.exp(logRatio.get(i)! / totalWeight));
  }
  return scores;
}

const weightParams = Object.fromEntries(
  Object.keys(CORPUS_MATCH_FEATURES).map((name) => [
    `${name}Weight`,
    p.number({ default: 1, min: 0, description: `Weight of ${name} in the batch's match` }),
  ]),
) as Record<`${CorpusMatchFeature}Weight`, ReturnType<typeof p.number>>;

export default definePlugin({
  name: "reward/batch-match",
  kind: "reward",
  version: "1.0.0",
  description:
    "Rewards the pieces that bring the batch's spread of corpus-match statistics towards the corpus's (a policy gradient on it lowers KL(batch || corpus) over binned features)",
  params: {
    bins: p.integer({
      default: 5,
      min: 2,
      max: 50,
      description: "Bins of equal real mass per feature (about a third of the batch size or fewer)",
    }),
    ...weightParams,
  },
  create(params): RewardTerm {
    const all = params as Record<string, number>;
    const weights = Object.fromEntries(
      Object.keys(CORPUS_MATCH_FEATURES).map((name) => [name, all[`${name}Weight`]]),
    ) as Record<CorpusMatchFeature, number>;
    if (Object.values(weights).every((w) => w === 0)) {
      throw new Error(`Cannot create reward term "reward/batch-match": the weights are all 0`);
    }
    return {
      score(pieces: readonly Piece[], context?: RewardContext) {
        const reference = context?.reference;
        if (!reference) {
          throw new Error(
            `"reward/batch-match" is calibrated on real music: give reward/composite (or eval/policies) a "corpus" input`,
          );
        }
        return batchMatchScores(pieces, reference, { bins: params.bins, weights });
      },
    };
  },
});

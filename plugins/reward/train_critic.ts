/**
 * `reward/train-critic` stage: trains a critic (discriminator) to tell real
 * corpus pieces from policy samples, for the learned reward term
 * `reward/discriminator`. The network and its maths: `plugins/reward/_critic.ts`
 * (SeqGAN's CNN discriminator, Yu et al. 2017; GAIL's alternation of
 * discriminator and policy steps, Ho & Ermon 2016).
 *
 * Each step trains on `batchSize / 2` generated pieces, drawn from the
 * rollouts' decoded pieces, and as many real excerpts: for each generated
 * piece, a train-split piece of the corpus (chosen with probability
 * proportional to its length) cropped at a seeded random offset to the
 * generated piece's duration (at least {@linkcode MIN_EXCERPT_SEC}), so the
 * critic cannot tell them apart by length. With `roundTrip` on, real excerpts
 * first pass through the rollouts' own tokenizer (encode, decode), so both
 * sides carry the same quantisation (time grid, note cap, velocity bins) and
 * the critic cannot win on that either. Both are then encoded with the
 * critic's own tokenizer and cut to `maxTokens`.
 *
 * Given a `critic` input, the stage continues training it (weights and AdamW
 * moments) for `steps` more steps: inside an RL loop it is refreshed on each
 * episode's samples as the policy moves.
 *
 * Metrics: `critic/loss`, `critic/accuracy` (share of the batch on the right
 * side of 0.5), `critic/realScore` and `critic/fakeScore` (mean σ(logit) of
 * the real and the generated examples), on the training batches with dropout
 * on, before each update. Outside a loop they are logged every 10 steps at the
 * critic's step; inside a loop once per episode (means over the run's steps).
 *
 * @module
 */

import { definePlugin, p, type Piece, port, type StageContext } from "../../mod.ts";
import type { RolloutPieces } from "../_music/artifacts.ts";
import type { Tokenizer } from "../_music/components.ts";
import { cropPiece, pieceEndSec } from "../_music/theory.ts";
import type { MidiCorpus } from "../_music/types.ts";
import {
  createTrainer,
  criticFromTrainer,
  type CriticTrainer,
  criticTrainStep,
  disposeTrainer,
} from "./_critic_train.ts";
import { criticConfig, criticParamCount, encodeForCritic, isCritic, packBatch } from "./_critic.ts";
import type { Critic, CriticConfig } from "../_music/artifacts.ts";
import { criticCodec } from "./_critic_codec.ts";

/** Shortest real excerpt, in seconds: an empty or tiny generated piece still faces some music. */
export const MIN_EXCERPT_SEC = 1;

/** Real train pieces with notes and the cumulative lengths that weight the draw. */
interface RealPool {
  pieces: Piece[];
  endsSec: number[];
  cumulativeSec: number[];
}

function realPool(corpus: MidiCorpus): RealPool {
  const pieces = corpus.pieces.filter((piece) => piece.split === "train" && piece.notes.length > 0);
  const endsSec = pieces.map((piece) => pieceEndSec(piece.notes));
  const cumulativeSec: number[] = [];
  let total = 0;
  for (const end of endsSec) cumulativeSec.push(total += Math.max(end, 1e-3));
  return { pieces, endsSec, cumulativeSec };
}

/**
 * A real excerpt of `durationSec` (a length-weighted piece, a seeded offset);
 * redrawn up to 10 times while it has no notes.
 */
function realExcerpt(pool: RealPool, durationSec: number, rng: StageContext["rng"]): Piece {
  const total = pool.cumulativeSec[pool.cumulativeSec.length - 1];
  let excerpt: Piece | undefined;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = rng.next() * total;
    let i = pool.cumulativeSec.findIndex((c) => c > target);
    if (i < 0) i = pool.pieces.length - 1;
    const startSec = rng.next() * Math.max(0, pool.endsSec[i] - durationSec);
    excerpt = cropPiece(pool.pieces[i], { startSec, durationSec });
    if (excerpt.notes.length > 0) break;
  }
  return excerpt!;
}

function sameConfig(a: CriticConfig, b: CriticConfig): string | undefined {
  for (const key of ["embedDim", "filters", "hiddenDim", "maxTokens", "vocabSize"] as const) {
    if (a[key] !== b[key]) return `${key} ${a[key]} (params say ${b[key]})`;
  }
  if (a.widths.join(",") !== b.widths.join(",")) {
    return `widths [${a.widths}] (params say [${b.widths}])`;
  }
  return undefined;
}

export default definePlugin({
  name: "reward/train-critic",
  kind: "reward",
  version: "1.0.0",
  description:
    "Trains a critic (n-gram CNN discriminator, as in SeqGAN) to tell real corpus excerpts from policy samples, for reward/discriminator",
  params: {
    tokenizer: p.component({
      kind: "tokenizer",
      default: "tokenizer/performance",
      description:
        "The critic's own tokenizer: it encodes every piece it judges, so it can score any piece",
    }),
    maxTokens: p.integer({
      default: 512,
      min: 2,
      description: "Tokens of each piece the critic reads, from its start",
    }),
    embedDim: p.integer({ default: 32, min: 1, description: "Token embedding size" }),
    filters: p.integer({
      default: 32,
      min: 1,
      description: "Convolution filters per window width",
    }),
    widths: p.array({
      items: p.integer({ min: 1, description: "A window width in tokens" }),
      default: [2, 3, 4, 6, 8],
      minItems: 1,
      description: "Window widths in tokens of the n-gram convolutions (distinct)",
    }),
    hiddenDim: p.integer({ default: 64, min: 1, description: "Hidden units of the head" }),
    dropout: p.number({
      default: 0.25,
      min: 0,
      max: 0.9,
      description: "Dropout on the pooled features while training",
    }),
    steps: p.integer({
      default: 200,
      min: 1,
      description: "Optimisation steps of this run (added to a continued critic's)",
    }),
    batchSize: p.integer({
      default: 32,
      min: 2,
      description: "Examples per step, half real and half generated (an even number)",
    }),
    lr: p.number({ default: 1e-3, min: 0, max: 1, description: "AdamW learning rate" }),
    warmupSteps: p.integer({
      default: 20,
      min: 0,
      description: "Steps of linear learning-rate warm-up, counted from the critic's first step",
    }),
    weightDecay: p.number({ default: 0.01, min: 0, description: "AdamW decoupled weight decay" }),
    clipNorm: p.number({
      default: 1,
      min: 0,
      description: "Largest global gradient norm; 0 = no clipping",
    }),
    labelSmoothing: p.number({
      default: 0.1,
      min: 0,
      max: 0.5,
      description:
        "One-sided label smoothing: real examples are trained towards 1 - labelSmoothing, generated ones towards 0",
    }),
    roundTrip: p.boolean({
      default: true,
      description:
        "Pass real excerpts through the rollouts' tokenizer (encode, decode) first, so both sides carry the same quantisation",
    }),
  },
  inputs: {
    corpus: port<MidiCorpus>({
      type: "midi-corpus",
      description: "Real pieces; excerpts of its train split are the real examples",
    }),
    rollouts: port<RolloutPieces>({
      type: "rollouts",
      description: "Policy samples; their decoded pieces are the generated examples",
    }),
    critic: port<Critic>({
      type: "critic",
      optional: true,
      description: "A critic to continue training (the previous episode's, inside an RL loop)",
    }),
  },
  outputs: {
    critic: {
      type: "critic",
      description: "The trained critic: config, tokenizer spec, weights and AdamW state",
      codec: criticCodec,
    },
  },
  async run(ctx, inputs, params) {
    const where = "Cannot train critic";
    const { corpus, rollouts } = inputs;
    if (!corpus || !Array.isArray(corpus.pieces)) {
      throw new Error(`${where}: input "corpus" is missing or not a midi-corpus`);
    }
    if (!rollouts || !Array.isArray(rollouts.pieces) || rollouts.pieces.length === 0) {
      throw new Error(`${where}: input "rollouts" has no decoded pieces`);
    }
    if (params.batchSize % 2 !== 0) {
      throw new Error(
        `${where}: "batchSize" must be even (half real, half generated), received ${params.batchSize}`,
      );
    }
    const pool = realPool(corpus);
    if (pool.pieces.length === 0) {
      throw new Error(
        `${where}: the corpus has no train-split piece with notes (${corpus.pieces.length} pieces)`,
      );
    }
    const tokenizer = params.tokenizer as Tokenizer;
    if (!tokenizer.spec) {
      throw new Error(
        `${where}: tokenizer "${tokenizer.name}" carries no spec, so a stored critic could not rebuild it`,
      );
    }
    const tokenizerSpec = { use: tokenizer.spec.use, with: { ...(tokenizer.spec.with ?? {}) } };
    const config = criticConfig({
      vocabSize: tokenizer.vocabSize,
      embedDim: params.embedDim,
      filters: params.filters,
      widths: params.widths,
      hiddenDim: params.hiddenDim,
      maxTokens: params.maxTokens,
    });
    const previous = inputs.critic;
    if (previous !== undefined) {
      if (!isCritic(previous)) throw new Error(`${where}: input "critic" is not a critic`);
      const differs = sameConfig(previous.config, config);
      if (differs !== undefined) {
        throw new Error(
          `${where}: input "critic" has ${differs}; give this stage the same model params as the stage that trained it`,
        );
      }
      if (JSON.stringify(previous.tokenizerSpec) !== JSON.stringify(tokenizerSpec)) {
        throw new Error(
          `${where}: input "critic" uses tokenizer ${
            JSON.stringify(previous.tokenizerSpec)
          }, params say ${JSON.stringify(tokenizerSpec)}; give this stage the same tokenizer`,
        );
      }
    }
    const policyTokenizer = params.roundTrip && rollouts.tokenizer !== undefined
      ? await ctx.component<Tokenizer>(rollouts.tokenizer, "tokenizer")
      : undefined;

    // Generated examples do not change during the run: encode them once.
    const fakes = rollouts.pieces;
    const fakeTokens = encodeForCritic(tokenizer, fakes, config.maxTokens);
    const fakeDurations = fakes.map((piece) => Math.max(MIN_EXCERPT_SEC, pieceEndSec(piece.notes)));
    const half = params.batchSize / 2;
    const labels = [...new Array(half).fill(1), ...new Array(half).fill(0)];

    const trainer: CriticTrainer = previous !== undefined
      ? createTrainer(previous as Critic, { weightDecay: params.weightDecay })
      : createTrainer({ config, rng: ctx.rng }, { weightDecay: params.weightDecay });
    const firstStep = trainer.optimizer.step;
    if (previous === undefined) {
      ctx.log.info(
        `Training a ${
          criticParamCount(config)
        }-weight critic with "${tokenizer.name}" on ${pool.pieces.length} real pieces and ${fakes.length} samples`,
      );
    }
    const inLoop = ctx.iteration !== undefined;
    const logEvery = 10;
    const sums = { loss: 0, accuracy: 0, realScore: 0, fakeScore: 0, n: 0 };
    const run = { ...sums };
    let last: Record<string, number> = {};
    try {
      for (let s = 0; s < params.steps; s++) {
        if (ctx.signal.aborted) {
          throw new Error(`${where}: aborted at step ${s} of ${params.steps}`);
        }
        const fakeRows = Array.from({ length: half }, () => ctx.rng.int(fakes.length));
        const reals = fakeRows.map((i) => {
          const excerpt = realExcerpt(pool, fakeDurations[i], ctx.rng);
          return policyTokenizer
            ? policyTokenizer.decode(policyTokenizer.encode(excerpt), { id: excerpt.id })
            : excerpt;
        });
        const sequences = [
          ...encodeForCritic(tokenizer, reals, config.maxTokens),
          ...fakeRows.map((i) => fakeTokens[i]),
        ];
        const step = trainer.optimizer.step;
        const lr = step < params.warmupSteps
          ? params.lr * (step + 1) / params.warmupSteps
          : params.lr;
        const result = await criticTrainStep(
          trainer,
          packBatch(sequences, config, tokenizer.special.pad),
          labels,
          {
            lr,
            clipNorm: params.clipNorm,
            dropout: params.dropout,
            labelSmoothing: params.labelSmoothing,
            rng: ctx.rng,
          },
        );
        if (result.skipped) {
          throw new Error(
            `${where}: the loss or gradient became ${result.loss} at step ${step}; lower "lr"`,
          );
        }
        for (const acc of [sums, run]) {
          acc.loss += result.loss;
          acc.accuracy += result.accuracy;
          acc.realScore += result.realScore;
          acc.fakeScore += result.fakeScore;
          acc.n++;
        }
        const done = s + 1;
        if (!inLoop && (done % logEvery === 0 || done === params.steps)) {
          last = means(sums);
          ctx.metrics(trainer.optimizer.step, last);
          ctx.progress({
            done,
            total: params.steps,
            unit: "steps",
            info: {
              loss: Number(last["critic/loss"].toFixed(3)),
              acc: Number(last["critic/accuracy"].toFixed(2)),
            },
          });
          Object.assign(sums, { loss: 0, accuracy: 0, realScore: 0, fakeScore: 0, n: 0 });
        }
      }
      if (inLoop) {
        last = means(run);
        ctx.metrics(ctx.iteration!, last);
      }
      const critic = await criticFromTrainer(trainer, {
        tokenizer,
        tokenizerSpec,
        metrics: last,
      });
      (inLoop ? ctx.log.debug : ctx.log.info)(
        `Trained the critic from step ${firstStep} to ${critic.step}: accuracy ${
          last["critic/accuracy"].toFixed(3)
        }, real ${last["critic/realScore"].toFixed(3)}, generated ${
          last["critic/fakeScore"].toFixed(3)
        }`,
      );
      return { critic };
    } finally {
      disposeTrainer(trainer);
    }
  },
});

function means(
  s: { loss: number; accuracy: number; realScore: number; fakeScore: number; n: number },
) {
  const n = Math.max(1, s.n);
  return {
    "critic/loss": s.loss / n,
    "critic/accuracy": s.accuracy / n,
    "critic/realScore": s.realScore / n,
    "critic/fakeScore": s.fakeScore / n,
  };
}

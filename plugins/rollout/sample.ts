/**
 * `rollout/sample`: samples token sequences from a model (with
 * `plugins/_tf/sampler.ts`), decodes them into pieces with the checkpoint's
 * tokenizer, and stores them with their log-probabilities (`rolloutsCodec`,
 * in `_codec.ts`).
 *
 * @module
 */

import {
  type ArtifactCodec,
  definePlugin,
  p,
  port,
  type Rng,
  type StageContext,
} from "../../mod.ts";
import { type BatchStats, batchStats, collapseReason } from "../_music/collapse.ts";
import type { TokenCorpus, Tokenizer } from "../_music/components.ts";
import type { Split } from "../_music/types.ts";
import type { Rollouts } from "../_music/artifacts.ts";
import { liveModelOf } from "../_tf/checkpoint.ts";
import { type ModelCheckpoint } from "../_tf/model.ts";
import { samplePolicy } from "../_tf/sampler.ts";
import { rolloutsCodec } from "./_codec.ts";

/** Primer prompts: BOS-first beginnings of `count` sequences of the split, drawn with `rng`. */
function primerPrompts(
  corpus: TokenCorpus,
  split: Split,
  primerLen: number,
  count: number,
  rng: Rng,
): Int32Array[] {
  const candidates: Int32Array[] = [];
  for (let i = 0; i < corpus.ids.length; i++) {
    const length = corpus.offsets[i + 1] - corpus.offsets[i];
    if (corpus.splits[i] === split && length > primerLen + 1) {
      candidates.push(corpus.tokens.subarray(corpus.offsets[i], corpus.offsets[i] + primerLen + 1));
    }
  }
  if (candidates.length === 0) {
    throw new Error(
      `Cannot take primers: no "${split}" sequence of the primer corpus is longer than primerLen + 1 = ${
        primerLen + 1
      } tokens`,
    );
  }
  return Array.from(
    { length: count },
    () => Int32Array.from(candidates[rng.int(candidates.length)]),
  );
}

export default definePlugin({
  name: "rollout/sample",
  kind: "rollout",
  version: "1.0.0",
  description:
    "Samples token sequences from a model (temperature, top-k, top-p) with per-token log-probabilities and decodes them into pieces",
  params: {
    count: p.integer({ default: 16, min: 1, description: "Sequences to sample (one batch)" }),
    length: p.integer({
      default: 512,
      min: 1,
      description: "Tokens to sample after BOS and the primer (fewer when EOS is sampled)",
    }),
    temperature: p.number({
      default: 1,
      min: 0,
      description: "Divides the logits; below 1 is more conservative, 0 is greedy",
    }),
    topK: p.integer({
      default: 0,
      min: 0,
      description: "Sample among the k most likely tokens; 0 = off",
    }),
    topP: p.number({
      default: 1,
      min: 0,
      max: 1,
      description:
        "Nucleus sampling: keep the most likely tokens up to this total probability; 1 = off",
    }),
    primerLen: p.integer({
      default: 0,
      min: 0,
      description:
        "Tokens after BOS taken from the start of a primer-corpus sequence; 0 = start from BOS",
    }),
    primerSplit: p.string({
      default: "validation",
      enum: ["train", "validation", "test"],
      description: "Which split of the primer corpus the primers come from",
    }),
    batchSize: p.integer({
      default: 0,
      min: 0,
      description: "Sequences decoded together; 0 = all of count at once",
    }),
  },
  inputs: {
    model: port<ModelCheckpoint>({ type: "model", description: "The policy to sample from" }),
    primer: port<TokenCorpus>({
      type: "token-corpus",
      optional: true,
      description: "Corpus whose sequence beginnings prime the samples (needs primerLen > 0)",
    }),
  },
  outputs: {
    rollouts: {
      type: "rollouts",
      description: "Sampled tokens, their log-probabilities and decoded pieces",
      codec: rolloutsCodec as ArtifactCodec,
    },
  },
  async run(ctx, inputs, params) {
    const { model: ckpt, primer } = inputs;
    if (params.primerLen > 0 && primer === undefined) {
      throw new Error(
        `Cannot sample: primerLen is ${params.primerLen} but no "primer" input is connected`,
      );
    }
    if (primer !== undefined && primer.vocabSize !== ckpt.vocabSize) {
      throw new Error(
        `Cannot sample: the primer corpus has ${primer.vocabSize} token ids, the model ${ckpt.vocabSize}`,
      );
    }
    const tokenizer = await ctx.component<Tokenizer>(ckpt.tokenizer, "tokenizer");
    const prompts = primer === undefined
      ? Array.from({ length: params.count }, () => Int32Array.of(tokenizer.special.bos))
      : primerPrompts(primer, params.primerSplit as Split, params.primerLen, params.count, ctx.rng);
    // The live policy when an RL update in this process made the checkpoint,
    // else a model built once per checkpoint; shared, so not disposed here.
    const model = await liveModelOf(ctx, ckpt);
    const started = performance.now();
    const sample = await samplePolicy(model, {
      count: params.count,
      length: params.length,
      rng: ctx.rng,
      temperature: params.temperature,
      topK: params.topK,
      topP: params.topP,
      prompts,
      stopToken: tokenizer.special.eos,
      batchSize: params.batchSize === 0 ? undefined : params.batchSize,
      signal: ctx.signal,
      onProgress: (done, total) => {
        const sec = (performance.now() - started) / 1000;
        ctx.progress({ done, total, unit: "tokens", info: { "tok/s": Math.round(done / sec) } });
      },
    });
    const sampled = sample.logProbs.reduce((a, l) => a + l.length, 0);
    const sec = (performance.now() - started) / 1000;
    const prefix = ctx.iteration === undefined ? ctx.stage : `${ctx.stage}-${ctx.iteration}`;
    const pieces = sample.tokens.map((t, i) => tokenizer.decode(t, { id: `${prefix}-${i}` }));
    const meanLogProb = sample.logProbs.reduce((a, l) => a + l.reduce((x, y) => x + y, 0), 0) /
      Math.max(1, sampled);
    const stats = batchStats(pieces, { meanLogProb: sampled > 0 ? meanLogProb : undefined });
    ctx.metrics(ctx.iteration ?? 0, {
      "rollout/tokens": sampled,
      "rollout/tokensPerSec": sampled / Math.max(sec, 1e-9),
      "rollout/meanLogProb": meanLogProb,
      "rollout/meanNotes": stats.notesPerPiece,
      "rollout/distinctNgrams": stats.distinctNgramRatio,
    });
    flagCollapse(ctx, stats, params.length);
    // Inside a loop this would print every episode; the loop's progress line shows the figures.
    (ctx.iteration === undefined ? ctx.log.info : ctx.log.debug)(
      `Sampled ${sampled} tokens in ${sec.toFixed(1)} s (${Math.round(sampled / sec)} tok/s)`,
    );
    const rollouts: Rollouts = {
      tokens: sample.tokens,
      primerLen: sample.promptLength - 1,
      logProbs: sample.logProbs,
      samplingLogProbs: sample.samplingLogProbs,
      sampling: { temperature: params.temperature, topK: params.topK, topP: params.topP },
      pieces,
      tokenizer: ckpt.tokenizer,
      modelStep: ckpt.step,
    };
    return { rollouts };
  },
});

/**
 * Warns (once per run and stage) and notes in the manifest when the sampled
 * batch looks collapsed: see plugins/_music/collapse.ts for the signs.
 */
function flagCollapse(ctx: StageContext, stats: BatchStats, tokensSampled: number): void {
  const reason = collapseReason(stats, { tokensSampled });
  if (reason === undefined) return;
  const episode = (ctx.iteration ?? 0) + 1;
  // The span so far is what this stage noted at earlier episodes, so a loop warns once.
  const seen = ctx.noted("collapse") as { first: number; episodes: number } | undefined;
  const span = seen
    ? { first: seen.first, last: episode, episodes: seen.episodes + 1 }
    : { first: episode, last: episode, episodes: 1 };
  if (!seen) {
    ctx.log.warn(
      `The policy looks collapsed${
        ctx.iteration === undefined ? "" : ` at episode ${episode}`
      }: ${reason}; if it is being fine-tuned, lower the update's learning rate or raise its klCoef`,
    );
  }
  ctx.note("collapse", { ...span, reason });
}

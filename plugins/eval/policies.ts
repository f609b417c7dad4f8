/**
 * `eval/policies`: compares the pretrained and the fine-tuned policy on the
 * same number of samples, drawn with the same seed, in the spirit of RL
 * Tuner's Table 1 (Jaques et al. 2017): notes in key, notes excessively
 * repeated, leaps resolved, the mean of each reward term and the total,
 * distinct n-gram ratio, KL to the pretrained policy, and validation NLL on
 * real data (how much the fine-tuned model forgot).
 *
 * Writes `evaluation.json` (for each policy, the metrics by name) and a
 * readable `evaluation.md` into the run directory, and passes both sets of
 * samples on as pieces for export, refinement and `eval/metrics`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { join } from "node:path";
import { definePlugin, p, port } from "../../mod.ts";
import { createRng } from "../../mod.ts";
import { writeFileAtomic } from "../../mod.ts";
import type { RewardTerm, TokenCorpus, Tokenizer } from "../_music/components.ts";
import {
  distinctNgramRatio,
  excessiveRepeatRate,
  leapResolutionRate,
  notesInKeyRate,
} from "../_music/metrics.ts";
import type { MidiCorpus, Piece } from "../_music/types.ts";
import { liveModelOf } from "../_tf/checkpoint.ts";
import { type ModelCheckpoint, type SequenceModel, tokenNll } from "../_tf/model.ts";
import { splitStream, spreadWindows } from "../_music/token_corpus.ts";
import { DEFAULT_TERMS, scoreWithTerms, stageContext } from "../_music/scoring.ts";
import { bucketOf, pieceDurationSec } from "../_music/reference.ts";
import { collapseReason } from "../_music/collapse.ts";
import { samplePolicy } from "../_tf/sampler.ts";

/** Validation windows scored per forward pass. */
const NLL_BATCH = 32;

/** The evaluation table: metric name to value, per policy. */
export interface PolicyEvaluation {
  samples: number;
  length: number;
  policies: Record<"pretrained" | "finetuned", Record<string, number>>;
  /**
   * The same metrics for real held-out excerpts of the reference corpus, of
   * the pretrained samples' length (present when the `corpus` input is given):
   * what each reward term gives real music, next to what the policies get.
   */
  real?: Record<string, number>;
  /** Why the fine-tuned policy looks collapsed (notes per piece, distinct n-grams), if it does. */
  collapse?: string;
}

const mean = (values: number[]): number => {
  const finite = values.filter(Number.isFinite);
  return finite.length === 0 ? NaN : finite.reduce((a, b) => a + b, 0) / finite.length;
};

/** Mean per-token KL(policy || reference) over the states of the given sequences. */
async function meanKl(
  policy: SequenceModel,
  reference: SequenceModel,
  sequences: Int32Array[],
): Promise<number> {
  let total = 0;
  let count = 0;
  for (const seq of sequences) {
    if (seq.length < 2) continue;
    const value = tf.tidy(() => {
      const inputs = tf.tensor2d([Array.from(seq.subarray(0, seq.length - 1))], undefined, "int32");
      const logP = tf.logSoftmax(policy.forward(inputs, { training: false })); // [1, T, V]
      const logQ = tf.logSoftmax(reference.forward(inputs, { training: false })); // [1, T, V]
      return tf.sum(tf.mul(tf.exp(logP), tf.sub(logP, logQ)));
    });
    total += (await value.data())[0];
    value.dispose();
    count += seq.length - 1;
  }
  return count === 0 ? NaN : total / count;
}

/**
 * Mean NLL per token (nats) over non-overlapping windows spread evenly over
 * the whole validation split (as pretraining's validation picks them).
 */
async function validationNll(
  model: SequenceModel,
  corpus: TokenCorpus,
  options: { seqLen: number; windows: number },
): Promise<number> {
  const windows = spreadWindows(
    splitStream(corpus, "validation"),
    options.seqLen + 1,
    options.windows,
  );
  if (windows.length === 0) return NaN;
  let total = 0;
  for (let from = 0; from < windows.length; from += NLL_BATCH) {
    const batch = windows.slice(from, from + NLL_BATCH);
    const value = tf.tidy(() => {
      const inputs = tf.tensor2d(
        batch.map((w) => Array.from(w.subarray(0, -1))),
        undefined,
        "int32",
      );
      const targets = tf.tensor2d(batch.map((w) => Array.from(w.subarray(1))), undefined, "int32");
      return tf.sum(tf.mean(tokenNll(model.forward(inputs, { training: false }), targets), 1));
    });
    total += (await value.data())[0];
    value.dispose();
  }
  return total / windows.length;
}

/** The readable version of the table. */
export function evaluationMarkdown(evaluation: PolicyEvaluation): string {
  const names = [
    ...new Set([
      ...Object.keys(evaluation.policies.pretrained),
      ...Object.keys(evaluation.policies.finetuned),
    ]),
  ];
  const show = (v: number | undefined) =>
    v === undefined || !Number.isFinite(v)
      ? "n/a"
      : Math.abs(v) >= 100
      ? v.toFixed(0)
      : v.toFixed(3);
  const lines = [
    `# Pretrained vs fine-tuned policy`,
    "",
    `${evaluation.samples} samples of ${evaluation.length} tokens from each policy, same seed.`,
    "",
    ...(evaluation.real
      ? [
        "| metric | real | pretrained | fine-tuned |",
        "| --- | ---: | ---: | ---: |",
        ...names.map((name) =>
          `| ${name} | ${show(evaluation.real![name])} | ${
            show(evaluation.policies.pretrained[name])
          } | ${show(evaluation.policies.finetuned[name])} |`
        ),
      ]
      : [
        "| metric | pretrained | fine-tuned |",
        "| --- | ---: | ---: |",
        ...names.map((name) =>
          `| ${name} | ${show(evaluation.policies.pretrained[name])} | ${
            show(evaluation.policies.finetuned[name])
          } |`
        ),
      ]),
  ];
  if (evaluation.collapse) {
    lines.push("", `**The fine-tuned policy looks collapsed:** ${evaluation.collapse}.`);
  }
  return lines.join("\n") + "\n";
}

export default definePlugin({
  name: "eval/policies",
  kind: "eval",
  version: "1.1.0",
  description:
    "Compares the pretrained and fine-tuned policies on samples drawn with the same seed (RL Tuner's table: key, repeats, leaps, rewards, diversity, KL, validation NLL)",
  params: {
    samples: p.integer({ default: 16, min: 1, description: "Pieces sampled from each policy" }),
    length: p.integer({ default: 256, min: 1, description: "Tokens sampled per piece" }),
    temperature: p.number({ default: 1, min: 0, description: "Sampling temperature (0 = greedy)" }),
    terms: p.components({
      kind: "reward",
      default: DEFAULT_TERMS,
      description: "Reward terms averaged per policy (the total is their weighted mean)",
    }),
    minNotes: p.integer({
      default: 16,
      min: 0,
      description: "Length guard of the total, as in reward/composite (0 = off)",
    }),
    seqLen: p.integer({ default: 128, min: 2, description: "Window length of the validation NLL" }),
    nllWindows: p.integer({
      default: 256,
      min: 0,
      description:
        "Validation windows scored for NLL, spread evenly over the whole validation split; 0 = skip",
    }),
    ngramLength: p.integer({ default: 4, min: 1, description: "n of the distinct n-gram ratio" }),
  },
  inputs: {
    pretrained: port<ModelCheckpoint>({
      type: "model",
      description: "The pretrained policy (also the KL reference)",
    }),
    finetuned: port<ModelCheckpoint>({ type: "model", description: "The fine-tuned policy" }),
    tokens: port<TokenCorpus>({
      type: "token-corpus",
      description: "Token corpus whose validation split gives the NLL on real data",
      optional: true,
    }),
    corpus: port<MidiCorpus>({
      type: "midi-corpus",
      description: "Training corpus for the novelty term's copy check",
      optional: true,
    }),
  },
  outputs: {
    evaluation: { type: "metrics", description: "For each policy, the metrics by name" },
    pretrainedPieces: { type: "pieces", description: "The pretrained policy's samples" },
    finetunedPieces: { type: "pieces", description: "The fine-tuned policy's samples" },
  },
  async run(ctx, inputs, params) {
    const { pretrained: pretrainedCkpt, finetuned: finetunedCkpt } = inputs;
    const tokenizer = await ctx.component<Tokenizer>(
      finetunedCkpt.tokenizer,
      "tokenizer",
    );
    const reference = await liveModelOf(ctx, pretrainedCkpt);
    const context = stageContext(ctx, { corpus: inputs.corpus });
    const terms = params.terms as { name: string; weight: number; component: RewardTerm }[];
    const evaluation: PolicyEvaluation = {
      samples: params.samples,
      length: params.length,
      policies: { pretrained: {}, finetuned: {} },
    };
    const pieces: Record<string, Piece[]> = {};
    const rowOf = (set: Piece[]): Record<string, number> => {
      const rewards = scoreWithTerms(set, terms, context, { minNotes: params.minNotes });
      const row: Record<string, number> = {
        notesInKey: mean(set.map(notesInKeyRate)),
        notesExcessivelyRepeated: mean(set.map((piece) => excessiveRepeatRate(piece))),
        leapsResolved: mean(set.map(leapResolutionRate)),
        distinctNgramRatio: distinctNgramRatio(set, { ngramLength: params.ngramLength }),
        notesPerPiece: mean(set.map((piece) => piece.notes.length)),
      };
      for (const [term, scores] of Object.entries(rewards.terms)) {
        row[`reward/${term}`] = mean(scores);
      }
      row["reward/total"] = mean(rewards.total);
      return row;
    };
    for (
      const [name, ckpt] of [["pretrained", pretrainedCkpt], ["finetuned", finetunedCkpt]] as const
    ) {
      if (ctx.signal.aborted) throw new Error("Interrupted");
      const model = await liveModelOf(ctx, ckpt);
      // Same seed for both policies: the comparison differs only in the weights.
      const sample = await samplePolicy(model, {
        count: params.samples,
        length: params.length,
        rng: createRng(ctx.seed),
        temperature: params.temperature,
        startToken: tokenizer.special.bos,
        stopToken: tokenizer.special.eos,
        signal: ctx.signal,
      });
      const decoded = sample.tokens.map((t, i) => tokenizer.decode(t, { id: `${name}-${i}` }));
      pieces[name] = decoded;
      const row = rowOf(decoded);
      row["kl/pretrained"] = name === "pretrained"
        ? 0
        : await meanKl(model, reference, sample.tokens);
      const tokens = inputs.tokens;
      if (tokens && params.nllWindows > 0) {
        row["nll/validation"] = await validationNll(model, tokens, {
          seqLen: params.seqLen,
          windows: params.nllWindows,
        });
      }
      evaluation.policies[name] = row;
      ctx.progress({ done: name === "pretrained" ? 1 : 2, total: 2, unit: "policies" });
    }
    if (context.reference) {
      // Real excerpts as long as the pretrained samples (median), scored the same way.
      const durations = pieces.pretrained.map(pieceDurationSec).sort((a, b) => a - b);
      const bucket = bucketOf(durations[Math.floor(durations.length / 2)] ?? 0);
      const real = context.reference.excerpts(bucket, "heldOut").slice(0, params.samples)
        .map((piece, i) => ({ ...piece, id: `real-${i}` }));
      evaluation.real = rowOf(real);
    }
    const fine = evaluation.policies.finetuned;
    const reason = collapseReason(
      {
        notesPerPiece: fine.notesPerPiece,
        distinctNgramRatio: fine.distinctNgramRatio,
      },
      {
        notesPerPiece: evaluation.real?.notesPerPiece ??
          evaluation.policies.pretrained.notesPerPiece,
      },
    );
    if (reason) {
      evaluation.collapse = reason;
      ctx.log.warn(`The fine-tuned policy looks collapsed: ${reason}`);
    }
    const table = evaluationMarkdown(evaluation);
    await writeFileAtomic(join(ctx.runDir, "evaluation.json"), JSON.stringify(evaluation, null, 2));
    await writeFileAtomic(join(ctx.runDir, "evaluation.md"), table);
    ctx.log.info(`\n${table}`);
    return {
      evaluation,
      pretrainedPieces: pieces.pretrained,
      finetunedPieces: pieces.finetuned,
    };
  },
});

/**
 * Samples token sequences from a `SequenceModel` with incremental decoding,
 * recording each sampled token's log-probability: what `rollout/sample`,
 * `eval/policies` and the benchmarks draw with.
 *
 * References: temperature sampling, top-k (Fan et al., "Hierarchical Neural
 * Story Generation", 2018) and nucleus / top-p sampling (Holtzman et al.,
 * "The Curious Case of Neural Text Degeneration", ICLR 2020). Policy-gradient
 * updates need log π(a|s) of the policy that acted (Williams 1992; Schulman
 * et al. 2017), so both the model's own log-probability (temperature 1, no
 * truncation) and that of the distribution actually sampled from are kept.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../../mod.ts";
import type { SequenceModel } from "./model.ts";
import { withPackedWeights } from "./openblas.ts";

/** Settings of {@link samplePolicy}. */
export interface SampleOptions {
  /** Number of sequences. */
  count: number;
  /** Tokens to sample after the prompt (fewer when `stopToken` comes first). */
  length: number;
  /** Seeds the draws; one `rng.next()` per sampled token (none for greedy rows). */
  rng: Rng;
  /** Logit divisor; 0 means greedy (argmax). Default 1. */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 = off. Default 0. */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability reaches p; 1 = off. Default 1. */
  topP?: number;
  /** One prompt per sequence, all of the same length ≥ 1 (BOS first). */
  prompts?: Int32Array[];
  /** Prompt of every sequence when `prompts` is not given. */
  startToken?: number;
  /** A sequence ends after sampling this token (EOS). */
  stopToken?: number;
  /** Sequences decoded together; default all of `count`. */
  batchSize?: number;
  /** Stops between tokens when aborted (throws its reason). */
  signal?: AbortSignal;
  /** Called after each decoding step with tokens sampled so far and the total. */
  onProgress?: (done: number, total: number) => void;
}

/** What {@link samplePolicy} returns; arrays are per sequence. */
export interface PolicySample {
  /** Prompt then sampled tokens (through the stop token when it was sampled). */
  tokens: Int32Array[];
  /** Length of the prompt at the start of each sequence. */
  promptLength: number;
  /** log π(token) of each sampled token under the model at temperature 1, untruncated. */
  logProbs: Float32Array[];
  /**
   * Log-probability of each sampled token under the distribution it was drawn
   * from (temperature, top-k, top-p applied); 0 for greedy rows.
   */
  samplingLogProbs: Float32Array[];
}

/**
 * Chooses one token from logits and returns it with its log-probabilities.
 * Exported for tests; {@link samplePolicy} calls it once per sequence and step.
 */
export function chooseToken(
  logits: Float32Array,
  options: { temperature: number; topK: number; topP: number; u: number },
): { token: number; logProb: number; samplingLogProb: number } {
  const vocab = logits.length;
  let max = -Infinity;
  let argmax = 0;
  for (let i = 0; i < vocab; i++) {
    if (logits[i] > max) {
      max = logits[i];
      argmax = i;
    }
  }
  const exps = new Float64Array(vocab);
  let sum = 0;
  for (let i = 0; i < vocab; i++) {
    exps[i] = Math.exp(logits[i] - max);
    sum += exps[i];
  }
  const logZ = max + Math.log(sum);
  const { temperature, topK, topP } = options;
  if (temperature === 0 || topK === 1) {
    return { token: argmax, logProb: logits[argmax] - logZ, samplingLogProb: 0 };
  }
  const truncated = (topK > 0 && topK < vocab) || topP < 1;
  if (!truncated && temperature === 1) {
    // The whole distribution as it is: the weights are the exponentials above, and their total
    // is `sum` (the same additions in the same order).
    let target = options.u * sum;
    let token = vocab - 1;
    for (let i = 0; i < vocab; i++) {
      target -= exps[i];
      if (target < 0) {
        token = i;
        break;
      }
    }
    return {
      token,
      logProb: logits[token] - logZ,
      samplingLogProb: Math.log(exps[token] / sum),
    };
  }
  // Candidates in descending order of logit (ties: lower id first).
  let ids = Array.from({ length: vocab }, (_, i) => i);
  if (truncated) ids.sort((a, b) => logits[b] - logits[a] || a - b);
  if (topK > 0 && topK < vocab) ids = ids.slice(0, topK);
  const weights = ids.map((i) => Math.exp((logits[i] - max) / temperature));
  let total = weights.reduce((a, b) => a + b, 0);
  if (topP < 1) {
    let cumulative = 0;
    let keep = 0;
    while (keep < ids.length && cumulative < topP * total) cumulative += weights[keep++];
    ids = ids.slice(0, Math.max(1, keep));
    weights.length = ids.length;
    total = weights.reduce((a, b) => a + b, 0);
  }
  let target = options.u * total;
  let pick = ids.length - 1;
  for (let j = 0; j < ids.length; j++) {
    target -= weights[j];
    if (target < 0) {
      pick = j;
      break;
    }
  }
  const token = ids[pick];
  return {
    token,
    logProb: logits[token] - logZ,
    samplingLogProb: Math.log(weights[pick] / total),
  };
}

/**
 * Samples sequences from a model, one token per step with its incremental
 * state (O(1) model work per token). The RL loop and the benchmarks call this.
 *
 * @param model the policy
 * @param options count, length, sampling settings, prompts and the RNG
 * @returns tokens and per-token log-probabilities
 * @throws Error when prompts are missing, empty or of unequal lengths, or when aborted
 */
export function samplePolicy(model: SequenceModel, options: SampleOptions): Promise<PolicySample> {
  // Per-token products by the same weights: packed once for the native small product.
  return withPackedWeights(model.variables.values(), () => sampleBatches(model, options));
}

async function sampleBatches(model: SequenceModel, options: SampleOptions): Promise<PolicySample> {
  const { count, length, rng } = options;
  const temperature = options.temperature ?? 1;
  const topK = options.topK ?? 0;
  const topP = options.topP ?? 1;
  let prompts = options.prompts;
  if (prompts === undefined) {
    if (options.startToken === undefined) {
      throw new Error("Cannot sample: give prompts or a startToken (usually BOS)");
    }
    prompts = Array.from({ length: count }, () => Int32Array.of(options.startToken!));
  }
  if (prompts.length !== count) {
    throw new Error(`Cannot sample: ${prompts.length} prompts for ${count} sequences`);
  }
  const promptLength = prompts[0]?.length ?? 0;
  if (count > 0 && (promptLength < 1 || prompts.some((q) => q.length !== promptLength))) {
    throw new Error("Cannot sample: prompts must all have the same length of at least 1 token");
  }
  const batchSize = Math.max(1, options.batchSize ?? count);
  const tokens: Int32Array[] = [];
  const logProbs: Float32Array[] = [];
  const samplingLogProbs: Float32Array[] = [];
  const total = count * length;
  let done = 0;
  for (let start = 0; start < count; start += batchSize) {
    const rows = Math.min(batchSize, count - start);
    const seqs = Array.from({ length: rows }, (_, r) => {
      const out = new Int32Array(promptLength + length);
      out.set(prompts![start + r]);
      return out;
    });
    const lp = Array.from({ length: rows }, () => new Float32Array(length));
    const slp = Array.from({ length: rows }, () => new Float32Array(length));
    const ended = new Array<number>(rows).fill(-1); // sampled length when stopped, else -1
    let state = model.initState(rows);
    try {
      // Prompt: feed all but the last token; the last one is fed by the loop below.
      for (let t = 0; t < promptLength - 1; t++) {
        const input = tf.tensor1d(seqs.map((s) => s[t]), "int32");
        const next = model.step(input, state);
        tf.dispose([input, next.logits, state]);
        state = next.state;
      }
      for (let t = 0; t < length; t++) {
        options.signal?.throwIfAborted();
        const input = tf.tensor1d(seqs.map((s) => s[promptLength - 1 + t]), "int32");
        const next = model.step(input, state);
        tf.dispose([input, state]);
        state = next.state;
        const values = (await next.logits.data()) as Float32Array; // [rows * vocab]
        const vocab = next.logits.shape[1];
        next.logits.dispose();
        for (let r = 0; r < rows; r++) {
          if (ended[r] >= 0) {
            // Finished rows keep feeding their stop token; nothing is recorded.
            seqs[r][promptLength + t] = options.stopToken!;
            continue;
          }
          const chosen = chooseToken(values.subarray(r * vocab, (r + 1) * vocab), {
            temperature,
            topK,
            topP,
            u: temperature === 0 || topK === 1 ? 0 : rng.next(),
          });
          seqs[r][promptLength + t] = chosen.token;
          lp[r][t] = chosen.logProb;
          slp[r][t] = chosen.samplingLogProb;
          if (chosen.token === options.stopToken) ended[r] = t + 1;
        }
        done += rows;
        options.onProgress?.(done, total);
        if (ended.every((e) => e >= 0)) break;
      }
    } finally {
      tf.dispose(state);
    }
    for (let r = 0; r < rows; r++) {
      const sampled = ended[r] >= 0 ? ended[r] : length;
      tokens.push(seqs[r].slice(0, promptLength + sampled));
      logProbs.push(lp[r].slice(0, sampled));
      samplingLogProbs.push(slp[r].slice(0, sampled));
    }
  }
  return { tokens, promptLength, logProbs, samplingLogProbs };
}

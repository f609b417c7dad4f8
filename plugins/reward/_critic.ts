/**
 * A critic (discriminator) that tells real pieces from generated ones, for a
 * learned reward: `reward/train-critic` trains it, `reward/discriminator`
 * scores pieces with it.
 *
 * References: SeqGAN (Yu et al., "SeqGAN: Sequence Generative Adversarial
 * Nets with Policy Gradient", AAAI 2017), whose discriminator is a CNN over
 * token sequences with n-gram filters of several widths and max-over-time
 * pooling, and whose generator is trained by REINFORCE on the
 * discriminator's probability that a sequence is real; GAIL (Ho & Ermon,
 * "Generative Adversarial Imitation Learning", NeurIPS 2016), which
 * alternates discriminator steps on expert vs policy samples with policy
 * updates. One-sided label smoothing follows Salimans et al., "Improved
 * Techniques for Training GANs", 2016.
 *
 * Network, for tokens `x` of a piece encoded by the critic's own tokenizer
 * (so it can score any piece, MIDI files that were never tokens included):
 * for each width k, the embeddings `d` of the k tokens of the window starting
 * at every position, side by side `[B, T, k·d]` (one embedding lookup of the
 * window ids), times a kernel `[k·d, F]` plus bias, ReLU: an n-gram
 * convolution written as a lookup and a matMul, since the stock wasm backend
 * lacks some conv gradients and runs slice/concat gradients slowly → mean and
 * max over the windows that lie inside the sequence `[B, 2F]` per width →
 * concatenated `[B, 2·F·widths]` → dropout → linear `H` → ReLU → linear → one
 * logit. σ(logit) is the probability that the piece is real. Loss: binary
 * cross-entropy with real targets `1 − labelSmoothing` and generated targets 0.
 *
 * Matrix products take gradients through explicit transposes: the stock wasm
 * backend runs `transposeA`/`transposeB` products 15–40× slower (TECH_NOTES).
 *
 * The artifact holds plain arrays (weights, optional AdamW moments), not
 * tensors, so it can be kept, cached and passed between stages without
 * owning backend memory; every function here builds what it needs and
 * disposes it before returning.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../../mod.ts";
import type { Critic, CriticConfig } from "../_music/artifacts.ts";
import type { Tokenizer } from "../_music/components.ts";
import type { Piece } from "../_music/types.ts";
import { constantVariable, dropout, normalVariable, sumRows } from "../_tf/model.ts";

/**
 * Names and shapes of a critic's weights, in a fixed order.
 *
 * @param config The architecture.
 * @returns `[name, shape]` pairs.
 */
export function criticParamShapes(config: CriticConfig): Array<[string, number[]]> {
  const { vocabSize, embedDim: d, filters: f, widths, hiddenDim: h } = config;
  const out: Array<[string, number[]]> = [["embedding", [vocabSize, d]]];
  for (const k of widths) {
    out.push([`ngram/${k}/kernel`, [k * d, f]], [`ngram/${k}/bias`, [f]]);
  }
  out.push(
    ["head/kernel", [2 * f * widths.length, h]],
    ["head/bias", [h]],
    ["out/kernel", [h, 1]],
    ["out/bias", [1]],
  );
  return out;
}

/**
 * Checks an architecture and returns it with its widths sorted.
 *
 * @throws {Error} `Cannot build critic: ...` naming the bad field.
 */
export function criticConfig(config: Omit<CriticConfig, "type">): CriticConfig {
  const where = "Cannot build critic";
  for (const key of ["vocabSize", "embedDim", "filters", "hiddenDim", "maxTokens"] as const) {
    const value = config[key];
    if (!Number.isInteger(value) || value < 1) {
      throw new Error(`${where}: "${key}" must be an integer >= 1, received ${value}`);
    }
  }
  const widths = [...config.widths].sort((a, b) => a - b);
  if (widths.length === 0) throw new Error(`${where}: "widths" must list at least one width`);
  for (const [i, k] of widths.entries()) {
    if (!Number.isInteger(k) || k < 1) {
      throw new Error(`${where}: every width must be an integer >= 1, received ${k}`);
    }
    if (i > 0 && widths[i - 1] === k) {
      throw new Error(`${where}: width ${k} is listed twice in "widths"`);
    }
  }
  if (widths[widths.length - 1] > config.maxTokens) {
    throw new Error(
      `${where}: the widest window (${
        widths[widths.length - 1]
      } tokens) is longer than "maxTokens" (${config.maxTokens})`,
    );
  }
  return { type: "ngram-cnn", ...config, widths };
}

/** Number of weights of a critic. */
export function criticParamCount(config: CriticConfig): number {
  return criticParamShapes(config).reduce((n, [, s]) => n + s.reduce((a, b) => a * b, 1), 0);
}

/**
 * Freshly initialised weights: embeddings N(0, 1), n-gram kernels and the head
 * He-normal, the output layer small, biases 0.
 *
 * @param config The architecture.
 * @param rng Seeds every draw.
 * @returns Variables by name, in {@linkcode criticParamShapes} order.
 */
export function initCriticVariables(config: CriticConfig, rng: Rng): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  for (const [name, shape] of criticParamShapes(config)) {
    if (name.endsWith("bias")) out.set(name, constantVariable(shape, 0));
    else if (name === "embedding") out.set(name, normalVariable(shape, 1, rng));
    else if (name === "out/kernel") {
      out.set(name, normalVariable(shape, 0.1 / Math.sqrt(shape[0]), rng));
    } else out.set(name, normalVariable(shape, Math.sqrt(2 / shape[0]), rng));
  }
  return out;
}

/** Variables holding a critic's stored weights. */
export function variablesFrom(
  critic: Pick<Critic, "config" | "weights">,
): Map<string, tf.Variable> {
  const out = new Map<string, tf.Variable>();
  try {
    for (const [name, shape] of criticParamShapes(critic.config)) {
      const w = critic.weights[name];
      if (!w || w.shape.join(",") !== shape.join(",")) {
        throw new Error(
          `Cannot build critic: weight "${name}" is ${
            w ? `of shape [${w.shape}]` : "missing"
          }, the config expects [${shape}]`,
        );
      }
      out.set(name, tf.tidy(() => tf.variable(tf.tensor(w.data, shape, "float32"), true)));
    }
  } catch (error) {
    for (const v of out.values()) v.dispose();
    throw error;
  }
  return out;
}

// ---------------------------------------------------------------- batches

/** Token sequences packed for the network (plain arrays; tensors are made per call). */
export interface CriticBatch {
  size: number;
  /** Window start positions per row: the longest sequence's length. */
  time: number;
  /**
   * Per width k: `[size · time · k]` rows `x·k + j` of the width's shift
   * table for token x at shift j of the window starting at each position
   * (the pad token past a sequence's end).
   */
  windows: Int32Array[];
  /** Per width: 1 where a window lies inside its sequence `[size, 1, time]`. */
  masks: Float32Array[];
  /** Per width: windows inside each sequence, at least 1 `[size]`. */
  counts: Float32Array[];
}

/**
 * Encodes pieces with the critic's tokenizer, cut to `maxTokens` from the start.
 *
 * @param tokenizer The critic's tokenizer.
 * @param pieces The pieces.
 * @param maxTokens Longest sequence kept.
 * @returns One sequence per piece.
 */
export function encodeForCritic(
  tokenizer: Tokenizer,
  pieces: readonly Piece[],
  maxTokens: number,
): Int32Array[] {
  return pieces.map((piece) => {
    const tokens = tokenizer.encode(piece);
    return tokens.length > maxTokens ? tokens.slice(0, maxTokens) : tokens;
  });
}

/**
 * Packs sequences into a batch for an architecture: for each width k, the
 * rows of the per-shift tables that every window reads (see
 * {@linkcode criticForward}): token x at shift j reads row `x·k + j`.
 *
 * @param sequences Token sequences (cut to `config.maxTokens`).
 * @param config The architecture (widths, maxTokens).
 * @param padId The tokenizer's pad id.
 * @returns The batch.
 */
export function packBatch(
  sequences: readonly Int32Array[],
  config: CriticConfig,
  padId: number,
): CriticBatch {
  const size = sequences.length;
  const rows = sequences.map((s) => s.subarray(0, Math.min(s.length, config.maxTokens)));
  const time = Math.max(1, ...rows.map((s) => s.length));
  const windows: Int32Array[] = [];
  const masks: Float32Array[] = [];
  const counts: Float32Array[] = [];
  for (const k of config.widths) {
    const ids = new Int32Array(size * time * k);
    for (let i = 0; i < ids.length; i++) ids[i] = padId * k + (i % k);
    const mask = new Float32Array(size * time);
    const count = new Float32Array(size);
    rows.forEach((s, b) => {
      for (let t = 0; t < s.length; t++) {
        const at = (b * time + t) * k;
        for (let j = 0; j < k && t + j < s.length; j++) ids[at + j] = s[t + j] * k + j;
      }
      const inside = Math.max(0, s.length - k + 1);
      mask.fill(1, b * time, b * time + inside);
      count[b] = Math.max(1, inside);
    });
    windows.push(ids);
    masks.push(mask);
    counts.push(count);
  }
  return { size, time, windows, masks, counts };
}

// ---------------------------------------------------------------- network

/**
 * `x @ kernel + bias` for `[rows, in]`, with a gradient built from explicit
 * transposes and a bias gradient as a product with ones (see `sumRows`): both
 * fast on stock wasm, where transposed products and leading-axis sums are slow.
 */
const denseOp = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, kernel, bias, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D, tf.GradSaveFunc];
  save([x, kernel]);
  return {
    value: tf.add(tf.matMul(x, kernel), bias),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
      tf.matMul(dy as tf.Tensor2D, tf.transpose(saved[1]) as tf.Tensor2D), // [rows, in]
      tf.matMul(tf.transpose(saved[0]) as tf.Tensor2D, dy as tf.Tensor2D), // [in, out]
      sumRows(dy as tf.Tensor2D), // [out]
    ],
  };
});

/** `x @ w` with the gradient of {@linkcode denseOp} (explicit transposes). */
const matMulT = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, w, save] = args as [tf.Tensor2D, tf.Tensor2D, tf.GradSaveFunc];
  save([x, w]);
  return {
    value: tf.matMul(x, w),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => [
      tf.matMul(dy as tf.Tensor2D, tf.transpose(saved[1]) as tf.Tensor2D),
      tf.matMul(tf.transpose(saved[0]) as tf.Tensor2D, dy as tf.Tensor2D),
    ],
  };
});

function dense(x: tf.Tensor2D, kernel: tf.Tensor, bias: tf.Tensor): tf.Tensor2D {
  return denseOp(x, kernel, bias) as tf.Tensor2D;
}

/**
 * The n-gram convolution of one width k from its shift tables:
 * `out[b, f, t] = bias[f] + Σ_j table[rows[(b·T + t)·k + j], f]`, laid out
 * `[B, F, T]` so that pooling reduces the last axis (the wasm backend
 * transposes before reducing any other). The gradient is a segment sum of
 * `dy` into the table rows, and the sum of `dy` for the bias. On the CPU-side
 * backends (wasm, cpu) both directions are loops in JavaScript: about
 * B·T·k·F additions each, where gathering rows with `GatherV2` on wasm costs
 * about 1 µs per value.
 */
function ngramConv(
  table: tf.Tensor2D,
  bias: tf.Tensor1D,
  rows: Int32Array,
  shape: { size: number; time: number; k: number; loops: boolean },
): tf.Tensor3D {
  const { size, time, k } = shape;
  const f = table.shape[1];
  const cpuSide = shape.loops;
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [tab, b] = args as [tf.Tensor2D, tf.Tensor1D];
    let value: tf.Tensor3D;
    if (cpuSide) {
      const t = tab.dataSync() as Float32Array;
      const bv = b.dataSync() as Float32Array;
      const out = new Float32Array(size * f * time);
      const acc = new Float32Array(f);
      for (let r = 0; r < size * time; r++) {
        acc.set(bv);
        for (let j = 0; j < k; j++) {
          const src = rows[r * k + j] * f;
          for (let c = 0; c < f; c++) acc[c] += t[src + c];
        }
        const batch = Math.floor(r / time), pos = r % time;
        for (let c = 0; c < f; c++) out[(batch * f + c) * time + pos] = acc[c];
      }
      value = tf.tensor3d(out, [size, f, time]);
    } else {
      value = tf.tidy(() => {
        const picked = tf.gather(tab, tf.tensor1d(rows, "int32")); // [B·T·k, F]
        const summed = tf.add(tf.sum(tf.reshape(picked, [size * time, k, f]), 1), b); // [B·T, F]
        return tf.transpose(tf.reshape(summed, [size, time, f]), [0, 2, 1]) as tf.Tensor3D;
      });
    }
    return {
      value,
      gradFunc: (dy: tf.Tensor) => {
        if (!cpuSide) {
          return tf.tidy(() => {
            const dyRows = tf.reshape(tf.transpose(dy, [0, 2, 1]), [size * time, f]); // [B·T, F]
            const repeated = tf.reshape(tf.tile(tf.expandDims(dyRows, 1), [1, k, 1]), [-1, f]);
            return [
              tf.unsortedSegmentSum(repeated, tf.tensor1d(rows, "int32"), tab.shape[0]),
              tf.sum(dyRows, 0),
            ];
          });
        }
        const g = dy.dataSync() as Float32Array; // [B, F, T]
        const dTable = new Float32Array(tab.shape[0] * f);
        const dBias = new Float32Array(f);
        const row = new Float32Array(f);
        for (let r = 0; r < size * time; r++) {
          const batch = Math.floor(r / time), pos = r % time;
          for (let c = 0; c < f; c++) row[c] = g[(batch * f + c) * time + pos];
          for (let c = 0; c < f; c++) dBias[c] += row[c];
          for (let j = 0; j < k; j++) {
            const dst = rows[r * k + j] * f;
            for (let c = 0; c < f; c++) dTable[dst + c] += row[c];
          }
        }
        return [tf.tensor2d(dTable, tab.shape), tf.tensor1d(dBias)];
      },
    };
  });
  return op(table, bias) as tf.Tensor3D;
}

/**
 * Max over the last axis of `[B, F, T]`, with a gradient that routes `dy` to
 * the arg-max through a one-hot (tfjs's own gradient compares `x` with the
 * broadcast max, which the wasm backend runs slowly).
 */
const maxOverTime = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
  const [x, save] = args as [tf.Tensor3D, tf.GradSaveFunc];
  const argMax = tf.argMax(x, 2); // [B, F]
  save([argMax]);
  return {
    value: tf.max(x, 2),
    gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
      // int32 then cast: the wasm OneHot kernel of tfjs 4.22 writes int32 bits into a float32
      // output when asked for float32 (1 reads as 1.4e-45).
      const picked = tf.cast(tf.oneHot(saved[0] as tf.Tensor2D, x.shape[2]), "float32"); // [B, F, T]
      return [tf.mul(picked, tf.expandDims(dy, 2))]; // [B, F, T]
    },
  };
});

/**
 * The critic's logits for a batch (a new tensor; the caller disposes it).
 *
 * @param weights Weights by name (variables or tensors).
 * @param config The architecture.
 * @param batch From {@linkcode packBatch}.
 * @param options Dropout rate and whether training (dropout on) with its RNG;
 *   `loops` runs the n-gram convolution as JavaScript loops (default: on the
 *   wasm and cpu backends) or, when false, as tfjs ops.
 * @returns Logits `[size]`: log odds that each piece is real.
 */
export function criticForward(
  weights: ReadonlyMap<string, tf.Tensor>,
  config: CriticConfig,
  batch: CriticBatch,
  options: { training: boolean; dropout: number; rng?: Rng; loops?: boolean },
): tf.Tensor1D {
  return tf.tidy(() => {
    const { size, time } = batch;
    const { embedDim: d, filters: f } = config;
    const w = (name: string) => weights.get(name)!;
    const means: tf.Tensor2D[] = [];
    const maxes: tf.Tensor2D[] = [];
    const embedding = w("embedding") as tf.Tensor2D; // [V, d]
    config.widths.forEach((k, i) => {
      // A window's pre-activation is Σ_j E[x_{t+j}] · W_j (W_j: rows j·d .. j·d+d-1 of the
      // kernel), so each shift's table E · W_j [V, F] is computed once per step and windows
      // add up table rows: the same n-gram convolution with work V·d·k·F + B·T·k·F, not
      // B·T·k·d·F.
      const kernel = tf.reshape(
        tf.transpose(tf.reshape(w(`ngram/${k}/kernel`), [k, d, f]), [1, 0, 2]),
        [d, k * f],
      ); // [d, k·F]
      const table = tf.reshape(matMulT(embedding, kernel), [embedding.shape[0] * k, f]); // [V·k, F]
      const h = tf.relu(
        ngramConv(table as tf.Tensor2D, w(`ngram/${k}/bias`) as tf.Tensor1D, batch.windows[i], {
          size,
          time,
          k,
          loops: options.loops ?? (tf.getBackend() === "wasm" || tf.getBackend() === "cpu"),
        }),
      ); // [B, F, T]
      const mask = tf.tensor3d(batch.masks[i], [size, 1, time]);
      // ReLU outputs are >= 0, so zeroing windows outside the sequence leaves the max intact.
      const masked = tf.mul(h, mask) as tf.Tensor3D; // [B, F, T]
      const count = tf.tensor2d(batch.counts[i], [size, 1]);
      means.push(tf.div(tf.sum(masked, 2), count) as tf.Tensor2D); // [B, F]
      maxes.push(maxOverTime(masked) as tf.Tensor2D); // [B, F]
    });
    const features = dropout(
      tf.concat([...means, ...maxes], 1) as tf.Tensor2D,
      options.dropout,
      { training: options.training, rng: options.rng },
    ); // [B, 2·F·widths]
    const hidden = tf.relu(dense(features, w("head/kernel"), w("head/bias"))); // [B, H]
    return tf.reshape(dense(hidden, w("out/kernel"), w("out/bias")), [size]) as tf.Tensor1D;
  });
}

/**
 * Mean binary cross-entropy of logits against targets, computed stably as
 * y·softplus(−z) + (1 − y)·softplus(z).
 *
 * @param logits `[B]`
 * @param targets `[B]` in [0, 1]
 * @returns Scalar mean loss in nats.
 */
export function binaryCrossEntropy(logits: tf.Tensor1D, targets: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const realPart = tf.mul(targets, tf.softplus(tf.neg(logits)));
    const fakePart = tf.mul(tf.sub(1, targets), tf.softplus(logits));
    return tf.mean(tf.add(realPart, fakePart)) as tf.Scalar;
  });
}

// ---------------------------------------------------------------- scoring

/** True when `value` has the shape of a {@linkcode Critic}. */
export function isCritic(value: unknown): value is Critic {
  const c = value as Critic;
  return typeof c === "object" && c !== null && c.config?.type === "ngram-cnn" &&
    typeof c.weights === "object" && typeof c.tokenizer?.encode === "function";
}

/**
 * The critic's logit (log odds of "real") for each piece, synchronously.
 *
 * @param critic The trained critic.
 * @param pieces Pieces to judge, encoded with the critic's own tokenizer.
 * @param options Pieces per forward pass (default 32).
 * @returns One logit per piece.
 * @throws {Error} When the critic's weights do not match its config.
 */
export function criticLogits(
  critic: Critic,
  pieces: readonly Piece[],
  options: { batchSize?: number } = {},
): number[] {
  if (pieces.length === 0) return [];
  const batchSize = Math.max(1, options.batchSize ?? 32);
  const sequences = encodeForCritic(critic.tokenizer, pieces, critic.config.maxTokens);
  const weights = variablesFrom(critic);
  const out: number[] = [];
  try {
    // Similar lengths together, so little of each batch is padding.
    const order = sequences.map((s, i) => [s.length, i]).sort((a, b) => a[0] - b[0]).map((e) =>
      e[1]
    );
    const logits = new Array<number>(pieces.length);
    for (let from = 0; from < order.length; from += batchSize) {
      const rows = order.slice(from, from + batchSize);
      const batch = packBatch(
        rows.map((i) => sequences[i]),
        critic.config,
        critic.tokenizer.special.pad,
      );
      const z = criticForward(weights, critic.config, batch, { training: false, dropout: 0 });
      const values = z.dataSync();
      z.dispose();
      rows.forEach((i, r) => (logits[i] = values[r]));
    }
    out.push(...logits);
  } finally {
    for (const v of weights.values()) v.dispose();
  }
  return out;
}

/**
 * `model/transformer`: a decoder-only Transformer over event tokens, with
 * causal self-attention, pre-LayerNorm blocks and rotary position embeddings.
 *
 * References: Vaswani et al., "Attention Is All You Need" (2017); the GPT-2
 * block layout (pre-LayerNorm, final LayerNorm, residual projections
 * initialised with std 0.02/√(2·layers)) as in Karpathy's nanoGPT `model.py`;
 * rotary position embeddings from Su et al., "RoFormer: Enhanced Transformer
 * with Rotary Position Embedding" (2021), in the "rotate half" layout of
 * GPT-NeoX; GELU (Hendrycks & Gimpel 2016) in its sigmoid form x·σ(1.702x),
 * because the wasm backend's `Erf` and `Tanh` kernels are scalar code. Music
 * Transformer (Huang et al. 2018) showed relative positions suit music; RoPE
 * gives relative attention and needs no table of learned positions, so a
 * key/value cache works unchanged at any position below `maxLen`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { definePlugin, p } from "../../mod.ts";
import { createRng } from "../../mod.ts";
import {
  constantVariable,
  dropout,
  type ForwardOptions,
  layerNorm,
  linear,
  type ModelConfig,
  type ModelSpec,
  type ModelState,
  normalVariable,
  type SequenceModel,
  type StepResult,
} from "../_tf/model.ts";
import { appendRow, decodeAttention, emptyCache, nativeKvCacheAvailable } from "../_tf/kv_cache.ts";
import { gelu } from "../_tf/gelu.ts";
import { causalSoftmax } from "../_tf/causal_softmax.ts";
import { attentionHeads, ropeTables, type RotaryAngles } from "../_tf/attention_heads.ts";

/** Hyperparameters of {@link transformerModel}. */
export interface TransformerConfig extends ModelConfig {
  type: "transformer";
  dModel: number;
  layers: number;
  heads: number;
  ffDim: number;
  dropout: number;
  maxLen: number;
  /** Recompute each block's activations in the backward pass instead of keeping them. */
  recompute: boolean;
}

/** Names of one block's weights below `block/<l>/`, in the order the block op takes them. */
const BLOCK_WEIGHTS = [
  "norm1/gain",
  "norm1/bias",
  "attention/qkv/kernel",
  "attention/qkv/bias",
  "attention/out/kernel",
  "attention/out/bias",
  "norm2/gain",
  "norm2/bias",
  "mlp/in/kernel",
  "mlp/in/bias",
  "mlp/out/kernel",
  "mlp/out/bias",
] as const;

type BlockWeights = Record<(typeof BLOCK_WEIGHTS)[number], tf.Tensor>;

/** The engine field that `tf.grads` replaces and clears; see {@link checkpointed}. */
interface EngineWithTape {
  state: { activeTape: unknown };
}

/**
 * Runs `f(x, ...weights)` without keeping its intermediate tensors for the
 * backward pass, and recomputes them there instead (gradient checkpointing,
 * Chen et al., "Training Deep Nets with Sublinear Memory Cost", 2016). `f`
 * must be deterministic (dropout seeded from a fixed number).
 *
 * tfjs keeps every intermediate tensor and gradient of a backward pass alive
 * until it ends. A d256 4-layer model on 16 x 256 tokens peaked at 4 GB (the
 * whole wasm heap) with composite ops; with the native kernels of `_tf/` it
 * peaks at 1.2 GB without this and 0.45 GB with it (2026-12-07), and the
 * attention's tensors grow with the square of the window. With it, only one
 * block's tensors are alive at a time, for about one extra forward pass of
 * compute (the step took 25% longer there).
 *
 * Why the tape is saved and restored: `tf.grads` called during a backward
 * pass starts a fresh tape and sets the engine's tape to null when done,
 * which the enclosing backward pass still needs.
 */
function checkpointed(
  f: (x: tf.Tensor2D, weights: tf.Tensor[]) => tf.Tensor2D,
  x: tf.Tensor2D,
  weights: tf.Tensor[],
): tf.Tensor2D {
  const op = tf.customGrad(
    ((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
      const inputs = args.slice(0, -1) as tf.Tensor[];
      (args[args.length - 1] as tf.GradSaveFunc)([inputs[0]]);
      return {
        value: f(inputs[0] as tf.Tensor2D, inputs.slice(1)),
        gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
          const engine = tf.engine() as unknown as EngineWithTape;
          const outerTape = engine.state.activeTape;
          try {
            return tf.grads((...t: tf.Tensor[]) => f(t[0] as tf.Tensor2D, t.slice(1)))(
              [saved[0], ...weights],
              dy,
            );
          } finally {
            engine.state.activeTape = outerTape;
          }
        },
      };
    }) as Parameters<typeof tf.customGrad<tf.Tensor2D>>[0],
  );
  return op(x, ...weights) as tf.Tensor2D;
}

/**
 * Builds a decoder-only Transformer language model.
 *
 * @param config hyperparameters (`dModel` divisible by `heads`, even head size)
 * @param vocabSize number of token ids
 * @param seed initialisation seed
 * @throws Error when the head size is not a positive even integer
 */
export function transformerModel(
  config: TransformerConfig,
  vocabSize: number,
  seed: number,
): SequenceModel {
  const { dModel: D, layers: L, heads: NH, ffDim, maxLen } = config;
  const hd = D / NH;
  if (!Number.isInteger(hd) || hd % 2 !== 0) {
    throw new Error(
      `Cannot build transformer: dModel ${D} / heads ${NH} must be an even integer (the rotary embedding rotates pairs)`,
    );
  }
  const rng = createRng(seed);
  const variables = new Map<string, tf.Variable>();
  const residualStd = 0.02 / Math.sqrt(2 * L);
  variables.set("tokenEmbedding", normalVariable([vocabSize, D], 0.02, rng));
  for (let l = 0; l < L; l++) {
    const b = `block/${l}/`;
    variables.set(b + "norm1/gain", constantVariable([D], 1));
    variables.set(b + "norm1/bias", constantVariable([D], 0));
    variables.set(b + "attention/qkv/kernel", normalVariable([D, 3 * D], 0.02, rng));
    variables.set(b + "attention/qkv/bias", constantVariable([3 * D], 0));
    variables.set(b + "attention/out/kernel", normalVariable([D, D], residualStd, rng));
    variables.set(b + "attention/out/bias", constantVariable([D], 0));
    variables.set(b + "norm2/gain", constantVariable([D], 1));
    variables.set(b + "norm2/bias", constantVariable([D], 0));
    variables.set(b + "mlp/in/kernel", normalVariable([D, ffDim], 0.02, rng));
    variables.set(b + "mlp/in/bias", constantVariable([ffDim], 0));
    variables.set(b + "mlp/out/kernel", normalVariable([ffDim, D], residualStd, rng));
    variables.set(b + "mlp/out/bias", constantVariable([D], 0));
  }
  variables.set("finalNorm/gain", constantVariable([D], 1));
  variables.set("finalNorm/bias", constantVariable([D], 0));
  variables.set("output/kernel", normalVariable([D, vocabSize], 0.02, rng));
  variables.set("output/bias", constantVariable([vocabSize], 0));
  const v = (name: string) => variables.get(name)!;
  const blockList = (l: number) => BLOCK_WEIGHTS.map((n) => v(`block/${l}/${n}`));
  const blockWeights = (list: tf.Tensor[]) =>
    Object.fromEntries(BLOCK_WEIGHTS.map((n, i) => [n, list[i]])) as BlockWeights;
  const rope = ropeTables(maxLen, hd);
  const scale = 1 / Math.sqrt(hd);
  /** Rotary angles of positions `start .. start+count-1`. */
  function angles(start: number, count: number): RotaryAngles {
    if (start + count > maxLen) {
      throw new Error(
        `Cannot run the transformer on position ${
          start + count - 1
        }: maxLen is ${maxLen}; raise "maxLen"`,
      );
    }
    return {
      cos: tf.slice(rope.cos, [start, 0], [count, hd]),
      sin: tf.slice(rope.sin, [start, 0], [count, hd]),
      rotate: rope.rotate,
    };
  }

  /** Position-wise half of a block: x + MLP(LN(x)). */
  function mlp(x: tf.Tensor2D, w: BlockWeights, options: ForwardOptions): tf.Tensor2D {
    const h = layerNorm(x, w["norm2/gain"], w["norm2/bias"]);
    const inner = gelu(linear(h, w["mlp/in/kernel"], w["mlp/in/bias"])); // [rows, ff]
    const out = linear(inner as tf.Tensor2D, w["mlp/out/kernel"], w["mlp/out/bias"]);
    return tf.add(x, dropout(out, config.dropout, options));
  }

  /** q (scaled), k and v `[batch, heads, time, hd]` of the stream `[rows, D]`, q and k rotated. */
  function projectQkv(x: tf.Tensor2D, w: BlockWeights, batch: number, time: number, start: number) {
    const h = layerNorm(x, w["norm1/gain"], w["norm1/bias"]);
    const qkv = linear(h, w["attention/qkv/kernel"], w["attention/qkv/bias"]); // [rows, 3D]
    return attentionHeads(qkv, angles(start, time), { batch, time, heads: NH, headDim: hd }, scale);
  }

  /** Output projection of attention heads `[batch, heads, time, hd]` back onto the stream. */
  function attentionOut(y: tf.Tensor4D, w: BlockWeights, rows: number): tf.Tensor2D {
    const merged = tf.reshape(tf.transpose(y, [0, 2, 1, 3]), [rows, D]) as tf.Tensor2D;
    return linear(merged, w["attention/out/kernel"], w["attention/out/bias"]);
  }

  /** One block over whole windows; dropout seeded from `dropoutSeed` so a recomputation matches. */
  function block(
    x: tf.Tensor2D,
    w: BlockWeights,
    shape: { batch: number; time: number; dropoutSeed?: number },
  ): tf.Tensor2D {
    return tf.tidy(() => {
      const { batch, time, dropoutSeed } = shape;
      const options: ForwardOptions = dropoutSeed === undefined
        ? { training: false }
        : { training: true, rng: createRng(dropoutSeed) };
      const { q, k, v: val } = projectQkv(x, w, batch, time, 0); // each [B, NH, T, hd]
      const scores = tf.matMul(q, k, false, true); // [B, NH, T, T]
      const att = dropout(causalSoftmax(scores), config.dropout, options);
      const y = tf.matMul(att, val) as tf.Tensor4D; // [B, NH, T, hd]
      const out = tf.add(x, dropout(attentionOut(y, w, batch * time), config.dropout, options));
      return mlp(out as tf.Tensor2D, w, options);
    });
  }

  function logitsOf(x: tf.Tensor2D): tf.Tensor2D {
    const h = layerNorm(x, v("finalNorm/gain"), v("finalNorm/bias"));
    return linear(h, v("output/kernel"), v("output/bias"));
  }

  return {
    config,
    vocabSize,
    variables,
    forward(tokens: tf.Tensor2D, options: ForwardOptions): tf.Tensor3D {
      return tf.tidy(() => {
        const [batch, time] = tokens.shape;
        let x = tf.reshape(tf.gather(v("tokenEmbedding"), tokens), [
          batch * time,
          D,
        ]) as tf.Tensor2D;
        x = dropout(x, config.dropout, options); // [B*T, D]
        for (let l = 0; l < L; l++) {
          const dropoutSeed = options.training && config.dropout > 0
            ? dropoutSeedFrom(options)
            : undefined;
          const shape = { batch, time, dropoutSeed };
          const f = (input: tf.Tensor2D, list: tf.Tensor[]) =>
            block(input, blockWeights(list), shape);
          x = options.training && config.recompute
            ? checkpointed(f, x, blockList(l))
            : f(x, blockList(l)); // [B*T, D]
        }
        return tf.reshape(logitsOf(x), [batch, time, vocabSize]) as tf.Tensor3D;
      });
    },
    initState(batch: number): ModelState {
      // `buffers`: 1 when k and v are kv_cache.ts buffers (wasm with the native kernels),
      // 0 when they are concatenated tensors of exactly `length` positions.
      if (nativeKvCacheAvailable()) {
        return {
          k: Array.from({ length: L }, () => emptyCache(batch, NH, hd)),
          v: Array.from({ length: L }, () => emptyCache(batch, NH, hd)),
          length: 0,
          buffers: 1,
        };
      }
      return {
        k: Array.from({ length: L }, () => tf.zeros([batch, NH, 0, hd])),
        v: Array.from({ length: L }, () => tf.zeros([batch, NH, 0, hd])),
        length: 0,
        buffers: 0,
      };
    },
    step(tokens: tf.Tensor1D, state: ModelState): StepResult {
      return tf.tidy(() => {
        const batch = tokens.shape[0];
        const pos = state.length as number;
        const noDropout: ForwardOptions = { training: false };
        let x = tf.gather(v("tokenEmbedding"), tokens) as tf.Tensor2D; // [B, D]
        const ks: tf.Tensor[] = [], vs: tf.Tensor[] = [];
        for (let l = 0; l < L; l++) {
          const w = blockWeights(blockList(l));
          const { q, k: kRow, v: vRow } = projectQkv(x, w, batch, 1, pos); // each [B, NH, 1, hd]
          const kPast = (state.k as tf.Tensor4D[])[l];
          const vPast = (state.v as tf.Tensor4D[])[l];
          let y: tf.Tensor4D; // [B, NH, 1, hd]
          if (state.buffers === 1) {
            const k = appendRow(kPast, kRow, pos); // [B, NH, capacity, hd]
            const val = appendRow(vPast, vRow, pos);
            ks.push(k);
            vs.push(val);
            y = decodeAttention(q, k, val, pos + 1);
          } else {
            const k = tf.concat([kPast, kRow], 2); // [B, NH, pos+1, hd]
            const val = tf.concat([vPast, vRow], 2);
            ks.push(k);
            vs.push(val);
            const att = tf.softmax(tf.matMul(q, k, false, true)); // [B, NH, 1, pos+1]
            y = tf.matMul(att, val) as tf.Tensor4D;
          }
          x = tf.add(x, attentionOut(y, w, batch));
          x = mlp(x, w, noDropout);
        }
        return {
          logits: logitsOf(x),
          state: { k: ks, v: vs, length: pos + 1, buffers: state.buffers },
        };
      });
    },
    dispose() {
      for (const t of variables.values()) t.dispose();
      variables.clear();
      tf.dispose([rope.cos, rope.sin, rope.rotate]);
    },
  };
}

/** A seed for one block's dropout masks, drawn from the forward pass's RNG. */
function dropoutSeedFrom(options: ForwardOptions): number {
  if (options.rng === undefined) {
    throw new Error("Cannot apply dropout: training needs an rng in the forward options");
  }
  return options.rng.seed();
}

export default definePlugin({
  name: "model/transformer",
  kind: "model",
  version: "1.1.0",
  description: "Decoder-only Transformer with rotary positions and a key/value cache",
  params: {
    dModel: p.integer({ default: 128, min: 2, description: "Width of the residual stream" }),
    layers: p.integer({ default: 2, min: 1, description: "Number of Transformer blocks" }),
    heads: p.integer({
      default: 4,
      min: 1,
      description: "Attention heads; dModel / heads must be even",
    }),
    ffDim: p.integer({ default: 512, min: 1, description: "Hidden size of each block's MLP" }),
    dropout: p.number({
      default: 0.1,
      min: 0,
      max: 0.95,
      description: "Dropout on embeddings, attention weights and residual branches",
    }),
    maxLen: p.integer({
      default: 2048,
      min: 1,
      description: "Longest sequence (training window or prompt plus sampled tokens)",
    }),
    recompute: p.boolean({
      default: true,
      description:
        "Recompute each block's activations during backpropagation: about 1/3 more compute, a fraction of the memory (the wasm heap holds at most 4 GB)",
    }),
  },
  create(params, self): ModelSpec<TransformerConfig> {
    const config: TransformerConfig = {
      type: "transformer",
      dModel: params.dModel,
      layers: params.layers,
      heads: params.heads,
      ffDim: params.ffDim,
      dropout: params.dropout,
      maxLen: params.maxLen,
      recompute: params.recompute,
    };
    return {
      type: "transformer",
      config,
      component: self,
      build: (vocabSize, seed) => transformerModel(config, vocabSize, seed),
    };
  },
});

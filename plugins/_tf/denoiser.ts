/**
 * The denoiser network of the piano-roll diffusion (`diffusion.ts` is the
 * algorithm that trains it and samples with it), and its checkpoint codec.
 *
 * The denoiser is a residual 1-D convolutional network over time whose
 * channels are the 88 keys × 2 roll channels, so every layer sees every
 * interval between keys at once (harmony is what refinement must judge). A
 * 2-D conv net over [time × pitch] (Polyffusion's UNet) would be
 * transposition-equivariant, but needs an octave-wide receptive field along
 * pitch and, by a FLOP count, 10–30× the work per step: too much for 2 CPU
 * cores. Each block: LayerNorm, + timestep embedding, + a global (time-mean)
 * context vector, SiLU, dilated conv (kernel 3, dilation 1, 2, 4, 8, ...),
 * SiLU, 1×1 conv, residual add. A per-cell head (a 1×1 conv over
 * [time × key]) then maps, for each cell, a few context features of its key
 * plus the cell's own noisy values to its ε: without it the 176 independent
 * noise values of a step must squeeze through the trunk's width, and the loss
 * hardly falls. Convs are im2col + matMul (the stock wasm backend has no
 * `Conv2DBackpropFilter`); every product is `model.ts`'s `linear`, the one
 * matMul with a custom gradient that the sequence models use too, and every
 * norm its `layerNorm`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import {
  type ArtifactCodec,
  type BinaryFormat,
  readIndex,
  type Rng,
  writeBlocks,
} from "../../mod.ts";
import { packTensors, readWeightsBlock, type TensorEntry, unpackTensors } from "./checkpoint.ts";
import type { EpsModel } from "./diffusion.ts";
import { type AdamWState, layerNorm, linear, type TensorData } from "./model.ts";

// ---------------------------------------------------------------------------
// The denoiser network

/** Architecture and training grid of a denoiser: a plain serialisable object. */
export interface DenoiserConfig {
  type: "temporal-conv";
  /** Width of the hidden layers. */
  channels: number;
  /** Residual blocks; block i uses dilation 2^(i mod 4). */
  blocks: number;
  /** Size of the sinusoidal timestep embedding (even). */
  timeEmbedDim: number;
  /** Context features the head gives each key (per time step). */
  cellFeatures: number;
  /** Hidden width of the per-cell head. */
  cellHidden: number;
  /** T of the cosine schedule the model was trained with. */
  diffusionSteps: number;
  /** Roll grid the model was trained on: bars per segment and steps per beat. */
  bars: number;
  stepsPerBeat: number;
  /** Keys of the roll (88) and channels per key (2: onset, sustain). */
  pitches: number;
  rollChannels: number;
}

/**
 * A config with the defaults for the fields a user does not set.
 *
 * @param options Sizes and grid; the rest default to timeEmbedDim 64,
 *   cellFeatures 4, cellHidden 32, 88 keys × 2 channels.
 * @returns The full config.
 */
export function denoiserConfig(
  options:
    & Pick<DenoiserConfig, "channels" | "blocks" | "diffusionSteps" | "bars" | "stepsPerBeat">
    & Partial<DenoiserConfig>,
): DenoiserConfig {
  return {
    type: "temporal-conv",
    timeEmbedDim: 64,
    cellFeatures: 4,
    cellHidden: 32,
    pitches: 88,
    rollChannels: 2,
    ...options,
  };
}

/** Features per time step of the input and output: keys × roll channels (176). */
export function stepFeatures(config: DenoiserConfig): number {
  return config.pitches * config.rollChannels;
}

/** A denoiser checkpoint: config, weights and training step (and, for resuming, Adam state). */
export interface Denoiser {
  config: DenoiserConfig;
  /** Weights by name, in a fixed order (see {@linkcode denoiserParamShapes}). */
  params: Record<string, tf.Tensor>;
  /** Training steps taken. */
  step: number;
  /** The optimizer's moments, in the training work directory's checkpoints only. */
  optimizer?: AdamWState;
}

/**
 * Names and shapes of a denoiser's weights, in their fixed order.
 *
 * @param config The architecture.
 * @returns `[name, shape]` pairs.
 */
export function denoiserParamShapes(config: DenoiserConfig): Array<[string, number[]]> {
  const c = config.channels, e = config.timeEmbedDim, f = stepFeatures(config);
  const k = config.cellFeatures, hid = config.cellHidden;
  const out: Array<[string, number[]]> = [
    ["in/w", [3 * f, c]],
    ["in/b", [c]],
    ["time/w1", [e, c]],
    ["time/b1", [c]],
    ["time/w2", [c, c]],
    ["time/b2", [c]],
  ];
  for (let i = 0; i < config.blocks; i++) {
    out.push(
      [`block${i}/norm/g`, [c]],
      [`block${i}/norm/b`, [c]],
      [`block${i}/time/w`, [c, c]],
      [`block${i}/time/b`, [c]],
      [`block${i}/global/w`, [c, c]],
      [`block${i}/conv/w`, [3 * c, c]],
      [`block${i}/conv/b`, [c]],
      [`block${i}/mix/w`, [c, c]],
      [`block${i}/mix/b`, [c]],
    );
  }
  out.push(
    ["head/norm/g", [c]],
    ["head/norm/b", [c]],
    ["head/proj/w", [3 * c, config.pitches * k]],
    ["head/proj/b", [config.pitches * k]],
    ["head/time/w", [c, hid]],
    ["head/time/b", [hid]],
    ["head/cell/w1", [k + config.rollChannels, hid]],
    ["head/cell/b1", [hid]],
    ["head/cell/w2", [hid, config.rollChannels]],
    ["head/cell/b2", [config.rollChannels]],
  );
  return out;
}

/** Fills a new array with N(0, std²) from the seeded generator. */
function normalArray(size: number, std: number, rng: Rng): Float32Array {
  const out = new Float32Array(size);
  for (let i = 0; i < size; i++) out[i] = rng.normal() * std;
  return out;
}

/**
 * Makes a denoiser with fresh weights: LeCun-normal matrices, zero biases,
 * unit norm gains, and zero residual (`mix`) and last head weights so that the
 * untrained network is the identity on its residual stream and predicts ε = 0.
 *
 * @param config The architecture (see {@linkcode DenoiserConfig}).
 * @param rng The seeded generator for the initial weights.
 * @returns A denoiser at step 0.
 * @throws {Error} When a size is not a positive integer.
 */
export function createDenoiser(config: DenoiserConfig, rng: Rng): Denoiser {
  for (const key of ["channels", "blocks", "timeEmbedDim", "diffusionSteps"] as const) {
    if (!Number.isInteger(config[key]) || config[key] < 1) {
      throw new Error(
        `Cannot create a denoiser: ${key} must be an integer >= 1, got ${config[key]}`,
      );
    }
  }
  if (config.timeEmbedDim % 2 !== 0) {
    throw new Error(
      `Cannot create a denoiser: timeEmbedDim must be even, got ${config.timeEmbedDim}`,
    );
  }
  const params: Record<string, tf.Tensor> = {};
  for (const [name, shape] of denoiserParamShapes(config)) {
    const size = shape.reduce((a, b) => a * b, 1);
    let values: Float32Array;
    if (name.endsWith("/g")) values = new Float32Array(size).fill(1);
    else if (shape.length === 1 || name.endsWith("mix/w") || name === "head/cell/w2") {
      values = new Float32Array(size);
    } else values = normalArray(size, 1 / Math.sqrt(shape[0]), rng);
    params[name] = tf.tensor(values, shape);
  }
  return { config, params, step: 0 };
}

/** Frees a denoiser's weights. */
export function disposeDenoiser(denoiser: Denoiser): void {
  for (const t of Object.values(denoiser.params)) t.dispose();
}

/** Number of weights. */
export function denoiserParamCount(config: DenoiserConfig): number {
  let n = 0;
  for (const [, shape] of denoiserParamShapes(config)) n += shape.reduce((a, b) => a * b, 1);
  return n;
}

/**
 * Sinusoidal timestep embedding (Vaswani et al. 2017, as in DDPM):
 * `[sin(t·ω_i), cos(t·ω_i)]` with ω_i = 10000^(−i/(dim/2)).
 *
 * @param t Timesteps.
 * @param dim Embedding size (even).
 * @returns `[B, dim]`.
 */
export function timestepEmbedding(t: ArrayLike<number>, dim: number): tf.Tensor2D {
  const half = dim / 2;
  const out = new Float32Array(t.length * dim);
  for (let b = 0; b < t.length; b++) {
    for (let i = 0; i < half; i++) {
      const angle = t[b] * Math.exp((-Math.log(10000) * i) / half);
      out[b * dim + i] = Math.sin(angle);
      out[b * dim + half + i] = Math.cos(angle);
    }
  }
  return tf.tensor2d(out, [t.length, dim]);
}

/**
 * Dense layer over the last axis: `[..., in] → [..., out]`. The bias is added
 * after the reshape, not fused into `linear`, so that its gradient stays the
 * broadcast sum it has always been (the trained weights do not move by a bit).
 */
function dense(x: tf.Tensor, w: tf.Tensor, b?: tf.Tensor): tf.Tensor {
  const inDim = x.shape[x.rank - 1];
  const y = linear(tf.reshape(x, [-1, inDim]) as tf.Tensor2D, w); // [N, out]
  const shaped = tf.reshape(y, [...x.shape.slice(0, -1), w.shape[1]] as number[]);
  return b ? tf.add(shaped, b) : shaped;
}

/** Kernel-3 "same" conv over time with a dilation, as im2col + matMul: `[B, T, C] → [B, T, out]`. */
function conv1d(x: tf.Tensor3D, w: tf.Tensor, b: tf.Tensor, dilation: number): tf.Tensor3D {
  const [batch, time, ch] = x.shape;
  const padded = tf.pad(x, [[0, 0], [dilation, dilation], [0, 0]]); // [B, T + 2d, C]
  const cols = [0, 1, 2].map((j) => tf.slice(padded, [0, j * dilation, 0], [batch, time, ch]));
  const stacked = tf.concat(cols, 2); // [B, T, 3C]
  return dense(stacked, w, b) as tf.Tensor3D; // [B, T, out]
}

function silu(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(x));
}

/**
 * Runs the denoiser: predicts the noise ε in noisy rolls.
 *
 * The trunk works on whole time steps (all keys as channels); a per-cell head
 * then sees, for every (step, key), `cellFeatures` context values projected
 * from the trunk for that key plus the cell's own two noisy values, and maps
 * them through a small MLP to that cell's ε. Without it the 176 independent
 * noise values of a step would have to pass through the trunk's `channels`.
 *
 * @param config The architecture.
 * @param params Weights by name.
 * @param xt Noisy rolls `[B, T, 88, 2]` or `[B, T, 176]`.
 * @param t One timestep per roll (1..T).
 * @returns Predicted ε, same shape as `xt`.
 */
export function denoiserForward(
  config: DenoiserConfig,
  params: Record<string, tf.Tensor>,
  xt: tf.Tensor,
  t: ArrayLike<number>,
): tf.Tensor {
  return tf.tidy(() => {
    const [batch, time] = xt.shape;
    const keys = config.pitches, k = config.cellFeatures;
    const x = tf.reshape(xt, [batch, time, stepFeatures(config)]) as tf.Tensor3D; // [B, T, F]
    const temb = silu(
      dense(
        silu(
          dense(timestepEmbedding(t, config.timeEmbedDim), params["time/w1"], params["time/b1"]),
        ),
        params["time/w2"],
        params["time/b2"],
      ),
    ); // [B, C]
    let h = conv1d(x, params["in/w"], params["in/b"], 1); // [B, T, C]
    for (let i = 0; i < config.blocks; i++) {
      const p = (name: string) => params[`block${i}/${name}`];
      let a: tf.Tensor = layerNorm(h, p("norm/g"), p("norm/b")); // [B, T, C]
      const timeBias = dense(temb, p("time/w"), p("time/b")); // [B, C]
      const context = dense(tf.mean(a, 1), p("global/w")); // [B, C]
      a = tf.add(a, tf.expandDims(tf.add(timeBias, context), 1)); // [B, T, C]
      a = silu(conv1d(silu(a) as tf.Tensor3D, p("conv/w"), p("conv/b"), 2 ** (i % 4)));
      h = tf.add(h, dense(a, p("mix/w"), p("mix/b"))) as tf.Tensor3D; // [B, T, C]
    }
    const o = silu(layerNorm(h, params["head/norm/g"], params["head/norm/b"])) as tf.Tensor3D;
    const perKey = tf.reshape(
      conv1d(o, params["head/proj/w"], params["head/proj/b"], 1),
      [batch, time, keys, k],
    ); // [B, T, 88, K]
    const cells = tf.concat(
      [perKey, tf.reshape(x, [batch, time, keys, config.rollChannels])],
      3,
    ); // [B, T, 88, K + 2]
    const headTime = dense(temb, params["head/time/w"], params["head/time/b"]); // [B, H]
    const hidden = silu(
      tf.add(
        dense(cells, params["head/cell/w1"], params["head/cell/b1"]),
        tf.reshape(headTime, [batch, 1, 1, config.cellHidden]),
      ),
    ); // [B, T, 88, H]
    const eps = dense(hidden, params["head/cell/w2"], params["head/cell/b2"]); // [B, T, 88, 2]
    return tf.reshape(eps, xt.shape);
  });
}

/**
 * The denoiser as an {@linkcode EpsModel} for {@linkcode ddimSample} and {@linkcode sdeditRefine}.
 *
 * @param denoiser The trained denoiser.
 * @returns A function from noisy rolls and timesteps to predicted noise.
 */
export function denoiserModel(denoiser: Denoiser): EpsModel {
  return (xt, t) => denoiserForward(denoiser.config, denoiser.params, xt, t);
}

// ---------------------------------------------------------------------------
// Checkpoint codec

const FORMAT: BinaryFormat = {
  format: "harmonyrl/denoiser",
  version: 1,
  // The name denoisers were written under before every format was "harmonyrl/<thing>".
  aliases: ["harmonyrl-denoiser"],
};

/** A tensor entry as read from an index: denoisers written before they shared the layout lack `length`. */
type StoredEntry = Omit<TensorEntry, "length"> & { length?: number };

interface DenoiserIndex {
  format: string;
  version: number;
  config: DenoiserConfig;
  step: number;
  /** Byte order of `weights.bin`. */
  endian: "little";
  /** Where each tensor lies in `weights.bin` (see `packTensors`). */
  tensors: StoredEntry[];
  optimizer?: { step: number };
}

/**
 * The tensor entries of an index in today's form. Denoisers written before
 * they shared the model checkpoints' layout name their Adam moments
 * `adam/m/<name>` and `adam/v/<name>` (now `optimizer/m/`, `optimizer/v/`) and
 * give no `length`.
 */
function currentEntries(tensors: readonly StoredEntry[]): TensorEntry[] {
  return tensors.map((e) => ({
    ...e,
    name: e.name.replace(/^adam\/([mv])\//, "optimizer/$1/"),
    length: e.length ?? e.shape.reduce((a, b) => a * b, 1),
  }));
}

/**
 * Stores a denoiser as `index.json` (format, config, step, tensor names,
 * shapes and offsets) and `weights.bin` (float32, little-endian: weights,
 * then Adam moments `optimizer/m/<name>` and `optimizer/v/<name>` when
 * present), the layout of the model checkpoints. Reads the older names too.
 *
 * @example
 * ```ts
 * import { denoiserCodec } from "./denoiser.ts";
 * // await denoiserCodec.save(denoiser, dir); const back = await denoiserCodec.load(dir);
 * console.assert(typeof denoiserCodec.load === "function");
 * ```
 */
export const denoiserCodec: ArtifactCodec<Denoiser> = {
  async save(value, dir) {
    const weights: Record<string, TensorData> = {};
    for (const [name, tensor] of Object.entries(value.params)) {
      weights[name] = { shape: tensor.shape, data: (await tensor.data()) as Float32Array };
    }
    const { tensors, data } = packTensors(weights, value.optimizer);
    const index: DenoiserIndex = {
      format: FORMAT.format,
      version: FORMAT.version,
      config: value.config,
      step: value.step,
      endian: "little",
      tensors,
      ...(value.optimizer ? { optimizer: { step: value.optimizer.step } } : {}),
    };
    await writeBlocks(dir, index, { "weights.bin": data }, { space: 1 });
  },
  async load(dir) {
    const where = `Cannot load denoiser from "${dir}"`;
    const index = await readIndex<DenoiserIndex>(dir, FORMAT, where);
    if (!Array.isArray(index.tensors)) {
      throw new Error(`${where}: "index.json" lacks its "tensors" list`);
    }
    const entries = currentEntries(index.tensors);
    const all = await readWeightsBlock(dir, entries, where);
    const { weights, m, v } = unpackTensors(entries, all, where);
    const expected = new Map(denoiserParamShapes(index.config));
    for (const e of entries) {
      const want = expected.get(e.name.replace(/^optimizer\/[mv]\//, ""));
      if (!want || want.join(",") !== e.shape.join(",")) {
        throw new Error(
          `${where}: tensor "${e.name}" has shape [${e.shape}], the config expects [${want}]`,
        );
      }
    }
    const params: Record<string, tf.Tensor> = {};
    for (const name of expected.keys()) {
      if (!weights[name]) throw new Error(`${where}: weight "${name}" is missing`);
    }
    for (const name of expected.keys()) {
      params[name] = tf.tensor(weights[name].data, weights[name].shape);
    }
    const denoiser: Denoiser = { config: index.config, params, step: index.step };
    if (index.optimizer) denoiser.optimizer = { step: index.optimizer.step, m, v };
    return denoiser;
  },
};

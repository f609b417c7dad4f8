/**
 * What every sequence model shares: the model interface that stages use, the
 * checkpoint type, weight initialisation, layers and losses. The optimizer is
 * in `optim.ts`, the checkpoint codecs in `checkpoint.ts`. Model configs are
 * plain objects with a `type` field, as magenta-js's `MusicRNNSpec`.
 *
 * Models are built from `@tensorflow/tfjs-core` ops only, so they run on any
 * backend that `plugins/_tf/backend.ts` starts.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { nativeLayerNorm } from "./native.ts";
import { heapTensors } from "./wasm_heap.ts";
import type { FullComponentRef, Rng } from "../../mod.ts";
import type { AdamW } from "./optim.ts";

/** An architecture's name (`"lstm"`, `"transformer"`, or a user plugin's own, e.g. `"gru"`). */
export type ModelType = string;

/** A model's hyperparameters: a plain serialisable object with a `type` field. */
export interface ModelConfig {
  type: ModelType;
  [key: string]: unknown;
}

/** Options of {@link SequenceModel.forward}. */
export interface ForwardOptions {
  /** Turns dropout on. */
  training: boolean;
  /** Seeds the dropout masks; needed when `training` and the model has dropout. */
  rng?: Rng;
}

/**
 * Incremental-decoding state: a tfjs tensor container (tensors, arrays of
 * tensors, numbers). Release it with `tf.dispose(state)`.
 */
export type ModelState = { [key: string]: tf.Tensor | tf.Tensor[] | number };

/** What {@link SequenceModel.step} returns. */
export interface StepResult {
  /** Next-token logits. */
  logits: tf.Tensor2D; // [batch, vocab]
  /** The state after this token; the input state is left as it was. */
  state: ModelState;
}

/** A next-token model over integer tokens. */
export interface SequenceModel {
  readonly config: ModelConfig;
  readonly vocabSize: number;
  /** The trainable weights by stable name, e.g. `"lstm/0/recurrentKernel"`. */
  readonly variables: Map<string, tf.Variable>;
  /**
   * Logits for every position: `logits[b, t]` predicts `tokens[b, t + 1]`.
   *
   * @param tokens int32 token ids, shape `[batch, time]`
   * @param options dropout on or off and its random source
   * @returns logits, shape `[batch, time, vocab]`
   */
  forward(tokens: tf.Tensor2D, options: ForwardOptions): tf.Tensor3D;
  /** A fresh state for {@link SequenceModel.step} (nothing seen yet). */
  initState(batch: number): ModelState;
  /**
   * Feeds one token per row and returns the logits for the next one. Costs
   * O(1) model work per token (the LSTM carries h and c, the Transformer a
   * key/value cache). Does not dispose `state`.
   *
   * @param tokens int32 token ids, shape `[batch]`
   * @param state from {@link SequenceModel.initState} or a previous step
   */
  step(tokens: tf.Tensor1D, state: ModelState): StepResult;
  /** Frees the weights. */
  dispose(): void;
}

/** What a `model/*` component plugin's `create()` returns. */
export interface ModelSpec<C extends ModelConfig = ModelConfig> {
  type: ModelType;
  config: C;
  /**
   * The component spec that rebuilds this model (the `self` its `create()`
   * received): checkpoints record it, and `ctx.component()` rebuilds from it.
   */
  component?: FullComponentRef;
  /**
   * Builds a model with freshly initialised weights.
   *
   * @param vocabSize number of token ids
   * @param seed initialisation seed (same seed, same weights)
   */
  build(vocabSize: number, seed: number): SequenceModel;
}

/** One tensor's values, as stored in a checkpoint. */
export interface TensorData {
  shape: number[];
  data: Float32Array;
}

/** The AdamW optimizer's state: first and second moments by variable name, and its step. */
export interface AdamWState {
  step: number;
  m: Record<string, TensorData>;
  v: Record<string, TensorData>;
}

/**
 * The live model behind a checkpoint in this process, never stored: the
 * policy and optimizer an RL update goes on from, or a read-only model built
 * once from the weights.
 */
export interface LiveModel {
  model: SequenceModel;
  /** Set only by an update: the model is then trainable and owned by the next update. */
  optimizer?: AdamW;
}

/** A trained model with everything needed to resume training or sample from it. */
export interface ModelCheckpoint {
  /**
   * The architecture: `config.type === type`, and the model component's spec
   * (`{use, with}`), through which `ctx.component()` rebuilds it.
   */
  spec: { type: ModelType; config: ModelConfig; component?: FullComponentRef };
  vocabSize: number;
  /** The tokenizer spec of the training corpus (`TokenCorpus.tokenizer`), passed through. */
  tokenizer: FullComponentRef;
  /** Optimizer updates done so far. */
  step: number;
  /** Weights by variable name. */
  weights: Record<string, TensorData>;
  optimizer?: AdamWState;
  /** The training RNG's state when the checkpoint was written. */
  rngState?: number[];
  /** Figures worth keeping with the weights (`"nll/validation"`, `"epoch"`, ...). */
  metrics: Record<string, number>;
  /** The model behind this checkpoint in this process (not stored by the codec). */
  live?: LiveModel;
}

// ---------------------------------------------------------------- weights and init

/**
 * A trainable variable drawn from N(0, std²), seeded. The generator runs in
 * JavaScript (tfjs-core), so the values do not depend on the backend.
 */
export function normalVariable(shape: number[], std: number, rng: Rng): tf.Variable {
  return tf.tidy(() => tf.variable(tf.randomNormal(shape, 0, std, "float32", rng.seed()), true));
}

/** A trainable variable drawn from U(-limit, limit), seeded. */
export function uniformVariable(shape: number[], limit: number, rng: Rng): tf.Variable {
  return tf.tidy(() =>
    tf.variable(tf.randomUniform(shape, -limit, limit, "float32", rng.seed()), true)
  );
}

/** A trainable variable filled with `value`. */
export function constantVariable(shape: number[], value: number): tf.Variable {
  return tf.tidy(() => tf.variable(tf.fill(shape, value, "float32"), true));
}

/**
 * Inverted dropout with a seeded mask; the identity when `rate` is 0 or not training.
 *
 * @throws Error when training with dropout but no `rng`
 */
export function dropout<T extends tf.Tensor>(x: T, rate: number, options: ForwardOptions): T {
  if (!options.training || rate <= 0) return x;
  if (options.rng === undefined) {
    throw new Error("Cannot apply dropout: training needs an rng in the forward options");
  }
  return tf.dropout(x, rate, undefined, options.rng.seed()) as T;
}

/**
 * Sums the rows of `x` `[rows, n]` as a product with a row of ones: the wasm
 * backend reduces over a leading axis by transposing first, 10-50x slower.
 */
export function sumRows(x: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() =>
    tf.reshape(tf.matMul(tf.ones([1, x.shape[0]]), x), [x.shape[1]]) as tf.Tensor1D
  );
}

const linearOp = tf.customGrad(
  ((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const save = args[args.length - 1] as tf.GradSaveFunc;
    const [x, kernel, bias] = args.slice(0, -1) as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D?];
    save([x, kernel]);
    return {
      value: tf.fused.matMul({ a: x, b: kernel, bias }),
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [sx, sk] = saved as [tf.Tensor2D, tf.Tensor2D];
        const grads = [
          tf.matMul(dy, sk, false, true), // [rows, in]
          tf.matMul(sx, dy, true, false), // [in, out]
        ];
        return bias === undefined ? grads : [...grads, sumRows(dy)]; // bias: [out]
      },
    };
  }) as Parameters<typeof tf.customGrad<tf.Tensor2D>>[0],
);

/**
 * `x @ kernel + bias`: `[rows, in] -> [rows, out]`, one fused op forward and a
 * gradient whose bias part is a product with ones (see {@link sumRows}). The
 * gradient passes `transposeA`/`transposeB` rather than transposing first:
 * OpenBLAS (`wasm-openblas`) reads transposed operands in place, and on the
 * backends tried (`wasm-openblas`, `cpu`) both give the same bits. Without
 * `bias` it is a plain product with that gradient (the denoiser adds its
 * biases itself).
 *
 * @param x `[rows, in]`
 * @param kernel `[in, out]`
 * @param bias `[out]`, optional
 * @returns `[rows, out]`
 */
export function linear(x: tf.Tensor2D, kernel: tf.Tensor, bias?: tf.Tensor): tf.Tensor2D {
  return (bias === undefined ? linearOp(x, kernel) : linearOp(x, kernel, bias)) as tf.Tensor2D;
}

const LN_EPSILON = 1e-5;

const layerNormOp = tf.customGrad(
  ((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, gain, bias] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
    const centred = tf.sub(x, tf.mean(x, -1, true));
    const rstd = tf.rsqrt(tf.add(tf.mean(tf.square(centred), -1, true), LN_EPSILON)); // [rows, 1]
    const xhat = tf.mul(centred, rstd); // [rows, n]
    (args[3] as tf.GradSaveFunc)([xhat, rstd, gain]);
    return {
      value: tf.add(tf.mul(xhat, gain), bias),
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [sXhat, sRstd, sGain] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
        const dXhat = tf.mul(dy, sGain); // [rows, n]
        // dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), per row
        const dx = tf.mul(
          sRstd,
          tf.sub(
            tf.sub(dXhat, tf.mean(dXhat, -1, true)),
            tf.mul(sXhat, tf.mean(tf.mul(dXhat, sXhat), -1, true)),
          ),
        );
        return [dx, sumRows(tf.mul(dy, sXhat) as tf.Tensor2D), sumRows(dy)];
      },
    };
  }) as Parameters<typeof tf.customGrad<tf.Tensor2D>>[0],
);

/** Whether layer normalisation of `x` runs natively: wasm with the native kernels loaded. */
function nativeLayerNormRuns(x: tf.Tensor): boolean {
  return tf.getBackend() === "wasm" && x.dtype === "float32" && nativeLayerNorm() !== null;
}

/**
 * {@link layerNormOp} in one native pass forward and one backward (`native.ts`), on the wasm
 * heap; the same arithmetic, summed in another order (within about 1e-6).
 */
const nativeLayerNormOp = tf.customGrad(
  ((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, gain, bias] = args as [tf.Tensor2D, tf.Tensor1D, tf.Tensor1D];
    const [rows, n] = x.shape;
    const native = nativeLayerNorm()!;
    const [y, xhat, rstd] = heapTensors(
      [[rows, n], [rows, n], [rows]],
      [x, gain, bias],
      ([ys, xhats, rstds], [xs, gains, biases]) =>
        native.forward(n, xs!, gains!, biases!, ys, xhats, rstds),
    );
    (args[3] as tf.GradSaveFunc)([xhat, rstd, gain]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) =>
        heapTensors(
          [[rows, n], [n], [n]],
          [dy, saved[2], saved[0], saved[1]],
          ([dx, dgain, dbias], [dys, gains, xhats, rstds]) =>
            native.backward(n, dys!, gains!, xhats!, rstds!, dx, dgain, dbias),
        ),
    };
  }) as Parameters<typeof tf.customGrad<tf.Tensor2D>>[0],
);

/**
 * Layer normalisation over the last axis of `x` `[..., n]`, with gain and bias
 * `[n]`. Leading axes are flattened into rows for the op and restored after,
 * so the sequence models (`[rows, n]`) and the denoiser (`[B, T, C]`) share it.
 * On wasm with the native kernels loaded it runs natively.
 */
export function layerNorm<T extends tf.Tensor>(x: T, gain: tf.Tensor, bias: tf.Tensor): T {
  const op = nativeLayerNormRuns(x) ? nativeLayerNormOp : layerNormOp;
  if (x.rank === 2) return op(x, gain, bias) as T;
  return tf.tidy(() => {
    const n = x.shape[x.rank - 1];
    const rows = tf.reshape(x, [-1, n]) as tf.Tensor2D; // [rows, n]
    return tf.reshape(op(rows, gain, bias), x.shape) as T;
  });
}

/**
 * tanh(x) computed as 2σ(2x) − 1. The wasm backend's `Tanh` kernel is scalar
 * code, about 10x slower than its vectorised `Sigmoid`; the two agree within 1e-6.
 */
export function tanhViaSigmoid<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.sub(tf.mul(tf.sigmoid(tf.mul(x, 2)), 2), 1)) as T;
}

/**
 * Splits a tensor along its first axis into one tensor per index, like
 * `tf.unstack(x)`. On the wasm backend, whose `Slice` kernel copies the whole
 * input for every slice (O(T²) work, seconds for a 256-step sequence), it reads
 * the values once and builds the slices from them instead.
 */
export function unstackTime(x: tf.Tensor): tf.Tensor[] {
  if (tf.getBackend() !== "wasm" || x.dtype !== "float32") return tf.unstack(x);
  const [time, ...rest] = x.shape;
  const size = rest.reduce((a, b) => a * b, 1);
  const values = x.dataSync() as Float32Array;
  return Array.from(
    { length: time },
    (_, t) => tf.tensor(values.subarray(t * size, (t + 1) * size), rest, "float32"),
  );
}

/** Copies a model's weights out (async, so that GPU backends need not block). */
export async function readWeights(model: SequenceModel): Promise<Record<string, TensorData>> {
  const out: Record<string, TensorData> = {};
  for (const [name, variable] of model.variables) {
    out[name] = { shape: [...variable.shape], data: (await variable.data()) as Float32Array };
  }
  return out;
}

/**
 * Overwrites a model's weights. Every variable must be given, with its shape.
 *
 * @throws Error naming the first missing, unexpected or misshapen weight
 */
export function assignWeights(model: SequenceModel, weights: Record<string, TensorData>): void {
  for (const name of Object.keys(weights)) {
    if (!model.variables.has(name)) {
      throw new Error(
        `Cannot load weights: "${name}" is not a weight of this ${model.config.type} model`,
      );
    }
  }
  for (const [name, variable] of model.variables) {
    const w = weights[name];
    if (w === undefined) throw new Error(`Cannot load weights: "${name}" is missing`);
    if (w.shape.join(",") !== variable.shape.join(",")) {
      throw new Error(
        `Cannot load weights: "${name}" has shape [${w.shape}], the model expects [${variable.shape}]`,
      );
    }
    tf.tidy(() => variable.assign(tf.tensor(w.data, w.shape, "float32")));
  }
}

/** Number of trainable parameters. */
export function countParams(model: SequenceModel): number {
  let n = 0;
  for (const v of model.variables.values()) n += v.size;
  return n;
}

// ---------------------------------------------------------------- loss

/**
 * Negative log-likelihood of each target token.
 *
 * @param logits shape `[batch, time, vocab]`
 * @param targets int32, shape `[batch, time]`
 * @returns nats per token, shape `[batch, time]`
 */
export function tokenNll(logits: tf.Tensor3D, targets: tf.Tensor2D): tf.Tensor2D {
  return tf.tidy(() => {
    const [batch, time, vocab] = logits.shape;
    const logProbs = tf.logSoftmax(tf.reshape(logits, [batch * time, vocab])); // [B*T, V]
    const picked = tf.sum(
      tf.mul(logProbs, tf.oneHot(tf.reshape(targets, [batch * time]), vocab)),
      1,
    ); // [B*T]
    return tf.reshape(tf.neg(picked), [batch, time]) as tf.Tensor2D;
  });
}

/**
 * Mean next-token loss of a batch of windows: the model reads `windows[:, :-1]`
 * and predicts `windows[:, 1:]`.
 *
 * @param windows int32, shape `[batch, time + 1]`
 * @returns scalar mean nats per token
 */
export function nextTokenLoss(
  model: SequenceModel,
  windows: tf.Tensor2D,
  options: ForwardOptions,
): tf.Scalar {
  return tf.tidy(() => {
    const [batch, width] = windows.shape;
    const inputs = tf.slice(windows, [0, 0], [batch, width - 1]) as tf.Tensor2D; // [B, T]
    const targets = tf.slice(windows, [0, 1], [batch, width - 1]) as tf.Tensor2D; // [B, T]
    return tf.mean(tokenNll(model.forward(inputs, options), targets)) as tf.Scalar;
  });
}

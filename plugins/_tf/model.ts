/**
 * What every sequence model shares: the model interface that stages use, the
 * checkpoint type and its codecs, the AdamW optimizer, the learning-rate
 * schedule, gradient clipping and small tensor helpers.
 *
 * References: AdamW is "Decoupled Weight Decay Regularization" (Loshchilov &
 * Hutter, ICLR 2019), Algorithm 2, with PyTorch's convention of scaling the
 * decay by the learning rate. The schedule (linear warmup, cosine decay to a
 * floor) and the rule "decay matrices, not biases or norms" follow nanoGPT's
 * `train.py` and `model.py` (`configure_optimizers`). Model configs are plain
 * objects with a `type` field, as magenta-js's `MusicRNNSpec`.
 *
 * Models are built from `@tensorflow/tfjs-core` ops only, so they run on any
 * backend that `plugins/_tf/backend.ts` starts.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import {
  type ArtifactCodec,
  type FullComponentRef,
  type Rng,
  type StageContext,
  writeFileAtomic,
} from "../../mod.ts";

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
  tokenizer: unknown;
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
    const [x, kernel, bias] = args as [tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
    (args[3] as tf.GradSaveFunc)([x, kernel]);
    return {
      value: tf.fused.matMul({ a: x, b: kernel, bias }),
      gradFunc: (dy: tf.Tensor2D, saved: tf.Tensor[]) => {
        const [sx, sk] = saved as [tf.Tensor2D, tf.Tensor2D];
        return [
          tf.matMul(dy, sk, false, true), // [rows, in]
          tf.matMul(sx, dy, true, false), // [in, out]
          sumRows(dy), // [out]
        ];
      },
    };
  }) as Parameters<typeof tf.customGrad<tf.Tensor2D>>[0],
);

/**
 * `x @ kernel + bias`: `[rows, in] -> [rows, out]`, one fused op forward and a
 * gradient whose bias part is a product with ones (see {@link sumRows}).
 */
export function linear(x: tf.Tensor2D, kernel: tf.Tensor, bias: tf.Tensor): tf.Tensor2D {
  return linearOp(x, kernel, bias) as tf.Tensor2D;
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

/** Layer normalisation over the last axis of `x` `[rows, n]`, with gain and bias `[n]`. */
export function layerNorm(x: tf.Tensor2D, gain: tf.Tensor, bias: tf.Tensor): tf.Tensor2D {
  return layerNormOp(x, gain, bias) as tf.Tensor2D;
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

// ---------------------------------------------------------------- optimisation

/** Settings of {@link AdamW}. */
export interface AdamWOptions {
  /** Default 0.9. */
  beta1?: number;
  /** Default 0.95 (nanoGPT; steadier than 0.999 for language models). */
  beta2?: number;
  /** Default 1e-8. */
  epsilon?: number;
  /** Decoupled decay per unit learning rate; default 0.01. */
  weightDecay?: number;
}

/**
 * Adam with decoupled weight decay (AdamW). Decay applies to weights of rank
 * 2 or more (matrices and embeddings), not to biases and norm gains.
 *
 * @example
 * ```ts
 * import * as tf from "@tensorflow/tfjs-core";
 * import "@tensorflow/tfjs-backend-cpu";
 * import { AdamW } from "./model.ts";
 * await tf.setBackend("cpu");
 * const w = tf.variable(tf.ones([2, 2]));
 * const opt = new AdamW(new Map([["w", w]]), { weightDecay: 0.1 });
 * opt.apply(new Map([["w", tf.ones([2, 2])]]), 0.01);
 * console.assert(opt.step === 1);
 * ```
 */
export class AdamW {
  readonly beta1: number;
  readonly beta2: number;
  readonly epsilon: number;
  readonly weightDecay: number;
  /** Updates applied so far. */
  step = 0;
  #variables: Map<string, tf.Variable>;
  #m = new Map<string, tf.Variable>();
  #v = new Map<string, tf.Variable>();

  constructor(variables: Map<string, tf.Variable>, options: AdamWOptions = {}) {
    this.beta1 = options.beta1 ?? 0.9;
    this.beta2 = options.beta2 ?? 0.95;
    this.epsilon = options.epsilon ?? 1e-8;
    this.weightDecay = options.weightDecay ?? 0.01;
    this.#variables = variables;
    for (const [name, variable] of variables) {
      this.#m.set(name, tf.tidy(() => tf.variable(tf.zerosLike(variable), false)));
      this.#v.set(name, tf.tidy(() => tf.variable(tf.zerosLike(variable), false)));
    }
  }

  /**
   * Applies one update. Gradients of variables not in `grads` count as zero
   * for the moments, but their weights still decay.
   *
   * @param grads gradient by variable name (not disposed here)
   * @param lr learning rate of this step
   */
  apply(grads: Map<string, tf.Tensor>, lr: number): void {
    this.step++;
    const correction1 = 1 - this.beta1 ** this.step;
    const correction2 = 1 - this.beta2 ** this.step;
    for (const [name, variable] of this.#variables) {
      const m = this.#m.get(name)!;
      const v = this.#v.get(name)!;
      tf.tidy(() => {
        const g = grads.get(name) ?? tf.zerosLike(variable);
        const mNext = tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1));
        const vNext = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        const update = tf.div(
          tf.div(mNext, correction1),
          tf.add(tf.sqrt(tf.div(vNext, correction2)), this.epsilon),
        );
        const decay = variable.rank >= 2 ? lr * this.weightDecay : 0;
        // w <- w - lr * wd * w - lr * update  (decay decoupled from the gradient)
        const decayed = decay > 0 ? tf.mul(variable, 1 - decay) : variable;
        variable.assign(tf.sub(decayed, tf.mul(update, lr)));
        m.assign(mNext);
        v.assign(vNext);
      });
    }
  }

  /** Copies the moments and step out. */
  async getState(): Promise<AdamWState> {
    const read = async (vars: Map<string, tf.Variable>) => {
      const out: Record<string, TensorData> = {};
      for (const [name, t] of vars) {
        out[name] = { shape: [...t.shape], data: (await t.data()) as Float32Array };
      }
      return out;
    };
    return { step: this.step, m: await read(this.#m), v: await read(this.#v) };
  }

  /**
   * Restores moments and step from {@link AdamW.getState}.
   *
   * @throws Error naming a missing or misshapen moment
   */
  setState(state: AdamWState): void {
    for (const [name, variable] of this.#variables) {
      for (
        const [which, store, saved] of [["m", this.#m, state.m], ["v", this.#v, state.v]] as const
      ) {
        const t = saved[name];
        if (t === undefined || t.shape.join(",") !== variable.shape.join(",")) {
          throw new Error(
            `Cannot restore the optimizer: moment "${which}" of "${name}" is missing or misshapen`,
          );
        }
        tf.tidy(() => store.get(name)!.assign(tf.tensor(t.data, t.shape, "float32")));
      }
    }
    this.step = state.step;
  }

  /** Frees the moments. */
  dispose(): void {
    for (const t of [...this.#m.values(), ...this.#v.values()]) t.dispose();
    this.#m.clear();
    this.#v.clear();
  }
}

/** Settings of {@link learningRateAt}. */
export interface LrSchedule {
  peakLr: number;
  minLr: number;
  warmupSteps: number;
  totalSteps: number;
}

/**
 * Learning rate of update number `step` (0-based): linear warmup from
 * `peakLr / warmupSteps` to `peakLr`, then cosine decay to `minLr` at `totalSteps`.
 */
export function learningRateAt(step: number, s: LrSchedule): number {
  if (step < s.warmupSteps) return (s.peakLr * (step + 1)) / s.warmupSteps;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, (step - s.warmupSteps) / span);
  return s.minLr + 0.5 * (s.peakLr - s.minLr) * (1 + Math.cos(Math.PI * progress));
}

/**
 * Global L2 norm of a set of gradients, and the gradients scaled down so that
 * the norm is at most `maxNorm` (unchanged when it already is, or when
 * `maxNorm` is 0). The returned map holds new tensors; the input is not disposed.
 *
 * @returns the norm before clipping (NaN or Infinity when a gradient is not finite)
 */
export async function clipByGlobalNorm(
  grads: Map<string, tf.Tensor>,
  maxNorm: number,
): Promise<{ grads: Map<string, tf.Tensor>; norm: number }> {
  // A chain of adds, not tf.addN: the webgpu backend's AddN gives wrong sums past a few
  // inputs (0 for 29 gradients), found by tests/model_backend_parity_test.ts.
  const normT = tf.tidy(() =>
    tf.sqrt(
      [...grads.values()].map((g) => tf.sum(tf.square(g))).reduce((a, b) => tf.add(a, b)),
    )
  );
  const norm = (await normT.data())[0];
  normT.dispose();
  const scale = maxNorm > 0 && norm > maxNorm ? maxNorm / (norm + 1e-6) : 1;
  const out = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) out.set(name, scale === 1 ? tf.clone(g) : tf.mul(g, scale));
  return { grads: out, norm };
}

/** What {@link optimizeStep} did. */
export interface OptimizeStepResult {
  /** The loss before the update. */
  loss: number;
  /** Global gradient norm before clipping. */
  gradNorm: number;
  /** True when the loss or a gradient was not finite and no update was made. */
  skipped: boolean;
}

/**
 * One optimisation step: gradients of `loss` for all model variables, global
 * norm clipping, then an AdamW update, unless the loss or the gradient norm is
 * not finite (then nothing changes and `skipped` is true).
 *
 * @param model whose variables are trained
 * @param optimizer an AdamW over `model.variables`
 * @param loss builds the scalar loss (called once, under gradient recording)
 * @param options learning rate and clipping norm (0 = no clipping)
 */
export async function optimizeStep(
  model: SequenceModel,
  optimizer: AdamW,
  loss: () => tf.Scalar,
  options: { lr: number; clipNorm: number },
): Promise<OptimizeStepResult> {
  const names = [...model.variables.keys()];
  const { value, grads } = tf.variableGrads(loss, [...model.variables.values()]);
  const byName = new Map<string, tf.Tensor>();
  for (const name of names) {
    const g = grads[model.variables.get(name)!.name];
    if (g !== undefined) byName.set(name, g);
  }
  const lossValue = (await value.data())[0];
  const { grads: clipped, norm } = await clipByGlobalNorm(byName, options.clipNorm);
  tf.dispose([value, ...Object.values(grads)]);
  const skipped = !Number.isFinite(lossValue) || !Number.isFinite(norm);
  if (!skipped) optimizer.apply(clipped, options.lr);
  tf.dispose([...clipped.values()]);
  return { loss: lossValue, gradNorm: norm, skipped };
}

// ---------------------------------------------------------------- checkpoints

/**
 * Snapshot of a model (and optionally its optimizer) as a checkpoint.
 *
 * @param model the model
 * @param extra tokenizer spec, step, optimizer, RNG state and metrics to store with it
 */
export async function checkpointFromModel(
  model: SequenceModel,
  extra: {
    /** The model component's spec (`ModelSpec.component`); derived from the config when absent. */
    component?: FullComponentRef;
    tokenizer: unknown;
    step?: number;
    optimizer?: AdamW;
    rngState?: number[];
    metrics?: Record<string, number>;
  },
): Promise<ModelCheckpoint> {
  return {
    spec: {
      type: model.config.type,
      config: structuredClone(model.config),
      component: structuredClone(extra.component ?? builtInComponent(model.config)),
    },
    vocabSize: model.vocabSize,
    tokenizer: extra.tokenizer,
    step: extra.step ?? extra.optimizer?.step ?? 0,
    weights: await readWeights(model),
    optimizer: extra.optimizer ? await extra.optimizer.getState() : undefined,
    rngState: extra.rngState,
    metrics: { ...extra.metrics },
  };
}

/**
 * The component spec of a config written before checkpoints recorded one:
 * the built-in `model/<type>` with the config's fields as params.
 */
function builtInComponent(config: ModelConfig): FullComponentRef {
  const { type, ...params } = config;
  return { use: `model/${type}`, with: params };
}

/**
 * The component spec that rebuilds a checkpoint's model.
 *
 * @param ckpt The checkpoint.
 * @returns `{use, with}` for `ctx.component(spec, "model")`.
 */
export function modelComponentOf(ckpt: ModelCheckpoint): FullComponentRef {
  return ckpt.spec.component ?? builtInComponent(ckpt.spec.config);
}

/**
 * Rebuilds the model a checkpoint describes, through its component spec (so a
 * user's model plugin given by path is rebuilt too), and loads its weights.
 *
 * @param ctx Where components come from (a stage's context).
 * @param ckpt The checkpoint.
 * @returns A fresh model with the checkpoint's weights; the caller disposes it.
 * @throws {Error} When the plugin cannot be found, or the weights do not fit it.
 */
export async function modelFromCheckpoint(
  ctx: Pick<StageContext, "component">,
  ckpt: ModelCheckpoint,
): Promise<SequenceModel> {
  const spec = await ctx.component<ModelSpec>(modelComponentOf(ckpt), "model");
  const model = spec.build(ckpt.vocabSize, 0);
  try {
    assignWeights(model, ckpt.weights);
  } catch (e) {
    model.dispose();
    throw e;
  }
  return model;
}

/**
 * A read-only model for a checkpoint: the live policy when an update in this
 * process made the checkpoint, else one built once and kept with the
 * checkpoint object. Shared: callers do not dispose it.
 *
 * @param ctx Where components come from.
 * @param ckpt The checkpoint.
 */
export async function liveModelOf(
  ctx: Pick<StageContext, "component">,
  ckpt: ModelCheckpoint,
): Promise<SequenceModel> {
  if (!ckpt.live) ckpt.live = { model: await modelFromCheckpoint(ctx, ckpt) };
  return ckpt.live.model;
}

interface CheckpointIndex {
  format: "harmonyrl-model";
  version: 1;
  spec: ModelCheckpoint["spec"];
  vocabSize: number;
  tokenizer: unknown;
  step: number;
  optimizerStep: number | null;
  rngState: number[] | null;
  metrics: Record<string, number>;
  /** Offsets and lengths count float32 values in the binary part. */
  tensors: { name: string; shape: number[]; offset: number; length: number }[];
}

const OPT_M = "optimizer/m/";
const OPT_V = "optimizer/v/";

/**
 * Packs weights and, when given, AdamW moments (named `optimizer/m/<name>`,
 * `optimizer/v/<name>`) into one Float32Array with an index of where each
 * tensor lies: the layout of every weights file (models and critics).
 */
export function packTensors(
  weights: Record<string, TensorData>,
  optimizer?: { m: Record<string, TensorData>; v: Record<string, TensorData> },
): {
  tensors: Array<{ name: string; shape: number[]; offset: number; length: number }>;
  data: Float32Array;
} {
  const entries: [string, TensorData][] = Object.entries(weights);
  if (optimizer) {
    for (const [n, t] of Object.entries(optimizer.m)) entries.push([OPT_M + n, t]);
    for (const [n, t] of Object.entries(optimizer.v)) entries.push([OPT_V + n, t]);
  }
  let total = 0;
  const tensors = entries.map(([name, t]) => {
    const entry = { name, shape: [...t.shape], offset: total, length: t.data.length };
    total += t.data.length;
    return entry;
  });
  const data = new Float32Array(total);
  entries.forEach(([, t], i) => data.set(t.data, tensors[i].offset));
  return { tensors, data };
}

function toIndexAndData(ckpt: ModelCheckpoint): { index: CheckpointIndex; data: Float32Array } {
  const { tensors, data } = packTensors(ckpt.weights, ckpt.optimizer);
  const index: CheckpointIndex = {
    format: "harmonyrl-model",
    version: 1,
    spec: ckpt.spec,
    vocabSize: ckpt.vocabSize,
    tokenizer: ckpt.tokenizer ?? null,
    step: ckpt.step,
    optimizerStep: ckpt.optimizer?.step ?? null,
    rngState: ckpt.rngState ?? null,
    metrics: ckpt.metrics,
    tensors,
  };
  return { index, data };
}

function fromIndexAndData(
  index: CheckpointIndex,
  data: Float32Array,
  where: string,
): ModelCheckpoint {
  if (index?.format !== "harmonyrl-model" || index.version !== 1) {
    throw new Error(
      `Cannot read model checkpoint "${where}": not a harmonyrl-model version 1 index`,
    );
  }
  const weights: Record<string, TensorData> = {};
  const m: Record<string, TensorData> = {};
  const v: Record<string, TensorData> = {};
  for (const t of index.tensors) {
    const size = t.shape.reduce((a, b) => a * b, 1);
    if (size !== t.length || t.offset + t.length > data.length) {
      throw new Error(
        `Cannot read model checkpoint "${where}": tensor "${t.name}" runs past the end of the data or does not match its shape`,
      );
    }
    const td = { shape: t.shape, data: data.slice(t.offset, t.offset + t.length) };
    if (t.name.startsWith(OPT_M)) m[t.name.slice(OPT_M.length)] = td;
    else if (t.name.startsWith(OPT_V)) v[t.name.slice(OPT_V.length)] = td;
    else weights[t.name] = td;
  }
  return {
    spec: index.spec,
    vocabSize: index.vocabSize,
    tokenizer: index.tokenizer,
    step: index.step,
    weights,
    optimizer: index.optimizerStep === null ? undefined : { step: index.optimizerStep, m, v },
    rngState: index.rngState ?? undefined,
    metrics: index.metrics ?? {},
  };
}

/**
 * Codec of the `model` artifact: `index.json` (config, step, tokenizer spec,
 * tensor names and shapes) plus `weights.bin` (all float32 values, little-endian,
 * weights then optimizer moments).
 */
export const modelCodec: ArtifactCodec<ModelCheckpoint> = {
  async save(ckpt, dir) {
    const { index, data } = toIndexAndData(ckpt);
    await Deno.writeFile(`${dir}/weights.bin`, new Uint8Array(data.buffer, 0, data.byteLength));
    await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
  },
  async load(dir) {
    const index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`)) as CheckpointIndex;
    const bytes = await Deno.readFile(`${dir}/weights.bin`);
    if (bytes.byteLength % 4 !== 0) {
      throw new Error(`Cannot read "${dir}/weights.bin": its size is not a multiple of 4 bytes`);
    }
    const data = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    return fromIndexAndData(index, data, dir);
  },
};

const FILE_MAGIC = new TextEncoder().encode("HRLCKPT1");

/**
 * Writes a checkpoint as one file, atomically: it goes to a temporary file
 * beside `path` that is then renamed over it, so a run killed mid-write
 * leaves the previous checkpoint intact. Layout: `HRLCKPT1`, a uint32 JSON
 * length, the JSON index, zero padding to 4 bytes, the float32 values.
 */
export async function saveCheckpointFile(path: string, ckpt: ModelCheckpoint): Promise<void> {
  const { index, data } = toIndexAndData(ckpt);
  const json = new TextEncoder().encode(JSON.stringify(index));
  const head = FILE_MAGIC.length + 4 + json.length;
  const dataStart = Math.ceil(head / 4) * 4;
  const bytes = new Uint8Array(dataStart + data.byteLength);
  bytes.set(FILE_MAGIC, 0);
  new DataView(bytes.buffer).setUint32(FILE_MAGIC.length, json.length, true);
  bytes.set(json, FILE_MAGIC.length + 4);
  bytes.set(new Uint8Array(data.buffer, 0, data.byteLength), dataStart);
  await writeFileAtomic(path, bytes);
}

/**
 * Reads a file written by {@link saveCheckpointFile}.
 *
 * @throws Error when the file is not such a checkpoint or is truncated
 */
export async function loadCheckpointFile(path: string): Promise<ModelCheckpoint> {
  const bytes = await Deno.readFile(path);
  const magicOk = bytes.length >= FILE_MAGIC.length + 4 &&
    FILE_MAGIC.every((b, i) => bytes[i] === b);
  if (!magicOk) {
    throw new Error(`Cannot read checkpoint "${path}": not a HarmonyRL checkpoint file`);
  }
  const jsonLength = new DataView(bytes.buffer, bytes.byteOffset).getUint32(
    FILE_MAGIC.length,
    true,
  );
  const head = FILE_MAGIC.length + 4 + jsonLength;
  if (head > bytes.length) {
    throw new Error(`Cannot read checkpoint "${path}": the file is truncated`);
  }
  const index = JSON.parse(
    new TextDecoder().decode(bytes.subarray(FILE_MAGIC.length + 4, head)),
  ) as CheckpointIndex;
  const dataStart = Math.ceil(head / 4) * 4;
  const data = new Float32Array(
    bytes.buffer.slice(bytes.byteOffset + dataStart, bytes.byteOffset + bytes.length),
  );
  return fromIndexAndData(index, data, path);
}

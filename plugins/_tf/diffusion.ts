/**
 * Diffusion models over piano rolls, in tfjs-core ops.
 *
 * References:
 * - DDPM: Ho, Jain, Abbeel 2020, "Denoising Diffusion Probabilistic Models"
 *   (ε-prediction, the simple loss `E‖ε − ε_θ(√ᾱ_t x0 + √(1−ᾱ_t) ε, t)‖²`, eq. 14).
 * - Cosine schedule: Nichol & Dhariwal 2021, "Improved Denoising Diffusion
 *   Probabilistic Models", eq. 17 (s = 0.008, β clipped at 0.999).
 * - DDIM: Song, Meng, Ermon 2021, "Denoising Diffusion Implicit Models", eq. 12
 *   with σ = 0 (deterministic) over a subsequence of timesteps.
 * - SDEdit: Meng et al. 2022, "SDEdit: Guided Image Synthesis and Editing with
 *   Stochastic Differential Equations": noise the input to t0 = strength·T,
 *   then denoise from t0.
 * - Roll representation: Polyffusion (Min et al. 2023), see `../_music/pianoroll.ts`.
 *
 * The network that predicts ε is in `denoiser.ts`; this file is the
 * algorithm around it: the schedule, the forward process, the samplers,
 * refinement and the training step (with `optim.ts`'s AdamW and clipping,
 * the optimizer the sequence models use).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../../mod.ts";
import {
  type Denoiser,
  denoiserForward,
  denoiserModel,
  disposeDenoiser,
  stepFeatures,
} from "./denoiser.ts";
import { AdamW, type AdamWOptions, optimizeStep } from "./optim.ts";

// ---------------------------------------------------------------------------
// Noise schedule and the forward process

/** A discrete noise schedule with T steps. Index 0 is the clean data. */
export interface NoiseSchedule {
  /** T: number of noising steps. */
  steps: number;
  /** β_t for t = 0..T (β_0 = 0). */
  beta: Float64Array;
  /** ᾱ_t = ∏_{s≤t} (1 − β_s) for t = 0..T (ᾱ_0 = 1). */
  alphaBar: Float64Array;
}

/**
 * The cosine schedule of Nichol & Dhariwal (2021): ᾱ(t) = f(t)/f(0) with
 * f(t) = cos²((t/T + s)/(1 + s) · π/2), β_t = min(1 − ᾱ(t)/ᾱ(t−1), maxBeta),
 * and ᾱ recomputed as the product of (1 − β) so that it matches the clipped β.
 *
 * @param steps T, at least 1.
 * @param options `offset` s (default 0.008), `maxBeta` (default 0.999).
 * @returns The schedule.
 * @throws {Error} When `steps` is not a positive integer.
 * @example
 * ```ts
 * import { cosineSchedule } from "./diffusion.ts";
 * const s = cosineSchedule(100);
 * console.assert(s.alphaBar[0] === 1 && s.alphaBar[100] < 1e-3);
 * ```
 */
export function cosineSchedule(
  steps: number,
  options: { offset?: number; maxBeta?: number } = {},
): NoiseSchedule {
  if (!Number.isInteger(steps) || steps < 1) {
    throw new Error(`Cannot make a noise schedule: steps must be an integer >= 1, got ${steps}`);
  }
  const s = options.offset ?? 0.008;
  const maxBeta = options.maxBeta ?? 0.999;
  const f = (t: number) => Math.cos(((t / steps + s) / (1 + s)) * (Math.PI / 2)) ** 2;
  const beta = new Float64Array(steps + 1);
  const alphaBar = new Float64Array(steps + 1);
  alphaBar[0] = 1;
  for (let t = 1; t <= steps; t++) {
    beta[t] = Math.min(1 - f(t) / f(t - 1), maxBeta);
    alphaBar[t] = alphaBar[t - 1] * (1 - beta[t]);
  }
  return { steps, beta, alphaBar };
}

/** A `[B, 1, 1, ...]` tensor of per-sample scalars, broadcastable against a rank-`rank` batch. */
function perSample(values: ArrayLike<number>, rank: number): tf.Tensor {
  const shape = [values.length, ...new Array(rank - 1).fill(1)];
  return tf.tensor(Float32Array.from(values), shape);
}

/**
 * Samples the forward process in closed form: x_t = √ᾱ_t · x0 + √(1 − ᾱ_t) · ε,
 * the mean and variance of q(x_t | x0) (DDPM eq. 4).
 *
 * @param x0 Clean data `[B, ...]`.
 * @param noise ε, same shape as `x0`.
 * @param t One timestep per sample (0..T).
 * @param schedule The noise schedule.
 * @returns x_t, same shape as `x0`.
 */
export function qSample(
  x0: tf.Tensor,
  noise: tf.Tensor,
  t: ArrayLike<number>,
  schedule: NoiseSchedule,
): tf.Tensor {
  return tf.tidy(() => {
    const ab = Array.from(t, (ti) => schedule.alphaBar[ti]);
    const a = perSample(ab.map(Math.sqrt), x0.rank); // [B, 1, ...]
    const b = perSample(ab.map((v) => Math.sqrt(1 - v)), x0.rank); // [B, 1, ...]
    return tf.add(tf.mul(a, x0), tf.mul(b, noise));
  });
}

// ---------------------------------------------------------------------------
// DDIM sampling and SDEdit

/** An ε-prediction model: noisy data `[B, ...]` and one timestep per sample → predicted noise. */
export type EpsModel = (xt: tf.Tensor, t: Int32Array) => tf.Tensor;

/**
 * The DDIM timestep subsequence from `fromT` down to 1: `n = min(steps, fromT)`
 * evenly spaced steps `round(fromT · (n − i) / n)`, i = 0..n−1; the sampler's
 * last step goes to t = 0.
 *
 * @param fromT The starting timestep (1..T).
 * @param steps How many model evaluations to use.
 * @returns Strictly decreasing timesteps, the first being `fromT`.
 */
export function ddimTimesteps(fromT: number, steps: number): number[] {
  const n = Math.max(1, Math.min(steps, fromT));
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(Math.round((fromT * (n - i)) / n));
  return out;
}

/**
 * Deterministic DDIM sampling (η = 0): at each t of the subsequence,
 * x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t, then x_prev = √ᾱ_prev · x̂0 + √(1−ᾱ_prev) · ε̂.
 * With `clipX0`, x̂0 is clipped to [−1, 1] and ε̂ recomputed from it, which
 * keeps binary data in range.
 *
 * @param model The ε-prediction model.
 * @param xT The noisy start `[B, ...]` at timestep `fromT` (not disposed).
 * @param schedule The noise schedule.
 * @param options `fromT` (default T), `steps` (model evaluations), `clipX0`
 *   (default true), `onStep` called after each step.
 * @returns x0 estimate, same shape as `xT`.
 */
export function ddimSample(
  model: EpsModel,
  xT: tf.Tensor,
  schedule: NoiseSchedule,
  options: { fromT?: number; steps: number; clipX0?: boolean },
): tf.Tensor {
  const fromT = options.fromT ?? schedule.steps;
  const clip = options.clipX0 ?? true;
  const ts = ddimTimesteps(fromT, options.steps);
  const batch = xT.shape[0];
  let x = tf.clone(xT);
  for (let i = 0; i < ts.length; i++) {
    const t = ts[i];
    const prev = i + 1 < ts.length ? ts[i + 1] : 0;
    const ab = schedule.alphaBar[t];
    const abPrev = schedule.alphaBar[prev];
    const next = tf.tidy(() => {
      let eps = model(x, new Int32Array(batch).fill(t));
      let x0 = tf.div(tf.sub(x, tf.mul(eps, Math.sqrt(1 - ab))), Math.sqrt(ab));
      if (clip) {
        x0 = tf.clipByValue(x0, -1, 1);
        eps = tf.div(tf.sub(x, tf.mul(x0, Math.sqrt(ab))), Math.sqrt(1 - ab));
      }
      if (prev === 0) return x0;
      return tf.add(tf.mul(x0, Math.sqrt(abPrev)), tf.mul(eps, Math.sqrt(1 - abPrev)));
    });
    x.dispose();
    x = next;
  }
  return x;
}

/**
 * The SDEdit timestep for a strength: t0 = round(strength · T), at least 1.
 *
 * @param strength Noise level in (0, 1].
 * @param steps T.
 * @returns t0.
 */
export function sdeditStart(strength: number, steps: number): number {
  return Math.min(steps, Math.max(1, Math.round(strength * steps)));
}

/**
 * SDEdit refinement: noises `x0` (data in [−1, 1]) to t0 = strength·T in
 * closed form and denoises it back with deterministic DDIM from t0.
 *
 * @param model The ε-prediction model.
 * @param x0 Data to refine `[B, ...]`, scaled to [−1, 1] (not disposed).
 * @param schedule The noise schedule.
 * @param options `strength` in (0, 1], DDIM `steps`, the `noise` ε to use
 *   (same shape as `x0`; not disposed), `clipX0` (default true).
 * @returns The refined data, same shape as `x0`.
 * @throws {Error} When `strength` is outside (0, 1].
 */
export function sdeditRefine(
  model: EpsModel,
  x0: tf.Tensor,
  schedule: NoiseSchedule,
  options: { strength: number; steps: number; noise: tf.Tensor; clipX0?: boolean },
): tf.Tensor {
  if (!(options.strength > 0 && options.strength <= 1)) {
    throw new Error(`Cannot refine: strength must be in (0, 1], got ${options.strength}`);
  }
  const t0 = sdeditStart(options.strength, schedule.steps);
  const xt = qSample(x0, options.noise, new Int32Array(x0.shape[0]).fill(t0), schedule);
  try {
    return ddimSample(model, xt, schedule, {
      fromT: t0,
      steps: options.steps,
      clipX0: options.clipX0,
    });
  } finally {
    xt.dispose();
  }
}

/**
 * Refines piano-roll segments with SDEdit: each roll (cells 0/1) is scaled to
 * [−1, 1], noised to `strength`, denoised with DDIM and mapped back to [0, 1].
 * With `samples` > 1 the results of that many independent noise draws are
 * averaged, so a cell's value is the share of draws that keep it on (as a
 * soft vote), which makes the result depend less on one draw of noise.
 * Noise comes from `rng`, so results are reproducible.
 *
 * @param denoiser The trained denoiser.
 * @param segments Rolls `[T, 88, 2]` of equal length (cells in [0, 1]).
 * @param options `strength` in (0, 1], DDIM `steps`, `rng`, `samples` (noise
 *   draws to average, default 1), `batchSize` (segments per model call,
 *   default 32), `onBatch(done, total)` progress in segments × samples.
 * @returns Refined rolls, cells in [0, 1] (threshold them to read notes).
 */
export function refineRolls(
  denoiser: Denoiser,
  segments: readonly Float32Array[],
  options: {
    strength: number;
    steps: number;
    rng: Rng;
    samples?: number;
    batchSize?: number;
    onBatch?: (done: number, total: number) => void;
  },
): Float32Array[] {
  if (segments.length === 0) return [];
  const size = segments[0].length;
  const time = size / stepFeatures(denoiser.config);
  if (!Number.isInteger(time) || segments.some((s) => s.length !== size)) {
    throw new Error(
      `Cannot refine rolls: every segment must hold the same whole number of ${
        stepFeatures(denoiser.config)
      }-cell steps`,
    );
  }
  const schedule = cosineSchedule(denoiser.config.diffusionSteps);
  const model = denoiserModel(denoiser);
  const batchSize = Math.max(1, options.batchSize ?? 32);
  const samples = Math.max(1, options.samples ?? 1);
  const out = segments.map(() => new Float32Array(size));
  const total = segments.length * samples;
  let done = 0;
  for (let sample = 0; sample < samples; sample++) {
    for (let from = 0; from < segments.length; from += batchSize) {
      const chunk = segments.slice(from, from + batchSize);
      const x0Values = new Float32Array(chunk.length * size);
      chunk.forEach((s, i) => {
        for (let j = 0; j < size; j++) x0Values[i * size + j] = s[j] * 2 - 1;
      });
      const noiseValues = new Float32Array(x0Values.length);
      for (let i = 0; i < noiseValues.length; i++) noiseValues[i] = options.rng.normal();
      const shape = [chunk.length, time, stepFeatures(denoiser.config)];
      const x0 = tf.tensor(x0Values, shape); // [B, T, F]
      const noise = tf.tensor(noiseValues, shape); // [B, T, F]
      const refined = sdeditRefine(model, x0, schedule, {
        strength: options.strength,
        steps: options.steps,
        noise,
      });
      const values = refined.dataSync() as Float32Array;
      for (let i = 0; i < chunk.length; i++) {
        const seg = out[from + i];
        for (let j = 0; j < size; j++) seg[j] += (values[i * size + j] + 1) / 2 / samples;
      }
      tf.dispose([x0, noise, refined]);
      done += chunk.length;
      options.onBatch?.(done, total);
    }
  }
  return out;
}

/** Training hyperparameters of one step. */
export interface TrainStepOptions {
  /** Adam learning rate (after warm-up). */
  lr: number;
  /** Linear warm-up length in steps (default 100). */
  warmupSteps?: number;
  /** Clip the global gradient norm to this (default 1). */
  maxGradNorm?: number;
}

/**
 * The DDPM simple loss on a batch: mean of (ε − ε_θ(x_t, t))² over all cells.
 *
 * @param denoiser Model whose weights are used.
 * @param x0 Clean rolls in [−1, 1], `[B, T, 88, 2]` or `[B, T, 176]`.
 * @param t One timestep per roll (1..T).
 * @param noise ε, same shape as `x0`.
 * @param schedule The noise schedule.
 * @returns A scalar tensor.
 */
export function denoiseLoss(
  denoiser: Denoiser,
  x0: tf.Tensor,
  t: ArrayLike<number>,
  noise: tf.Tensor,
  schedule: NoiseSchedule,
): tf.Scalar {
  return tf.tidy(() => {
    const xt = qSample(x0, noise, t, schedule);
    const eps = denoiserForward(denoiser.config, denoiser.params, xt, t);
    return tf.mean(tf.squaredDifference(eps, noise)) as tf.Scalar;
  });
}

/**
 * The optimizer of denoiser training: Adam (Kingma & Ba 2015) with β1 = 0.9,
 * β2 = 0.999, ε = 1e−8, which is the shared AdamW without weight decay. Its
 * bias correction and ε are Adam's (ε added to √v̂); AdamW multiplies by the
 * learning rate after dividing by √v̂ + ε, where the denoiser's own Adam did
 * so before: the same update, rounded differently in the last bits. Likewise
 * `clipByGlobalNorm` computes its scale in float64 where the old step did so
 * in float32, and leaves gradients within the limit as they are.
 */
const ADAM: AdamWOptions = { beta1: 0.9, beta2: 0.999, epsilon: 1e-8, weightDecay: 0 };

/** A denoiser being trained: its weights as variables (in `denoiser.params`) and their optimizer. */
export interface DenoiserTrainer {
  denoiser: Denoiser;
  /** The denoiser's weights by name (the same variables as `denoiser.params`). */
  variables: Map<string, tf.Variable>;
  optimizer: AdamW;
}

/**
 * Starts or resumes training a denoiser: its weights become variables and
 * an Adam optimizer is made for them, with the moments of
 * `denoiser.optimizer` when a checkpoint stored them. The trainer takes the
 * denoiser's tensors over; free it with {@linkcode disposeTrainer}.
 *
 * @param denoiser A new denoiser or one loaded from a checkpoint.
 * @returns The trainer; `trainer.denoiser` has no `optimizer` field.
 * @throws {Error} When the stored moments do not fit the weights (the tensors are freed).
 */
export function createTrainer(denoiser: Denoiser): DenoiserTrainer {
  const variables = new Map<string, tf.Variable>();
  for (const [name, tensor] of Object.entries(denoiser.params)) {
    variables.set(name, tf.variable(tensor, true));
    tensor.dispose();
  }
  const trainer = {
    denoiser: {
      config: denoiser.config,
      params: Object.fromEntries(variables),
      step: denoiser.step,
    },
    variables,
    optimizer: new AdamW(variables, ADAM),
  };
  if (denoiser.optimizer) {
    try {
      trainer.optimizer.setState(denoiser.optimizer);
    } catch (error) {
      disposeTrainer(trainer);
      throw error;
    }
  }
  return trainer;
}

/** Frees a trainer's weights and optimizer moments. */
export function disposeTrainer(trainer: DenoiserTrainer): void {
  trainer.optimizer.dispose();
  disposeDenoiser(trainer.denoiser);
}

/**
 * The trainer's denoiser with its optimizer's moments: what a resumable
 * checkpoint stores. Shares the weight tensors with the trainer.
 *
 * @param trainer The denoiser being trained.
 * @returns A denoiser whose `optimizer` holds copies of the moments.
 */
export async function trainerCheckpoint(trainer: DenoiserTrainer): Promise<Denoiser> {
  return { ...trainer.denoiser, optimizer: await trainer.optimizer.getState() };
}

/**
 * One Adam step on the DDPM loss, with global-norm gradient clipping
 * ({@linkcode optimizeStep}: a loss or gradient that is not finite leaves the
 * weights as they were). Timesteps and noise come from `rng`, so runs are
 * reproducible. Updates the weights in place and increments
 * `trainer.denoiser.step`.
 *
 * @param trainer The denoiser being trained and its optimizer.
 * @param x0 Clean rolls in [−1, 1] `[B, T, 88, 2]` (not disposed).
 * @param rng Seeded generator for timesteps and noise.
 * @param options Learning rate, warm-up and clipping (`maxGradNorm` 0: none).
 * @returns The batch loss before the update.
 */
export async function trainStep(
  trainer: DenoiserTrainer,
  x0: tf.Tensor,
  rng: Rng,
  options: TrainStepOptions,
): Promise<number> {
  const { denoiser, optimizer } = trainer;
  const schedule = cosineSchedule(denoiser.config.diffusionSteps);
  const batch = x0.shape[0];
  const t = new Int32Array(batch);
  for (let b = 0; b < batch; b++) t[b] = 1 + rng.int(schedule.steps);
  const noiseValues = new Float32Array(x0.size);
  for (let i = 0; i < noiseValues.length; i++) noiseValues[i] = rng.normal();
  const warmup = options.warmupSteps ?? 100;
  const lr = options.lr * Math.min(1, (optimizer.step + 1) / Math.max(1, warmup));
  const noise = tf.tensor(noiseValues, x0.shape);
  let loss: number;
  try {
    ({ loss } = await optimizeStep(trainer, optimizer, () => {
      const xt = qSample(x0, noise, t, schedule);
      const eps = denoiserForward(denoiser.config, denoiser.params, xt, t);
      return tf.mean(tf.squaredDifference(eps, noise)) as tf.Scalar;
    }, { lr, clipNorm: options.maxGradNorm ?? 1 }));
  } finally {
    noise.dispose();
  }
  denoiser.step += 1;
  return loss;
}

/**
 * Optimisation of sequence models: the AdamW optimizer, the learning-rate
 * schedule, gradient clipping and one optimizer step.
 *
 * References: AdamW is "Decoupled Weight Decay Regularization" (Loshchilov &
 * Hutter, ICLR 2019), Algorithm 2, with PyTorch's convention of scaling the
 * decay by the learning rate. The schedule (linear warmup, cosine decay to a
 * floor) and the rule "decay matrices, not biases or norms" follow nanoGPT's
 * `train.py` and `model.py` (`configure_optimizers`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { AdamWState, SequenceModel, TensorData } from "./model.ts";
import { nativeAdamW } from "./native.ts";
import { heapTensors } from "./wasm_heap.ts";

const f32 = Math.fround;

/** Whether {@link AdamW} runs its step natively where it can (default true; tests compare). */
let nativeSteps = true;

/**
 * Whether AdamW steps run natively on wasm when the native kernels are loaded (default true).
 * Both ways give the same bits: the native step does tfjs's float32 operations in its order.
 */
export function useNativeAdamW(on: boolean): void {
  nativeSteps = on;
}

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
 * import { AdamW } from "./optim.ts";
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
    const native = nativeSteps && tf.getBackend() === "wasm" ? nativeAdamW() : null;
    for (const [name, variable] of this.#variables) {
      const m = this.#m.get(name)!;
      const v = this.#v.get(name)!;
      const decay = variable.rank >= 2 ? lr * this.weightDecay : 0;
      const grad = grads.get(name);
      if (native !== null && grad !== undefined && variable.dtype === "float32") {
        // The tfjs ops below in one pass, with the float32 scalars they would make.
        const scalars = Float32Array.of(
          this.beta1,
          f32(1 - this.beta1),
          this.beta2,
          f32(1 - this.beta2),
          correction1,
          correction2,
          this.epsilon,
          f32(1 - decay),
          lr,
          decay > 0 ? 1 : 0,
        );
        tf.tidy(() => {
          const [w2, m2, v2] = heapTensors(
            [variable.shape, variable.shape, variable.shape],
            [variable, m, v, grad],
            (outs, ins) =>
              native(scalars, ins[0]!, ins[1]!, ins[2]!, ins[3]!, outs[0], outs[1], outs[2]),
          );
          variable.assign(w2);
          m.assign(m2);
          v.assign(v2);
        });
        continue;
      }
      tf.tidy(() => {
        const g = grad ?? tf.zerosLike(variable);
        const mNext = tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1));
        const vNext = tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        const update = tf.div(
          tf.div(mNext, correction1),
          tf.add(tf.sqrt(tf.div(vNext, correction2)), this.epsilon),
        );
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
 * @param model whose variables are trained (a sequence model, or anything with named variables)
 * @param optimizer an AdamW over `model.variables`
 * @param loss builds the scalar loss (called once, under gradient recording)
 * @param options learning rate and clipping norm (0 = no clipping)
 */
export async function optimizeStep(
  model: Pick<SequenceModel, "variables">,
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

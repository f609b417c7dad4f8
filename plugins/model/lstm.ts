/**
 * `model/lstm`: token embedding, stacked LSTM, dropout, output projection.
 *
 * References: Hochreiter & Schmidhuber, "Long Short-Term Memory" (1997), with
 * the forget gate of Gers et al. (2000); gate order (i, f, g, o) and uniform
 * init as PyTorch's `nn.LSTM`; forget-gate bias 1 as Jozefowicz et al., "An
 * Empirical Exploration of Recurrent Network Architectures" (ICML 2015);
 * dropout on non-recurrent connections as Zaremba et al. (2014). Performance
 * RNN (Oore et al. 2018) is this model with 3 layers of 512 units.
 *
 * Why a hand-written backward pass: built from tfjs ops, backpropagation
 * through time keeps every step's intermediate tensors alive at once, which
 * overflows the wasm heap from about 128 steps (TECH_NOTES.md). Here the whole
 * sequence is one `tf.customGrad` op that keeps only the gate activations and
 * cell states, and its backward pass does full BPTT with 7 small ops per step
 * plus a few large matrix products over all steps (the input projection and
 * both weight gradients). On the wasm and cpu backends the small ops of a step
 * are one fused kernel each way (`_tf/lstm_kernels.ts`): a step is then one
 * product and one kernel call forward and the same backward, which made the
 * default graph's training step about twice as fast on wasm.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { definePlugin, p } from "../../mod.ts";
import { createRng } from "../../mod.ts";
import {
  dropout,
  type ForwardOptions,
  linear,
  type ModelConfig,
  type ModelSpec,
  type ModelState,
  normalVariable,
  type SequenceModel,
  type StepResult,
  tanhViaSigmoid,
  uniformVariable,
  unstackTime,
} from "../_tf/model.ts";
import {
  hasLstmKernels,
  hasLstmSequenceKernels,
  lstmCellGradStep,
  lstmCellStep,
  lstmSequenceGradSteps,
  lstmSequenceSteps,
} from "../_tf/lstm_kernels.ts";

/** Hyperparameters of {@link lstmModel}. */
export interface LstmConfig extends ModelConfig {
  type: "lstm";
  embedDim: number;
  hiddenDim: number;
  layers: number;
  dropout: number;
}

/**
 * Gate activations from pre-activations: sigmoid for i, f, o and tanh for g,
 * in 4 ops on the whole `[batch, 4H]` tensor, using tanh(z) = 2σ(2z) − 1.
 *
 * @param scale `[4H]`: 1 on i, f, o columns, 2 on g columns
 */
function gateActivations(z: tf.Tensor, scale: tf.Tensor1D, shift: tf.Tensor1D): tf.Tensor2D {
  return tf.sub(tf.mul(tf.sigmoid(tf.mul(z, scale)), scale), shift); // [B, 4H]
}

/** Block scales for {@link gateActivations}: `scale` is 1,1,2,1 per block, `shift` = scale − 1. */
function gateScales(hidden: number): { scale: tf.Tensor1D; shift: tf.Tensor1D } {
  const s = new Float32Array(4 * hidden).fill(1);
  s.fill(2, 2 * hidden, 3 * hidden);
  const shift = s.map((v) => v - 1);
  return { scale: tf.tensor1d(s), shift: tf.tensor1d(shift) };
}

/**
 * One LSTM layer over a whole sequence, from zero state, with a memory-light
 * hand-written gradient (full BPTT).
 *
 * Inputs: `x` `[T, B, In]` (time-major), `wx` `[In, 4H]`, `wh` `[H, 4H]`,
 * `b` `[4H]`. Output: hidden states `[T, B, H]`.
 */
export function lstmSequence(
  x: tf.Tensor3D,
  wx: tf.Tensor2D,
  wh: tf.Tensor2D,
  b: tf.Tensor1D,
  options: { fused?: boolean } = {},
): tf.Tensor3D {
  // The fused kernels where the backend has them, unless `fused: false` (tests compare both).
  const fused = (options.fused ?? true) && hasLstmKernels();
  return (fused ? lstmSequenceFusedOp : lstmSequenceOp)(x, wx, wh, b) as tf.Tensor3D;
}

/** The input projection x·Wx + b of all steps in one product: `[T, B, In]` → `[T, B, 4H]`. */
function inputProjection(x: tf.Tensor3D, wx: tf.Tensor2D, b: tf.Tensor1D): tf.Tensor3D {
  const [time, batch, inDim] = x.shape;
  return tf.tidy(() =>
    tf.reshape(
      tf.fused.matMul({ a: tf.reshape(x, [time * batch, inDim]), b: wx, bias: b }),
      [time, batch, wx.shape[1]],
    )
  );
}

/**
 * {@link lstmSequence} with the fused cell kernels of `lstm_kernels.ts`: per step,
 * one product and one kernel forward, one kernel and one product backward; or, on
 * wasm with OpenBLAS, one kernel call for all steps each way (the same bits).
 */
const lstmSequenceFusedOp = tf.customGrad(
  ((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, wx, wh, b] = args as [tf.Tensor3D, tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
    const save = args[4] as tf.GradSaveFunc;
    const xp = inputProjection(x, wx, b); // [T, B, 4H]
    // One kernel call for all steps where the backend has it, else one per step.
    const wholeSequence = hasLstmSequenceKernels();
    const steps = wholeSequence ? lstmSequenceSteps(xp, wh) : stepByStep(xp, wh);
    xp.dispose();
    const out = steps.h; // [T, B, H]
    save([x, wx, wh, out, steps.c, steps.a, steps.tc]);

    const gradFunc = (dy: tf.Tensor3D, saved: tf.Tensor[]): tf.Tensor[] => {
      const [sx, swx, swh, sOut, sC, sA, sTc] = saved as [
        tf.Tensor3D,
        tf.Tensor2D,
        tf.Tensor2D,
        tf.Tensor3D,
        tf.Tensor3D,
        tf.Tensor3D,
        tf.Tensor3D,
      ];
      const whT = tf.transpose(swh); // [4H, H]
      const activations = { dy, a: sA, c: sC, tc: sTc };
      const dZ = wholeSequence // [T, B, 4H]
        ? lstmSequenceGradSteps(activations, whT)
        : gradStepByStep(activations, whT);
      whT.dispose();
      return weightGradients(dZ, sx, swx, sOut);
    };
    return { value: out, gradFunc };
  }) as Parameters<typeof tf.customGrad<tf.Tensor3D>>[0],
);

/** The fused forward steps one kernel call per step: `a`, `c`, `h` and `tc` of all steps. */
function stepByStep(xp: tf.Tensor3D, wh: tf.Tensor2D) {
  const hs: tf.Tensor2D[] = [], cs: tf.Tensor2D[] = [], as: tf.Tensor2D[] = [];
  const tcs: tf.Tensor2D[] = [];
  for (let t = 0; t < xp.shape[0]; t++) {
    // h and c start at zero: the first step needs no recurrent product.
    const zh = t === 0 ? null : tf.matMul(hs[t - 1], wh) as tf.Tensor2D; // [B, 4H]
    const step = lstmCellStep(xp, zh, t === 0 ? null : cs[t - 1], t);
    zh?.dispose();
    as.push(step.a);
    cs.push(step.c);
    hs.push(step.h);
    tcs.push(step.tc);
  }
  const stacked = tf.tidy(() => ({
    a: tf.stack(as) as tf.Tensor3D,
    c: tf.stack(cs) as tf.Tensor3D,
    h: tf.stack(hs) as tf.Tensor3D,
    tc: tf.stack(tcs) as tf.Tensor3D,
  }));
  tf.dispose([...hs, ...cs, ...as, ...tcs]);
  return stacked;
}

/** The fused backward steps one kernel call per step: dz `[T, B, 4H]` of all steps. */
function gradStepByStep(
  saved: { dy: tf.Tensor3D; a: tf.Tensor3D; c: tf.Tensor3D; tc: tf.Tensor3D },
  whT: tf.Tensor2D,
): tf.Tensor3D {
  const time = saved.dy.shape[0];
  const dzs: tf.Tensor2D[] = new Array(time);
  let dcNext: tf.Tensor2D | null = null;
  for (let t = time - 1; t >= 0; t--) {
    const dhRec = t === time - 1 ? null : tf.matMul(dzs[t + 1], whT) as tf.Tensor2D; // [B, H]
    const grad = lstmCellGradStep(saved, dhRec, dcNext, t);
    dhRec?.dispose();
    (dcNext as tf.Tensor2D | null)?.dispose();
    dzs[t] = grad.dz;
    dcNext = grad.dc;
  }
  const dZ = tf.stack(dzs) as tf.Tensor3D;
  tf.dispose([dcNext!, ...dzs]);
  return dZ;
}

/**
 * The products over all steps that finish an LSTM layer's backward pass: from
 * dz of every step `[T, B, 4H]`, the gradients of the input, both kernels and
 * the bias (disposes `dz`).
 */
function weightGradients(
  dz: tf.Tensor3D,
  x: tf.Tensor3D,
  wx: tf.Tensor2D,
  out: tf.Tensor3D,
): tf.Tensor[] {
  const [time, batch, inDim] = x.shape;
  const fourH = dz.shape[2];
  const H = fourH / 4;
  return tf.tidy(() => {
    const dZ = tf.reshape(dz, [time * batch, fourH]); // [T*B, 4H]
    dz.dispose();
    const x2 = tf.reshape(x, [time * batch, inDim]); // [T*B, In]
    const hPrev = tf.reshape(
      tf.concat([tf.zeros([1, batch, H]), tf.slice(out, [0], [time - 1])], 0),
      [time * batch, H],
    ); // [T*B, H]
    // Transposed operands as flags: OpenBLAS reads them in place, and on plain wasm
    // wasm_matmul.ts makes them explicit (the same values either way, bit for bit).
    const dWx = tf.matMul(x2, dZ, true, false); // [In, 4H]
    const dWh = tf.matMul(hPrev, dZ, true, false); // [H, 4H]
    // A product with ones: wasm sums over a leading axis by transposing first.
    const dB = tf.reshape(tf.matMul(tf.ones([1, time * batch]), dZ), [fourH]); // [4H]
    const dX = tf.reshape(tf.matMul(dZ, wx, false, true), [time, batch, inDim]);
    return [dX, dWx, dWh, dB];
  });
}

/** {@link lstmSequence} from composite tfjs ops, for backends without the fused kernels. */
const lstmSequenceOp = tf.customGrad(
  ((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, wx, wh, b] = args as [tf.Tensor3D, tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
    const save = args[4] as tf.GradSaveFunc;
    const [time, batch] = x.shape;
    const hidden = wh.shape[0];
    const { scale, shift } = gateScales(hidden);
    const xp = inputProjection(x, wx, b); // [T, B, 4H]
    const xps = unstackTime(xp) as tf.Tensor2D[]; // T x [B, 4H]
    xp.dispose();
    let h = tf.zeros([batch, hidden]) as tf.Tensor2D;
    let c = tf.zeros([batch, hidden]) as tf.Tensor2D;
    const hs: tf.Tensor2D[] = [], cs: tf.Tensor2D[] = [], as: tf.Tensor2D[] = [];
    for (let t = 0; t < time; t++) {
      const next = tf.tidy(() => {
        // Not a fused bias: stock wasm _FusedMatMul takes only a rank-1 bias.
        const z = tf.add(tf.matMul(h, wh), xps[t]) as tf.Tensor2D; // [B, 4H]
        const a = gateActivations(z, scale, shift); // [B, 4H]
        const [i, f, g, o] = tf.split(a, 4, 1);
        const cNext = tf.add(tf.mul(f, c), tf.mul(i, g)) as tf.Tensor2D; // [B, H]
        const hNext = tf.mul(o, tanhViaSigmoid(cNext)) as tf.Tensor2D; // [B, H]
        return { a, c: cNext, h: hNext };
      });
      xps[t].dispose();
      as.push(next.a);
      cs.push(next.c);
      hs.push(next.h);
      h = next.h;
      c = next.c;
    }
    const out = tf.stack(hs) as tf.Tensor3D; // [T, B, H]
    save([x, wx, wh, out, tf.stack(cs), tf.stack(as)]);
    tf.dispose([...hs, ...cs, ...as]);

    const gradFunc = (dy: tf.Tensor3D, saved: tf.Tensor[]): tf.Tensor[] => {
      const [sx, swx, swh, sOut, sC, sA] = saved as [
        tf.Tensor3D,
        tf.Tensor2D,
        tf.Tensor2D,
        tf.Tensor3D,
        tf.Tensor3D,
        tf.Tensor3D,
      ];
      const H = hidden;
      // Everything that does not depend on the backward recursion, for all
      // steps at once: big elementwise ops instead of many small ones.
      const { P, R, F } = tf.tidy(() => {
        const [I, Fg, G, O] = tf.split(sA, 4, 2); // each [T, B, H]
        const cPrev = tf.concat([tf.zeros([1, batch, H]), tf.slice(sC, [0], [time - 1])], 0);
        const tc = tanhViaSigmoid(sC); // [T, B, H]
        // dc_t = dcNext + dh_t * o_t * (1 - tanh(c_t)^2)
        const P = tf.mul(O, tf.sub(1, tf.square(tc))); // [T, B, H]
        // d(pre-activation) = d(activation) * derivative: a(1-a) for sigmoid, 1-a^2 for tanh,
        // both equal to (1 - a)(a + m) with m = 1 on g columns.
        const gColumns = gateScales(H).shift; // [4H]: 1 on g columns, else 0
        const deriv = tf.mul(tf.sub(1, sA), tf.add(sA, gColumns)); // [T, B, 4H]
        // d(activation) = [dc*g, dc*cPrev, dc*i, dh*tanh(c)]
        const R = tf.mul(tf.concat([G, cPrev, I, tc], 2), deriv); // [T, B, 4H]
        return { P, R, F: Fg };
      });
      const dys = unstackTime(dy) as tf.Tensor2D[];
      const ps = unstackTime(P) as tf.Tensor2D[];
      const rs = unstackTime(R) as tf.Tensor2D[];
      const fs = unstackTime(F) as tf.Tensor2D[];
      tf.dispose([P, R, F]);
      const whT = tf.transpose(swh); // [4H, H]
      const dzs: tf.Tensor2D[] = new Array(time);
      let dhNext: tf.Tensor2D | null = null;
      let dcNext: tf.Tensor2D | null = null;
      for (let t = time - 1; t >= 0; t--) {
        const stepOut: { dz: tf.Tensor2D; dh: tf.Tensor2D; dc: tf.Tensor2D } = tf.tidy(() => {
          const dh = dhNext === null ? dys[t] : tf.add(dys[t], dhNext); // [B, H]
          const dcLocal = tf.mul(dh, ps[t]);
          const dc = dcNext === null ? dcLocal : tf.add(dcNext, dcLocal); // [B, H]
          const dz = tf.mul(tf.concat([dc, dc, dc, dh], 1), rs[t]) as tf.Tensor2D; // [B, 4H]
          return {
            dz,
            dh: tf.matMul(dz, whT) as tf.Tensor2D, // [B, H]
            dc: tf.mul(dc, fs[t]) as tf.Tensor2D, // [B, H]
          };
        });
        // Free this step's slices now: with long sequences they add up.
        tf.dispose([dys[t], ps[t], rs[t], fs[t]]);
        if (dhNext !== null) tf.dispose([dhNext, dcNext!]);
        dzs[t] = stepOut.dz;
        dhNext = stepOut.dh;
        dcNext = stepOut.dc;
      }
      tf.dispose([dhNext!, dcNext!, whT]);
      const dZ = tf.stack(dzs) as tf.Tensor3D; // [T, B, 4H]
      tf.dispose(dzs);
      return weightGradients(dZ, sx, swx, sOut);
    };
    return { value: out, gradFunc };
  }) as Parameters<typeof tf.customGrad<tf.Tensor3D>>[0],
);

/**
 * Builds an LSTM language model.
 *
 * @param config hyperparameters
 * @param vocabSize number of token ids
 * @param seed initialisation seed
 */
export function lstmModel(config: LstmConfig, vocabSize: number, seed: number): SequenceModel {
  const { embedDim: E, hiddenDim: H, layers: L } = config;
  const rng = createRng(seed);
  const variables = new Map<string, tf.Variable>();
  const limit = 1 / Math.sqrt(H);
  variables.set("embedding", normalVariable([vocabSize, E], 0.1, rng));
  for (let l = 0; l < L; l++) {
    const inDim = l === 0 ? E : H;
    variables.set(`lstm/${l}/inputKernel`, uniformVariable([inDim, 4 * H], limit, rng));
    variables.set(`lstm/${l}/recurrentKernel`, uniformVariable([H, 4 * H], limit, rng));
    // Forget-gate bias 1: remember by default early in training.
    const bias = new Float32Array(4 * H);
    bias.fill(1, H, 2 * H);
    variables.set(`lstm/${l}/bias`, tf.tidy(() => tf.variable(tf.tensor1d(bias), true)));
  }
  variables.set("output/kernel", uniformVariable([H, vocabSize], limit, rng));
  variables.set("output/bias", tf.tidy(() => tf.variable(tf.zeros([vocabSize]), true)));
  const v = (name: string) => variables.get(name)!;
  const { scale, shift } = gateScales(H);

  return {
    config,
    vocabSize,
    variables,
    forward(tokens: tf.Tensor2D, options: ForwardOptions): tf.Tensor3D {
      return tf.tidy(() => {
        const [batch, time] = tokens.shape;
        let x = tf.gather(v("embedding"), tf.transpose(tokens)) as tf.Tensor3D; // [T, B, E]
        x = dropout(x, config.dropout, options);
        for (let l = 0; l < L; l++) {
          x = lstmSequence(
            x,
            v(`lstm/${l}/inputKernel`) as tf.Tensor2D,
            v(`lstm/${l}/recurrentKernel`) as tf.Tensor2D,
            v(`lstm/${l}/bias`) as tf.Tensor1D,
          ); // [T, B, H]
          x = dropout(x, config.dropout, options);
        }
        const logits = linear(
          tf.reshape(x, [time * batch, H]),
          v("output/kernel"),
          v("output/bias"),
        ); // [T*B, V]
        return tf.transpose(tf.reshape(logits, [time, batch, vocabSize]), [1, 0, 2]) as tf.Tensor3D;
      });
    },
    initState(batch: number): ModelState {
      return {
        h: Array.from({ length: L }, () => tf.zeros([batch, H])),
        c: Array.from({ length: L }, () => tf.zeros([batch, H])),
      };
    },
    step(tokens: tf.Tensor1D, state: ModelState): StepResult {
      return tf.tidy(() => {
        const hs = state.h as tf.Tensor2D[], cs = state.c as tf.Tensor2D[];
        const fused = hasLstmKernels();
        let x = tf.gather(v("embedding"), tokens) as tf.Tensor2D; // [B, E]
        const h: tf.Tensor2D[] = [], c: tf.Tensor2D[] = [];
        for (let l = 0; l < L; l++) {
          const xp = tf.fused.matMul({
            a: x,
            b: v(`lstm/${l}/inputKernel`),
            bias: v(`lstm/${l}/bias`),
          });
          const zh = tf.matMul(hs[l], v(`lstm/${l}/recurrentKernel`)) as tf.Tensor2D; // [B, 4H]
          if (fused) {
            const cell = lstmCellStep(tf.expandDims(xp, 0), zh, cs[l], 0);
            c.push(cell.c);
            h.push(cell.h);
          } else {
            const gates = gateActivations(tf.add(zh, xp), scale, shift);
            const [i, f, g, o] = tf.split(gates, 4, 1); // each [B, H]
            c.push(tf.add(tf.mul(f, cs[l]), tf.mul(i, g)) as tf.Tensor2D);
            h.push(tf.mul(o, tanhViaSigmoid(c[l])) as tf.Tensor2D);
          }
          x = h[l];
        }
        const logits = linear(x, v("output/kernel"), v("output/bias")); // [B, V]
        return { logits, state: { h, c } };
      });
    },
    dispose() {
      for (const t of variables.values()) t.dispose();
      variables.clear();
      scale.dispose();
      shift.dispose();
    },
  };
}

export default definePlugin({
  name: "model/lstm",
  kind: "model",
  version: "1.0.0",
  description: "Stacked LSTM language model over event tokens (Performance RNN style)",
  params: {
    embedDim: p.integer({ default: 128, min: 1, description: "Token embedding size" }),
    hiddenDim: p.integer({ default: 256, min: 1, description: "LSTM units per layer" }),
    layers: p.integer({ default: 2, min: 1, description: "Number of stacked LSTM layers" }),
    dropout: p.number({
      default: 0.1,
      min: 0,
      max: 0.95,
      description: "Dropout rate on the embedding, between layers and before the output",
    }),
  },
  create(params, self): ModelSpec<LstmConfig> {
    const config: LstmConfig = {
      type: "lstm",
      embedDim: params.embedDim,
      hiddenDim: params.hiddenDim,
      layers: params.layers,
      dropout: params.dropout,
    };
    return {
      type: "lstm",
      config,
      component: self,
      build: (vocabSize, seed) => lstmModel(config, vocabSize, seed),
    };
  },
});

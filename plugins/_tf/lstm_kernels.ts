/**
 * Fused LSTM cell kernels for the `wasm` and `cpu` backends: one kernel call
 * per time step forward and one backward, in place of about 14 and 7 small
 * elementwise ops. On the default graph's LSTM (batch 16, 192 units) those small
 * ops, each a trip through the tfjs engine, cost more than the matrix products.
 *
 * - `HarmonyLstmCell`: inputs `xp` `[T, B, 4H]` (input projection plus bias of
 *   every step), optional `zh` `[B, 4H]` (h·Wh; absent when h is zero) and
 *   optional `c` `[B, H]` (absent when zero); attr `t` (the step). Outputs the
 *   gate activations `a` `[B, 4H]` (i, f, g, o: sigmoid, sigmoid, tanh, sigmoid),
 *   the cell state, the hidden state and tanh of the cell state (each `[B, H]`).
 * - `HarmonyLstmCellGrad`: inputs `dy` `[T, B, H]` (gradient of the outputs),
 *   optional `dhRec` `[B, H]` (dz of step t + 1 times Whᵀ), `a` `[T, B, 4H]`,
 *   `c` and `tc` `[T, B, H]` (every step's activations, cell states and their
 *   tanh), optional `dcNext` `[B, H]`; attr `t`. Outputs dz `[B, 4H]` (gradient
 *   of the gate pre-activations) and the cell-state gradient for step t − 1.
 *
 * Each kernel does the composite ops' arithmetic in the same order, rounding to
 * float32 where they round, and takes its sigmoids from the backend's own
 * `Sigmoid` kernel: the results equal the composite ops' bit for bit
 * (`lstm_test.ts` checks it), so a run gives the same numbers with or without
 * them. When the native kernels are loaded (`native.ts`), their loops run there
 * (`hrl_lstm_*`, the same operations without fused multiply-adds: the same bits
 * again, and `lstm_test.ts` checks that too). Other backends have no such
 * kernels; {@link hasLstmKernels} tells the model to use the composite ops there.
 *
 * On wasm with OpenBLAS's matMul, `HarmonyLstmSequence` and `HarmonyLstmSequenceGrad`
 * run all the steps of a layer in one call each way: each step's recurrent product
 * (the weights packed once for the native small product: `repeatedProduct` in
 * `openblas.ts`) and then the same loops and sigmoids as the per-step kernels,
 * written straight into `[T, B, ...]` outputs. The same bits as one product and
 * one kernel per step ({@link hasLstmSequenceKernels}; `lstm_test.ts`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import type { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { type NativeLstm, nativeLstm } from "./native.ts";
import { isOpenBlasMatMulInstalled, repeatedProduct } from "./openblas.ts";

/** Kernel name of the fused forward step. */
const LSTM_CELL = "HarmonyLstmCell";
/** Kernel name of the fused backward step. */
const LSTM_CELL_GRAD = "HarmonyLstmCellGrad";
/** Kernel name of a whole sequence's forward steps (wasm with OpenBLAS). */
const LSTM_SEQUENCE = "HarmonyLstmSequence";
/** Kernel name of a whole sequence's backward steps (wasm with OpenBLAS). */
const LSTM_SEQUENCE_GRAD = "HarmonyLstmSequenceGrad";

const BACKENDS = ["wasm", "cpu"] as const;
type FusedBackend = (typeof BACKENDS)[number];

const f32 = Math.fround;

let nativeLoops = true;

/**
 * Whether the fused steps run their loops natively when the native kernels are loaded
 * (default true); the TypeScript loops otherwise. Both give the same bits: tests compare them.
 */
export function useNativeLstmLoops(on: boolean): void {
  nativeLoops = on;
}

/** Batch size and hidden units of a step. */
interface CellShape {
  batch: number;
  hidden: number;
}

/**
 * Reads, allocates and frees tensors of one backend as Float32Arrays, and runs
 * its own `Sigmoid` kernel (so that the values are that backend's sigmoid, bit
 * for bit).
 */
interface Memory {
  /** Allocates a float32 tensor (take views only after the last allocation). */
  output(shape: number[]): tf.TensorInfo;
  /** The values of a tensor, without a copy. */
  view(info: tf.TensorInfo): Float32Array;
  /** The backend's sigmoid of `info`, as a new tensor. */
  sigmoid(info: tf.TensorInfo): tf.TensorInfo;
  /** Frees a tensor made by `output` or `sigmoid`. */
  free(info: tf.TensorInfo): void;
}

/** One Memory per backend instance: kernels run thousands of times a training step. */
const memories = new WeakMap<object, Memory>();

function memoryOf(backendName: FusedBackend, backend: object): Memory {
  let memory = memories.get(backend);
  if (memory === undefined) {
    memory = makeMemory(backendName, backend);
    memories.set(backend, memory);
  }
  return memory;
}

function makeMemory(backendName: FusedBackend, backend: object): Memory {
  const sigmoidKernel = tf.getKernel("Sigmoid", backendName)!.kernelFunc;
  const sigmoid = (info: tf.TensorInfo) =>
    sigmoidKernel({
      inputs: { x: info },
      backend: backend as tf.KernelBackend,
      attrs: {},
    }) as tf.TensorInfo;
  if (backendName === "wasm") {
    const wasm = backend as BackendWasm;
    return {
      output: (shape) => wasm.makeOutput(shape, "float32"),
      // A view is taken after every allocation: one may grow the heap and detach earlier views.
      view: (info) => wasm.typedArrayFromHeap(info) as Float32Array,
      sigmoid,
      free: (info) => wasm.disposeData(info.dataId, true),
    };
  }
  const cpu = backend as MathBackendCPU;
  return {
    output: (shape) =>
      cpu.makeTensorInfo(shape, "float32", new Float32Array(tf.util.sizeFromShape(shape))),
    view: (info) => cpu.data.get(info.dataId)!.values as Float32Array,
    sigmoid,
    free: (info) => cpu.disposeData(info.dataId, true),
  };
}

/**
 * The forward and backward steps' loops in TypeScript, the twins of the native ones
 * (`hrl_lstm_*`): every operation is rounded to float32 where the composite ops round it
 * (`Math.fround` of a double result of float32 operands is the float32 result).
 */
const TYPESCRIPT_LOOPS: NativeLstm = {
  gatesIn(batch, H, xp, zh, zs) {
    const fourH = 4 * H;
    for (let b = 0; b < batch; b++) {
      for (let col = 0; col < fourH; col++) {
        const k = b * fourH + col;
        const z = zh === null ? xp[k] : f32(zh[k] + xp[k]);
        zs[k] = col >= 2 * H && col < 3 * H ? 2 * z : z;
      }
    }
  },
  combine(batch, H, s, cPrev, as, cs, c2) {
    const fourH = 4 * H;
    for (let b = 0; b < batch; b++) {
      const row = b * fourH;
      for (let j = 0; j < H; j++) {
        const k = row + j, u = b * H + j;
        const i = s[k], f = s[k + H], g = f32(2 * s[k + 2 * H] - 1), o = s[k + 3 * H];
        as[k] = i;
        as[k + H] = f;
        as[k + 2 * H] = g;
        as[k + 3 * H] = o;
        const cNext = cPrev === null ? f32(i * g) : f32(f32(f * cPrev[u]) + f32(i * g));
        cs[u] = cNext;
        c2[u] = 2 * cNext;
      }
    }
  },
  output(batch, H, s, as, hs, tcs) {
    const fourH = 4 * H;
    for (let b = 0; b < batch; b++) {
      for (let j = 0; j < H; j++) {
        const u = b * H + j;
        const tc = f32(2 * s[u] - 1);
        tcs[u] = tc;
        hs[u] = f32(as[b * fourH + 3 * H + j] * tc);
      }
    }
  },
  backward(batch, H, t, { dy, a, c, tc: tcs }, dhRec, dcNext, dz, dcs) {
    const fourH = 4 * H;
    const state = t * batch * H, previous = (t - 1) * batch * H, gates = t * batch * fourH;
    /** R of one gate: x·(1 − a)(a + m). */
    const r = (x: number, act: number, m: number) => f32(x * f32(f32(1 - act) * f32(act + m)));
    for (let b = 0; b < batch; b++) {
      for (let j = 0; j < H; j++) {
        const u = b * H + j, k = gates + b * fourH + j;
        const i = a[k], f = a[k + H], g = a[k + 2 * H], o = a[k + 3 * H];
        const tc = tcs[state + u];
        const cPrev = t === 0 ? 0 : c[previous + u];
        const p = f32(o * f32(1 - f32(tc * tc)));
        const dh = dhRec === null ? dy[state + u] : f32(dy[state + u] + dhRec[u]);
        const dcLocal = f32(dh * p);
        const dc = dcNext === null ? dcLocal : f32(dcNext[u] + dcLocal);
        const row = b * fourH + j;
        dz[row] = f32(dc * r(g, i, 0));
        dz[row + H] = f32(dc * r(cPrev, f, 0));
        dz[row + 2 * H] = f32(dc * r(i, g, 1));
        dz[row + 3 * H] = f32(dh * r(tc, o, 0));
        dcs[u] = f32(dc * f);
      }
    }
  },
};

/** The loops to run: the native ones when loaded and not turned off, else TypeScript's. */
function loops(): NativeLstm {
  return (nativeLoops ? nativeLstm() : null) ?? TYPESCRIPT_LOOPS;
}

/**
 * The forward step, as the composite ops compute it: z = zh + xp[t]; gate
 * activations σ(z) for i, f, o and 2σ(2z) − 1 for g; c' = f·c + i·g;
 * tanh(c') = 2σ(2c') − 1; h' = o·tanh(c'). The loops round where the composite
 * ops round, and the sigmoid is the backend's own, so the outputs equal the
 * composite ops' bit for bit.
 */
function forwardStep(
  memory: Memory,
  { batch, hidden }: CellShape,
  t: number,
  { xp, zh, c }: Record<string, tf.TensorInfo | undefined>,
): tf.TensorInfo[] {
  const H = hidden, fourH = 4 * hidden;
  const run = loops();
  // z with the g columns doubled, then one sigmoid over all four gates.
  const scaled = memory.output([batch, fourH]);
  const xpOffset = t * batch * fourH;
  run.gatesIn(
    batch,
    H,
    memory.view(xp!).subarray(xpOffset, xpOffset + batch * fourH),
    zh === undefined ? null : memory.view(zh),
    memory.view(scaled),
  );
  const sig = memory.sigmoid(scaled);
  memory.free(scaled);
  const a = memory.output([batch, fourH]);
  const cOut = memory.output([batch, H]);
  const doubled = memory.output([batch, H]);
  // Views only after the last allocation.
  const cPrev = c === undefined ? null : memory.view(c);
  const [sigs, acts, cs, c2] = [sig, a, cOut, doubled].map((info) => memory.view(info));
  run.combine(batch, H, sigs, cPrev, acts, cs, c2);
  memory.free(sig);
  const sigC = memory.sigmoid(doubled);
  memory.free(doubled);
  const hOut = memory.output([batch, H]);
  const tcOut = memory.output([batch, H]);
  // Views again: the allocations since may have grown the heap and detached the earlier ones.
  const [sigCs, actsNow, hs, tcs] = [sigC, a, hOut, tcOut].map((info) => memory.view(info));
  run.output(batch, H, sigCs, actsNow, hs, tcs);
  memory.free(sigC);
  return [a, cOut, hOut, tcOut];
}

/**
 * The backward step, as the composite backward pass computes it (rounded where
 * it rounds): with P = o·(1 − tanh²c) and R = [g, c₋₁, i, tanh c]·(1 − a)(a + m)
 * (m = 1 on g columns), dh = dy + dhRec, dc = dcNext + dh·P,
 * dz = [dc, dc, dc, dh]·R, and dc₋₁ = dc·f.
 */
function backwardStep(
  memory: Memory,
  { batch, hidden }: CellShape,
  t: number,
  inputs: Record<string, tf.TensorInfo | undefined>,
): tf.TensorInfo[] {
  const dzOut = memory.output([batch, 4 * hidden]);
  const dcOut = memory.output([batch, hidden]);
  const view = (info: tf.TensorInfo | undefined) => info === undefined ? null : memory.view(info);
  loops().backward(
    batch,
    hidden,
    t,
    { dy: view(inputs.dy)!, a: view(inputs.a)!, c: view(inputs.c)!, tc: view(inputs.tc)! },
    view(inputs.dhRec),
    view(inputs.dcNext),
    memory.view(dzOut),
    memory.view(dcOut),
  );
  return [dzOut, dcOut];
}

/**
 * Every forward step of a sequence in one kernel call: for t = 0 .. T−1 the recurrent product
 * h[t−1]·Wh (by `repeatedProduct`, with `tf.matMul`'s bits there: Wh is packed once) and then
 * {@link forwardStep}'s loops and sigmoids, written straight into the outputs `a` `[T, B, 4H]`,
 * `c`, `h` and `tc` `[T, B, H]`. The same operations as T products and T forward steps: the
 * same bits, without a trip through the tfjs engine per step or stacking the steps after.
 */
function sequenceForward(memory: Memory, xp: tf.TensorInfo, wh: tf.TensorInfo): tf.TensorInfo[] {
  const [time, batch, fourH] = xp.shape;
  const H = fourH / 4;
  const outputs = [memory.output([time, batch, fourH])];
  for (let i = 0; i < 3; i++) outputs.push(memory.output([time, batch, H]));
  const zh = memory.output([batch, fourH]);
  const scaled = memory.output([batch, fourH]);
  const doubled = memory.output([batch, H]);
  const run = loops();
  const recurrent = repeatedProduct(batch, fourH, H, () => memory.view(wh));
  const gateSize = batch * fourH, stateSize = batch * H;
  const gateRows = (view: Float32Array, t: number) =>
    view.subarray(t * gateSize, (t + 1) * gateSize);
  const stateRows = (view: Float32Array, t: number) =>
    view.subarray(t * stateSize, (t + 1) * stateSize);
  for (let t = 0; t < time; t++) {
    // Views are taken anew after each allocation (the sigmoids allocate): the heap may grow.
    const [zhs, zs] = [zh, scaled].map(memory.view);
    if (t > 0) recurrent(stateRows(memory.view(outputs[2]), t - 1), zhs);
    run.gatesIn(batch, H, gateRows(memory.view(xp), t), t === 0 ? null : zhs, zs);
    const sig = memory.sigmoid(scaled);
    const [as, cs] = outputs.map(memory.view);
    const cPrev = t === 0 ? null : stateRows(cs, t - 1);
    const c2 = memory.view(doubled);
    run.combine(batch, H, memory.view(sig), cPrev, gateRows(as, t), stateRows(cs, t), c2);
    memory.free(sig);
    const sigC = memory.sigmoid(doubled);
    const [asNow, , hs, tcs] = outputs.map(memory.view);
    run.output(
      batch,
      H,
      memory.view(sigC),
      gateRows(asNow, t),
      stateRows(hs, t),
      stateRows(tcs, t),
    );
    memory.free(sigC);
  }
  for (const info of [zh, scaled, doubled]) memory.free(info);
  return outputs;
}

/**
 * Every backward step of a sequence in one kernel call, t = T−1 .. 0: dhRec = dz[t+1]·Whᵀ
 * (by `repeatedProduct`) and {@link backwardStep}'s loops, dz written straight into the
 * output `[T, B, 4H]`. The same bits as T products and T backward steps.
 */
function sequenceBackward(
  memory: Memory,
  { dy, a, c, tc, whT }: Record<string, tf.TensorInfo | undefined>,
): tf.TensorInfo {
  const [time, batch, H] = dy!.shape;
  const fourH = 4 * H;
  const dz = memory.output([time, batch, fourH]);
  const dhRec = memory.output([batch, H]);
  const dcs = [memory.output([batch, H]), memory.output([batch, H])];
  // No allocations below: these views stay valid.
  const [dys, as, cs, tcs, weights, dzs, dh] = [dy!, a!, c!, tc!, whT!, dz, dhRec].map(
    memory.view,
  );
  const dcViews = dcs.map(memory.view);
  const run = loops();
  const recurrent = repeatedProduct(batch, H, fourH, () => weights);
  const gateSize = batch * fourH;
  for (let t = time - 1; t >= 0; t--) {
    const last = t === time - 1;
    if (!last) recurrent(dzs.subarray((t + 1) * gateSize, (t + 2) * gateSize), dh);
    run.backward(
      batch,
      H,
      t,
      { dy: dys, a: as, c: cs, tc: tcs },
      last ? null : dh,
      last ? null : dcViews[(t + 1) % 2],
      dzs.subarray(t * gateSize, (t + 1) * gateSize),
      dcViews[t % 2],
    );
  }
  for (const info of [dhRec, ...dcs]) memory.free(info);
  return dz;
}

interface KernelArgs {
  inputs: Record<string, tf.TensorInfo | undefined>;
  backend: object;
  attrs?: tf.NamedAttrMap;
}

/**
 * A kernel function for `backendName` that checks the inputs are float32 and
 * runs `step` at attr `t` with the batch and hidden size `shapeOf` reads from
 * them.
 */
function fusedKernel(
  kernelName: string,
  backendName: FusedBackend,
  shapeOf: (inputs: Record<string, tf.TensorInfo | undefined>) => CellShape,
  step: typeof forwardStep,
): tf.KernelFunc {
  const kernel = ({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] => {
    for (const [name, info] of Object.entries(inputs)) {
      if (info !== undefined && info.dtype !== "float32") {
        throw new Error(`${kernelName}: input "${name}" is ${info.dtype}, expected float32`);
      }
    }
    return step(memoryOf(backendName, backend), shapeOf(inputs), attrs!.t as number, inputs);
  };
  return kernel as unknown as tf.KernelFunc;
}

// Registered for both backends when this module loads (as tfjs's backends register theirs); a
// backend started later finds them.
for (const backendName of BACKENDS) {
  tf.registerKernel({
    kernelName: LSTM_CELL,
    backendName,
    kernelFunc: fusedKernel(LSTM_CELL, backendName, (inputs) => {
      const [, batch, fourH] = inputs.xp!.shape; // xp: [T, B, 4H]
      return { batch, hidden: fourH / 4 };
    }, forwardStep),
  });
  tf.registerKernel({
    kernelName: LSTM_CELL_GRAD,
    backendName,
    kernelFunc: fusedKernel(LSTM_CELL_GRAD, backendName, (inputs) => {
      const [, batch, hidden] = inputs.dy!.shape; // dy: [T, B, H]
      return { batch, hidden };
    }, backwardStep),
  });
}

const checkFloat32 = (kernelName: string, inputs: Record<string, tf.TensorInfo | undefined>) => {
  for (const [name, info] of Object.entries(inputs)) {
    if (info !== undefined && info.dtype !== "float32") {
      throw new Error(`${kernelName}: input "${name}" is ${info.dtype}, expected float32`);
    }
  }
};
tf.registerKernel({
  kernelName: LSTM_SEQUENCE,
  backendName: "wasm",
  kernelFunc: (({ inputs, backend }: KernelArgs) => {
    checkFloat32(LSTM_SEQUENCE, inputs);
    return sequenceForward(memoryOf("wasm", backend), inputs.xp!, inputs.wh!);
  }) as unknown as tf.KernelFunc,
});
tf.registerKernel({
  kernelName: LSTM_SEQUENCE_GRAD,
  backendName: "wasm",
  kernelFunc: (({ inputs, backend }: KernelArgs) => {
    checkFloat32(LSTM_SEQUENCE_GRAD, inputs);
    return sequenceBackward(memoryOf("wasm", backend), inputs);
  }) as unknown as tf.KernelFunc,
});

let sequenceKernels = true;

/** Whether {@link hasLstmSequenceKernels} may say yes (default true); tests compare both. */
export function useLstmSequenceKernels(on: boolean): void {
  sequenceKernels = on;
}

/**
 * Whether the active backend runs a whole sequence's steps in one kernel call each way
 * ({@link lstmSequenceSteps}, {@link lstmSequenceGradSteps}): wasm with OpenBLAS's matMul.
 */
export function hasLstmSequenceKernels(): boolean {
  return sequenceKernels && tf.getBackend() === "wasm" && isOpenBlasMatMulInstalled();
}

/**
 * Runs every forward step of a layer: from the input projections `xp` `[T, B, 4H]` and the
 * recurrent kernel `wh` `[H, 4H]`, the gate activations `a` `[T, B, 4H]`, cell states `c`,
 * hidden states `h` and `tc` = tanh(c) `[T, B, H]`, from zero state.
 */
export function lstmSequenceSteps(
  xp: tf.Tensor3D,
  wh: tf.Tensor2D,
): { a: tf.Tensor3D; c: tf.Tensor3D; h: tf.Tensor3D; tc: tf.Tensor3D } {
  const out = tf.engine().runKernel(LSTM_SEQUENCE, { xp, wh }, {}) as unknown as tf.Tensor3D[];
  return { a: out[0], c: out[1], h: out[2], tc: out[3] };
}

/**
 * Runs every backward step of a layer: dz `[T, B, 4H]` (the gradient of the gate
 * pre-activations) from the outputs' gradient `dy` `[T, B, H]`, the forward's `a`, `c`, `tc`,
 * and Whᵀ `[4H, H]`.
 */
export function lstmSequenceGradSteps(
  saved: { dy: tf.Tensor3D; a: tf.Tensor3D; c: tf.Tensor3D; tc: tf.Tensor3D },
  whT: tf.Tensor2D,
): tf.Tensor3D {
  const { dy, a, c, tc } = saved;
  return tf.engine().runKernel(LSTM_SEQUENCE_GRAD, { dy, a, c, tc, whT }, {}) as tf.Tensor3D;
}

/** Whether the active backend runs the fused kernels. */
export function hasLstmKernels(): boolean {
  return tf.getKernel(LSTM_CELL, tf.getBackend()) !== undefined;
}

/**
 * Runs the fused forward step t: gate activations `a` `[B, 4H]`, cell state `c`,
 * hidden state `h` and `tc` = tanh(c) (`[B, H]`). `zh` and `c` are null (zero) at
 * the first step.
 */
export function lstmCellStep(
  xp: tf.Tensor3D,
  zh: tf.Tensor2D | null,
  c: tf.Tensor2D | null,
  t: number,
): { a: tf.Tensor2D; c: tf.Tensor2D; h: tf.Tensor2D; tc: tf.Tensor2D } {
  const inputs: Record<string, tf.Tensor> = { xp };
  if (zh !== null) inputs.zh = zh;
  if (c !== null) inputs.c = c;
  const out = tf.engine().runKernel(LSTM_CELL, inputs, { t }) as unknown as tf.Tensor2D[];
  return { a: out[0], c: out[1], h: out[2], tc: out[3] };
}

/**
 * Runs the fused backward step t: dz `[B, 4H]` and the cell-state gradient for
 * step t − 1 `[B, H]`. `dhRec` and `dcNext` are null at the last step.
 */
export function lstmCellGradStep(
  saved: { dy: tf.Tensor3D; a: tf.Tensor3D; c: tf.Tensor3D; tc: tf.Tensor3D },
  dhRec: tf.Tensor2D | null,
  dcNext: tf.Tensor2D | null,
  t: number,
): { dz: tf.Tensor2D; dc: tf.Tensor2D } {
  const inputs: Record<string, tf.Tensor> = { ...saved };
  if (dhRec !== null) inputs.dhRec = dhRec;
  if (dcNext !== null) inputs.dcNext = dcNext;
  const out = tf.engine().runKernel(LSTM_CELL_GRAD, inputs, { t }) as unknown as tf.Tensor2D[];
  return { dz: out[0], dc: out[1] };
}

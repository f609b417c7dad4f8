/**
 * An attention's heads from its fused q, k, v projection, with rotary
 * position embeddings (Su et al., "RoFormer", 2021, in GPT-NeoX's "rotate
 * half" layout): from `qkv` `[B*T, 3*D]`, q, k and v `[B, NH, T, hd]`, q and k
 * rotated by their positions' angles and q multiplied by `scale`.
 *
 * With tfjs ops that is a split, three reshapes, the rotation (a product with
 * the rotate-half matrix, two multiplications and an addition for each of q
 * and k), the scaling and three transposes, forward and again backward. On the
 * wasm backend with the native kernels loaded (`native.ts`) it is one kernel
 * call each way (`HarmonyAttentionHeads` and its gradient), with the same
 * float32 operations in the same order: the same bits
 * (`attention_heads_test.ts` compares them).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import { type HeadsShape, nativeAttentionHeads } from "./native.ts";

/**
 * Rotary tables: cos and sin `[maxLen, headDim]` (angle pos·10000^(−2i/headDim)
 * for pair i, repeated for both halves) and the rotate-half matrix `[headDim, headDim]`.
 */
export function ropeTables(maxLen: number, headDim: number) {
  const half = headDim / 2;
  const cos = new Float32Array(maxLen * headDim);
  const sin = new Float32Array(maxLen * headDim);
  for (let pos = 0; pos < maxLen; pos++) {
    for (let i = 0; i < half; i++) {
      const angle = pos * Math.pow(10000, (-2 * i) / headDim);
      for (const j of [i, i + half]) {
        cos[pos * headDim + j] = Math.cos(angle);
        sin[pos * headDim + j] = Math.sin(angle);
      }
    }
  }
  // x @ rotate = [-x2, x1] where x = [x1, x2] (each half of the head).
  const rotate = new Float32Array(headDim * headDim);
  for (let j = 0; j < half; j++) {
    rotate[(j + half) * headDim + j] = -1;
    rotate[j * headDim + j + half] = 1;
  }
  return {
    cos: tf.tensor2d(cos, [maxLen, headDim]),
    sin: tf.tensor2d(sin, [maxLen, headDim]),
    rotate: tf.tensor2d(rotate, [headDim, headDim]),
  };
}

/**
 * Rotates each head vector of `x` `[batch, positions, heads, hd]` by its
 * position's angles: x·cos + rotateHalf(x)·sin, with `cos`/`sin` shaped
 * `[positions, 1, hd]` (rows of {@link ropeTables} for those positions).
 */
export function applyRotary(
  x: tf.Tensor4D,
  t: { cos: tf.Tensor; sin: tf.Tensor; rotate: tf.Tensor2D },
): tf.Tensor4D {
  return tf.tidy(() => {
    const hd = x.shape[3];
    const rotated = tf.reshape(tf.matMul(tf.reshape(x, [-1, hd]), t.rotate), x.shape);
    return tf.add(tf.mul(x, t.cos), tf.mul(rotated, t.sin));
  });
}

/** The rotary tables of positions `start .. start+count-1`: cos and sin `[count, hd]`. */
export interface RotaryAngles {
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  /** The rotate-half matrix `[hd, hd]` of {@link ropeTables}. */
  rotate: tf.Tensor2D;
}

/** q, k and v of an attention, each `[batch, heads, time, hd]`. */
export interface Heads {
  q: tf.Tensor4D;
  k: tf.Tensor4D;
  v: tf.Tensor4D;
}

/** Kernel name of the native heads. */
const HEADS = "HarmonyAttentionHeads";
/** Kernel name of their gradient. */
const HEADS_GRAD = "HarmonyAttentionHeadsGrad";

let nativeHeads = true;

/**
 * Whether {@link attentionHeads} runs natively when it can (default true); tests compare both.
 */
export function useNativeAttentionHeads(on: boolean): void {
  nativeHeads = on;
}

/** The tfjs ops that the native kernel replaces. */
function composite(qkv: tf.Tensor2D, angles: RotaryAngles, shape: HeadsShape, scale: number) {
  return tf.tidy(() => {
    const { batch, time, heads, headDim } = shape;
    const [q, k, v] = tf.split(qkv, 3, 1).map((t) =>
      tf.reshape(t, [batch, time, heads, headDim]) as tf.Tensor4D
    );
    const table = {
      cos: tf.reshape(angles.cos, [time, 1, headDim]),
      sin: tf.reshape(angles.sin, [time, 1, headDim]),
      rotate: angles.rotate,
    };
    const toHeads = (t: tf.Tensor4D) => tf.transpose(t, [0, 2, 1, 3]) as tf.Tensor4D;
    return [
      toHeads(tf.mul(applyRotary(q, table), scale) as tf.Tensor4D),
      toHeads(applyRotary(k, table)),
      toHeads(v),
    ];
  });
}

interface KernelArgs {
  inputs: Record<string, tf.TensorInfo | null | undefined>;
  backend: object;
  attrs?: tf.NamedAttrMap;
}

function shapeOf(attrs: tf.NamedAttrMap): HeadsShape {
  return {
    batch: attrs.batch as number,
    time: attrs.time as number,
    heads: attrs.heads as number,
    headDim: attrs.headDim as number,
  };
}

function headsKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const wasm = backend as BackendWasm;
  const shape = shapeOf(attrs!);
  const { batch, time, heads, headDim } = shape;
  const outs = [0, 1, 2].map(() => wasm.makeOutput([batch, heads, time, headDim], "float32"));
  const view = (info: tf.TensorInfo) => wasm.typedArrayFromHeap(info) as Float32Array;
  const [q, k, v] = outs.map(view);
  nativeAttentionHeads()!.forward(
    shape,
    attrs!.scale as number,
    view(inputs.qkv!),
    view(inputs.cos!),
    view(inputs.sin!),
    q,
    k,
    v,
  );
  return outs;
}

function headsGradKernel({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo {
  const wasm = backend as BackendWasm;
  const shape = shapeOf(attrs!);
  const { batch, time, heads, headDim } = shape;
  const out = wasm.makeOutput([batch * time, 3 * heads * headDim], "float32");
  const view = (info: tf.TensorInfo | null | undefined) =>
    info == null ? null : wasm.typedArrayFromHeap(info) as Float32Array;
  nativeAttentionHeads()!.backward(
    shape,
    attrs!.scale as number,
    view(inputs.dq),
    view(inputs.dk),
    view(inputs.dv),
    view(inputs.cos)!,
    view(inputs.sin)!,
    view(out)!,
  );
  return out;
}

tf.registerKernel({
  kernelName: HEADS,
  backendName: "wasm",
  kernelFunc: headsKernel as unknown as tf.KernelFunc,
});
tf.registerKernel({
  kernelName: HEADS_GRAD,
  backendName: "wasm",
  kernelFunc: headsGradKernel as unknown as tf.KernelFunc,
});
tf.registerGradient({
  kernelName: HEADS,
  inputsToSave: ["cos", "sin"],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs?: tf.NamedAttrMap) => {
    const [dq, dk, dv] = dy as (tf.Tensor | null)[];
    const [cos, sin] = saved;
    return {
      qkv: () =>
        tf.engine().runKernel(
          HEADS_GRAD,
          { dq, dk, dv, cos, sin } as unknown as tf.NamedTensorMap,
          attrs,
        ) as tf.Tensor,
    };
  },
});

/**
 * q, k and v `[B, NH, T, hd]` of an attention from its projection `qkv` `[B*T, 3*NH*hd]`
 * (rows batch-major, columns q, k, v, each head after head), q and k rotated by the angles
 * of their positions and q multiplied by `scale`.
 *
 * @param qkv the fused projection, float32
 * @param angles cos and sin `[T, hd]` of the positions, and the rotate-half matrix
 * @param shape batch, time, heads and head size
 * @param scale q's factor, e.g. 1/√hd
 */
export function attentionHeads(
  qkv: tf.Tensor2D,
  angles: RotaryAngles,
  shape: HeadsShape,
  scale: number,
): Heads {
  const native = nativeHeads && tf.getBackend() === "wasm" && qkv.dtype === "float32" &&
    nativeAttentionHeads() !== null;
  const [q, k, v] = native
    ? tf.engine().runKernel(
      HEADS,
      { qkv, cos: angles.cos, sin: angles.sin },
      { ...shape, scale },
    ) as tf.Tensor4D[]
    : composite(qkv, angles, shape, scale);
  return { q, k, v };
}

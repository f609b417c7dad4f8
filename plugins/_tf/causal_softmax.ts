/**
 * The softmax of a causal self-attention's scores `[..., T, T]`: each query
 * position attends to itself and the positions before it. Natively on the
 * wasm backend when the native kernels are loaded (`native.ts`: one pass
 * forward and one backward over every core, in place of adding a mask, the
 * softmax and the four ops of its gradient over the largest tensors of a
 * Transformer's step); elsewhere an additive mask of -1e9 and `tf.softmax`,
 * which give the same probabilities (the masked ones underflow to 0).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { nativeCausalSoftmax } from "./native.ts";
import { heapTensor } from "./wasm_heap.ts";

/** The additive causal mask `[T, T]`: 0 on and below the diagonal, -1e9 above. */
function causalMask(time: number): tf.Tensor2D {
  const m = new Float32Array(time * time);
  for (let i = 0; i < time; i++) m.fill(-1e9, i * time + i + 1, (i + 1) * time);
  return tf.tensor2d(m, [time, time]);
}

const nativeOp = tf.customGrad(
  ((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const scores = args[0] as tf.Tensor;
    const time = scores.shape[scores.rank - 1];
    const y = heapTensor(
      scores.shape,
      [scores],
      (out, s) => nativeCausalSoftmax()!(time, s!, null, out),
    );
    (args[1] as tf.GradSaveFunc)([y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) =>
        heapTensor(
          dy.shape,
          [saved[0], dy],
          (out, ys, dys) => nativeCausalSoftmax()!(time, ys!, dys, out),
        ),
    };
  }) as Parameters<typeof tf.customGrad<tf.Tensor>>[0],
);

/**
 * Softmax over the last axis of `scores` `[..., T, T]`, leaving out (probability 0) every
 * position after the row's own.
 *
 * @param scores float32 attention scores, the last two axes of equal length
 * @returns the attention weights, the same shape
 */
export function causalSoftmax(scores: tf.Tensor): tf.Tensor {
  const time = scores.shape[scores.rank - 1];
  if (scores.rank < 2 || scores.shape[scores.rank - 2] !== time) {
    throw new Error(
      `Cannot take a causal softmax of shape [${scores.shape}]: the last two axes must be equal`,
    );
  }
  if (tf.getBackend() === "wasm" && scores.dtype === "float32" && nativeCausalSoftmax() !== null) {
    return nativeOp(scores);
  }
  return tf.tidy(() => tf.softmax(tf.add(scores, causalMask(time))));
}

/**
 * GELU in its sigmoid form, `x·σ(1.702x)` (Hendrycks & Gimpel 2016), with a
 * native forward and backward on the wasm backend when the native kernels are
 * loaded (`native.ts`: one pass over every core each, where tfjs ran three and
 * six elementwise kernels over the Transformer's largest activations), and
 * tfjs ops everywhere else. The native sigmoid agrees with tfjs's within
 * about 1e-6 relative.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { nativeGelu } from "./native.ts";
import { heapTensor } from "./wasm_heap.ts";

/** `x·σ(1.702x)` with tfjs ops. */
function composite(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, tf.sigmoid(tf.mul(x, 1.702)));
}

/** The native forward (`dy` null) or backward on the wasm heap, as a new tensor. */
function runNative(x: tf.Tensor, dy: tf.Tensor | null): tf.Tensor {
  return heapTensor(x.shape, [x, dy], (out, xs, dys) => nativeGelu()!(xs!, dys, out));
}

const nativeOp = tf.customGrad(
  ((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const x = args[0] as tf.Tensor;
    (args[1] as tf.GradSaveFunc)([x]);
    return {
      value: runNative(x, null),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => runNative(saved[0], dy),
    };
  }) as Parameters<typeof tf.customGrad<tf.Tensor>>[0],
);

/**
 * GELU, `x·σ(1.702x)`: natively on wasm with the native kernels loaded, else with tfjs ops.
 *
 * @param x any float32 tensor
 * @returns a tensor of the same shape
 */
export function gelu(x: tf.Tensor): tf.Tensor {
  if (tf.getBackend() === "wasm" && x.dtype === "float32" && nativeGelu() !== null) {
    return nativeOp(x);
  }
  return composite(x);
}

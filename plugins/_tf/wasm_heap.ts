/**
 * Tensors computed in place on the wasm backend's heap by code outside tfjs
 * (the native kernels, `native.ts`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";

/**
 * A new float32 tensor of `shape` on the wasm backend, filled by `write` from the memory of
 * `inputs` (null stays null). Views are taken after the output is allocated, which may grow
 * the heap and detach earlier ones.
 *
 * @param shape the output's shape
 * @param inputs tensors on the wasm backend, or null
 * @param write fills `out` from the inputs' values
 * @returns the output, tracked like any tensor (inside `tf.tidy` too)
 */
export function heapTensor(
  shape: number[],
  inputs: (tf.Tensor | null)[],
  write: (out: Float32Array, ...views: (Float32Array | null)[]) => void,
): tf.Tensor {
  const backend = tf.backend() as unknown as BackendWasm;
  const info = backend.makeOutput(shape, "float32");
  const views = inputs.map((t) =>
    t === null ? null : backend.typedArrayFromHeap(t) as Float32Array
  );
  write(backend.typedArrayFromHeap(info) as Float32Array, ...views);
  return tf.engine().makeTensorFromTensorInfo(info);
}

/**
 * Tensors computed in place on the wasm backend's heap by code outside tfjs
 * (the native kernels, `native.ts`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";

/**
 * New float32 tensors of `shapes` on the wasm backend, filled by `write` from the memory of
 * `inputs` (null stays null). Views are taken after every output is allocated, which may grow
 * the heap and detach earlier ones.
 *
 * @param shapes the outputs' shapes
 * @param inputs tensors on the wasm backend, or null
 * @param write fills the outputs from the inputs' values
 * @returns the outputs, tracked like any tensor (inside `tf.tidy` too)
 */
export function heapTensors(
  shapes: number[][],
  inputs: (tf.Tensor | null)[],
  write: (outs: Float32Array[], views: (Float32Array | null)[]) => void,
): tf.Tensor[] {
  const backend = tf.backend() as unknown as BackendWasm;
  const infos = shapes.map((shape) => backend.makeOutput(shape, "float32"));
  const view = (info: tf.TensorInfo) => backend.typedArrayFromHeap(info) as Float32Array;
  write(infos.map(view), inputs.map((t) => t === null ? null : view(t)));
  return infos.map((info) => tf.engine().makeTensorFromTensorInfo(info));
}

/**
 * One new float32 tensor of `shape` on the wasm backend, filled by `write` (see
 * {@link heapTensors}).
 *
 * @param shape the output's shape
 * @param inputs tensors on the wasm backend, or null
 * @param write fills `out` from the inputs' values
 * @returns the output
 */
export function heapTensor(
  shape: number[],
  inputs: (tf.Tensor | null)[],
  write: (out: Float32Array, ...views: (Float32Array | null)[]) => void,
): tf.Tensor {
  return heapTensors([shape], inputs, (outs, views) => write(outs[0], ...views))[0];
}

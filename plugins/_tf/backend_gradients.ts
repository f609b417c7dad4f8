/**
 * A corrected gradient for `BatchMatMul` with broadcast batch dimensions.
 *
 * Reference: tfjs-core 4.22 `src/gradients/BatchMatMul_grad.ts`, whose
 * formulas are kept, plus the broadcast reduction that tfjs's `Add` gradient
 * does (`broadcast_util.getReductionAxes`). The stock gradient returns the
 * unreduced product, so `tf.matMul(x, w)` with `x` [batch, time, dIn] and
 * `w` [dIn, dOut] (a dense layer on a sequence) fails in `tf.grads()` with
 * "The gradient of input 'b' has shape '...', which does not match".
 *
 * For that dense-layer case (`b` has no batch dims, `a` is not transposed),
 * the weight gradient is one [dIn, rows] x [rows, dOut] product instead of a
 * batch of products followed by a sum.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";

/** Sums `grad` over the batch axes that `shape` was broadcast along, then reshapes to `shape`. */
function reduceToShape(grad: tf.Tensor, shape: number[]): tf.Tensor {
  const axes = tf.backend_util.getReductionAxes(shape, grad.shape);
  const summed = axes.length > 0 ? tf.sum(grad, axes) : grad;
  return tf.reshape(summed, shape);
}

const batchMatMulGrad: tf.GradConfig = {
  kernelName: "BatchMatMul",
  inputsToSave: ["a", "b"],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
    const grad = dy as tf.Tensor; // [...batch, M, N]
    const [a, b] = saved;
    const { transposeA, transposeB } = attrs as unknown as {
      transposeA: boolean;
      transposeB: boolean;
    };
    const gradA = () => {
      if (!transposeA && !transposeB) {
        return reduceToShape(tf.matMul(grad, b, false, true), a.shape);
      }
      if (!transposeA && transposeB) {
        return reduceToShape(tf.matMul(grad, b, false, false), a.shape);
      }
      if (transposeA && !transposeB) return reduceToShape(tf.matMul(b, grad, false, true), a.shape);
      return reduceToShape(tf.matMul(b, grad, true, true), a.shape);
    };
    const gradB = () => {
      if (b.rank === 2 && a.rank > 2 && !transposeA) {
        // Dense layer on a sequence: fold the batch into the rows.
        const k = a.shape[a.rank - 1];
        const n = grad.shape[grad.rank - 1];
        const a2 = tf.reshape(a, [-1, k]); // [rows, K]
        const dy2 = tf.reshape(grad, [-1, n]); // [rows, N]
        return transposeB ? tf.matMul(dy2, a2, true, false) : tf.matMul(a2, dy2, true, false);
      }
      if (!transposeA && !transposeB) {
        return reduceToShape(tf.matMul(a, grad, true, false), b.shape);
      }
      if (!transposeA && transposeB) return reduceToShape(tf.matMul(grad, a, true, false), b.shape);
      if (transposeA && !transposeB) {
        return reduceToShape(tf.matMul(a, grad, false, false), b.shape);
      }
      return reduceToShape(tf.matMul(grad, a, true, true), b.shape);
    };
    return { a: gradA, b: gradB };
  },
};

let registered = false;

/**
 * Replaces tfjs-core's `BatchMatMul` gradient with the broadcast-aware one
 * (for every backend; the gradient is built from ops). Idempotent.
 *
 * @example
 * ```ts
 * import { registerBackendGradients } from "./backend_gradients.ts";
 * registerBackendGradients();
 * ```
 */
export function registerBackendGradients(): void {
  if (registered) return;
  // registerGradient warns when it overrides; the override is intended.
  if (tf.getGradient("BatchMatMul") !== undefined) tf.unregisterGradient("BatchMatMul");
  tf.registerGradient(batchMatMulGrad);
  registered = true;
}

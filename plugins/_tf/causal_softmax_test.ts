import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { causalSoftmax } from "./causal_softmax.ts";
import { assertClose, lcg, runOn } from "./testdata/numeric.ts";
import { hasNative } from "./testdata/libraries.ts";

Deno.test("causalSoftmax() gives each row the softmax of its own and earlier positions, 0 after", async () => {
  const [row0, row1, row2] = await runOn("cpu", () => {
    const y = causalSoftmax(tf.tensor2d([[5, 1, 2], [0, Math.log(3), 7], [1, 1, 1]]));
    return tf.unstack(y);
  });
  assertClose(row0, [1, 0, 0], 1e-7, "row 0 sees itself only");
  assertClose(row1, [0.25, 0.75, 0], 1e-6, "row 1: e^0 : e^ln3 = 1 : 3");
  assertClose(row2, [1 / 3, 1 / 3, 1 / 3], 1e-6, "row 2: all three equal");
  await runOn("cpu", () => {
    assert.throws(() => causalSoftmax(tf.zeros([2, 3])), /last two axes must be equal/);
    return [];
  });
});

Deno.test({
  name:
    "causalSoftmax() and its gradient on wasm with the native kernels equal the masked tf.softmax on cpu (needs cc)",
  ignore: !hasNative,
  fn: async () => {
    // 222 rows (one thread) and 640 rows (split over the threads); 37 and 40 are not
    // multiples of a vector; scores up to ±40.
    for (const shape of [[2, 3, 37, 37], [4, 4, 40, 40]]) {
      const size = shape.reduce((a, b) => a * b, 1);
      const scores = lcg(size, shape[3], 40);
      const weights = lcg(size, 7);
      const f = () => {
        const x = tf.tensor(scores, shape);
        const w = tf.tensor(weights, shape);
        const [dx] = tf.grads((t: tf.Tensor) => tf.sum(tf.mul(causalSoftmax(t), w)))([x]);
        return [causalSoftmax(x), dx];
      };
      const [wasmY, wasmDx] = await runOn("wasm", f);
      const [cpuY, cpuDx] = await runOn("cpu", f);
      assertClose(wasmY, cpuY, 1e-6, `probabilities of ${shape}`);
      assertClose(wasmDx, cpuDx, 1e-6, `gradient of ${shape}`);
      const t = shape[3];
      for (let r = 0; r < size / t; r++) {
        for (let j = (r % t) + 1; j < t; j++) {
          assert.equal(wasmY[r * t + j], 0, `row ${r} position ${j} is after the row's own`);
        }
      }
    }
  },
});

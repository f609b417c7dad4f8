import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { layerNorm } from "./model.ts";
import { assertClose, lcg, runOn } from "./testdata/numeric.ts";
import { hasNative } from "./testdata/libraries.ts";
import { nativeLayerNorm } from "./native.ts";

Deno.test({
  name:
    "layerNorm() and its gradients on wasm with the native kernels equal the tfjs ops on cpu, for [rows, n] and [B, T, n] (needs cc)",
  ignore: !hasNative,
  fn: async () => {
    // 70 rows (split over the threads) and 3 (one thread); n = 37 and 80 (column sums split).
    for (const shape of [[70, 37], [3, 37], [2, 5, 80]]) {
      const n = shape[shape.length - 1];
      const size = shape.reduce((a, b) => a * b, 1);
      const x = lcg(size, n, 4).map((v, i) => v + (i % 7)); // rows with their own means
      const gain = lcg(n, 2);
      const bias = lcg(n, 3);
      const weights = lcg(size, 5);
      const f = () => {
        const w = tf.tensor(weights, shape);
        const loss = (a: tf.Tensor, g: tf.Tensor, b: tf.Tensor) =>
          tf.sum(tf.mul(layerNorm(a, g, b), w));
        const inputs = [tf.tensor(x, shape), tf.tensor1d(gain), tf.tensor1d(bias)];
        const grads = tf.grads(loss as (...t: tf.Tensor[]) => tf.Tensor)(inputs);
        return [layerNorm(inputs[0], inputs[1], inputs[2]), ...grads];
      };
      const wasm = await runOn("wasm", f);
      assert.ok(nativeLayerNorm() !== null);
      const cpu = await runOn("cpu", f);
      ["y", "dx", "dgain", "dbias"].forEach((name, i) =>
        assertClose(wasm[i], cpu[i], 1e-4, `${name} of ${shape}`)
      );
    }
  },
});

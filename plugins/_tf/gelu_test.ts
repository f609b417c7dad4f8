import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { gelu } from "./gelu.ts";
import { assertClose, lcg, runOn } from "./testdata/numeric.ts";
import { hasNative } from "./testdata/libraries.ts";
import { nativeGelu } from "./native.ts";

/** x·σ(1.702x) and its derivative in float64. */
function reference(x: number): { y: number; dy: number } {
  const s = 1 / (1 + Math.exp(-1.702 * x));
  return { y: x * s, dy: s + 1.702 * x * s * (1 - s) };
}

Deno.test({
  name:
    "gelu() and its gradient on wasm with the native kernels equal x·σ(1.702x) in float64, as on cpu (needs cc)",
  ignore: !hasNative,
  fn: async () => {
    // Large enough (70,000) to run split over the threads; extremes and an uneven tail.
    const values = lcg(70_001, 9, 12);
    values.push(-200, 200, 0, -1e-8, 88, -88);
    const weights = lcg(values.length, 10);
    const f = () => {
      const x = tf.tensor1d(values);
      const w = tf.tensor1d(weights);
      const [dx] = tf.grads((t: tf.Tensor) => tf.sum(tf.mul(gelu(t), w)))([x]);
      return [gelu(x), dx];
    };
    const [wasmY, wasmDx] = await runOn("wasm", f);
    assert.ok(nativeGelu() !== null);
    const [cpuY, cpuDx] = await runOn("cpu", f);
    const expectedY = values.map((x) => reference(x).y);
    const expectedDx = values.map((x, i) => reference(x).dy * weights[i]);
    assertClose(wasmY, expectedY, 1e-5, "native gelu");
    assertClose(wasmDx, expectedDx, 1e-5, "native gelu gradient");
    assertClose(cpuY, expectedY, 1e-5, "cpu gelu");
    assertClose(cpuDx, expectedDx, 1e-5, "cpu gelu gradient");
  },
});

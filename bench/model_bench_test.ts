import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../plugins/_tf/backend.ts";
import { kernelSplit } from "./model_bench.ts";

Deno.test("kernelSplit() counts 2·M·N·K per product, transposed or batched, and sums kernels by name", async () => {
  await initBackend("cpu");
  const a = tf.ones([2, 3, 4]), b = tf.ones([2, 4, 5]), at = tf.ones([2, 4, 3]);
  const profile = await tf.profile(() => {
    tf.matMul(a, b).dispose(); // 2 × (3 × 5 outputs × 4 terms) × 2 flops = 240
    tf.matMul(at, b, true).dispose(); // the same product with a transposed: 240
    tf.add(a, a).dispose();
  });
  const split = await kernelSplit(profile, 10);
  assert.equal(split.matMulFlops, 480);
  assert.deepEqual(
    split.kernels.map((k) => [k.name, k.calls]).sort(),
    [["Add", 1], ["BatchMatMul", 2]],
  );
  assert.equal(split.stepMs, 10);
  tf.dispose([a, b, at]);
});

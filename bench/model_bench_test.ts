import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../plugins/_tf/backend.ts";
import { kernelSplit } from "./model_bench.ts";
import { lstmSequenceGradSteps, lstmSequenceSteps } from "../plugins/_tf/lstm_kernels.ts";
import { hasNative, hasOpenBlas } from "../plugins/_tf/testdata/libraries.ts";

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

Deno.test({
  name:
    "kernelSplit() counts the recurrent products inside the LSTM sequence kernels (needs OpenBLAS and cc)",
  ignore: !hasOpenBlas || !hasNative,
  fn: async () => {
    await initBackend("wasm-openblas");
    try {
      const [time, batch, hidden] = [5, 3, 8];
      const xp = tf.ones([time, batch, 4 * hidden]) as tf.Tensor3D;
      const wh = tf.ones([hidden, 4 * hidden]) as tf.Tensor2D;
      const profile = await tf.profile(() => {
        const steps = lstmSequenceSteps(xp, wh);
        const dz = lstmSequenceGradSteps({ ...steps, dy: steps.h }, tf.transpose(wh));
        tf.dispose([steps.a, steps.c, steps.h, steps.tc, dz]);
      });
      const split = await kernelSplit(profile, 10);
      // 4 products (steps 1..4) each way, of 2 × 3 × 8 × 32 flops each.
      assert.equal(split.matMulFlops, 2 * 4 * 2 * 3 * 8 * 32);
      const names = split.kernels.map((k) => k.name);
      assert.ok(names.includes("HarmonyLstmSequence") && names.includes("HarmonyLstmSequenceGrad"));
      tf.dispose([xp, wh]);
    } finally {
      await initBackend("cpu");
    }
  },
});

// AdamW's native step (wasm with the native kernels) against its tfjs ops, bit for bit.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "./backend.ts";
import { AdamW, useNativeAdamW } from "./optim.ts";
import { lcg } from "./testdata/numeric.ts";
import { hasNative } from "./testdata/libraries.ts";
import { nativeAdamW } from "./native.ts";

/** Weights, moments and step count after three AdamW steps on wasm, natively or not. */
function threeSteps(native: boolean): Float32Array[] {
  useNativeAdamW(native);
  try {
    // tf.tidy disposes the initial values; variables outlive it.
    const variables = new Map<string, tf.Variable>([
      ["matrix", tf.tidy(() => tf.variable(tf.tensor2d(lcg(37 * 5, 1), [37, 5])))], // decays
      ["bias", tf.tidy(() => tf.variable(tf.tensor1d(lcg(37, 2))))], // does not
    ]);
    const opt = new AdamW(variables, { weightDecay: 0.1 });
    for (let step = 0; step < 3; step++) {
      const grads = new Map([...variables].map(([name, v], i) => [
        name,
        tf.tensor(lcg(v.size, 10 * step + i, 3 ** step), v.shape),
      ]));
      opt.apply(grads, 1e-2 * (step + 1));
      tf.dispose([...grads.values()]);
    }
    const out = [...variables.values()].map((v) => v.dataSync() as Float32Array);
    opt.dispose();
    tf.dispose([...variables.values()]);
    return out;
  } finally {
    useNativeAdamW(true);
  }
}

Deno.test({
  name: "AdamW's native step gives the same bits as its tfjs ops on wasm (needs cc)",
  ignore: !hasNative,
  fn: async () => {
    await initBackend("wasm");
    assert.ok(nativeAdamW() !== null, "the native step is there to compare");
    const before = tf.memory().numTensors;
    const native = threeSteps(true);
    const ops = threeSteps(false);
    assert.equal(tf.memory().numTensors, before, "tensors leaked");
    assert.deepEqual(native, ops);
    assert.ok(native[0].some((x, i) => x !== Float32Array.from(lcg(37 * 5, 1))[i]), "it moved");
    await initBackend("cpu");
  },
});

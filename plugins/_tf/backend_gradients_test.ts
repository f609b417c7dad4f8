import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "./backend.ts";
import { assertClose, lcg } from "./testdata/numeric.ts";

/** Gradients of `loss` at `inputs`, copied to plain arrays; checks for leaks. */
function gradsOf(loss: (...xs: tf.Tensor[]) => tf.Tensor, inputs: () => tf.Tensor[]): number[][] {
  const before = tf.memory().numTensors;
  const values = tf.tidy(() => tf.grads(loss)(inputs())).map((g) => {
    const v = Array.from(g.dataSync());
    g.dispose();
    return v;
  });
  assert.equal(tf.memory().numTensors, before, "tensors leaked");
  return values;
}

Deno.test("matMul gradient of a dense layer on a sequence equals the 2-D formulation", async () => {
  await initBackend("cpu");
  const x = lcg(2 * 3 * 4, 1); // [batch 2, time 3, dIn 4]
  const w = lcg(4 * 5, 2); // [dIn 4, dOut 5]
  const target = lcg(2 * 3 * 5, 3);
  for (const transposeB of [false, true]) {
    const wShape: [number, number] = transposeB ? [5, 4] : [4, 5];
    const seq = gradsOf(
      (a, b) => tf.sum(tf.mul(tf.matMul(a, b, false, transposeB), tf.tensor3d(target, [2, 3, 5]))),
      () => [tf.tensor3d(x, [2, 3, 4]), tf.tensor2d(w, wShape)],
    );
    // Same function with the batch folded into the rows: tfjs's 2-D gradient is right.
    const flat = gradsOf(
      (a, b) => tf.sum(tf.mul(tf.matMul(a, b, false, transposeB), tf.tensor2d(target, [6, 5]))),
      () => [tf.tensor2d(x, [6, 4]), tf.tensor2d(w, wShape)],
    );
    assertClose(seq[0], flat[0], 1e-5, `dx, transposeB=${transposeB}`);
    assertClose(seq[1], flat[1], 1e-5, `dw, transposeB=${transposeB}`);
  }
});

Deno.test("matMul gradient of a broadcast batch of 1 sums over the batch", async () => {
  await initBackend("cpu");
  const a = lcg(1 * 2 * 3, 4); // [1, 2, 3], broadcast to [4, 2, 3]
  const b = lcg(4 * 3 * 2, 5); // [4, 3, 2]
  const broadcast = gradsOf(
    (x, y) => tf.sum(tf.square(tf.matMul(x, y))),
    () => [tf.tensor3d(a, [1, 2, 3]), tf.tensor3d(b, [4, 3, 2])],
  );
  // Explicit tiling: tile's gradient sums the copies.
  const tiled = gradsOf(
    (x, y) => tf.sum(tf.square(tf.matMul(tf.tile(x, [4, 1, 1]), y))),
    () => [tf.tensor3d(a, [1, 2, 3]), tf.tensor3d(b, [4, 3, 2])],
  );
  assertClose(broadcast[0], tiled[0], 1e-5, "da");
  assertClose(broadcast[1], tiled[1], 1e-5, "db");
});

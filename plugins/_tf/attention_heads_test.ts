import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { attentionHeads, ropeTables, useNativeAttentionHeads } from "./attention_heads.ts";
import { assertClose, lcg, runOn } from "./testdata/numeric.ts";
import { hasNative } from "./testdata/libraries.ts";

/** Heads of a random projection and the gradient of a weighted sum of them. */
function headsAndGradient(batch: number, time: number, start: number): () => tf.Tensor[] {
  const heads = 3, headDim = 6, d = heads * headDim;
  return () => {
    const rope = ropeTables(start + time, headDim);
    const angles = {
      cos: tf.slice(rope.cos, [start, 0], [time, headDim]) as tf.Tensor2D,
      sin: tf.slice(rope.sin, [start, 0], [time, headDim]) as tf.Tensor2D,
      rotate: rope.rotate,
    };
    const shape = { batch, time, heads, headDim };
    const qkv = tf.tensor2d(lcg(batch * time * 3 * d, 3, 2), [batch * time, 3 * d]);
    const weights = [4, 5, 6].map((seed) =>
      tf.tensor4d(lcg(batch * heads * time * headDim, seed), [batch, heads, time, headDim])
    );
    const loss = (x: tf.Tensor) => {
      const { q, k, v } = attentionHeads(x as tf.Tensor2D, angles, shape, 0.4);
      return tf.addN([q, k, v].map((t, i) => tf.sum(tf.mul(t, weights[i]))));
    };
    const { q, k, v } = attentionHeads(qkv, angles, shape, 0.4);
    const [dqkv] = tf.grads(loss)([qkv]);
    return [q, k, v, dqkv];
  };
}

/** Equal as float32 values (+0 and -0 alike). */
function assertSameValues(actual: number[][], expected: number[][], what: string): void {
  assert.equal(actual.length, expected.length);
  actual.forEach((values, i) =>
    values.forEach((x, j) =>
      assert.ok(x === expected[i][j], `${what}, output ${i}[${j}]: ${x} vs ${expected[i][j]}`)
    )
  );
}

Deno.test({
  name:
    "attentionHeads() natively on wasm gives the same bits as the tfjs ops, forward and gradient (needs cc)",
  ignore: !hasNative,
  fn: async () => {
    // 2 x 5 rows run on one thread, 4 x 20 split over the threads; start 7 reads later angles.
    for (const [batch, time, start] of [[2, 5, 0], [4, 20, 7], [3, 1, 11]]) {
      const f = headsAndGradient(batch, time, start);
      const native = await runOn("wasm", f);
      useNativeAttentionHeads(false);
      try {
        const ops = await runOn("wasm", f);
        assertSameValues(native, ops, `B${batch} T${time} from ${start}`);
        assertClose(native[3], (await runOn("cpu", f))[3], 1e-6, "gradient against cpu");
      } finally {
        useNativeAttentionHeads(true);
      }
    }
  },
});

Deno.test("attentionHeads() places head h of position t at [b, h, t], q scaled, v as given", async () => {
  // Position 0 has angle 0 (cos 1, sin 0): q and k come out unrotated there.
  const batch = 2, time = 1, heads = 2, headDim = 2, d = heads * headDim;
  const values = Array.from({ length: batch * 3 * d }, (_, i) => i + 1);
  const [q, k, v] = await runOn("cpu", () => {
    const rope = ropeTables(1, headDim);
    const out = attentionHeads(
      tf.tensor2d(values, [batch, 3 * d]),
      { cos: rope.cos, sin: rope.sin, rotate: rope.rotate },
      { batch, time, heads, headDim },
      0.5,
    );
    return [out.q, out.k, out.v];
  });
  // Row b is q (d values), k, v; head h is columns [2h, 2h + 2) of each.
  assert.deepEqual(q, [0.5, 1, 1.5, 2, 6.5, 7, 7.5, 8]);
  assert.deepEqual(k, [5, 6, 7, 8, 17, 18, 19, 20]);
  assert.deepEqual(v, [9, 10, 11, 12, 21, 22, 23, 24]);
});

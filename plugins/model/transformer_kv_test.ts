// The Transformer's sampling step with the native key/value cache (wasm with the native
// kernels, plugins/_tf/kv_cache.ts) against its own full forward pass.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../_tf/backend.ts";
import { nativeKvCacheAvailable } from "../_tf/kv_cache.ts";
import type { ModelState, SequenceModel } from "../_tf/model.ts";
import { createRng } from "../../pipeline/rng.ts";
import { defaultParams } from "../_testing.ts";
import transformer from "./transformer.ts";
import { maxAbsDiff } from "../_tf/testdata/numeric.ts";
import { hasNative } from "../_tf/testdata/libraries.ts";

const VOCAB = 13;

function model(headDim: number): SequenceModel {
  return transformer.create(
    defaultParams(transformer, {
      dModel: 2 * headDim,
      layers: 2,
      heads: 2,
      ffDim: 24,
      dropout: 0,
      maxLen: 160,
    }) as never,
  ).build(VOCAB, 5);
}

function tokens(batch: number, time: number, seed: number): number[][] {
  const rng = createRng(seed);
  return Array.from({ length: batch }, () => Array.from({ length: time }, () => rng.int(VOCAB)));
}

/** Logits of the full forward pass at each position, [time][batch * vocab]. */
function fullLogits(m: SequenceModel, rows: number[][]): number[][] {
  return tf.tidy(() => {
    const logits = m.forward(tf.tensor2d(rows, undefined, "int32"), { training: false });
    return (tf.unstack(logits, 1) as tf.Tensor2D[]).map((t) => Array.from(t.dataSync()));
  });
}

/** Steps `state` through `rows` from column `from`; returns each step's logits and the state. */
function stepThrough(m: SequenceModel, state: ModelState, rows: number[][], from: number) {
  const out: number[][] = [];
  for (let t = from; t < rows[0].length; t++) {
    const input = tf.tensor1d(rows.map((r) => r[t]), "int32");
    const { logits, state: next } = m.step(input, state);
    out.push(Array.from(logits.dataSync()));
    tf.dispose([input, logits, state]);
    state = next;
  }
  return { logits: out, state };
}

function assertNear(a: number[], b: number[], what: string): void {
  const diff = tf.tidy(() => maxAbsDiff(tf.tensor(a), tf.tensor(b)));
  assert.ok(diff < 1e-4, `${what}: max difference ${diff}`);
}

for (const headDim of [8, 32]) {
  Deno.test({
    name:
      `model/transformer step() with the native key/value cache (head size ${headDim}) equals the forward pass past a buffer's growth (needs cc)`,
    ignore: !hasNative,
    fn: async () => {
      await initBackend("wasm");
      assert.ok(nativeKvCacheAvailable());
      const m = model(headDim);
      const rows = tokens(3, 150, headDim); // the buffers start at 64 positions and double
      const expected = fullLogits(m, rows);
      const before = tf.memory().numTensors;
      const initial = m.initState(3);
      assert.equal(initial.buffers, 1);
      const { logits, state } = stepThrough(m, initial, rows, 0);
      assert.equal(tf.memory().numTensors, before + 2 * 2, "two layers' k and v buffers");
      logits.forEach((l, t) => assertNear(l, expected[t], `position ${t}`));
      assert.equal(state.length, 150);
      assert.deepEqual((state.k as tf.Tensor[])[0].shape, [3, 2, 256, headDim]);
      tf.dispose(state);
      assert.equal(tf.memory().numTensors, before, "tensors leaked");
      m.dispose();
    },
  });
}

Deno.test({
  name:
    "model/transformer: stepping an earlier state again (branching) leaves the later state's cache as it was (needs cc)",
  ignore: !hasNative,
  fn: async () => {
    await initBackend("wasm");
    const m = model(8);
    const rows = tokens(2, 20, 1);
    const other = rows.map((r) => [...r.slice(0, 10), ...r.slice(10).map((x) => (x + 1) % VOCAB)]);
    const expected = fullLogits(m, rows);
    const expectedOther = fullLogits(m, other);
    // Both branches start from the state after 10 tokens.
    let shared = m.initState(2);
    for (let t = 0; t < 10; t++) {
      const input = tf.tensor1d(rows.map((r) => r[t]), "int32");
      const { logits, state } = m.step(input, shared);
      tf.dispose([input, logits, shared]);
      shared = state;
    }
    const clones = (list: ModelState[string]) => (list as tf.Tensor[]).map((t) => tf.clone(t));
    const sharedCopy: ModelState = { ...shared, k: clones(shared.k), v: clones(shared.v) };
    // First branch: 5 steps, which write positions 10..14 into the shared buffers.
    const first = stepThrough(m, shared, rows.map((r) => r.slice(0, 15)), 10);
    // Second branch from the same earlier state: it must not see the first branch's rows,
    // and must not overwrite them.
    const second = stepThrough(m, sharedCopy, other, 10);
    second.logits.forEach((l, i) => assertNear(l, expectedOther[10 + i], `second branch ${i}`));
    const rest = stepThrough(m, first.state, rows, 15);
    first.logits.forEach((l, i) => assertNear(l, expected[10 + i], `first branch ${i}`));
    rest.logits.forEach((l, i) => assertNear(l, expected[15 + i], `first branch, later ${i}`));
    tf.dispose([second.state, rest.state]);
    m.dispose();
  },
});

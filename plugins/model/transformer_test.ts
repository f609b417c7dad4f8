import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../_tf/backend.ts";
import { AdamW } from "../_tf/optim.ts";
import { nextTokenLoss } from "../_tf/model.ts";
import { createRng } from "../../pipeline/rng.ts";
import { defaultParams } from "../_testing.ts";
import transformer from "./transformer.ts";
import { applyRotary, ropeTables } from "../_tf/attention_heads.ts";
import { maxAbsDiff } from "../_tf/testdata/numeric.ts";

await initBackend("cpu");

const VOCAB = 13;

function tinyTransformer(seed = 3, overrides: Record<string, unknown> = {}) {
  return transformer.create(
    defaultParams(transformer, {
      dModel: 16,
      layers: 2,
      heads: 2,
      ffDim: 24,
      dropout: 0,
      maxLen: 32,
      ...overrides,
    }) as never,
  ).build(VOCAB, seed);
}

function randomTokens(batch: number, time: number, seed: number): tf.Tensor2D {
  const rng = createRng(seed);
  const data = Int32Array.from({ length: batch * time }, () => rng.int(VOCAB));
  return tf.tensor2d(data, [batch, time], "int32");
}

Deno.test("model/transformer forward gives [batch, time, vocab] logits and leaks nothing", () => {
  const model = tinyTransformer();
  const tokens = randomTokens(3, 7, 1);
  model.forward(tokens, { training: false }).dispose(); // caches the causal mask for T = 7
  const before = tf.memory().numTensors;
  const logits = model.forward(tokens, { training: false });
  assert.deepEqual(logits.shape, [3, 7, VOCAB]);
  logits.dispose();
  assert.equal(tf.memory().numTensors, before);
  assert.equal(model.variables.size, 1 + 12 * 2 + 4);
  assert.deepEqual(model.variables.get("block/1/attention/qkv/kernel")!.shape, [16, 48]);
  tokens.dispose();
  model.dispose();
});

Deno.test("model/transformer is causal: a later token does not change earlier logits", () => {
  const model = tinyTransformer();
  const a = tf.tensor2d([[1, 2, 3, 4, 5]], [1, 5], "int32");
  const b = tf.tensor2d([[1, 2, 3, 9, 0]], [1, 5], "int32");
  const la = model.forward(a, { training: false });
  const lb = model.forward(b, { training: false });
  const first = (t: tf.Tensor3D) => tf.slice(t, [0, 0, 0], [1, 3, VOCAB]);
  assert.ok(tf.tidy(() => maxAbsDiff(first(la), first(lb))) < 1e-6);
  assert.ok(maxAbsDiff(la, lb) > 1e-3, "the changed positions must change the logits");
  tf.dispose([a, b, la, lb]);
  model.dispose();
});

Deno.test("model/transformer step() with the key/value cache equals the full forward pass", () => {
  const model = tinyTransformer(4);
  const tokens = randomTokens(2, 10, 4);
  const full = model.forward(tokens, { training: false }); // [B, T, V]
  const before = tf.memory().numTensors;
  let state = model.initState(2);
  const columns = tf.unstack(tokens, 1) as tf.Tensor1D[];
  for (let t = 0; t < 10; t++) {
    const { logits, state: next } = model.step(columns[t], state);
    tf.dispose(state);
    state = next;
    assert.equal(state.length, t + 1);
    assert.deepEqual((state.k as tf.Tensor[])[0].shape, [2, 2, t + 1, 8]);
    const expected = tf.tidy(() => tf.squeeze(tf.slice(full, [0, t, 0], [2, 1, VOCAB]), [1]));
    assert.ok(maxAbsDiff(logits, expected) < 1e-4, `step ${t} differs`);
    tf.dispose([logits, expected]);
  }
  tf.dispose([state, ...columns]);
  assert.equal(tf.memory().numTensors, before);
  tf.dispose([full, tokens]);
  model.dispose();
});

Deno.test("ropeTables() rotates so that q·k depends only on the distance of positions", () => {
  const t = ropeTables(12, 4);
  tf.tidy(() => {
    // Golden values: head size 4 has pair frequencies 1 and 1/100.
    const cos = t.cos.arraySync();
    assert.ok(Math.abs(cos[3][0] - Math.cos(3)) < 1e-6);
    assert.ok(Math.abs(cos[3][3] - Math.cos(0.03)) < 1e-6);
    const rng = createRng(5);
    const q = tf.randomNormal([1, 1, 1, 4], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
    const k = tf.randomNormal([1, 1, 1, 4], 0, 1, "float32", rng.seed()) as tf.Tensor4D;
    const at = (x: tf.Tensor4D, pos: number) =>
      applyRotary(x, {
        cos: tf.slice(t.cos, [pos, 0], [1, 4]),
        sin: tf.slice(t.sin, [pos, 0], [1, 4]),
        rotate: t.rotate,
      });
    const dot = (m: number, n: number) => tf.sum(tf.mul(at(q, m), at(k, n))).dataSync()[0];
    assert.ok(Math.abs(dot(7, 3) - dot(5, 1)) < 1e-5);
    assert.ok(Math.abs(dot(7, 3) - dot(7, 2)) > 1e-3);
    // A rotation keeps the length.
    const norm = (x: tf.Tensor) => tf.norm(x).dataSync()[0];
    assert.ok(Math.abs(norm(at(q, 9)) - norm(q)) < 1e-5);
  });
  tf.dispose([t.cos, t.sin, t.rotate]);
});

Deno.test("model/transformer: a few AdamW steps lower the loss on a tiny batch", () => {
  const model = tinyTransformer(5, { dropout: 0.1 });
  const opt = new AdamW(model.variables, { weightDecay: 0.01 });
  const windows = randomTokens(2, 13, 8);
  const rng = createRng(2);
  const evalLoss = () =>
    tf.tidy(() => nextTokenLoss(model, windows, { training: false }).dataSync()[0]);
  const first = evalLoss();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 15; i++) {
    const { value, grads } = tf.variableGrads(
      () => nextTokenLoss(model, windows, { training: true, rng }),
      [...model.variables.values()],
    );
    opt.apply(new Map([...model.variables].map(([n, v]) => [n, grads[v.name]])), 0.01);
    tf.dispose([value, ...Object.values(grads)]);
  }
  assert.equal(tf.memory().numTensors, before);
  const last = evalLoss();
  assert.ok(
    Math.abs(first - Math.log(VOCAB)) < 0.2,
    `initial loss ${first} should be near ln(${VOCAB})`,
  );
  assert.ok(last < first - 0.5, `loss went from ${first} to ${last}`);
  opt.dispose();
  windows.dispose();
  model.dispose();
});

Deno.test("model/transformer: recomputing blocks gives the same gradients with less memory", () => {
  const plain = tinyTransformer(6, { dropout: 0.2, recompute: false });
  const recomputed = tinyTransformer(6, { dropout: 0.2, recompute: true });
  const windows = randomTokens(2, 9, 3);
  const grads = (model: typeof plain) => {
    const rng = createRng(11); // same dropout masks for both
    const { value, grads } = tf.variableGrads(
      () => nextTokenLoss(model, windows, { training: true, rng }),
      [...model.variables.values()],
    );
    const byName = new Map([...model.variables].map(([n, v]) => [n, grads[v.name]]));
    return { value, byName };
  };
  // Caches the causal masks for T = 8.
  for (const m of [plain, recomputed]) {
    tf.tidy(() => nextTokenLoss(m, windows, { training: false }));
  }
  const before = tf.memory().numTensors;
  const a = grads(plain);
  const b = grads(recomputed);
  assert.ok(Math.abs(a.value.dataSync()[0] - b.value.dataSync()[0]) < 1e-6);
  for (const [name, g] of a.byName) {
    assert.ok(maxAbsDiff(g, b.byName.get(name)!) < 1e-5, `gradient of "${name}" differs`);
  }
  tf.dispose([a.value, b.value, ...a.byName.values(), ...b.byName.values()]);
  assert.equal(tf.memory().numTensors, before);
  // Peak memory of one training step: recomputation keeps fewer tensors alive.
  const peak = (model: typeof plain) => {
    const rng = createRng(1);
    tf.engine().startScope();
    const startBytes = tf.memory().numBytes;
    let peakBytes = 0;
    const probe = tf.engine() as unknown as { state: { numBytes: number } };
    const { value, grads } = tf.variableGrads(() => {
      const loss = nextTokenLoss(model, windows, { training: true, rng });
      peakBytes = Math.max(peakBytes, probe.state.numBytes);
      return loss;
    }, [...model.variables.values()]);
    peakBytes = Math.max(peakBytes, probe.state.numBytes);
    tf.dispose([value, ...Object.values(grads)]);
    tf.engine().endScope();
    return peakBytes - startBytes;
  };
  assert.ok(peak(recomputed) < peak(plain), "activations kept after the forward pass");
  tf.dispose(windows);
  plain.dispose();
  recomputed.dispose();
});

Deno.test("model/transformer rejects an odd head size and positions past maxLen", () => {
  assert.throws(() => tinyTransformer(1, { dModel: 18, heads: 2 }), /must be an even integer/);
  const model = tinyTransformer(1, { maxLen: 4 });
  const tokens = randomTokens(1, 5, 1);
  assert.throws(() => model.forward(tokens, { training: false }), /maxLen is 4; raise "maxLen"/);
  tokens.dispose();
  model.dispose();
});

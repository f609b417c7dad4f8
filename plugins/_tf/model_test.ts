import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "./backend.ts";
import { AdamW, clipByGlobalNorm, learningRateAt } from "./optim.ts";
import {
  assignWeights,
  layerNorm,
  linear,
  nextTokenLoss,
  type SequenceModel,
  tanhViaSigmoid,
  tokenNll,
  unstackTime,
} from "./model.ts";
import {
  checkpointFromModel,
  loadCheckpointFile,
  modelCodec,
  modelFromCheckpoint,
  saveCheckpointFile,
} from "./checkpoint.ts";
import lstm from "../model/lstm.ts";
import transformer from "../model/transformer.ts";
import { createRng } from "../../pipeline/rng.ts";
import { defaultParams, testContext } from "../_testing.ts";
import { maxAbsDiff } from "./testdata/numeric.ts";

await initBackend("cpu");

const VOCAB = 9;

function tinyModels(): SequenceModel[] {
  return [
    lstm.create(defaultParams(lstm, { embedDim: 4, hiddenDim: 6, layers: 2 }) as never)
      .build(VOCAB, 1),
    transformer.create(
      defaultParams(transformer, {
        dModel: 8,
        heads: 2,
        layers: 2,
        ffDim: 12,
        maxLen: 16,
      }) as never,
    ).build(VOCAB, 1),
  ];
}

const close = (a: number, b: number, eps = 1e-6) => Math.abs(a - b) < eps;

Deno.test("AdamW: one step matches the hand-computed update, decaying matrices only", () => {
  const w = tf.variable(tf.ones([1, 1]));
  const b = tf.variable(tf.ones([1]));
  const opt = new AdamW(new Map([["w", w], ["b", b]]), { weightDecay: 0.1 });
  const before = tf.memory().numTensors;
  const g = new Map<string, tf.Tensor>([["w", tf.fill([1, 1], 0.5)], ["b", tf.fill([1], 0.5)]]);
  opt.apply(g, 0.1);
  // m = 0.05, v = 0.0125; bias-corrected 0.5 and 0.25, so the step is 0.5 / 0.5 = 1.
  // w = 1 * (1 - 0.1 * 0.1) - 0.1 * 1 = 0.89; b is not decayed: 1 - 0.1 = 0.9.
  assert.ok(close(w.dataSync()[0], 0.89));
  assert.ok(close(b.dataSync()[0], 0.9));
  tf.dispose([...g.values()]);
  assert.equal(tf.memory().numTensors, before);
  assert.equal(opt.step, 1);
  opt.dispose();
  tf.dispose([w, b]);
});

Deno.test("learningRateAt() warms up linearly, then decays on a cosine to minLr", () => {
  const s = { peakLr: 1, minLr: 0.1, warmupSteps: 4, totalSteps: 14 };
  assert.equal(learningRateAt(0, s), 0.25);
  assert.equal(learningRateAt(3, s), 1);
  assert.ok(close(learningRateAt(4, s), 1));
  assert.ok(close(learningRateAt(9, s), 0.55)); // halfway: cos(pi/2) = 0
  assert.ok(close(learningRateAt(14, s), 0.1));
  assert.ok(close(learningRateAt(99, s), 0.1));
});

Deno.test("clipByGlobalNorm() scales gradients to the norm limit", async () => {
  const grads = new Map<string, tf.Tensor>([["a", tf.tensor1d([3])], ["b", tf.tensor2d([[4]])]]);
  const clipped = await clipByGlobalNorm(grads, 1);
  assert.equal(clipped.norm, 5);
  assert.ok(close(clipped.grads.get("a")!.dataSync()[0], 0.6));
  assert.ok(close(clipped.grads.get("b")!.dataSync()[0], 0.8));
  const kept = await clipByGlobalNorm(grads, 10);
  assert.equal(kept.grads.get("b")!.dataSync()[0], 4);
  tf.dispose([...grads.values(), ...clipped.grads.values(), ...kept.grads.values()]);
});

Deno.test("linear() with and without a bias has the value and gradients of tfjs's own ops", () => {
  const before = tf.memory().numTensors;
  const x = tf.tensor2d([[1, -2, 0.5], [3, 0.25, -1]]); // [rows 2, in 3]
  const w = tf.tensor2d([[0.5, -1], [2, 0.125], [-0.75, 1.5]]); // [in 3, out 2]
  const b = tf.tensor1d([0.1, -0.2]);
  const dy = tf.tensor2d([[1, -3], [0.5, 2]]); // upstream gradient
  for (const withBias of [true, false]) {
    const ours = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
      withBias ? linear(xx as tf.Tensor2D, ww, bb) : tf.add(linear(xx as tf.Tensor2D, ww), bb);
    const stock = (xx: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
      tf.add(tf.matMul(xx as tf.Tensor2D, ww as tf.Tensor2D), bb);
    const got = tf.grads(ours)([x, w, b], dy);
    const want = tf.grads(stock)([x, w, b], dy);
    const valueDiff = tf.tidy(() => maxAbsDiff(ours(x, w, b), stock(x, w, b)));
    assert.ok(valueDiff < 1e-6, `value, bias ${withBias}: off by ${valueDiff}`);
    got.forEach((g, i) => {
      const diff = maxAbsDiff(g, want[i]);
      assert.ok(diff < 1e-6, `gradient ${i}, bias ${withBias}: off by ${diff}`);
    });
    tf.dispose([...got, ...want]);
  }
  tf.dispose([x, w, b, dy]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("layerNorm() of [rows, n] and of [B, T, n] has the value and gradients of tfjs's own ops", () => {
  const before = tf.memory().numTensors;
  const rng = createRng(6);
  const random = (shape: number[]) =>
    tf.tensor(Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, rng.normal), shape);
  const gain = random([5]), bias = random([5]);
  const stock = (xx: tf.Tensor, gg: tf.Tensor, bb: tf.Tensor) => {
    const { mean, variance } = tf.moments(xx, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(xx, mean), tf.rsqrt(tf.add(variance, 1e-5))), gg), bb);
  };
  for (const shape of [[4, 5], [2, 3, 5]]) {
    tf.tidy(() => {
      const x = random(shape), dy = random(shape);
      const value = layerNorm(x, gain, bias);
      assert.deepEqual(value.shape, shape);
      const diff = maxAbsDiff(value, stock(x, gain, bias));
      assert.ok(diff < 1e-5, `value of [${shape}]: off by ${diff}`);
      const got = tf.grads(layerNorm)([x, gain, bias], dy);
      const want = tf.grads(stock)([x, gain, bias], dy);
      got.forEach((g, i) => {
        const diff = maxAbsDiff(g, want[i]);
        assert.ok(diff < 1e-5, `gradient ${i} of [${shape}]: off by ${diff}`);
      });
    });
  }
  tf.dispose([gain, bias]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("tokenNll() of uniform logits is ln(vocab) and of a sure guess is 0", () => {
  tf.tidy(() => {
    const uniform = tokenNll(tf.zeros([2, 3, VOCAB]), tf.zeros([2, 3], "int32"));
    assert.ok(Array.from(uniform.dataSync()).every((x) => close(x, Math.log(VOCAB), 1e-5)));
    const sure = tokenNll(
      tf.mul(tf.oneHot([[2]], VOCAB), 100) as tf.Tensor3D,
      tf.tensor2d([[2]], [1, 1], "int32"),
    );
    assert.ok(close(sure.dataSync()[0], 0, 1e-5));
  });
});

Deno.test("building and disposing each model leaves no tensors behind", () => {
  const before = tf.memory().numTensors;
  for (const model of tinyModels()) model.dispose();
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("modelCodec and checkpoint files round-trip weights, optimizer state and logits", async () => {
  for (const model of tinyModels()) {
    const opt = new AdamW(model.variables);
    const windows = tf.tensor2d([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]], undefined, "int32");
    const rng = createRng(1);
    const { value, grads } = tf.variableGrads(
      () => nextTokenLoss(model, windows, { training: true, rng }),
      [...model.variables.values()],
    );
    opt.apply(new Map([...model.variables].map(([n, v]) => [n, grads[v.name]])), 0.01);
    tf.dispose([value, ...Object.values(grads)]);
    const ckpt = await checkpointFromModel(model, {
      tokenizer: { use: "tokenizer/performance", with: {} },
      optimizer: opt,
      rngState: [1, 2, 3, 4],
      metrics: { "nll/validation": 1.5 },
    });
    assert.equal(ckpt.step, 1);
    const dir = Deno.makeTempDirSync();
    await modelCodec.save(ckpt, dir);
    const viaCodec = await modelCodec.load(dir);
    await saveCheckpointFile(`${dir}/x.ckpt`, ckpt);
    const viaFile = await loadCheckpointFile(`${dir}/x.ckpt`);
    for (const loaded of [viaCodec, viaFile]) {
      assert.deepEqual(loaded, ckpt);
      const copy = await modelFromCheckpoint(testContext(), loaded);
      const input = tf.tensor2d([[1, 2, 3, 4]], undefined, "int32");
      const a = model.forward(input, { training: false });
      const b = copy.forward(input, { training: false });
      assert.deepEqual(b.dataSync(), a.dataSync());
      tf.dispose([input, a, b]);
      copy.dispose();
    }
    // Models written before the format was renamed "harmonyrl/model" still load, in both forms.
    const oldName = (text: string) =>
      text.replace('"format":"harmonyrl/model"', '"format":"harmonyrl-model"');
    const indexText = Deno.readTextFileSync(`${dir}/index.json`);
    assert.ok(indexText.includes('"format":"harmonyrl/model"'));
    Deno.writeTextFileSync(`${dir}/index.json`, oldName(indexText));
    assert.deepEqual(await modelCodec.load(dir), ckpt);
    const fileBytes = Deno.readFileSync(`${dir}/x.ckpt`);
    const needle = new TextEncoder().encode('"format":"harmonyrl/model"');
    const at = fileBytes.findIndex((_, i) => needle.every((b, j) => fileBytes[i + j] === b));
    assert.ok(at > 0);
    // Same length, so the header's JSON length stays right.
    fileBytes[at + needle.indexOf("/".charCodeAt(0))] = "-".charCodeAt(0);
    Deno.writeFileSync(`${dir}/old.ckpt`, fileBytes);
    assert.deepEqual(await loadCheckpointFile(`${dir}/old.ckpt`), ckpt);
    // A truncated file and a foreign file fail with clear messages.
    const bytes = Deno.readFileSync(`${dir}/x.ckpt`);
    Deno.writeFileSync(`${dir}/cut.ckpt`, bytes.subarray(0, 20));
    await assert.rejects(() => loadCheckpointFile(`${dir}/cut.ckpt`), /the file is truncated/);
    Deno.writeFileSync(`${dir}/other.ckpt`, new TextEncoder().encode("hello world"));
    await assert.rejects(
      () => loadCheckpointFile(`${dir}/other.ckpt`),
      /not a HarmonyRL checkpoint/,
    );
    assert.deepEqual(
      Deno.readDirSync(dir).map((e) => e.name).filter((n) => n.includes(".tmp")).toArray(),
      [],
    );
    Deno.removeSync(dir, { recursive: true });
    windows.dispose();
    opt.dispose();
    model.dispose();
  }
});

Deno.test("assignWeights() names a missing or misshapen weight", () => {
  const [model] = tinyModels();
  const weights = Object.fromEntries(
    [...model.variables].map((
      [n, v],
    ) => [n, { shape: [...v.shape], data: new Float32Array(v.size) }]),
  );
  const { embedding: _dropped, ...missing } = weights;
  assert.throws(() => assignWeights(model, missing), /"embedding" is missing/);
  assert.throws(
    () =>
      assignWeights(model, {
        ...weights,
        "output/bias": { shape: [2], data: new Float32Array(2) },
      }),
    /"output\/bias" has shape \[2\], the model expects \[9\]/,
  );
  assert.throws(
    () => assignWeights(model, { ...weights, extra: weights.embedding }),
    /"extra" is not a weight/,
  );
  model.dispose();
});

Deno.test("unstackTime() and tanhViaSigmoid() on wasm equal tf.unstack and tf.tanh", async () => {
  await initBackend("wasm");
  try {
    tf.tidy(() => {
      const x = tf.randomNormal([5, 3, 4], 0, 2, "float32", 1);
      const ours = unstackTime(x);
      const stock = tf.unstack(x);
      assert.equal(ours.length, 5);
      for (let t = 0; t < 5; t++) {
        assert.deepEqual(ours[t].shape, [3, 4]);
        assert.deepEqual(ours[t].dataSync(), stock[t].dataSync());
      }
      const diff = tf.max(tf.abs(tf.sub(tanhViaSigmoid(x), tf.tanh(x)))).dataSync()[0];
      assert.ok(diff < 1e-6, `tanh differs by ${diff}`);
    });
  } finally {
    await initBackend("cpu");
  }
});

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { createRng } from "../../pipeline/rng.ts";
import { initBackend } from "./backend.ts";
import {
  cosineSchedule,
  createTrainer,
  ddimSample,
  ddimTimesteps,
  denoiseLoss,
  disposeTrainer,
  type EpsModel,
  type NoiseSchedule,
  qSample,
  refineRolls,
  sdeditRefine,
  sdeditStart,
  trainerCheckpoint,
  trainStep,
} from "./diffusion.ts";
import {
  createDenoiser,
  type Denoiser,
  denoiserCodec,
  type DenoiserConfig,
  denoiserConfig,
  denoiserForward,
  denoiserParamCount,
  disposeDenoiser,
} from "./denoiser.ts";
import { maxAbsDiff } from "./testdata/numeric.ts";

await initBackend("wasm");

const TINY: DenoiserConfig = denoiserConfig({
  channels: 16,
  blocks: 2,
  timeEmbedDim: 8,
  diffusionSteps: 50,
  bars: 1,
  stepsPerBeat: 2,
});

/** The ε a perfect model would predict for data `x0`: (x_t − √ᾱ_t x0)/√(1 − ᾱ_t). */
function oracle(x0: tf.Tensor, schedule: NoiseSchedule): EpsModel {
  return (xt, t) =>
    tf.tidy(() => {
      const ab = schedule.alphaBar[t[0]];
      return tf.div(tf.sub(xt, tf.mul(x0, Math.sqrt(ab))), Math.sqrt(1 - ab));
    });
}

Deno.test("cosineSchedule() falls monotonically from 1 to 0 and matches f(t)/f(0)", () => {
  const s = cosineSchedule(200);
  assert.equal(s.alphaBar[0], 1);
  for (let t = 1; t <= 200; t++) assert.ok(s.alphaBar[t] < s.alphaBar[t - 1], `t=${t}`);
  // f(t) = cos²((t/T + 0.008)/1.008 · π/2): f(1)/f(0) = 0.999745, f(100)/f(0) = 0.493844.
  assert.ok(Math.abs(s.alphaBar[1] - 0.9997450273636279) < 1e-12);
  assert.ok(Math.abs(s.alphaBar[100] - 0.4938435904406378) < 1e-12);
  // β_T is clipped at 0.999, so ᾱ_T = ᾱ_199 · 0.001 ≈ 6.07e-8.
  assert.ok(Math.abs(s.alphaBar[200] - 6.0718e-8) < 1e-11);
  assert.ok(s.beta.every((b) => b >= 0 && b <= 0.999));
  assert.throws(() => cosineSchedule(0), /steps must be an integer >= 1, got 0/);
});

Deno.test("qSample() has the closed-form mean √ᾱ·x0 and variance 1 − ᾱ", () => {
  const before = tf.memory().numTensors;
  const s = cosineSchedule(200);
  const ab = s.alphaBar[60]; // 0.78691
  // Deterministic parts: noise 0 gives the mean, x0 = 0 with noise 1 gives the standard deviation.
  const x0 = tf.fill([2, 3], 0.5);
  const zeros = tf.zeros([2, 3]);
  const ones = tf.ones([2, 3]);
  const mean = qSample(x0, zeros, [60, 60], s);
  const std = qSample(zeros, ones, [60, 60], s);
  assert.ok(Math.abs(mean.dataSync()[0] - 0.5 * Math.sqrt(0.7869105111508293)) < 1e-6);
  assert.ok(Math.abs(std.dataSync()[0] - Math.sqrt(1 - 0.7869105111508293)) < 1e-6);
  // Sampled: 20,000 draws of x_t for x0 = 1.
  const rng = createRng(3);
  const n = 20000;
  const noise = tf.tensor(Float32Array.from({ length: n }, () => rng.normal()), [n, 1]);
  const xt = qSample(tf.ones([n, 1]), noise, new Int32Array(n).fill(60), s);
  const values = xt.dataSync();
  let m = 0;
  for (const v of values) m += v / n;
  let v2 = 0;
  for (const v of values) v2 += (v - m) ** 2 / (n - 1);
  assert.ok(Math.abs(m - Math.sqrt(ab)) < 0.02, `mean ${m}`);
  assert.ok(Math.abs(v2 - (1 - ab)) < 0.02, `variance ${v2}`);
  tf.dispose([x0, zeros, ones, mean, std, noise, xt]);
  assert.ok(tf.memory().numTensors <= before + 1); // the ones() passed inline
});

Deno.test("ddimTimesteps() spaces the subsequence evenly from fromT down", () => {
  assert.deepEqual(ddimTimesteps(60, 4), [60, 45, 30, 15]);
  assert.deepEqual(ddimTimesteps(3, 10), [3, 2, 1]);
  assert.deepEqual(ddimTimesteps(200, 1), [200]);
  assert.equal(sdeditStart(0.3, 200), 60);
  assert.equal(sdeditStart(0.001, 200), 1);
});

Deno.test("ddimSample() with a perfect ε-oracle recovers x0 exactly", () => {
  const before = tf.memory().numTensors;
  const s = cosineSchedule(200);
  const rng = createRng(5);
  const x0 = tf.tensor(Float32Array.from({ length: 60 }, () => rng.next() * 2 - 1), [3, 4, 5]);
  const noise = tf.tensor(Float32Array.from({ length: 60 }, () => rng.normal()), [3, 4, 5]);
  for (const [fromT, steps] of [[150, 10], [150, 150], [60, 7], [1, 1]]) {
    const xt = qSample(x0, noise, new Int32Array(3).fill(fromT), s);
    const out = ddimSample(oracle(x0, s), xt, s, { fromT, steps, clipX0: false });
    assert.ok(maxAbsDiff(out, x0) < 1e-4, `fromT=${fromT} steps=${steps}: ${maxAbsDiff(out, x0)}`);
    tf.dispose([xt, out]);
  }
  // From pure noise at T (ᾱ_T ≈ 6e-8) float32 rounding is amplified by 1/√ᾱ_T; clipping x̂0 bounds it.
  const xT = qSample(x0, noise, new Int32Array(3).fill(200), s);
  const out = ddimSample(oracle(x0, s), xT, s, { steps: 20 });
  assert.ok(maxAbsDiff(out, x0) < 1e-3, `from T: ${maxAbsDiff(out, x0)}`);
  // SDEdit is DDIM from t0 = strength·T: with the oracle it returns its input.
  const refined = sdeditRefine(oracle(x0, s), x0, s, { strength: 0.3, steps: 20, noise });
  assert.ok(maxAbsDiff(refined, x0) < 1e-4);
  assert.throws(
    () => sdeditRefine(oracle(x0, s), x0, s, { strength: 0, steps: 20, noise }),
    /Cannot refine: strength must be in \(0, 1\], got 0/,
  );
  tf.dispose([x0, noise, xT, out, refined]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("denoiserForward() maps rolls to ε of the same shape and starts at ε = 0", () => {
  const before = tf.memory().numTensors;
  const d = createDenoiser(TINY, createRng(1));
  const paramsTensors = tf.memory().numTensors;
  // in: 528·16 + 16; time: 8·16 + 16 + 16·16 + 16; per block: norm 2·16, time 16·16 + 16,
  // global 16·16, conv 48·16 + 16, mix 16·16 + 16; head: norm 2·16, proj 48·352 + 352,
  // time 16·32 + 32, cell 6·32 + 32 + 32·2 + 2.
  const block = 32 + 272 + 256 + 784 + 272;
  const head = 32 + 16896 + 352 + 544 + 224 + 66;
  assert.equal(denoiserParamCount(TINY), 8464 + 416 + 2 * block + head);
  const x = tf.randomNormal([3, 8, 88, 2]);
  const eps = denoiserForward(d.config, d.params, x, [1, 25, 50]);
  assert.deepEqual(eps.shape, [3, 8, 88, 2]);
  assert.equal(tf.tidy(() => tf.max(tf.abs(eps)).dataSync()[0]), 0); // zero-initialised output layer
  tf.dispose([x, eps]);
  assert.equal(tf.memory().numTensors, paramsTensors);
  disposeDenoiser(d);
  assert.equal(tf.memory().numTensors, before);
});

/** A tiny batch: C major triads as rolls in [−1, 1], `[4, 8, 88, 2]`. */
function triadBatch(): tf.Tensor {
  const values = new Float32Array(4 * 8 * 176).fill(-1);
  [[60, 64, 67], [62, 65, 69], [64, 67, 71], [65, 69, 72]].forEach((chord, b) => {
    for (const pitch of chord) {
      for (let s = 0; s < 8; s++) {
        values[b * 8 * 176 + s * 176 + (pitch - 21) * 2 + (s % 4 === 0 ? 0 : 1)] = 1;
      }
    }
  });
  return tf.tensor(values, [4, 8, 88, 2]);
}

Deno.test("trainStep() lowers the denoising loss on a tiny batch without leaking tensors", async () => {
  const before = tf.memory().numTensors;
  const trainer = createTrainer(createDenoiser(TINY, createRng(2)));
  const d = trainer.denoiser;
  const x0 = triadBatch();
  const s = cosineSchedule(TINY.diffusionSteps);
  const rng = createRng(9);
  const noise = tf.tensor(Float32Array.from({ length: x0.size }, () => rng.normal()), x0.shape);
  const t = [5, 15, 30, 45];
  const lossOf = () => {
    const l = denoiseLoss(d, x0, t, noise, s);
    const v = l.dataSync()[0];
    l.dispose();
    return v;
  };
  const initial = lossOf();
  assert.ok(Math.abs(initial - 1) < 0.05, `an ε = 0 model scores mean(ε²) ≈ 1, got ${initial}`);
  await trainStep(trainer, x0, rng, { lr: 3e-3, warmupSteps: 1 });
  const afterFirst = tf.memory().numTensors;
  for (let i = 0; i < 40; i++) await trainStep(trainer, x0, rng, { lr: 3e-3, warmupSteps: 1 });
  assert.equal(tf.memory().numTensors, afterFirst, "a step leaves as many tensors as it found");
  const final = lossOf();
  assert.ok(final < 0.5 * initial, `loss ${initial} -> ${final}`);
  assert.equal(d.step, 41);
  assert.equal(trainer.optimizer.step, 41);
  tf.dispose([x0, noise]);
  disposeTrainer(trainer);
  assert.equal(tf.memory().numTensors, before);
});

/**
 * A tiny denoiser trained one step, and its checkpoint `d` (weights and Adam moments) saved in
 * a new temporary folder `dir`.
 */
async function savedCheckpoint() {
  const trainer = createTrainer(createDenoiser(TINY, createRng(4)));
  const x0 = triadBatch();
  await trainStep(trainer, x0, createRng(1), { lr: 1e-3 });
  x0.dispose();
  const d = await trainerCheckpoint(trainer);
  const dir = await Deno.makeTempDir();
  await denoiserCodec.save(d, dir);
  return { trainer, d, dir };
}

Deno.test("denoiserCodec round-trips weights, step and Adam state in binary", async () => {
  const before = tf.memory().numTensors;
  const { trainer, d, dir } = await savedCheckpoint();
  const bytes = (await Deno.stat(`${dir}/weights.bin`)).size;
  assert.equal(bytes, 3 * 4 * denoiserParamCount(TINY)); // weights + m + v, float32
  const back: Denoiser = await denoiserCodec.load(dir);
  assert.deepEqual(back.config, d.config);
  assert.equal(back.step, 1);
  assert.equal(back.optimizer?.step, 1);
  assert.deepEqual(Object.keys(back.params), Object.keys(d.params));
  for (const name of Object.keys(d.params)) {
    assert.equal(maxAbsDiff(back.params[name], d.params[name]), 0, name);
    assert.deepEqual(back.optimizer!.m[name], d.optimizer!.m[name], name);
    assert.deepEqual(back.optimizer!.v[name], d.optimizer!.v[name], name);
  }
  // The moments are stored under the model checkpoints' names.
  const index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
  const names = index.tensors.map((e: { name: string }) => e.name);
  assert.ok(names.includes("optimizer/m/in/w") && names.includes("optimizer/v/in/w"));
  // Denoisers written before the format was renamed "harmonyrl/denoiser" still load.
  assert.equal(index.format, "harmonyrl/denoiser");
  await Deno.writeTextFile(
    `${dir}/index.json`,
    JSON.stringify({ ...index, format: "harmonyrl-denoiser" }),
  );
  const old = await denoiserCodec.load(dir);
  for (const name of Object.keys(d.params)) {
    assert.equal(maxAbsDiff(old.params[name], d.params[name]), 0, name);
  }
  disposeDenoiser(old);
  // A config that disagrees with the stored tensors is refused.
  index.config.channels = 32;
  await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
  await assert.rejects(
    () => denoiserCodec.load(dir),
    /Cannot load denoiser from ".*": tensor "in\/w" has shape \[528,16\], the config expects \[528,32\]/,
  );
  disposeTrainer(trainer);
  disposeDenoiser(back);
  await Deno.remove(dir, { recursive: true });
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("denoiserCodec loads a checkpoint written with the old adam/m/, adam/v/ names", async () => {
  const before = tf.memory().numTensors;
  const { trainer, d, dir } = await savedCheckpoint();
  // Rewrite the index as denoisers wrote it before they shared the model checkpoints' layout:
  // moments named "adam/m/<name>", "adam/v/<name>", entries without "length".
  const index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
  index.tensors = index.tensors.map((e: { name: string; shape: number[]; offset: number }) => ({
    name: e.name.replace(/^optimizer\//, "adam/"),
    shape: e.shape,
    offset: e.offset,
  }));
  assert.ok(index.tensors.some((e: { name: string }) => e.name === "adam/v/in/w"));
  await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
  const old = await denoiserCodec.load(dir);
  assert.equal(old.optimizer?.step, 1);
  for (const name of Object.keys(d.params)) {
    assert.equal(maxAbsDiff(old.params[name], d.params[name]), 0, name);
    assert.deepEqual(old.optimizer!.m[name], d.optimizer!.m[name], name);
    assert.deepEqual(old.optimizer!.v[name], d.optimizer!.v[name], name);
  }
  // Training goes on from the old checkpoint as from the new one.
  const resumed = createTrainer(old);
  assert.equal(resumed.optimizer.step, 1);
  disposeTrainer(trainer);
  disposeTrainer(resumed);
  await Deno.remove(dir, { recursive: true });
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("refineRolls() returns rolls in [0, 1] of the input's shape, reproducibly", () => {
  const before = tf.memory().numTensors;
  const d = createDenoiser(TINY, createRng(4));
  const seg = new Float32Array(8 * 176);
  seg[(0 * 88 + 39) * 2] = 1;
  const a = refineRolls(d, [seg, seg, seg], {
    strength: 0.5,
    steps: 5,
    rng: createRng(1),
    batchSize: 2,
  });
  const b = refineRolls(d, [seg, seg, seg], { strength: 0.5, steps: 5, rng: createRng(1) });
  assert.equal(a.length, 3);
  assert.ok(a.every((r) => r.length === seg.length && r.every((v) => v >= 0 && v <= 1)));
  assert.deepEqual(a[2], b[2]);
  // The untrained model predicts ε = 0, so x̂0 = x_t/√ᾱ clipped: the onset stays on.
  assert.ok(a[0][(0 * 88 + 39) * 2] > 0.5);
  // Two samples average two noise draws: the same as two one-sample runs on one generator.
  const rng = createRng(8);
  const first = refineRolls(d, [seg], { strength: 0.9, steps: 3, rng });
  const second = refineRolls(d, [seg], { strength: 0.9, steps: 3, rng });
  const both = refineRolls(d, [seg], { strength: 0.9, steps: 3, rng: createRng(8), samples: 2 });
  assert.ok(first[0].some((v, i) => v !== second[0][i]), "the draws differ");
  assert.ok(both[0].every((v, i) => Math.abs(v - (first[0][i] + second[0][i]) / 2) < 1e-6));
  assert.throws(
    () =>
      refineRolls(d, [seg, new Float32Array(5)], { strength: 0.5, steps: 5, rng: createRng(1) }),
    /every segment must hold the same whole number of 176-cell steps/,
  );
  disposeDenoiser(d);
  assert.equal(tf.memory().numTensors, before);
});

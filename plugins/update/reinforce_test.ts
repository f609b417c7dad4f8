import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../_tf/backend.ts";
import { checkpointFromModel, type ModelCheckpoint } from "../_tf/model.ts";
import { defaultParams, testContext } from "../../pipeline/testing.ts";
import lstm from "../model/lstm.ts";
import reinforce from "./reinforce.ts";
import ppo from "./ppo.ts";

await initBackend("cpu");

const TOKENIZER = { use: "tokenizer/performance", with: {} };
const BOS = 389;
// Two sampled sequences after BOS: a rising figure (rewarded) and a falling one.
const GOOD = Int32Array.from([BOS, 60, 62, 64, 65, 67]);
const BAD = Int32Array.from([BOS, 72, 70, 68, 66, 64]);

async function tinyPolicy(): Promise<ModelCheckpoint> {
  const spec = lstm.create(
    defaultParams(lstm, { embedDim: 8, hiddenDim: 16, layers: 1, dropout: 0 }) as never,
  );
  const model = spec.build(391, 3);
  const ckpt = await checkpointFromModel(model, { tokenizer: TOKENIZER });
  model.dispose();
  return ckpt;
}

async function sequenceLogProb(ckpt: ModelCheckpoint, seq: Int32Array): Promise<number> {
  const { loadModelFromCheckpoint } = await import("../model/_build.ts");
  const model = await loadModelFromCheckpoint(ckpt);
  const value = tf.tidy(() => {
    const inputs = tf.tensor2d([Array.from(seq.slice(0, -1))], undefined, "int32");
    const logits = model.forward(inputs, { training: false });
    const logP = tf.logSoftmax(logits);
    return tf.sum(
      tf.mul(logP, tf.oneHot(tf.tensor2d([Array.from(seq.slice(1))], undefined, "int32"), 391)),
    );
  });
  const out = (await value.data())[0];
  value.dispose();
  model.dispose();
  return out;
}

const rollouts = { tokens: [GOOD, BAD, GOOD, BAD], primerLen: 0 };
const rewards = { total: [1, 0, 1, 0], terms: { toy: [1, 0, 1, 0] }, weights: { toy: 1 } };

Deno.test("update/reinforce raises the probability of the rewarded sequence and lowers the other", async () => {
  const start = await tinyPolicy();
  const before = [await sequenceLogProb(start, GOOD), await sequenceLogProb(start, BAD)];
  let ckpt = start;
  const ctx = testContext();
  let afterFirst = 0;
  for (let i = 0; i < 5; i++) {
    if (i === 1) afterFirst = tf.memory().numTensors;
    ctx.iteration = i;
    ckpt = (await reinforce.run(
      ctx,
      { model: ckpt, rollouts, rewards },
      defaultParams(reinforce, { lr: 1e-2, klCoef: 0 }) as never,
    )).model as ModelCheckpoint;
  }
  const afterLast = tf.memory().numTensors;
  const after = [await sequenceLogProb(ckpt, GOOD), await sequenceLogProb(ckpt, BAD)];
  assert.ok(after[0] > before[0] + 0.2, `rewarded: ${before[0]} -> ${after[0]}`);
  assert.ok(after[1] < before[1], `unrewarded: ${before[1]} -> ${after[1]}`);
  assert.equal(ckpt.metrics["rl/episodes"], 5);
  // The baseline starts at the first batch mean (0.5) and stays there for equal batches.
  assert.ok(Math.abs(ckpt.metrics["rl/baseline"] - 0.5) < 1e-9);
  const last = ctx.recorded.at(-1)!.values;
  for (
    const name of ["reward/total", "loss/policy", "policy/entropy", "policy/kl", "update/skipped"]
  ) {
    assert.ok(name in last, name);
  }
  assert.equal(last["update/skipped"], 0);
  // The live policy and its optimizer are kept for the next episode; episodes leak nothing.
  assert.equal(afterLast, afterFirst);
});

Deno.test("update/reinforce: the KL term is zero against itself and holds the policy near the reference", async () => {
  const start = await tinyPolicy();
  const run = async (klCoef: number) => {
    let ckpt = start;
    const ctx = testContext();
    for (let i = 0; i < 6; i++) {
      ctx.iteration = i;
      ckpt = (await reinforce.run(
        ctx,
        { model: ckpt, reference: start, rollouts, rewards },
        defaultParams(reinforce, { lr: 3e-2, klCoef, entropyCoef: 0 }) as never,
      )).model as ModelCheckpoint;
    }
    return ctx.recorded.map((r) => r.values["policy/kl"]);
  };
  const free = await run(0);
  const held = await run(5);
  assert.ok(Math.abs(free[0]) < 1e-5, `KL of the policy to itself: ${free[0]}`);
  assert.ok(free.at(-1)! > 0, "KL grows as the policy moves");
  assert.ok(
    held.at(-1)! < free.at(-1)! * 0.8,
    `with the penalty ${held.at(-1)} vs without ${free.at(-1)}`,
  );
});

Deno.test("update/ppo raises the probability of the rewarded sequence", async () => {
  const start = await tinyPolicy();
  const before = await sequenceLogProb(start, GOOD);
  const ctx = testContext();
  const ckpt = (await ppo.run(
    ctx,
    { model: start, rollouts, rewards },
    defaultParams(ppo, { lr: 1e-2, klCoef: 0, epochs: 4 }) as never,
  )).model as ModelCheckpoint;
  assert.ok(await sequenceLogProb(ckpt, GOOD) > before + 0.3);
  assert.ok(ctx.recorded[0].values["ppo/clipFraction"] >= 0);
});

Deno.test("updates reject a reward count that does not match the rollouts", async () => {
  const start = await tinyPolicy();
  await assert.rejects(
    () =>
      reinforce.run(
        testContext(),
        { model: start, rollouts, rewards: { total: [1], terms: {} } },
        defaultParams(reinforce) as never,
      ),
    /Cannot update: 1 rewards for 4 rollouts/,
  );
});

Deno.test("batchTensors() scores sampled tokens up to the first EOS, not the primer or padding", async () => {
  const { batchTensors } = await import("../_tf/policy_gradient.ts");
  const EOS = 9;
  const batch = batchTensors(
    { tokens: [Int32Array.from([8, 1, 2, 3, EOS, 4]), Int32Array.from([8, 1, 5])], primerLen: 1 },
    EOS,
  );
  assert.deepEqual(batch.inputs, [[8, 1, 2, 3, EOS], [8, 1, 5, EOS, EOS]]);
  assert.deepEqual(batch.targets, [[1, 2, 3, EOS, 4], [1, 5, EOS, EOS, EOS]]);
  assert.deepEqual(batch.mask, [[0, 1, 1, 1, 0], [0, 1, 0, 0, 0]]);
});

Deno.test("computeAdvantages() standardises each term per batch, or uses the total", async () => {
  const { computeAdvantages } = await import("../_tf/policy_gradient.ts");
  const rewards = {
    total: [0.7, 0.25, 0.55],
    terms: { a: [1, 0, 0.5], b: [0.4, 0.5, 0.6] },
    weights: { a: 1, b: 1 },
  };
  // Per term: z_a = [√1.5, −√1.5, 0], z_b = [−√1.5, 0, √1.5]; A = (z_a + z_b) / 2.
  const perTerm = computeAdvantages(rewards, {}, {
    mode: "per-term",
    baselineBeta: 0.9,
    normalize: false,
  });
  const z = Math.sqrt(1.5);
  perTerm.advantages.forEach((a, i) => assert.ok(Math.abs(a - [0, -z / 2, z / 2][i]) < 1e-12));
  assert.deepEqual(perTerm.baselines, {
    "rl/baseline": 0.5,
    "rl/baseline/a": 0.5,
    "rl/baseline/b": 0.5,
  });
  // With one total, the high-variance term a decides: the first piece is best.
  const total = computeAdvantages(rewards, {}, {
    mode: "total",
    baselineBeta: 0.9,
    normalize: false,
  });
  total.advantages.forEach((a, i) => assert.ok(Math.abs(a - [0.2, -0.25, 0.05][i]) < 1e-12));
  // A stored baseline is used, then moved towards the batch mean by 1 − beta.
  const next = computeAdvantages(rewards, { "rl/baseline": 0.4 }, {
    mode: "total",
    baselineBeta: 0.9,
    normalize: false,
  });
  assert.ok(Math.abs(next.advantages[0] - 0.3) < 1e-12);
  assert.ok(Math.abs(next.baselines["rl/baseline"] - (0.9 * 0.4 + 0.1 * 0.5)) < 1e-12);
});

Deno.test("update/reinforce skips and logs an update whose loss is not finite, leaving the policy as it was", async () => {
  const start = await tinyPolicy();
  const ctx = testContext();
  const broken = { total: [NaN, 0, 1, 0], terms: { toy: [NaN, 0, 1, 0] }, weights: { toy: 1 } };
  const out = await reinforce.run(
    ctx,
    { model: start, rollouts, rewards: broken },
    defaultParams(reinforce, { lr: 1e-2 }) as never,
  );
  const ckpt = out.model as ModelCheckpoint;
  assert.equal(ctx.recorded[0].values["update/skipped"], 1);
  assert.ok(ctx.logs.some((l) => l.level === "warn" && /not finite/.test(l.message)));
  for (const [name, tensor] of Object.entries(start.weights)) {
    assert.deepEqual(ckpt.weights[name].data, tensor.data, `${name} changed`);
  }
  // No NaN baseline is stored, so the next episode updates normally.
  assert.ok(Object.entries(ckpt.metrics).every(([, v]) => Number.isFinite(v)));
  await reinforce.run(
    ctx,
    { model: ckpt, rollouts, rewards },
    defaultParams(reinforce, { lr: 1e-2 }) as never,
  );
  assert.equal(ctx.recorded[1].values["update/skipped"], 0);
});

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../_tf/backend.ts";
import { checkpointFromModel } from "../_tf/checkpoint.ts";
import { type ModelCheckpoint } from "../_tf/model.ts";
import {
  adaptiveKlCoef,
  computeAdvantages,
  importanceWeights,
  isOnPolicy,
  prepareUpdate,
  standardise,
} from "./_policy_gradient.ts";
import type { PartialRollouts } from "../_music/artifacts.ts";
import { defaultParams, testContext } from "../_testing.ts";
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
  const { modelFromCheckpoint } = await import("../_tf/checkpoint.ts");
  const model = await modelFromCheckpoint(testContext(), ckpt);
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
  const { batchTensors } = await import("./_policy_gradient.ts");
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
  const { computeAdvantages } = await import("./_policy_gradient.ts");
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

const close = (actual: number[], expected: number[], what = "") => {
  assert.equal(actual.length, expected.length, what);
  actual.forEach((a, i) =>
    assert.ok(Math.abs(a - expected[i]) < 1e-12, `${what}[${i}]: ${a} vs ${expected[i]}`)
  );
};

Deno.test("standardise() divides by the batch standard deviation, floored", () => {
  // [1, 2, 3]: mean 2, σ = √(2/3).
  const s = Math.sqrt(2 / 3);
  close(standardise([1, 2, 3], 2, 0.01), [-1 / s, 0, 1 / s]);
  // The centre need not be the batch mean (the deviations still come from the batch).
  close(standardise([1, 2, 3], 1, 0.01), [0, 1 / s, 2 / s]);
  // σ = 0.00005 is below the floor 0.01: divided by 0.01, not blown up to ±1.
  close(standardise([0.5, 0.5001], 0.50005, 0.01), [-0.005, 0.005]);
  close(standardise([0.5, 0.5001], 0.50005, 1e-6), [-1, 1]);
  // A constant batch, or one rollout, says nothing: 0 whatever the centre.
  close(standardise([0.7, 0.7, 0.7], 0.2, 0.01), [0, 0, 0]);
  close(standardise([0.9], 0.1, 0.01), [0]);
  // A non-finite reward poisons the batch.
  assert.ok(standardise([1, NaN, 0], 0.5, 0.01).every(Number.isNaN));
});

Deno.test("computeAdvantages(): a term constant in the batch gives every rollout 0, whatever its baseline", () => {
  const previous = { "rl/baseline": 0.2, "rl/baseline/a": 0.2, "rl/baseline/b": 0.5 };
  const constant = { total: [0.9, 0.9, 0.9], terms: { a: [0.9, 0.9, 0.9] }, weights: { a: 1 } };
  for (const normalize of [true, false]) {
    const out = computeAdvantages(constant, previous, {
      mode: "per-term",
      baselineBeta: 0.9,
      normalize,
    });
    close(out.advantages, [0, 0, 0], `per-term, normalize ${normalize}`);
    // The baseline still moves towards the batch mean: 0.9 × 0.2 + 0.1 × 0.9.
    assert.ok(Math.abs(out.baselines["rl/baseline/a"] - 0.27) < 1e-12);
  }
  const total = computeAdvantages(constant, previous, {
    mode: "total",
    baselineBeta: 0.9,
    normalize: true,
  });
  close(total.advantages, [0, 0, 0], "total");
  // Beside a varying term, a constant one adds nothing: A = (0 + z_b) / 2, z_b = [√1.5, −√1.5, 0].
  const mixed = {
    total: [0.9, 0.4, 0.6],
    terms: { a: [0.9, 0.9, 0.9], b: [1, 0, 0.5] },
    weights: { a: 1, b: 1 },
  };
  const z = Math.sqrt(1.5);
  const raw = computeAdvantages(mixed, previous, {
    mode: "per-term",
    baselineBeta: 0.9,
    normalize: false,
  });
  close(raw.advantages, [z / 2, -z / 2, 0]);
  // Normalised: divided once more by their own σ (√1.5 / 2 · √(2/3) = 0.5).
  const normalized = computeAdvantages(mixed, previous, {
    mode: "per-term",
    baselineBeta: 0.9,
    normalize: true,
  });
  close(normalized.advantages, [z, -z, 0]);
});

Deno.test("computeAdvantages() of the total divides by the batch σ with advantageStdFloor", () => {
  const rewards = { total: [0.7, 0.25, 0.55], terms: {} };
  // Mean 0.5, σ = √((0.04 + 0.0625 + 0.0025) / 3) = √0.035.
  const s = Math.sqrt(0.035);
  const out = computeAdvantages(rewards, { "rl/baseline": 0.1 }, {
    mode: "total",
    baselineBeta: 0.9,
    normalize: true,
  });
  close(out.advantages, [0.2 / s, -0.25 / s, 0.05 / s]);
  // A floor above σ: divided by the floor.
  const floored = computeAdvantages(rewards, {}, {
    mode: "total",
    baselineBeta: 0.9,
    normalize: true,
    stdFloor: 0.5,
  });
  close(floored.advantages, [0.4, -0.5, 0.1]);
  // The length guard scales each term's scores before they are standardised: a term that is
  // equal for a long and a short piece favours the long one.
  const guarded = computeAdvantages(
    { total: [0.5, 0.25], terms: { a: [0.5, 0.5] }, lengthFactor: [1, 0.5] },
    {},
    { mode: "per-term", baselineBeta: 0.9, normalize: false },
  );
  close(guarded.advantages, [1, -1]);
});

Deno.test("adaptiveKlCoef() moves β by at most gain × 20% towards the KL target", () => {
  const options = { target: 0.1, gain: 0.1 };
  // KL twice the target: error clipped to +0.2 → β × 1.02.
  assert.ok(Math.abs(adaptiveKlCoef(0.1, 0.2, options) - 0.102) < 1e-15);
  // Half the target: error −0.5 clipped to −0.2 → β × 0.98.
  assert.ok(Math.abs(adaptiveKlCoef(0.1, 0.05, options) - 0.098) < 1e-15);
  // 10% above: error 0.1 → β × 1.01.
  assert.ok(Math.abs(adaptiveKlCoef(0.1, 0.11, options) - 0.101) < 1e-15);
  assert.equal(adaptiveKlCoef(0.1, 0.1, options), 0.1);
  assert.ok(Math.abs(adaptiveKlCoef(2, 0, { target: 0.5, gain: 0.5 }) - 1.8) < 1e-15);
  // A KL that is not a number leaves β as it was.
  assert.equal(adaptiveKlCoef(0.1, NaN, options), 0.1);
});

Deno.test("isOnPolicy() and importanceWeights(): ρ = min(ρ̄, exp(log π − log q)) on sampled tokens", () => {
  assert.ok(isOnPolicy({ tokens: [] }));
  assert.ok(isOnPolicy({ tokens: [], sampling: { temperature: 1, topK: 0, topP: 1 } }));
  assert.ok(!isOnPolicy({ tokens: [], sampling: { temperature: 0.8, topK: 0, topP: 1 } }));
  assert.ok(!isOnPolicy({ tokens: [], sampling: { temperature: 1, topK: 5, topP: 1 } }));
  assert.ok(!isOnPolicy({ tokens: [], sampling: { temperature: 1, topK: 0, topP: 0.9 } }));
  // BOS, one primer token, then three sampled tokens; the second row stops after one.
  const rollouts: PartialRollouts = {
    tokens: [Int32Array.from([BOS, 60, 61, 62, 63]), Int32Array.from([BOS, 60, 64])],
    primerLen: 1,
    logProbs: [[-1, -2, -0.5], [-3]].map((row) => Float32Array.from(row)),
    samplingLogProbs: [[-1.5, -1, -0.5], [-1]].map((row) => Float32Array.from(row)),
    sampling: { temperature: 0.8, topK: 0, topP: 1 },
  };
  // Targets t = 0..3; target 0 is the primer (not sampled, ρ 1); padding also gets 1.
  const e = Math.exp;
  assert.deepEqual(importanceWeights(rollouts, 4, 1), [[1, 1, e(-1), 1], [1, e(-2), 1, 1]]);
  assert.deepEqual(importanceWeights(rollouts, 4, 2), [[1, e(0.5), e(-1), 1], [1, e(-2), 1, 1]]);
  assert.throws(
    () => importanceWeights({ tokens: rollouts.tokens, primerLen: 1 }, 4, 1),
    /^Error: Cannot correct for off-policy sampling: the rollouts carry no logProbs and samplingLogProbs$/,
  );
});

Deno.test("prepareUpdate() weights off-policy rollouts, or refuses them when importanceWeights is off", async () => {
  const start = await tinyPolicy();
  const offPolicy = {
    tokens: [GOOD, BAD],
    primerLen: 0,
    logProbs: [[-1, -1, -1, -1, -1], [-2, -2, -2, -2, -2]].map((row) => Float32Array.from(row)),
    samplingLogProbs: [[-1.5, -1.5, -1.5, -1.5, -1.5], [-1, -1, -1, -1, -1]].map((row) =>
      Float32Array.from(row)
    ),
    sampling: { temperature: 0.8, topK: 0, topP: 1 },
  };
  const twoRewards = { total: [1, 0], terms: { toy: [1, 0] }, weights: { toy: 1 } };
  const params = (overrides: Record<string, unknown>) =>
    defaultParams(reinforce, { klCoef: 0, ...overrides }) as never;
  await assert.rejects(
    () =>
      reinforce.run(
        testContext(),
        { model: start, rollouts: offPolicy, rewards: twoRewards },
        params({ importanceWeights: "off" }),
      ),
    /^Error: Cannot update from off-policy rollouts: they were sampled with temperature 0\.8, topK 0, topP 1, not from the policy itself; set the update's importanceWeights to "truncated" or sample with temperature 1, topK 0 and topP 1$/,
  );
  const prepared = await prepareUpdate(
    testContext(),
    { model: start, rollouts: offPolicy, rewards: twoRewards },
    params({ importanceWeights: "truncated", rhoMax: 1 }),
  );
  // min(1, e^0.5) = 1 for the first row, e^−1 for the second; 5 sampled targets each.
  assert.deepEqual(prepared.batch.rho, [[1, 1, 1, 1, 1], Array(5).fill(Math.exp(-1))]);
  // On-policy rollouts get no weights at all.
  const onPolicy = await prepareUpdate(
    testContext(),
    {
      model: start,
      rollouts: { ...offPolicy, sampling: { temperature: 1, topK: 0, topP: 1 } },
      rewards: twoRewards,
    },
    params({ importanceWeights: "off" }),
  );
  assert.equal(onPolicy.batch.rho, undefined);
  await assert.rejects(
    () =>
      reinforce.run(
        testContext(),
        { model: start, rollouts: { ...offPolicy, logProbs: undefined }, rewards: twoRewards },
        params({}),
      ),
    /Cannot correct for off-policy sampling/,
  );
});

Deno.test("update/reinforce adapts the KL coefficient to klTarget and carries it in the checkpoint", async () => {
  const start = await tinyPolicy();
  const ctx = testContext();
  let ckpt = start;
  const run = async (params: Record<string, unknown>) => {
    ckpt = (await reinforce.run(
      ctx,
      { model: ckpt, reference: start, rollouts, rewards },
      defaultParams(reinforce, { lr: 3e-2, entropyCoef: 0, ...params }) as never,
    )).model as ModelCheckpoint;
    return ctx.recorded.at(-1)!.values;
  };
  // Episode 1 starts at klCoef; the measured KL (0 against itself) is below the target, so β
  // shrinks by 2% for the next episode.
  const first = await run({ klCoef: 0.5, klTarget: 0.01, klGain: 0.1 });
  assert.equal(first["policy/klCoef"], 0.5);
  const beta1 = adaptiveKlCoef(0.5, first["policy/kl"], { target: 0.01, gain: 0.1 });
  assert.ok(Math.abs(ckpt.metrics["rl/klCoef"] - beta1) < 1e-12);
  assert.ok(Math.abs(beta1 - 0.49) < 1e-9, `${beta1}`);
  // Episode 2 uses the stored β, not klCoef.
  const second = await run({ klCoef: 0.5, klTarget: 0.01, klGain: 0.1 });
  assert.ok(Math.abs(second["policy/klCoef"] - beta1) < 1e-12);
  assert.ok(
    Math.abs(
      ckpt.metrics["rl/klCoef"] - adaptiveKlCoef(beta1, second["policy/kl"], {
        target: 0.01,
        gain: 0.1,
      }),
    ) < 1e-12,
  );
  // Without a target, β stays at klCoef.
  const fixed = await run({ klCoef: 0.3, klTarget: 0 });
  assert.equal(fixed["policy/klCoef"], 0.3);
  assert.equal(ckpt.metrics["rl/klCoef"], 0.3);
});

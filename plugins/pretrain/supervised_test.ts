import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../_tf/backend.ts";
import { learningRateAt } from "../_tf/optim.ts";
import { loadCheckpointFile } from "../_tf/checkpoint.ts";
import { type ModelCheckpoint, type ModelSpec } from "../_tf/model.ts";
import { buildTokenCorpus } from "../_music/token_corpus.ts";
import type { Split } from "../_music/types.ts";
import lstm from "../model/lstm.ts";
import { defaultParams, testContext } from "../_testing.ts";
import { DivergenceError, type ProgressUpdate } from "../../mod.ts";
import plugin, { formatDuration, scheduleStep } from "./supervised.ts";

await initBackend("cpu");

const VOCAB = 12;

/** Sequences BOS, a rising run of 1..5 repeated, EOS: easy to learn, so NLL must fall. */
function corpus(use = "tokenizer/test") {
  const seq = (
    offset: number,
  ) => [0, ...Array.from({ length: 40 }, (_, i) => 1 + ((i + offset) % 5)), 11];
  const sequences: { id: string; split: Split; tokens: number[] }[] = [];
  for (let i = 0; i < 6; i++) sequences.push({ id: `t${i}`, split: "train", tokens: seq(i) });
  for (let i = 0; i < 2; i++) {
    sequences.push({ id: `v${i}`, split: "validation", tokens: seq(i + 2) });
  }
  return buildTokenCorpus({ tokenizer: { use, with: {} }, vocabSize: VOCAB }, sequences);
}

function tinySpec(): ModelSpec {
  return lstm.create(
    defaultParams(lstm, { embedDim: 8, hiddenDim: 16, layers: 1, dropout: 0 }) as never,
  ) as ModelSpec;
}

const base = {
  seqLen: 12,
  batchSize: 4,
  epochs: 2,
  stepsPerEpoch: 4,
  lr: 0.02,
  warmupSteps: 2,
  minLr: 0.002,
  validationBatches: 2,
};

async function run(
  overrides: Record<string, unknown>,
  ctx = testContext({ seed: 3 }),
): Promise<ModelCheckpoint> {
  const params = defaultParams(plugin, { model: tinySpec(), ...base, ...overrides });
  const out = await plugin.run(ctx, { tokens: corpus() }, params as never);
  return out.model as ModelCheckpoint;
}

Deno.test("pretrain/supervised lowers validation NLL and outputs the best checkpoint", async () => {
  const before = tf.memory().numTensors;
  const ctx = testContext({ seed: 3 });
  const ckpt = await run({ epochs: 3 }, ctx);
  assert.equal(tf.memory().numTensors, before);
  const nll = ctx.recorded.filter((m) => "nll/validation" in m.values).map((m) =>
    m.values["nll/validation"]
  );
  assert.equal(nll.length, 3);
  const train = ctx.recorded.filter((m) => "loss/train" in m.values);
  assert.equal(train.length, 12);
  assert.ok(train.every((m) => m.values.lr > 0 && m.values.lr <= 0.02 + 1e-12));
  assert.ok(Math.abs(train[1].values.lr - 0.02) < 1e-12, "warmup reaches the peak at step 2");
  assert.ok(nll[2] < Math.log(VOCAB) - 0.5, `validation NLL ${nll} should fall well below ln(12)`);
  assert.equal(ckpt.metrics["nll/validation"], Math.min(...nll));
  assert.equal(ckpt.step, 4 * (nll.indexOf(Math.min(...nll)) + 1));
  assert.equal(ckpt.spec.type, "lstm");
  assert.equal(ckpt.vocabSize, VOCAB);
  assert.deepEqual(ckpt.tokenizer, { use: "tokenizer/test", with: {} });
  assert.ok(ckpt.optimizer !== undefined && ckpt.rngState !== undefined);
});

Deno.test("pretrain/supervised resumes a killed run at its saved step and ends identically", async () => {
  const whole = await run({});
  const dir = Deno.makeTempDirSync();
  const controller = new AbortController();
  const first = testContext({ seed: 3, dir, signal: controller.signal });
  // Abort mid-way through epoch 2 (step 6 of 8).
  first.progress = (u) => {
    if (u.done === 6) controller.abort();
  };
  await assert.rejects(() => run({}, first), (e: unknown) => (e as Error).name === "AbortError");
  assert.equal(first.recorded.filter((m) => "loss/train" in m.values).length, 6);

  const second = testContext({ seed: 3, dir });
  const resumed = await run({}, second);
  assert.ok(second.logs.some((l) => l.message.startsWith("Resuming from step 6 of 8")));
  const steps = second.recorded.filter((m) => "loss/train" in m.values).map((m) => m.step);
  assert.deepEqual(steps, [7, 8]);
  assert.equal(resumed.step, whole.step);
  for (const [name, w] of Object.entries(whole.weights)) {
    assert.deepEqual(resumed.weights[name].data, w.data, `weight "${name}" differs after resuming`);
  }
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("pretrain/supervised skips a step with a non-finite loss and warns", async () => {
  const spec = tinySpec();
  let calls = 0;
  const poisoned: ModelSpec = {
    ...spec,
    build(vocab, seed) {
      const model = spec.build(vocab, seed);
      const forward = model.forward.bind(model);
      return {
        ...model,
        forward(tokens, options) {
          // The second training step sees NaN logits.
          return options.training && ++calls === 2
            ? tf.tidy(() => tf.mul(forward(tokens, options), NaN))
            : forward(tokens, options);
        },
      };
    },
  };
  const ctx = testContext({ seed: 3 });
  const ckpt = await run({ model: poisoned, epochs: 1 }, ctx);
  assert.ok(
    ctx.logs.some((l) => l.level === "warn" && /^Skipped step 2: loss NaN/.test(l.message)),
  );
  assert.ok(Object.values(ckpt.weights).every((w) => w.data.every(Number.isFinite)));
  assert.ok(Number.isFinite(ckpt.metrics["nll/validation"]));
});

Deno.test("pretrain/supervised transposes only the performance encoding", async () => {
  const performance = buildTokenCorpus(
    { tokenizer: { use: "tokenizer/performance", with: {} }, vocabSize: 391 },
    [
      { id: "a", split: "train", tokens: [389, 60, 300, 188, 64, 300, 192, 390] },
      { id: "b", split: "validation", tokens: [389, 62, 300, 190, 390] },
    ],
  );
  const params = defaultParams(plugin, {
    model: tinySpec(),
    ...base,
    seqLen: 4,
    epochs: 1,
    stepsPerEpoch: 1,
  });
  const ctx = testContext();
  await plugin.run(ctx, { tokens: performance }, params as never);
  assert.ok(ctx.logs.some((l) => l.message.includes("with transposition")));
  const plain = testContext();
  await plugin.run(plain, { tokens: corpus() }, { ...params, seqLen: 12 } as never);
  assert.ok(!plain.logs.some((l) => l.message.includes("with transposition")));
});

Deno.test("pretrain/supervised rejects windows longer than the train split", async () => {
  await assert.rejects(
    () => run({ seqLen: 500 }),
    /the train split has 252 tokens, fewer than seqLen \+ 1 = 501; lower "seqLen"/,
  );
});

Deno.test("pretrain/supervised trains on time-stretched performance windows", async () => {
  // A repeated figure with time shifts, long enough for stretched windows of 8 + 1 tokens.
  const figure = [60, 280, 188, 62, 280, 190];
  const train = [389, ...Array.from({ length: 20 }, () => figure).flat(), 390];
  const performance = buildTokenCorpus(
    { tokenizer: { use: "tokenizer/performance", with: {} }, vocabSize: 391 },
    [
      { id: "a", split: "train", tokens: train },
      { id: "b", split: "validation", tokens: train.slice(0, 40) },
    ],
  );
  const params = defaultParams(plugin, {
    model: tinySpec(),
    ...base,
    seqLen: 8,
    epochs: 1,
    stepsPerEpoch: 3,
    stretch: 0.05,
  });
  const ctx = testContext();
  const out = await plugin.run(ctx, { tokens: performance }, params as never);
  const ckpt = out.model as ModelCheckpoint;
  assert.equal(ckpt.step, 3);
  assert.ok(ctx.recorded.every((m) => Object.values(m.values).every(Number.isFinite)));
});

Deno.test("pretrain/supervised fails with DivergenceError when the learning rate blows the model up", async () => {
  const before = tf.memory().numTensors;
  const diverged = await run({ lr: 1e9, minLr: 1e8 }).then(
    () => undefined,
    (error: Error) => error,
  );
  assert.ok(diverged instanceof DivergenceError, `expected DivergenceError, got ${diverged}`);
  assert.match(
    diverged.message,
    /^Training diverged at epoch 1 \(step 4\): the validation NLL is .*; likely cause: a learning rate too high \("lr" is 1000000000\): lower it$/,
  );
  assert.equal(diverged.step, 4);
  assert.equal(tf.memory().numTensors, before);
  // Without validation, the weights themselves are checked before the model is returned.
  const unchecked = await run({ lr: 1e9, minLr: 1e8, validationBatches: 0 }).then(
    () => undefined,
    (error: Error) => error,
  );
  assert.ok(unchecked instanceof DivergenceError, `expected DivergenceError, got ${unchecked}`);
  assert.match(
    unchecked.message,
    /^Training diverged: weight ".*" holds values that are not finite after step 8/,
  );
});

Deno.test("formatDuration() writes seconds, minutes and hours compactly", () => {
  assert.equal(formatDuration(0), "0s");
  assert.equal(formatDuration(44.6), "45s");
  assert.equal(formatDuration(725), "12m05s");
  assert.equal(formatDuration(3 * 3600 + 7 * 60 + 59), "3h07m");
  assert.equal(formatDuration(-5), "0s");
  assert.equal(formatDuration(Infinity), "?");
});

Deno.test("scheduleStep() follows the clock under a time budget, the steps otherwise", () => {
  const s = { warmupSteps: 10, totalSteps: 110 };
  // No budget, or still warming up: the step itself.
  assert.equal(scheduleStep(50, { ...s, elapsedSec: 1000, budgetSec: 0 }), 50);
  assert.equal(scheduleStep(5, { ...s, elapsedSec: 90, budgetSec: 100 }), 5);
  // Half the budget spent at step 20: the decay is half-way, as at step 10 + 50.
  assert.equal(scheduleStep(20, { ...s, elapsedSec: 50, budgetSec: 100 }), 60);
  // The steps are further along than the clock: the steps count.
  assert.equal(scheduleStep(90, { ...s, elapsedSec: 50, budgetSec: 100 }), 90);
  // The budget is spent: the end of the decay, the minimum learning rate.
  const end = scheduleStep(30, { ...s, elapsedSec: 150, budgetSec: 100 });
  assert.equal(end, 110);
  const lrs = { peakLr: 1, minLr: 0.1, ...s };
  assert.ok(Math.abs(learningRateAt(end, lrs) - 0.1) < 1e-12);
});

Deno.test("pretrain/supervised validates every validateEvery steps, at the end, and keeps the best", async () => {
  const ctx = testContext({ seed: 3 });
  const updates: ProgressUpdate[] = [];
  ctx.progress = (u) => updates.push(u);
  // 2 epochs of 4 steps, validation every 3 steps: at steps 3 and 6, and 8 (the last).
  const ckpt = await run({ validateEvery: 3, patience: 0 }, ctx);
  const validations = ctx.recorded.filter((m) => "nll/validation" in m.values);
  assert.deepEqual(validations.map((m) => m.step), [3, 6, 8]);
  const nll = validations.map((m) => m.values["nll/validation"]);
  const bestAt = validations[nll.indexOf(Math.min(...nll))].step;
  assert.equal(ckpt.step, bestAt);
  assert.equal(ckpt.metrics["nll/validation"], Math.min(...nll));
  // Progress and each validation's log line say how long is left.
  assert.equal(updates.length, 8);
  assert.ok(updates.every((u) => /^(\d+s|\d+m\d\ds|\d+h\d\dm)$/.test(String(u.info?.eta))));
  const lines = ctx.logs.filter((l) => l.message.includes("validation NLL"));
  assert.equal(lines.length, 3);
  assert.match(
    lines[0].message,
    /^Step 3 of 8 \(epoch 0\.75\): validation NLL \d\.\d{4} per token/,
  );
  assert.match(lines[0].message, /trained, about \d+(s|m\d\ds) left$/);
  assert.match(lines[2].message, /trained, done$/);
});

Deno.test("pretrain/supervised stops cleanly when its time budget is spent and outputs the best checkpoint", async () => {
  const spec = tinySpec();
  const slow: ModelSpec = {
    ...spec,
    build(vocab, seed) {
      const model = spec.build(vocab, seed);
      const forward = model.forward.bind(model);
      return {
        ...model,
        forward(tokens, options) {
          // At least 50 ms per training step, so a 0.25 s budget ends long before step 100.
          if (options.training) {
            const until = performance.now() + 50;
            while (performance.now() < until) { /* busy: the budget counts wall time */ }
          }
          return forward(tokens, options);
        },
      };
    },
  };
  const dir = Deno.makeTempDirSync();
  const ctx = testContext({ seed: 3, dir });
  const ckpt = await run(
    { model: slow, epochs: 1, stepsPerEpoch: 100, maxMinutes: 0.25 / 60, checkpointEvery: 1000 },
    ctx,
  );
  const steps = ctx.recorded.filter((m) => "loss/train" in m.values).map((m) => m.step);
  const last = steps[steps.length - 1];
  assert.ok(last >= 1 && last < 100, `stopped at step ${last}`);
  assert.ok(
    ctx.logs.some((l) =>
      l.message ===
        `Stopping at step ${last} of 100: the time budget of ${0.25 / 60} minutes is spent`
    ),
  );
  // The model at the stop was validated, and the output is the best validated checkpoint.
  const validations = ctx.recorded.filter((m) => "nll/validation" in m.values);
  assert.equal(validations[validations.length - 1].step, last);
  const nll = validations.map((m) => m.values["nll/validation"]);
  assert.equal(ckpt.metrics["nll/validation"], Math.min(...nll));
  // The resumable checkpoint says it stopped, after the budget was spent.
  const saved = await loadCheckpointFile(`${dir}/last.ckpt`);
  assert.equal(saved.step, last);
  assert.equal(saved.metrics.stopped, 1);
  assert.ok(saved.metrics.elapsedSec >= 0.25);
  // A rerun in the same work directory trains no further.
  const again = testContext({ seed: 3, dir });
  const rerun = await run(
    { model: slow, epochs: 1, stepsPerEpoch: 100, maxMinutes: 0.25 / 60, checkpointEvery: 1000 },
    again,
  );
  assert.equal(again.recorded.filter((m) => "loss/train" in m.values).length, 0);
  assert.equal(rerun.step, ckpt.step);
  Deno.removeSync(dir, { recursive: true });
});

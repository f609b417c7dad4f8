import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { createRng } from "../../pipeline/rng.ts";
import { checkValue } from "../../pipeline/schema.ts";
import { defaultParams, testContext } from "../_testing.ts";
import type { Rng } from "../../mod.ts";
import type { Tokenizer } from "../_music/components.ts";
import { generateSyntheticPiece } from "../load/_synthetic.ts";
import { cropPiece } from "../_music/theory.ts";
import type { MidiCorpus, Piece } from "../_music/types.ts";
import { initBackend } from "../_tf/backend.ts";
import { criticLogits } from "./_critic.ts";
import type { Critic } from "../_music/artifacts.ts";
import performance from "../tokenizer/performance.ts";
import remi from "../tokenizer/remi.ts";
import trainCritic from "./train_critic.ts";

await initBackend("wasm");

/** 40 synthetic tonal pieces of 8 bars at 120 bpm; every fifth is held out (validation). */
function syntheticCorpus(): MidiCorpus {
  const rng = createRng(5);
  const corpus: MidiCorpus = { pieces: [], skipped: [] };
  for (let i = 0; i < 40; i++) {
    const { piece } = generateSyntheticPiece(rng, {
      id: `s${i}`,
      bars: 8,
      tempoMinBpm: 120,
      tempoMaxBpm: 120,
    });
    corpus.pieces.push({ ...piece, split: i % 5 === 4 ? "validation" : "train" });
  }
  return corpus;
}

const grid = (seconds: number) => Array.from({ length: Math.ceil(seconds * 2) }, (_, i) => i / 2);

/** Notes of random pitch, onset gap, length and velocity, 3-9 s long. */
function randomNotes(id: string, rng: Rng): Piece {
  const durationSec = 3 + rng.next() * 6;
  const notes = [];
  for (let t = 0; t < durationSec; t += 0.05 + rng.next() * 0.4) {
    notes.push({
      pitch: 40 + rng.int(50),
      startSec: t,
      endSec: t + 0.1 + rng.next(),
      velocity: 20 + rng.int(100),
    });
  }
  return { id, notes, tempoBpm: 120, beatsPerBar: 4, beatsSec: grid(durationSec) };
}

/** A one-voice C major scale walk in sixteenths at one velocity, 2-8 s long. */
function scaleWalk(id: string, rng: Rng): Piece {
  const count = 8 + rng.int(24);
  const steps = [0, 2, 4, 5, 7, 9, 11];
  const notes = Array.from({ length: count }, (_, i) => ({
    pitch: 60 + 12 * (Math.floor(i / 7) % 2) + steps[i % 7],
    startSec: i * 0.25,
    endSec: i * 0.25 + 0.25,
    velocity: 80,
  }));
  return { id, notes, tempoBpm: 120, beatsPerBar: 4, beatsSec: grid(count * 0.25) };
}

function fakes(count: number, seed: number): Piece[] {
  const rng = createRng(seed);
  return Array.from(
    { length: count },
    (_, i) => (i % 2 === 0 ? scaleWalk(`f${i}`, rng) : randomNotes(`f${i}`, rng)),
  );
}

const SMALL = {
  maxTokens: 128,
  batchSize: 16,
  embedDim: 16,
  filters: 16,
  hiddenDim: 32,
  widths: [2, 3, 4, 8],
};

const PERFORMANCE_SPEC = { use: "tokenizer/performance", with: {} };

async function train(
  tokenizer: Tokenizer,
  options: { steps: number; seed?: number; critic?: Critic; overrides?: Record<string, unknown> },
): Promise<{ critic: Critic; recorded: ReturnType<typeof testContext>["recorded"] }> {
  const ctx = testContext({ seed: options.seed ?? 2 });
  const params = defaultParams(trainCritic, {
    ...SMALL,
    tokenizer,
    steps: options.steps,
    ...options.overrides,
  });
  const inputs: Record<string, unknown> = {
    corpus: syntheticCorpus(),
    rollouts: { pieces: fakes(32, 9), tokenizer: PERFORMANCE_SPEC },
  };
  if (options.critic) inputs.critic = options.critic;
  const { critic } = await trainCritic.run(ctx, inputs as never, params as never) as {
    critic: Critic;
  };
  return { critic, recorded: ctx.recorded };
}

for (
  const [name, plugin] of [["performance", performance], ["remi", remi]] as const
) {
  Deno.test(`reward/train-critic with tokenizer/${name} scores held-out real music above scale walks and random notes`, async () => {
    const before = tf.memory().numTensors;
    const tokenizer = plugin.create(defaultParams(plugin) as never) as Tokenizer;
    const { critic, recorded } = await train(tokenizer, { steps: 200 });
    assert.equal(tf.memory().numTensors, before, "training leaves no tensor behind");
    assert.equal(critic.step, 200);
    assert.deepEqual(critic.tokenizerSpec, tokenizer.spec);

    // Held out: validation pieces cropped to 3-9 s, and fakes the critic never saw.
    const rng = createRng(77);
    const real = syntheticCorpus().pieces.filter((piece) => piece.split === "validation").map((
      piece,
    ) => cropPiece(piece, { startSec: rng.next() * 6, durationSec: 3 + rng.next() * 6 }));
    const fake = fakes(16, 123);
    const probability = (z: number) => 1 / (1 + Math.exp(-z));
    const realScores = criticLogits(critic, real).map(probability);
    const fakeScores = criticLogits(critic, fake).map(probability);
    assert.equal(tf.memory().numTensors, before, "scoring leaves no tensor behind");
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    assert.ok(
      mean(realScores) - mean(fakeScores) > 0.5,
      `real ${mean(realScores).toFixed(3)} vs fake ${mean(fakeScores).toFixed(3)}`,
    );
    const right = realScores.filter((s) => s > 0.5).length +
      fakeScores.filter((s) => s < 0.5).length;
    assert.ok(right / (real.length + fake.length) >= 0.85, `held-out accuracy ${right} of 24`);

    // Metrics every 10 steps; the last batches are mostly right.
    assert.equal(recorded.length, 20);
    assert.deepEqual(recorded.map((r) => r.step).slice(0, 2), [10, 20]);
    const last = recorded[recorded.length - 1].values;
    assert.ok(last["critic/accuracy"] >= 0.8, JSON.stringify(last));
    assert.ok(last["critic/realScore"] > last["critic/fakeScore"]);
  });
}

Deno.test("reward/train-critic is deterministic given the seed and continues a given critic", async () => {
  const tokenizer = performance.create(defaultParams(performance) as never) as Tokenizer;
  const a = await train(tokenizer, { steps: 6 });
  const b = await train(tokenizer, { steps: 6 });
  assert.deepEqual(a.critic.weights, b.critic.weights);
  const other = await train(tokenizer, { steps: 6, seed: 3 });
  assert.notDeepEqual(other.critic.weights, a.critic.weights);

  // Continuing: the step count goes on, the optimizer state is kept, and the weights move.
  const before = tf.memory().numTensors;
  const next = await train(tokenizer, { steps: 4, critic: a.critic });
  assert.equal(next.critic.step, 10);
  assert.equal(next.critic.optimizer?.step, 10);
  assert.notDeepEqual(next.critic.weights, a.critic.weights);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("reward/train-critic inside a loop logs its means once per episode", async () => {
  const tokenizer = performance.create(defaultParams(performance) as never) as Tokenizer;
  const ctx = { ...testContext({ seed: 1 }), iteration: 7 };
  const params = defaultParams(trainCritic, { ...SMALL, tokenizer, steps: 3 });
  await trainCritic.run(ctx, {
    corpus: syntheticCorpus(),
    rollouts: { pieces: fakes(4, 1), tokenizer: PERFORMANCE_SPEC },
  }, params as never);
  assert.equal(ctx.recorded.length, 1);
  assert.equal(ctx.recorded[0].step, 7);
  assert.deepEqual(Object.keys(ctx.recorded[0].values).sort(), [
    "critic/accuracy",
    "critic/fakeScore",
    "critic/loss",
    "critic/realScore",
  ]);
});

Deno.test("reward/train-critic rejects invalid params and inputs with a message", async () => {
  const tokenizer = performance.create(defaultParams(performance) as never) as Tokenizer;
  const inputs = {
    corpus: syntheticCorpus(),
    rollouts: { pieces: fakes(4, 1), tokenizer: PERFORMANCE_SPEC },
  };
  const run = (overrides: Record<string, unknown>, given: Record<string, unknown> = inputs) =>
    trainCritic.run(
      testContext(),
      given as never,
      defaultParams(trainCritic, { ...SMALL, tokenizer, steps: 1, ...overrides }) as never,
    );
  await assert.rejects(
    () => run({ batchSize: 15 }),
    /Cannot train critic: "batchSize" must be even \(half real, half generated\), received 15/,
  );
  await assert.rejects(
    () => run({ widths: [2, 200] }),
    /Cannot build critic: the widest window \(200 tokens\) is longer than "maxTokens" \(128\)/,
  );
  await assert.rejects(
    () => run({ widths: [3, 3] }),
    /Cannot build critic: width 3 is listed twice in "widths"/,
  );
  await assert.rejects(
    () => run({}, { ...inputs, rollouts: { pieces: [] } }),
    /Cannot train critic: input "rollouts" has no decoded pieces/,
  );
  const heldOutOnly: MidiCorpus = {
    pieces: inputs.corpus.pieces.map((piece) => ({ ...piece, split: "validation" as const })),
    skipped: [],
  };
  await assert.rejects(
    () => run({}, { ...inputs, corpus: heldOutOnly }),
    /Cannot train critic: the corpus has no train-split piece with notes \(40 pieces\)/,
  );
  const { critic } = await train(tokenizer, { steps: 1 });
  await assert.rejects(
    () => run({ filters: 8 }, { ...inputs, critic }),
    /Cannot train critic: input "critic" has filters 16 \(params say 8\); give this stage the same model params as the stage that trained it/,
  );
  const remiTokenizer = remi.create(defaultParams(remi) as never) as Tokenizer;
  await assert.rejects(
    () => run({ tokenizer: remiTokenizer }, { ...inputs, critic }),
    /Cannot train critic: input "critic" has vocabSize 391 \(params say 248\)/,
  );
  // The schema catches out-of-range values before anything runs.
  assert.equal(
    checkValue(trainCritic.params.labelSmoothing, 0.7)[0].message,
    "Expected a number >= 0 and <= 0.5, received 0.7",
  );
  assert.equal(
    checkValue(trainCritic.params.widths, [])[0].message,
    "Expected at least 1 item(s), received 0",
  );
});

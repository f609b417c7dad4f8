import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { createRng } from "../../pipeline/rng.ts";
import { checkValue } from "../../pipeline/schema.ts";
import { defaultParams, testContext } from "../_testing.ts";
import type { Tokenizer } from "../_music/components.ts";
import type { Piece } from "../_music/types.ts";
import { initBackend } from "../_tf/backend.ts";
import { criticLogits } from "./_critic.ts";
import type { Critic } from "../_music/artifacts.ts";
import performance from "../tokenizer/performance.ts";
import { scoreWithTerms } from "../_music/scoring.ts";
import composite, { type Rewards } from "./composite.ts";
import discriminator from "./discriminator.ts";
import trainCritic from "./train_critic.ts";

await initBackend("wasm");

const make = (overrides: Record<string, unknown> = {}) =>
  discriminator.create(
    defaultParams(discriminator, overrides) as Parameters<typeof discriminator.create>[0],
  );

/** A two-voice piece: a melody in C major over a held bass, 4 s (the "real" style here). */
function consonant(id: string, shift: number): Piece {
  const melody = [64, 65, 67, 69, 67, 65, 64, 62].map((pitch, i) => ({
    pitch: pitch + shift,
    startSec: i * 0.5,
    endSec: i * 0.5 + 0.45,
    velocity: 70 + (i % 2) * 10,
  }));
  const bass = [0, 2].map((bar) => ({
    pitch: 48 + shift,
    startSec: bar * 2,
    endSec: bar * 2 + 1.9,
    velocity: 60,
  }));
  return {
    id,
    notes: [...melody, ...bass].sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch),
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: 8 }, (_, i) => i * 0.5),
  };
}

/** Random pitches in fast random rhythm, 4 s. */
function noise(id: string, seed: number): Piece {
  const rng = createRng(seed);
  const notes = [];
  for (let t = 0; t < 4; t += 0.05 + rng.next() * 0.2) {
    notes.push({
      pitch: 30 + rng.int(70),
      startSec: t,
      endSec: t + 0.1,
      velocity: 1 + rng.int(126),
    });
  }
  return { id, notes, tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5] };
}

const tokenizer = performance.create(defaultParams(performance) as never) as Tokenizer;
const REAL = [0, 2, 4, 5, 7, 9].map((shift, i) => consonant(`real${i}`, shift));
const FAKE = [1, 2, 3, 4, 5, 6].map((seed) => noise(`fake${seed}`, seed));

/** A small critic trained on REAL against FAKE (a reward/train-critic run). */
async function trained(): Promise<Critic> {
  const { critic } = await trainCritic.run(
    testContext({ seed: 4 }),
    {
      corpus: {
        pieces: REAL.map((piece) => ({ ...piece, split: "train" as const })),
        skipped: [],
      },
      rollouts: { pieces: FAKE },
    },
    defaultParams(trainCritic, {
      tokenizer,
      steps: 60,
      batchSize: 8,
      maxTokens: 96,
      embedDim: 8,
      filters: 8,
      hiddenDim: 16,
      widths: [2, 4],
    }) as never,
  ) as { critic: Critic };
  return critic;
}

Deno.test("reward/discriminator without a critic throws an error that says what to wire", () => {
  assert.throws(
    () => make().score(REAL, {}),
    /Cannot score with "reward\/discriminator": no critic is given; connect the "critic" output of a reward\/train-critic stage to the "critic" input of reward\/composite/,
  );
  assert.throws(
    () => make().score(REAL, { critic: { weights: {} } }),
    /the "critic" input is not a critic made by reward\/train-critic/,
  );
  // Inside the composite, the message also names the term.
  assert.throws(
    () =>
      scoreWithTerms(REAL, [{ name: "reward/discriminator", weight: 1, component: make() }], {}),
    /Cannot score rollouts with reward term "reward\/discriminator": Cannot score with "reward\/discriminator": no critic is given/,
  );
});

Deno.test("reward/discriminator scores σ(logit / temperature), alone in reward/composite or as one of its terms", async () => {
  const before = tf.memory().numTensors;
  const critic = await trained();
  const pieces = [...REAL.slice(0, 3), ...FAKE.slice(0, 3)];
  const logits = criticLogits(critic, pieces);
  const scores = make().score(pieces, { critic });
  scores.forEach((s, i) => assert.ok(Math.abs(s - 1 / (1 + Math.exp(-logits[i]))) < 1e-12));
  const softer = make({ temperature: 4 }).score(pieces, { critic });
  softer.forEach((s, i) => assert.ok(Math.abs(s - 1 / (1 + Math.exp(-logits[i] / 4))) < 1e-12));
  // The critic learned its lesson: every real piece above every fake one.
  assert.ok(Math.min(...scores.slice(0, 3)) > Math.max(...scores.slice(3)), `${scores}`);
  assert.equal(tf.memory().numTensors, before);

  // Alone: the composite's `critic` input reaches the term; the total is the term (no length guard).
  const ctx = testContext();
  const { rewards } = await composite.run(
    ctx,
    { rollouts: { pieces }, critic },
    defaultParams(composite, {
      terms: [{ name: "reward/discriminator", weight: 1, component: make() }],
      minNotes: 0,
    }) as never,
  ) as { rewards: Rewards };
  assert.deepEqual(rewards.terms.discriminator, scores);
  assert.deepEqual(rewards.total, scores);
  assert.ok(Math.abs(ctx.recorded[0].values["reward/discriminator"] - mean(scores)) < 1e-12);

  // As one term of several: weighted with the others.
  const fixed = { score: (batch: Piece[]) => batch.map(() => 0.5) };
  const mixed = scoreWithTerms(pieces, [
    { name: "reward/discriminator", weight: 3, component: make() },
    { name: "reward/fixed", weight: 1, component: fixed },
  ], { critic });
  mixed.total.forEach((t, i) => assert.ok(Math.abs(t - (3 * scores[i] + 0.5) / 4) < 1e-12));
});

Deno.test("reward/discriminator rejects a temperature that is not positive", () => {
  assert.equal(
    checkValue(discriminator.params.temperature, 0)[0].message,
    "Expected a number >= 0.01, received 0",
  );
  assert.throws(() => make({ temperature: -1 }), /temperature must be a number > 0, received -1/);
});

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

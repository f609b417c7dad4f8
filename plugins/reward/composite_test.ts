import assert from "node:assert/strict";
import { defaultParams, testContext } from "../../pipeline/testing.ts";
import type { WeightedComponent } from "../../pipeline/schema.ts";
import type { RewardContext, RewardTerm } from "../_music/components.ts";
import type { MidiCorpus, Piece } from "../_music/types.ts";
import composite, { type Rewards, scoreWithTerms, termKey } from "./composite.ts";
import harmony from "./harmony.ts";
import novelty from "./novelty.ts";
import rhythm from "./rhythm.ts";
import smoothness from "./smoothness.ts";

function melody(pitches: number[], id: string): Piece {
  return {
    id,
    notes: pitches.map((pitch, i) => ({
      pitch,
      startSec: i * 0.5,
      endSec: i * 0.5 + 0.5,
      velocity: 80,
    })),
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: pitches.length + 1 }, (_, i) => i * 0.5),
  };
}

const PIECES = [melody([60, 62, 64], "a"), melody([60, 61, 62], "b")];

const fixed = (scores: number[]): RewardTerm => ({ score: () => scores });
const term = (name: string, weight: number, component: RewardTerm): WeightedComponent => ({
  name,
  weight,
  component,
});

Deno.test("scoreWithTerms() weights terms exactly as the weighted mean", () => {
  // a: [0.2, 0.4] weight 1; b: [1, 0] weight 3.
  // Totals: (0.2 + 3) / 4 = 0.8 and (0.4 + 0) / 4 = 0.1.
  const rewards = scoreWithTerms(PIECES, [
    term("reward/a", 1, fixed([0.2, 0.4])),
    term("reward/b", 3, fixed([1, 0])),
  ], {});
  assert.ok(Math.abs(rewards.total[0] - 0.8) < 1e-12);
  assert.ok(Math.abs(rewards.total[1] - 0.1) < 1e-12);
  assert.deepEqual(rewards.terms, { a: [0.2, 0.4], b: [1, 0] });
  assert.deepEqual(rewards.weights, { a: 1, b: 3 });
});

Deno.test("scoreWithTerms() names the term that returns a bad score", () => {
  assert.throws(
    () => scoreWithTerms(PIECES, [term("reward/short", 1, fixed([0.5]))], {}),
    /Cannot score rollouts with reward term "reward\/short": it returned 1 scores for 2 pieces/,
  );
  assert.throws(
    () =>
      scoreWithTerms(PIECES, [
        term("reward/a", 1, fixed([0.5, 0.5])),
        term("reward/nan", 1, fixed([0.5, NaN])),
      ], {}),
    /reward term "reward\/nan": score NaN for piece "b" is not a number in \[0, 1\]/,
  );
  assert.throws(
    () => scoreWithTerms(PIECES, [term("reward/big", 1, fixed([1.5, 0]))], {}),
    /reward term "reward\/big": score 1.5 for piece "a"/,
  );
  assert.throws(
    () => scoreWithTerms(PIECES, [term("reward/neg", -1, fixed([0, 0]))], {}),
    /reward term "reward\/neg": weight must be a number >= 0, received -1/,
  );
  assert.throws(
    () => scoreWithTerms(PIECES, [term("reward/zero", 0, fixed([0, 0]))], {}),
    /every reward term has weight 0/,
  );
});

Deno.test("termKey() shortens plugin names and paths; duplicates get a suffix", () => {
  assert.equal(termKey("reward/harmony"), "harmony");
  assert.equal(termKey("./my/rewards/groove.ts"), "groove");
  const rewards = scoreWithTerms(PIECES, [
    term("reward/harmony", 1, fixed([0, 0])),
    term("reward/harmony", 1, fixed([1, 1])),
  ], {});
  assert.deepEqual(Object.keys(rewards.terms), ["harmony", "harmony_2"]);
});

Deno.test("reward/composite scores rollouts, passes train pieces and logs metrics", async () => {
  const seen: (readonly Piece[] | undefined)[] = [];
  const spy: RewardTerm = {
    score(pieces, context: RewardContext) {
      seen.push(context.corpus);
      return pieces.map(() => 0.5);
    },
  };
  const corpus: MidiCorpus = {
    pieces: [
      { ...melody([60, 62], "t1"), split: "train" },
      { ...melody([60, 64], "v1"), split: "validation" },
    ],
    skipped: [],
  };
  const ctx = testContext();
  ctx.iteration = 3;
  const params = defaultParams(composite, {
    terms: [term("reward/spy", 1, spy), term("reward/one", 1, fixed([1, 0]))],
  }) as Parameters<typeof composite.run>[2];
  const out = await composite.run(
    ctx,
    { rollouts: { pieces: PIECES, tokens: [] }, corpus },
    params,
  );
  const rewards = out.rewards as Rewards;
  // Both pieces have 3 notes: the default length guard (minNotes 16) scales totals by 3/16.
  assert.deepEqual(rewards.total, [0.75 * 3 / 16, 0.25 * 3 / 16]);
  assert.deepEqual(rewards.lengthFactor, [3 / 16, 3 / 16]);
  assert.deepEqual(seen[0]?.map((p) => p.id), ["t1"]);
  assert.deepEqual(ctx.recorded, [{
    step: 3,
    values: {
      "reward/spy": 0.5,
      "reward/one": 0.5,
      "reward/total": 0.5 * 3 / 16,
      "reward/lengthFactor": 3 / 16,
    },
  }]);
  // A second call with the same corpus object passes the same array (memo-friendly).
  await composite.run(ctx, { rollouts: { pieces: PIECES }, corpus }, params);
  assert.equal(seen[1], seen[0]);
});

Deno.test("reward/composite runs the four default terms on real plugins", async () => {
  const defaults = composite.params.terms.default;
  assert.deepEqual(defaults.map((t) => [t.use, t.weight]), [
    ["reward/harmony", 1],
    ["reward/rhythm", 1],
    ["reward/novelty", 1],
    ["reward/smoothness", 1],
  ]);
  const plugins = [harmony, rhythm, novelty, smoothness];
  const terms = plugins.map((plugin) =>
    term(plugin.name, 1, plugin.create(defaultParams(plugin) as never) as RewardTerm)
  );
  const ctx = testContext();
  const out = await composite.run(ctx, { rollouts: { pieces: PIECES } }, { terms, minNotes: 0, excerptsPerBucket: 16 });
  const rewards = out.rewards as Rewards;
  assert.deepEqual(Object.keys(rewards.terms), ["harmony", "rhythm", "novelty", "smoothness"]);
  assert.ok(rewards.total.every((t) => t > 0 && t <= 1));
  // The in-key melody beats the chromatic one on harmony.
  assert.ok(rewards.terms.harmony[0] > rewards.terms.harmony[1]);
});

Deno.test("reward/composite rejects rollouts without pieces", async () => {
  await assert.rejects(
    composite.run(testContext(), { rollouts: { tokens: [] } }, { terms: [], minNotes: 0, excerptsPerBucket: 16 }),
    /Cannot score rollouts: input "rollouts" has no "pieces" list/,
  );
});

Deno.test("scoreWithTerms() wraps an error thrown by a term with its name", () => {
  const broken: RewardTerm = {
    score() {
      throw new Error("piece has no beats");
    },
  };
  assert.throws(
    () => scoreWithTerms(PIECES, [term("reward/broken", 1, broken)], {}),
    /Cannot score rollouts with reward term "reward\/broken": piece has no beats/,
  );
});

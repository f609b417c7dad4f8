import assert from "node:assert/strict";
import { loadGraph, type ResolvedComponent, type StageNode } from "../../pipeline/graph.ts";
import { createRng } from "../../pipeline/rng.ts";
import { defaultParams, testContext } from "../_testing.ts";
import type { WeightedComponent } from "../../pipeline/schema.ts";
import { DEGENERATE_KINDS, degeneratePiece } from "../../tests/_degenerate.ts";
import type { RewardContext, RewardTerm } from "../_music/components.ts";
import { ReferenceCorpus } from "../_music/reference.ts";
import { cropPiece, pieceEndSec } from "../_music/theory.ts";
import type { MidiCorpus, Piece } from "../_music/types.ts";
import { registry } from "../registry.ts";
import {
  corpusContext,
  DEFAULT_TERMS,
  scoreWithTerms,
  stageContext,
  termKey,
} from "../_music/scoring.ts";
import composite, { type Rewards } from "./composite.ts";
import corpusMatch from "./corpus_match.ts";
import harmony from "./harmony.ts";
import novelty from "./novelty.ts";
import rhythm from "./rhythm.ts";
import smoothness from "./smoothness.ts";
import { mean, syntheticCorpus } from "./_testing.ts";

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

Deno.test("a term named like the composite's total or length factor cannot overwrite them", async () => {
  const ctx = testContext();
  const params = defaultParams(composite, {
    terms: [term("user/total", 1, fixed([0, 0])), term("x/lengthFactor", 1, fixed([1, 1]))],
    minNotes: 0,
  });
  const out = await composite.run(ctx, { rollouts: { pieces: PIECES } }, params as never);
  assert.deepEqual(Object.keys((out.rewards as Rewards).terms), ["total_2", "lengthFactor_2"]);
  const logged = ctx.recorded[0].values;
  assert.equal(logged["reward/total_2"], 0);
  assert.equal(logged["reward/lengthFactor_2"], 1);
  assert.equal(logged["reward/total"], 0.5);
  assert.equal(logged["reward/lengthFactor"], 1);
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

Deno.test("reward/composite runs the five default terms on real plugins", async () => {
  assert.deepEqual(composite.params.terms.default, DEFAULT_TERMS);
  assert.deepEqual(DEFAULT_TERMS.map((t) => [t.use, t.weight]), [
    ["reward/harmony", 1],
    ["reward/rhythm", 1],
    ["reward/novelty", 1],
    ["reward/smoothness", 1],
    ["reward/corpus-match", 1],
  ]);
  const plugins = [harmony, rhythm, novelty, smoothness, corpusMatch];
  const terms = plugins.map((plugin) =>
    term(plugin.name, 1, plugin.create(defaultParams(plugin) as never) as RewardTerm)
  );
  const ctx = testContext();
  const out = await composite.run(
    ctx,
    { rollouts: { pieces: PIECES }, corpus: syntheticCorpus(40) },
    { terms, minNotes: 0, excerptsPerBucket: 16 },
  );
  const rewards = out.rewards as Rewards;
  assert.deepEqual(Object.keys(rewards.terms), [
    "harmony",
    "rhythm",
    "novelty",
    "smoothness",
    "corpus-match",
  ]);
  assert.ok(rewards.total.every((t) => t > 0 && t <= 1));
  // The in-key melody beats the chromatic one on harmony.
  assert.ok(rewards.terms.harmony[0] > rewards.terms.harmony[1]);
});

Deno.test("reward/composite without a corpus says that calibrated terms need one", async () => {
  const terms = [term("reward/harmony", 1, harmony.create(defaultParams(harmony) as never))];
  await assert.rejects(
    composite.run(testContext(), { rollouts: { pieces: PIECES } }, {
      terms,
      minNotes: 0,
      excerptsPerBucket: 16,
    }),
    /^Error: Cannot score rollouts with reward term "reward\/harmony": "reward\/harmony" is calibrated on real music: give reward\/composite \(or eval\/policies\) a "corpus" input$/,
  );
});

Deno.test("corpusContext() gives the train pieces and a reference corpus of the count", () => {
  const corpus = syntheticCorpus(40);
  const context = corpusContext(corpus, 32);
  assert.deepEqual(
    context.corpus!.map((p) => p.id),
    corpus.pieces.filter((p) => p.split === "train").map((p) => p.id),
  );
  assert.equal(context.corpus!.length, 36);
  assert.ok(context.reference instanceof ReferenceCorpus);
  assert.equal(context.reference!.excerptsPerBucket, 32);
  assert.equal(context.reference!.heldOut.length, 4);
  assert.equal(corpusContext(corpus).reference!.excerptsPerBucket, 192);
});

Deno.test("stageContext() keeps one reference corpus per stage, corpus and count", () => {
  const corpus = syntheticCorpus(40);
  const ctx = testContext();
  const context = stageContext(ctx, { corpus }, 32);
  assert.equal(stageContext(ctx, { corpus }, 32).reference, context.reference);
  assert.equal(stageContext(ctx, { corpus, critic: 1 as never }, 32).critic, 1);
  assert.equal(context.critic, undefined);
  assert.notEqual(stageContext(ctx, { corpus }, 64).reference, context.reference);
  // Another stage (another context) builds its own; so does a new corpus object.
  assert.notEqual(stageContext(testContext(), { corpus }, 32).reference, context.reference);
  assert.notEqual(
    stageContext(ctx, { corpus: syntheticCorpus(40) }, 32).reference,
    context.reference,
  );
  assert.deepEqual(stageContext(ctx, {}), {});
});

Deno.test("reward/composite rejects rollouts without pieces", async () => {
  await assert.rejects(
    composite.run(testContext(), { rollouts: { tokens: [] } } as never, {
      terms: [],
      minNotes: 0,
      excerptsPerBucket: 16,
    }),
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

/** The reward stage of the default graph's RL loop, and its load stage. */
async function defaultGraphStages(): Promise<{ load: StageNode; reward: StageNode }> {
  const config = new URL("../../configs/pipeline.yaml", import.meta.url).pathname;
  const graph = await loadGraph(config, { registry });
  const load = graph.stages.find((s) => s.use === "load/synthetic");
  const reward = graph.stages.flatMap((s) => s.loop?.body ?? [])
    .find((s) => s.use === "reward/composite");
  assert.ok(load && reward, "configs/pipeline.yaml has a load/synthetic and a reward stage");
  return { load, reward };
}

const termList = (components: readonly ResolvedComponent[]) =>
  components.map((c) => ({ use: c.use, weight: c.weight, with: c.params }));

Deno.test("configs/score.yaml and reward/composite's defaults use the default graph's reward terms", async () => {
  const { reward } = await defaultGraphStages();
  const terms = termList(reward.params.terms as ResolvedComponent[]);
  const config = new URL("../../configs/score.yaml", import.meta.url).pathname;
  const scoreGraph = await loadGraph(config, { registry });
  const score = scoreGraph.stages.find((s) => s.use === "eval/score")!;
  assert.deepEqual(termList(score.params.terms as ResolvedComponent[]), terms);
  // The default graph's terms are the plugins' defaults, so reward/composite and eval/score
  // without a `terms` list score the same.
  assert.deepEqual(
    terms.map((t) => ({ use: t.use, weight: t.weight })),
    DEFAULT_TERMS.map((t) => ({ use: t.use, weight: t.weight })),
  );
});

Deno.test("reward sanity: held-out real music ranks first on the default graph's reward", async () => {
  // The default graph's corpus, reward terms, weights and length guard.
  const { load, reward } = await defaultGraphStages();
  const loaded = await load.plugin!.run(testContext({ seed: 42 }), {}, load.params as never);
  const corpus = loaded.corpus as MidiCorpus;
  const terms: WeightedComponent[] = (reward.params.terms as ResolvedComponent[]).map((c) => ({
    name: c.plugin.name,
    weight: c.weight,
    component: c.plugin.create(defaultParams(c.plugin, c.params) as never),
  }));
  const context = corpusContext(corpus, reward.params.excerptsPerBucket as number);
  const minNotes = reward.params.minNotes as number;

  // 8 s pieces: one excerpt of every held-out piece, one of every train piece (copies), and
  // as many of each degenerate kind as there are held-out pieces, each set scored in batches of
  // that size (batch variety depends on the batch).
  const sec = 8;
  const rng = createRng(3);
  const excerpt = (p: Piece, i: number) => ({
    ...cropPiece(p, {
      startSec: rng.next() * Math.max(0, pieceEndSec(p.notes) - sec),
      durationSec: sec,
    }),
    id: `x${i}`,
  });
  const heldOut = corpus.pieces.filter((p) => p.split !== "train").map(excerpt);
  const batch = heldOut.length;
  assert.ok(batch >= 16, `${batch} held-out pieces`);
  const sets: Record<string, Piece[]> = {
    "real (held out)": heldOut,
    "copies of train": corpus.pieces.filter((p) => p.split === "train").map(excerpt),
  };
  for (const kind of DEGENERATE_KINDS) {
    sets[kind] = Array.from(
      { length: batch },
      (_, i) => degeneratePiece(kind, { rng, durationSec: sec, id: `${kind}-${i}` }),
    );
  }
  const meanTotal: Record<string, number> = {};
  const meanTerms: Record<string, Record<string, number>> = {};
  for (const [name, pieces] of Object.entries(sets)) {
    const totals: number[] = [];
    const byTerm: Record<string, number[]> = {};
    for (let i = 0; i < pieces.length; i += batch) {
      const rewards = scoreWithTerms(pieces.slice(i, i + batch), terms, context, { minNotes });
      totals.push(...rewards.total);
      for (const [key, scores] of Object.entries(rewards.terms)) {
        (byTerm[key] ??= []).push(...scores);
      }
    }
    meanTotal[name] = mean(totals);
    meanTerms[name] = Object.fromEntries(Object.entries(byTerm).map(([k, v]) => [k, mean(v)]));
  }
  const real = meanTotal["real (held out)"];
  const table = Object.entries(meanTotal).map(([name, total]) =>
    `${name}: ${total.toFixed(3)} ${
      JSON.stringify(meanTerms[name], (_, v) => typeof v === "number" ? Number(v.toFixed(3)) : v)
    }`
  ).join("\n");
  assert.ok(real > 0.9, `real music scores ${real}\n${table}`);
  for (const kind of DEGENERATE_KINDS) {
    assert.ok(meanTotal[kind] <= real - 0.02, `${kind} is within 0.02 of real music\n${table}`);
  }
  // Copies of the corpus rank below held-out music, by less: novelty is the only term that can
  // tell them apart, and held-out synthetic pieces share most of their 4-grams with train.
  const copies = meanTotal["copies of train"];
  assert.ok(copies < real, `copies of train outrank real music\n${table}`);
  const novel = meanTerms["real (held out)"].novelty;
  assert.ok(meanTerms["copies of train"].novelty < novel - 0.1, `novelty\n${table}`);
});

import assert from "node:assert/strict";
import { defaultParams } from "../_testing.ts";
import { DEGENERATE_KINDS, degeneratePiece } from "../../tests/_degenerate.ts";
import { createRng } from "../../pipeline/rng.ts";
import { corpusContext } from "../_music/scoring.ts";
import batchMatch, { binOf } from "./batch_match.ts";
import { excerpts, mean, syntheticCorpus } from "./_testing.ts";

const CORPUS = syntheticCorpus();
const CONTEXT = corpusContext(CORPUS, 64);
const HELD_OUT = excerpts(CORPUS.pieces.filter((p) => p.split === "validation"), 8, 3);
const TRAIN = excerpts(CORPUS.pieces.filter((p) => p.split === "train"), 8, 5);

const make = (overrides: Record<string, unknown> = {}) =>
  batchMatch.create(
    defaultParams(batchMatch, overrides) as Parameters<typeof batchMatch.create>[0],
  );

Deno.test("binOf() places values between the real quantiles, undefined apart", () => {
  assert.equal(binOf(0.5, [1, 2, 3]), 0);
  assert.equal(binOf(1, [1, 2, 3]), 0);
  assert.equal(binOf(2.5, [1, 2, 3]), 2);
  assert.equal(binOf(9, [1, 2, 3]), 3);
  assert.equal(binOf(NaN, [1, 2, 3]), -1);
});

Deno.test("reward/batch-match scores a varied real batch above a batch of one piece repeated", () => {
  const term = make();
  const real = TRAIN.slice(0, 16);
  const realScore = mean(term.score(real, CONTEXT));
  const repeated = mean(term.score(Array.from({ length: 16 }, () => real[0]), CONTEXT));
  assert.ok(realScore > 0.6, `real batch ${realScore}`);
  assert.ok(repeated < 0.4, `repeated piece ${repeated}`);
  // Held-out real pieces (never calibrated on) also score high.
  assert.ok(mean(term.score(HELD_OUT, CONTEXT)) > 0.6);
});

Deno.test("reward/batch-match rewards the odd one out of a crowded batch", () => {
  const term = make();
  const crowd = Array.from({ length: 15 }, () => TRAIN[0]);
  const scores = term.score([...crowd, TRAIN[7]], CONTEXT);
  assert.ok(scores[15] > scores[0], `odd ${scores[15]} vs crowd ${scores[0]}`);
});

Deno.test("reward/batch-match: degenerate batches score low, an empty piece 0", () => {
  const term = make();
  const rng = createRng(3);
  for (const kind of DEGENERATE_KINDS) {
    const batch = Array.from(
      { length: 16 },
      (_, i) => degeneratePiece(kind, { rng, durationSec: 8, id: `d${i}` }),
    );
    const score = mean(term.score(batch, CONTEXT));
    assert.ok(score < 0.6, `${kind}: ${score}`);
  }
  const empty = { ...TRAIN[0], notes: [] };
  assert.equal(term.score([empty, ...TRAIN.slice(1, 4)], CONTEXT)[0], 0);
});

Deno.test("reward/batch-match needs the corpus and a weight", () => {
  assert.throws(
    () => make().score(TRAIN.slice(0, 2), {}),
    /give reward\/composite .* "corpus" input/,
  );
  const zero = Object.fromEntries(
    [
      "polyphony",
      "noteDensity",
      "pitchClassEntropy",
      "velocitySpread",
      "interOnset",
      "pitchRange",
      "pitchInterval",
      "noteLength",
      "meanPitch",
    ].map((n) => [`${n}Weight`, 0]),
  );
  assert.throws(() => make(zero), /weights are all 0/);
});

import assert from "node:assert/strict";
import { checkValue } from "../../pipeline/schema.ts";
import { defaultParams } from "../../pipeline/testing.ts";
import type { Piece } from "../_music/types.ts";
import novelty, {
  corpusNgramSet,
  loopShare,
  type NoveltyOptions,
  noveltyParts,
} from "./novelty.ts";

/** A monophonic 120 bpm piece: one quarter note per pitch. */
function melody(pitches: number[], id = "p"): Piece {
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
    beatsSec: pitches.map((_, i) => i * 0.5),
  };
}

const make = (overrides: Record<string, unknown> = {}) =>
  novelty.create(defaultParams(novelty, overrides) as Parameters<typeof novelty.create>[0]);
const OPTIONS = defaultParams(novelty) as unknown as NoveltyOptions;

// A 24-note tune and a different one with no 8-gram in common.
const TUNE = [
  60,
  62,
  64,
  65,
  67,
  65,
  64,
  62,
  60,
  64,
  67,
  72,
  71,
  69,
  67,
  65,
  64,
  62,
  64,
  60,
  59,
  60,
  62,
  60,
];
const OTHER = [
  57,
  59,
  60,
  57,
  64,
  63,
  64,
  59,
  60,
  62,
  59,
  55,
  57,
  60,
  64,
  69,
  68,
  69,
  64,
  60,
  57,
  52,
  53,
  55,
];

Deno.test("reward/novelty scores a copy of the corpus lower than a fresh piece", () => {
  const corpus = [melody(TUNE, "train")];
  const [copy, fresh] = noveltyParts([melody(TUNE), melody(OTHER)], { corpus }, OPTIONS);
  assert.equal(copy.notCopied, 0);
  assert.equal(fresh.notCopied, 1);
  const [a, b] = make({ batchWeight: 0 }).score([melody(TUNE), melody(OTHER)], { corpus });
  assert.ok(a < b, `copy ${a} vs fresh ${b}`);
  // Half copied: the first 12 notes of the tune then 12 of the other tune.
  // 17 8-grams, of which the 5 inside the first 12 notes are in the corpus → 1 - 5/17.
  const [half] = noveltyParts(
    [melody([...TUNE.slice(0, 12), ...OTHER.slice(12)])],
    { corpus },
    OPTIONS,
  );
  assert.ok(Math.abs(half.notCopied - 12 / 17) < 1e-12);
});

Deno.test("reward/novelty builds the corpus n-gram set once per corpus array", () => {
  const corpus = [melody(TUNE, "train")];
  const first = corpusNgramSet(corpus, 8);
  assert.equal(corpusNgramSet(corpus, 8), first);
  assert.notEqual(corpusNgramSet(corpus, 4), first);
  assert.equal(first.size, TUNE.length - 8 + 1);
  assert.notEqual(corpusNgramSet([...corpus], 8), first);
});

Deno.test("reward/novelty scores a batch of identical pieces lower than a varied batch", () => {
  const term = make({ corpusWeight: 0, repetitionWeight: 0 });
  const same = term.score([melody(TUNE), melody(TUNE), melody(TUNE)], {});
  const varied = term.score([melody(TUNE), melody(OTHER), melody(TUNE.map((p) => p + 5))], {});
  assert.deepEqual(same, [0, 0, 0]);
  assert.deepEqual(varied, [1, 1, 1]);
});

Deno.test("reward/novelty penalises a note repeated 8 times", () => {
  // 8 Cs alone: the 5th to 8th are excessive → 1 - 4/8; corpus and batch parts undefined.
  assert.equal(make().score([melody([60, 60, 60, 60, 60, 60, 60, 60])], {})[0], 0.5);
  const repeated = melody([...TUNE.slice(0, 8), 60, 60, 60, 60, 60, 60, 60, 60, ...TUNE.slice(9)]);
  // Scored one at a time so that the batch part stays out: 4 of 31 notes excessive.
  assert.equal(make().score([repeated], {})[0], 1 - 4 / 31);
  assert.equal(make().score([melody(TUNE)], {})[0], 1);
});

Deno.test("reward/novelty penalises a short loop repeated too often", () => {
  // C-E-G five times: the 5th occurrence (3 of 15 notes) is one too many.
  const loop = Array.from({ length: 5 }, () => [60, 64, 67]).flat();
  assert.equal(loopShare(loop, OPTIONS), 3 / 15);
  assert.equal(loopShare(TUNE, OPTIONS), 0);
});

Deno.test("reward/novelty gives a piece without notes 0 and rejects bad params", () => {
  assert.deepEqual(make().score([melody([])], {}), [0]);
  assert.equal(
    checkValue(novelty.params.corpusWeight, -1)[0].message,
    "Expected a number >= 0, received -1",
  );
  assert.equal(checkValue(novelty.params.ngramLength, 1).length, 1);
  assert.throws(
    () => make({ corpusWeight: 0, repetitionWeight: 0, batchWeight: 0 }),
    /Cannot create reward term "reward\/novelty"/,
  );
});

import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import { checkValue } from "../../pipeline/schema.ts";
import { defaultParams } from "../_testing.ts";
import { degeneratePiece } from "../../tests/_degenerate.ts";
import { generateSyntheticPiece } from "../load/_synthetic.ts";
import { cropPiece, pieceEndSec } from "../_music/theory.ts";
import { NgramSet } from "../_music/ngrams.ts";
import type { Piece } from "../_music/types.ts";
import { corpusContext } from "../_music/scoring.ts";
import novelty, {
  corpusNgramSet,
  loopShare,
  type NoveltyOptions,
  noveltyParts,
} from "./novelty.ts";
import { excerpts, mean, syntheticCorpus } from "./_testing.ts";

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

const CORPUS = syntheticCorpus(80);
const CONTEXT = corpusContext(CORPUS, 64);
const TRAIN = CORPUS.pieces.filter((p) => p.split === "train");
const HELD_OUT = excerpts(CORPUS.pieces.filter((p) => p.split === "validation"), 8, 3);
const COPIES = excerpts(TRAIN.slice(0, HELD_OUT.length), 8, 4);

const make = (overrides: Record<string, unknown> = {}) =>
  novelty.create(defaultParams(novelty, overrides) as Parameters<typeof novelty.create>[0]);
/** The raw-part tests below use 8-grams. */
const OPTIONS = defaultParams(novelty, { ngramLength: 8 }) as unknown as NoveltyOptions;

// A 24-note tune and a different one with no 8-gram (nor 4-gram) in common.
// deno-fmt-ignore
const TUNE = [60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72, 71, 69, 67, 65, 64, 62, 64, 60, 59, 60, 62, 60];
// deno-fmt-ignore
const OTHER = [57, 59, 60, 57, 64, 63, 64, 59, 60, 62, 59, 55, 57, 60, 64, 69, 68, 69, 64, 60, 57, 52, 53, 55];

Deno.test("noveltyParts() measures the share of n-grams copied from the corpus", () => {
  const corpus = [melody(TUNE, "train")];
  const [copy, fresh] = noveltyParts([melody(TUNE), melody(OTHER)], { corpus }, OPTIONS);
  assert.equal(copy.notCopied, 0);
  assert.equal(fresh.notCopied, 1);
  // Half copied: the first 12 notes of the tune then 12 of the other tune.
  // 17 8-grams, of which the 5 inside the first 12 notes are in the corpus → 1 - 5/17.
  const [half] = noveltyParts(
    [melody([...TUNE.slice(0, 12), ...OTHER.slice(12)])],
    { corpus },
    OPTIONS,
  );
  assert.ok(Math.abs(half.notCopied - 12 / 17) < 1e-12);
  // `corpus` in the options overrides the context's; without a corpus, or with fewer than n
  // notes, the part is undefined.
  const [other] = noveltyParts([melody(TUNE)], { corpus }, { ...OPTIONS, corpus: [] });
  assert.equal(other.notCopied, 1);
  assert.ok(Number.isNaN(noveltyParts([melody(TUNE)], {}, OPTIONS)[0].notCopied));
  assert.ok(Number.isNaN(noveltyParts([melody([60, 62])], { corpus }, OPTIONS)[0].notCopied));
});

Deno.test("corpusNgramSet() holds every n-gram of the corpus", () => {
  const corpus = [melody(TUNE, "train")];
  const set = corpusNgramSet(corpus, 8);
  assert.equal(set.size, TUNE.length - 8 + 1);
  assert.notEqual(corpusNgramSet(corpus, 8), set);
});

Deno.test("noveltyParts() batch variety: 0 for identical pieces, 1 for pieces with nothing in common", () => {
  const same = noveltyParts([melody(TUNE), melody(TUNE), melody(TUNE)], {}, OPTIONS);
  assert.deepEqual(same.map((p) => p.batchVariety), [0, 0, 0]);
  const varied = noveltyParts(
    [melody(TUNE), melody(OTHER), melody(TUNE.map((p) => p + 5))],
    {},
    OPTIONS,
  );
  assert.deepEqual(varied.map((p) => p.batchVariety), [1, 1, 1]);
  // Two of three pieces alike: the odd one out keeps all its n-grams to itself.
  const two = noveltyParts([melody(TUNE), melody(TUNE), melody(OTHER)], {}, OPTIONS);
  assert.deepEqual(two.map((p) => p.batchVariety), [0, 0, 1]);
  // A batch of one has no variety to measure.
  assert.ok(Number.isNaN(noveltyParts([melody(TUNE)], {}, OPTIONS)[0].batchVariety));
});

Deno.test("noveltyParts() flags a note repeated 8 times and short loops", () => {
  // 8 Cs alone: the 5th to 8th are excessive → 1 - 4/8.
  assert.equal(
    noveltyParts([melody([60, 60, 60, 60, 60, 60, 60, 60])], {}, OPTIONS)[0].noLoops,
    0.5,
  );
  const repeated = melody([...TUNE.slice(0, 8), 60, 60, 60, 60, 60, 60, 60, 60, ...TUNE.slice(9)]);
  // 4 of 31 notes excessive.
  assert.equal(noveltyParts([repeated], {}, OPTIONS)[0].noLoops, 1 - 4 / 31);
  assert.equal(noveltyParts([melody(TUNE)], {}, OPTIONS)[0].noLoops, 1);
  // C-E-G five times: the 5th occurrence (3 of 15 notes) is one too many.
  const loop = Array.from({ length: 5 }, () => [60, 64, 67]).flat();
  assert.equal(loopShare(loop, OPTIONS), 3 / 15);
  assert.equal(loopShare(TUNE, OPTIONS), 0);
  assert.ok(Number.isNaN(loopShare([], OPTIONS)));
});

Deno.test("reward/novelty ranks held-out real music above copies of the corpus and above noise", () => {
  const term = make();
  const real = mean(term.score(HELD_OUT, CONTEXT));
  const copies = mean(term.score(COPIES, CONTEXT));
  const rng = createRng(5);
  const noise = mean(term.score(
    HELD_OUT.map((_, i) => degeneratePiece("random-notes", { rng, durationSec: 8, id: `r${i}` })),
    CONTEXT,
  ));
  assert.ok(real > 0.85, `real ${real}`);
  assert.ok(copies < real - 0.05, `copies ${copies} vs real ${real}`);
  assert.ok(noise < real - 0.05, `random notes ${noise} vs real ${real}`);
  // The corpus part alone is matched to held-out music, from both sides: a copy shares every
  // n-gram with the corpus (too few new ones), noise shares none (too many).
  const copiedOnly = make({ repetitionWeight: 0, batchWeight: 0 });
  const copyC = mean(copiedOnly.score(COPIES, CONTEXT));
  const noiseC = mean(copiedOnly.score(
    HELD_OUT.map((_, i) => degeneratePiece("random-notes", { rng, durationSec: 8, id: `r${i}` })),
    CONTEXT,
  ));
  const realC = mean(copiedOnly.score(HELD_OUT, CONTEXT));
  assert.ok(realC > 0.8, `real ${realC}`);
  assert.ok(copyC < realC - 0.3, `copies ${copyC} vs real ${realC}`);
  assert.ok(noiseC < realC - 0.25, `random notes ${noiseC} vs real ${realC}`);
});

Deno.test("reward/novelty builds its n-gram sets once per reference corpus and n", () => {
  const context = corpusContext(syntheticCorpus(40), 16);
  const term = make();
  const pieces = context.reference!.excerpts(4).slice(0, 4);
  const first = term.score(pieces, context);
  const reference = context.reference!;
  const built = reference.memo<unknown>("reward/novelty|ngrams|train|4", () => undefined);
  assert.ok(built instanceof NgramSet);
  assert.deepEqual(term.score(pieces, context), first);
  assert.equal(reference.memo("reward/novelty|ngrams|train|4", () => undefined), built);
});

Deno.test("reward/novelty with one split judges held-out pieces against the rest of train", () => {
  // Train only: every tenth piece is held out, and its excerpts calibrate the corpus part
  // against the other nine tenths. Were they measured against a corpus that holds them, every
  // real value would be 0: a copy would score full marks and new music close to 0.
  const corpus = syntheticCorpus(80, false);
  const context = corpusContext(corpus, 64);
  assert.equal(context.reference!.heldOut.length, 8);
  const copiedOnly = make({ repetitionWeight: 0, batchWeight: 0 });
  // New pieces from the same generator, in no split of the corpus.
  const rng = createRng(99);
  const fresh = Array.from({ length: 6 }, (_, i) =>
    cropPiece(
      generateSyntheticPiece(rng, { id: `new${i}`, bars: 8, tempoMinBpm: 120, tempoMaxBpm: 120 })
        .piece,
      { startSec: 2, durationSec: 8 },
    ));
  const freshScores = copiedOnly.score(fresh, context);
  const copies = copiedOnly.score(excerpts(corpus.pieces.slice(0, 6), 8, 4), context);
  assert.ok(mean(freshScores) > 0.8, `new music ${freshScores}`);
  assert.ok(mean(copies) < 0.95, `copies ${copies}`);
});

Deno.test("reward/novelty scores a batch of identical pieces lower than a varied batch", () => {
  const term = make({ corpusWeight: 0, repetitionWeight: 0 });
  const varied = excerpts(CORPUS.pieces.filter((p) => p.split === "validation"), 4, 6);
  const same = term.score(varied.map(() => varied[0]), CONTEXT);
  const scores = term.score(varied, CONTEXT);
  assert.ok(mean(scores) > 0.95, `varied ${scores}`);
  // Raw variety is 0 for the identical batch, but real calibration batches often hold two
  // overlapping excerpts of one piece, so real variety reaches down near 0 too and the
  // penalty is mild.
  assert.ok(Math.max(...same) < mean(scores) - 0.05, `identical ${same}`);
});

Deno.test("reward/novelty penalises a real excerpt that ends in one note repeated", () => {
  const term = make({ corpusWeight: 0, batchWeight: 0 });
  const source = HELD_OUT[0];
  const end = pieceEndSec(source.notes);
  // Sixteen more eighth notes of one pitch above everything else: 12 excessive top-line notes.
  const looped: Piece = {
    ...source,
    notes: [
      ...source.notes.map((n) => ({ ...n })),
      ...Array.from({ length: 16 }, (_, i) => ({
        pitch: 100,
        startSec: end + i * 0.25,
        endSec: end + i * 0.25 + 0.25,
        velocity: 80,
      })),
    ],
  };
  const [a, b] = term.score([source, looped], CONTEXT);
  assert.ok(a > 0.9, `real ${a}`);
  assert.ok(b < a - 0.3, `with a repeated note ${b} vs ${a}`);
});

Deno.test("reward/novelty gives a piece without notes 0 and needs a reference corpus", () => {
  assert.deepEqual(make().score([melody([]), HELD_OUT[0]], CONTEXT)[0], 0);
  assert.throws(
    () => make().score([melody(TUNE)], { corpus: TRAIN }),
    /is calibrated on real music: give reward\/composite \(or eval\/policies\) a "corpus" input$/,
  );
});

Deno.test("reward/novelty rejects bad params", () => {
  assert.equal(
    checkValue(novelty.params.corpusWeight, -1)[0].message,
    "Expected a number >= 0, received -1",
  );
  assert.equal(checkValue(novelty.params.ngramLength, 1).length, 1);
  assert.equal(novelty.params.ngramLength.default, 4);
  assert.throws(
    () => make({ corpusWeight: 0, repetitionWeight: 0, batchWeight: 0 }),
    /^Error: Cannot create reward term "reward\/novelty": corpusWeight, repetitionWeight, batchWeight must be >= 0 and not all 0, received 0, 0, 0$/,
  );
});

import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import { checkValue } from "../../pipeline/schema.ts";
import { defaultParams } from "../_testing.ts";
import { degeneratePiece } from "../../tests/_degenerate.ts";
import type { Note, Piece } from "../_music/types.ts";
import { corpusContext } from "../_music/scoring.ts";
import corpusMatch, { CORPUS_MATCH_FEATURES, corpusMatchFeatures } from "./corpus_match.ts";
import { excerpts, mean, syntheticCorpus } from "./_testing.ts";

const CORPUS = syntheticCorpus();
const CONTEXT = corpusContext(CORPUS, 64);
const HELD_OUT = excerpts(CORPUS.pieces.filter((p) => p.split === "validation"), 8, 3);

const make = (overrides: Record<string, unknown> = {}) =>
  corpusMatch.create(
    defaultParams(corpusMatch, overrides) as Parameters<typeof corpusMatch.create>[0],
  );

/** A 120 bpm 4/4 piece. */
function piece(notes: Note[]): Piece {
  return {
    id: "p",
    notes,
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: 20 }, (_, i) => i * 0.5),
  };
}
const note = (pitch: number, startSec: number, velocity: number, lengthSec = 0.5): Note => ({
  pitch,
  startSec,
  endSec: startSec + lengthSec,
  velocity,
});

Deno.test("corpusMatchFeatures() matches hand-computed golden values", () => {
  // C4 and E4 at 0 s (velocities 60, 80), G4 at 1 s (100), each 0.5 s long.
  const f = corpusMatchFeatures(piece([note(60, 0, 60), note(64, 0, 80), note(67, 1, 100)]));
  const expected = {
    polyphony: 1.5, // two notes for 0.5 s, one for 0.5 s
    noteDensity: 2, // 3 notes from 0 to 1.5 s
    pitchClassEntropy: Math.log2(3), // C, E, G once each
    velocitySpread: Math.sqrt(800 / 3), // deviations −20, 0, 20
    interOnset: 1, // onsets 0 and 1 s
    pitchRange: 7,
    pitchInterval: 3.5, // 60 → 64 → 67
    noteLength: 0.5,
    meanPitch: 191 / 3,
  };
  assert.deepEqual(Object.keys(f).sort(), Object.keys(CORPUS_MATCH_FEATURES).sort());
  for (const [name, value] of Object.entries(expected)) {
    const got = f[name as keyof typeof f];
    assert.ok(Math.abs(got - value) < 1e-12, `${name}: ${got} vs ${value}`);
  }
});

Deno.test("corpusMatchFeatures() leaves undefined what one note or none cannot measure", () => {
  const one = corpusMatchFeatures(piece([note(60, 0.5, 70, 1)]));
  assert.ok(Number.isNaN(one.interOnset) && Number.isNaN(one.pitchInterval));
  assert.equal(one.polyphony, 1);
  assert.equal(one.noteDensity, 1);
  assert.equal(one.velocitySpread, 0);
  assert.equal(one.pitchClassEntropy, 0);
  assert.ok(Object.values(corpusMatchFeatures(piece([]))).every(Number.isNaN));
});

Deno.test("reward/corpus-match gives held-out real music about 1 and a drone far less", () => {
  const term = make();
  const real = term.score(HELD_OUT, CONTEXT);
  assert.ok(mean(real) > 0.9, `real ${real}`);
  const rng = createRng(4);
  for (const kind of ["chord-drone", "repeated-note", "scale-walk", "random-notes"] as const) {
    const pieces = Array.from(
      { length: 4 },
      (_, i) => degeneratePiece(kind, { rng, durationSec: 8, id: `${kind}-${i}` }),
    );
    const scores = term.score(pieces, CONTEXT);
    assert.ok(mean(scores) < 0.45, `${kind} ${mean(scores)}`);
  }
});

Deno.test("reward/corpus-match penalises real music played at one velocity", () => {
  const flat = HELD_OUT.map((p) => ({ ...p, notes: p.notes.map((n) => ({ ...n, velocity: 80 })) }));
  assert.ok(flat.every((p) => corpusMatchFeatures(p).velocitySpread === 0));
  // On velocity spread alone: far below every real excerpt.
  const velocityOnly = make(
    Object.fromEntries(
      Object.keys(CORPUS_MATCH_FEATURES).map((k) => [`${k}Weight`, k === "velocitySpread" ? 1 : 0]),
    ),
  );
  assert.ok(Math.max(...velocityOnly.score(flat, CONTEXT)) < 0.05);
  const realVelocity = velocityOnly.score(HELD_OUT, CONTEXT);
  assert.ok(mean(realVelocity) > 0.8, `real ${realVelocity}`);
  // With all nine features, one at the floor: every flat excerpt scores below the original.
  const term = make();
  const original = term.score(HELD_OUT, CONTEXT);
  const flattened = term.score(flat, CONTEXT);
  flattened.forEach((s, i) => assert.ok(s < original[i] - 0.2, `${s} vs ${original[i]}`));
});

Deno.test("reward/corpus-match gives a piece without notes 0 and needs a reference corpus", () => {
  assert.deepEqual(make().score([piece([])], CONTEXT), [0]);
  assert.throws(
    () => make().score([HELD_OUT[0]], {}),
    /^Error: "reward\/corpus-match" is calibrated on real music: give reward\/composite \(or eval\/policies\) a "corpus" input$/,
  );
});

Deno.test("reward/corpus-match rejects negative and all-zero weights", () => {
  assert.equal(
    checkValue(corpusMatch.params.polyphonyWeight, -1)[0].message,
    "Expected a number >= 0, received -1",
  );
  const zero = Object.fromEntries(Object.keys(CORPUS_MATCH_FEATURES).map((k) => [`${k}Weight`, 0]));
  assert.throws(
    () => make(zero),
    /^Error: Cannot create reward term "reward\/corpus-match": polyphonyWeight, noteDensityWeight, pitchClassEntropyWeight, velocitySpreadWeight, interOnsetWeight, pitchRangeWeight, pitchIntervalWeight, noteLengthWeight, meanPitchWeight must be >= 0 and not all 0, received 0, 0, 0, 0, 0, 0, 0, 0, 0$/,
  );
  assert.throws(() => make({ meanPitchWeight: -1 }), /received 1, 1, 1, 1, 1, 1, 1, 1, -1$/);
});

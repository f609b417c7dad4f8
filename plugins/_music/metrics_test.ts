import assert from "node:assert/strict";
import {
  clashRate,
  compareDistributions,
  compareSets,
  dissonantPairRate,
  distinctNgramRatio,
  emptyBeatRate,
  excessiveRepeatRate,
  gaussianKde,
  grooveConsistency,
  interSetDistances,
  intraSetDistances,
  leapResolutionRate,
  notesInKeyRate,
  outOfKeyTimeRate,
  pieceMetrics,
  pitchClassEntropy,
  pitchClassesUsed,
  pitchInScaleRate,
  pitchRange,
  polyphony,
  scaleConsistency,
  setMetrics,
  YANG_LERCH_FEATURES,
  yangLerchFeatures,
} from "./metrics.ts";
import { makeScale } from "./theory.ts";
import type { Note, Piece } from "./types.ts";

/** A 120 bpm piece (0.5 s per beat) from [pitch, startBeat, lengthBeats] triples. */
function piece(notes: [number, number, number][], options: { id?: string } = {}): Piece {
  const list: Note[] = notes.map(([pitch, start, length]) => ({
    pitch,
    startSec: start * 0.5,
    endSec: (start + length) * 0.5,
    velocity: 80,
  }));
  list.sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch);
  const beats = Math.ceil(Math.max(0, ...notes.map(([, s, l]) => s + l))) + 1;
  return {
    id: options.id ?? "p",
    notes: list,
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: beats }, (_, i) => i * 0.5),
  };
}

const C_MAJOR_SCALE = piece([60, 62, 64, 65, 67, 69, 71].map((p, i) => [p, i, 1]));

Deno.test("pitchRange() and pitchClassesUsed() of a C major scale", () => {
  assert.equal(pitchRange(C_MAJOR_SCALE), 11);
  assert.equal(pitchClassesUsed(C_MAJOR_SCALE), 7);
  assert.equal(pitchClassesUsed(piece([[60, 0, 1], [72, 1, 1]])), 1);
  assert.ok(Number.isNaN(pitchRange(piece([]))));
});

Deno.test("pitchClassEntropy() of seven equally used pitch classes is log2(7)", () => {
  assert.ok(Math.abs(pitchClassEntropy(C_MAJOR_SCALE) - Math.log2(7)) < 1e-12);
  assert.equal(pitchClassEntropy(piece([[60, 0, 1], [72, 1, 1]])), 0);
  // Two classes, counts 3 and 1: -(3/4 log2 3/4 + 1/4 log2 1/4) = 0.811278...
  const skewed = piece([[60, 0, 1], [60, 1, 1], [60, 2, 1], [62, 3, 1]]);
  assert.ok(Math.abs(pitchClassEntropy(skewed) - 0.8112781244591328) < 1e-12);
});

Deno.test("polyphony() averages the notes sounding while any sounds", () => {
  // 60 over beats 0-2, 64 over beats 1-3, silence, 67 over beats 4-5:
  // 1 note for 1 beat, 2 for 1, 1 for 1, 1 for 1: (1 + 2 + 1 + 1) / 4.
  assert.equal(polyphony(piece([[60, 0, 2], [64, 1, 2], [67, 4, 1]])), 5 / 4);
});

Deno.test("pitchInScaleRate() and scaleConsistency() count notes in a scale", () => {
  const withSharp = piece([[60, 0, 1], [62, 1, 1], [64, 2, 1], [61, 3, 1]]);
  assert.equal(pitchInScaleRate(withSharp, makeScale(0, "major")), 3 / 4);
  assert.equal(scaleConsistency(C_MAJOR_SCALE), 1);
  // C, D, E, C#: D major holds D, E, C# (and not C): 3/4 too; no scale holds all four.
  assert.equal(scaleConsistency(withSharp), 3 / 4);
});

Deno.test("notesInKeyRate() and outOfKeyTimeRate() use the estimated key", () => {
  assert.equal(notesInKeyRate(C_MAJOR_SCALE), 1);
  assert.equal(outOfKeyTimeRate(C_MAJOR_SCALE), 0);
  // C major triad held 4 beats, then F# for 1 beat: F# is 1 of 4 notes and 1 of 13 beats of note time.
  const p = piece([[60, 0, 4], [64, 0, 4], [67, 0, 4], [66, 4, 1]]);
  assert.equal(notesInKeyRate(p), 3 / 4);
  assert.ok(Math.abs(outOfKeyTimeRate(p) - 1 / 13) < 1e-12);
});

Deno.test("emptyBeatRate() counts beats in which nothing sounds", () => {
  // Notes on beats 0 and 3: beats 1 and 2 of 4 are empty.
  assert.equal(emptyBeatRate(piece([[60, 0, 1], [62, 3, 1]])), 0.5);
  // A note held over beats 0-2 fills them all.
  assert.equal(emptyBeatRate(piece([[60, 0, 3]])), 0);
});

Deno.test("grooveConsistency() is 1 minus the mean Hamming distance of neighbouring bars", () => {
  const steady = piece(
    Array.from({ length: 12 }, (_, i) => [60, i, 1] as [number, number, number]),
  );
  assert.equal(grooveConsistency(steady), 1);
  // Bars 1 and 2 have onsets on all four beats, bar 3 on beats 0 and 2 only:
  // distances 0/16 and 2/16, mean 1/16, consistency 15/16.
  const notes: [number, number, number][] = [];
  for (let b = 0; b < 8; b++) notes.push([60, b, 1]);
  notes.push([60, 8, 1], [60, 10, 1]);
  assert.equal(grooveConsistency(piece(notes)), 15 / 16);
  assert.ok(Number.isNaN(grooveConsistency(piece([[60, 0, 1]]))));
});

Deno.test("excessiveRepeatRate() counts notes repeated more than four times in a row", () => {
  const notes: [number, number, number][] = Array.from({ length: 8 }, (_, i) => [60, i, 1]);
  notes.push([62, 8, 1], [64, 9, 1]);
  // The 5th to 8th C are excessive: 4 of 10 notes.
  assert.equal(excessiveRepeatRate(piece(notes)), 0.4);
  assert.equal(excessiveRepeatRate(C_MAJOR_SCALE), 0);
});

Deno.test("leapResolutionRate() is the share of fifth-or-more leaps stepped back from", () => {
  const melody = [60, 69, 67, 74, 76, 64].map((p, i) => [p, i, 1] as [number, number, number]);
  assert.equal(leapResolutionRate(piece(melody)), 0.5);
  assert.ok(Number.isNaN(leapResolutionRate(C_MAJOR_SCALE)));
});

Deno.test("clashRate() is the share of notes sounding a minor second or major seventh from another", () => {
  // C-E-G, then B3 against C5 (a major seventh, compound: a clash) and F#4 (a tritone: not one).
  const p = piece([[60, 0, 2], [64, 0, 2], [67, 0, 2], [59, 2, 1], [72, 2, 1], [66, 2, 1]]);
  assert.equal(clashRate(p), 2 / 6);
  // Touching is not sounding together: E then F, back to back.
  assert.equal(clashRate(piece([[64, 0, 1], [65, 1, 1]])), 0);
  assert.ok(Number.isNaN(clashRate(piece([]))));
});

Deno.test("dissonantPairRate() counts minor seconds, major sevenths and tritones", () => {
  // C-E-G triad (3 consonant pairs), then B with C above it (1 minor second).
  const p = piece([[60, 0, 2], [64, 0, 2], [67, 0, 2], [71, 2, 1], [72, 2, 1]]);
  assert.equal(dissonantPairRate(p), 1 / 4);
  assert.ok(Number.isNaN(dissonantPairRate(C_MAJOR_SCALE)));
});

Deno.test("distinctNgramRatio() divides distinct n-grams by all n-grams over a set", () => {
  const a = piece([[60, 0, 1], [62, 1, 1], [64, 2, 1], [65, 3, 1]]);
  const b = piece([[60, 0, 1], [62, 1, 1], [64, 2, 1], [67, 3, 1]]);
  // 2-grams: 60-62, 62-64, 64-65 and 60-62, 62-64, 64-67: 4 distinct of 6.
  assert.equal(distinctNgramRatio([a, b], { ngramLength: 2 }), 4 / 6);
  assert.equal(distinctNgramRatio([a, a], { ngramLength: 2 }), 1 / 2);
});

Deno.test("pieceMetrics() and setMetrics() report finite means and skip undefined values", () => {
  const m = pieceMetrics(C_MAJOR_SCALE);
  assert.equal(m.noteCount, 7);
  assert.equal(m.durationSec, 3.5);
  assert.ok(Number.isNaN(m.dissonantPairRate));
  const set = setMetrics([C_MAJOR_SCALE, piece([[60, 0, 1], [66, 0, 1]])]);
  assert.equal(set.pieces, 2);
  assert.equal(set.pitchRange, (11 + 6) / 2);
  assert.equal(set.dissonantPairRate, 1); // only the second piece has a pair: a tritone
  assert.ok(Object.values(set).every(Number.isFinite));
});

Deno.test("yangLerchFeatures() of a hand-made piece", () => {
  // C4 and E4 together for a beat, then G4 for a half beat, then C5 for a half beat.
  const f = yangLerchFeatures(piece([[60, 0, 1], [64, 0, 1], [67, 1, 0.5], [72, 1.5, 0.5]]));
  assert.deepEqual(f.pitchClassHistogram, [0.5, 0, 0, 0, 0.25, 0, 0, 0.25, 0, 0, 0, 0]);
  assert.deepEqual(f.pitchRange, [12]);
  assert.deepEqual(f.avgPitchInterval, [(4 + 3 + 5) / 3]);
  assert.deepEqual(f.noteCount, [4]);
  assert.deepEqual(f.avgInterOnsetSec, [0.75 / 2]); // onsets 0, 0.5, 0.75 s
  // Two quarters (class 2) and two eighths (class 3).
  assert.deepEqual(f.noteLengthHistogram, [0, 0, 0.5, 0.5, 0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(yangLerchFeatures(piece([[60, 0, 1]])).avgPitchInterval, null);
});

Deno.test("intraSetDistances() and interSetDistances() pair vectors and skip nulls", () => {
  assert.deepEqual(intraSetDistances([[0, 0], [3, 4], null, [0, 0]]), [5, 0, 5]);
  assert.deepEqual(interSetDistances([[0], null], [[1], [3]]), [1, 3]);
});

Deno.test("gaussianKde() uses Scott's bandwidth", () => {
  // Samples 0..4: sample sd sqrt(2.5), Scott factor 5^(-1/5).
  const kde = gaussianKde([0, 1, 2, 3, 4], 1);
  const h = Math.sqrt(2.5) * 5 ** (-1 / 5);
  assert.ok(Math.abs(kde.bandwidth - h) < 1e-12);
  let expected = 0;
  for (const s of [0, 1, 2, 3, 4]) expected += Math.exp(-0.5 * ((2 - s) / h) ** 2);
  expected /= 5 * h * Math.sqrt(2 * Math.PI);
  assert.ok(Math.abs(kde.density(2) - expected) < 1e-12);
  assert.equal(gaussianKde([3, 3], 0.7).bandwidth, 0.7);
});

Deno.test("compareDistributions(): identical samples overlap fully, far ones not at all", () => {
  const x = [0.5, 1, 1.2, 2, 3.1, 4];
  const same = compareDistributions(x, x);
  assert.ok(Math.abs(same.overlap - 1) < 1e-3, `overlap ${same.overlap}`);
  assert.ok(same.kl < 1e-9);
  const near = compareDistributions(x, x.map((v) => v + 0.5));
  const far = compareDistributions(x, x.map((v) => v + 100));
  assert.ok(near.overlap < same.overlap && near.overlap > far.overlap);
  assert.ok(far.overlap < 1e-6);
  assert.ok(far.kl > near.kl && near.kl > 0);
  assert.ok(Number.isNaN(compareDistributions([], x).overlap));
});

Deno.test("compareSets(): a set of copies of one piece against itself overlaps fully", () => {
  const set = [C_MAJOR_SCALE, C_MAJOR_SCALE, C_MAJOR_SCALE];
  const same = compareSets(set, set);
  for (const feature of YANG_LERCH_FEATURES) {
    assert.ok(Math.abs(same[feature].overlap - 1) < 1e-3, feature);
    assert.ok(same[feature].kl < 1e-9, feature);
  }
  const other = [
    piece([[40, 0, 4], [47, 0, 4], [52, 4, 2]]),
    piece([[41, 0, 3], [48, 3, 3]]),
  ];
  const diff = compareSets(set, other);
  assert.ok(diff.pitchRange.overlap < 0.5);
});

import assert from "node:assert/strict";
import {
  ALL_SCALES,
  beatGrid,
  bestFittingScale,
  countLeapResolutions,
  cropPiece,
  findKey,
  forEachOverlappingPair,
  intervalClass,
  intervalConsonance,
  makeScale,
  pitchClassHistogram,
  scaleName,
  soundingSegments,
  topLine,
  weightedMean,
} from "./theory.ts";
import type { Note, Piece } from "./types.ts";

const note = (pitch: number, startSec: number, endSec: number, velocity = 80): Note => ({
  pitch,
  startSec,
  endSec,
  velocity,
});

Deno.test("makeScale() builds C major and A natural minor with the same pitch classes", () => {
  const cMajor = makeScale(0, "major");
  const aMinor = makeScale(9, "minor");
  assert.deepEqual(
    cMajor.inScale.map((b, pc) => b ? pc : -1).filter((pc) => pc >= 0),
    [0, 2, 4, 5, 7, 9, 11],
  );
  assert.deepEqual(aMinor.inScale, cMajor.inScale);
  assert.equal(ALL_SCALES.length, 24);
  assert.equal(scaleName(makeScale(14, "major")), "D major");
});

Deno.test("bestFittingScale() finds the scale holding most weight and reports its share", () => {
  // D, E, F#, G, A, B, C# each weight 1 plus one F (weight 1): D major holds 7 of 8.
  const hist = new Array(12).fill(0);
  for (const pc of [2, 4, 6, 7, 9, 11, 1, 5]) hist[pc] = 1;
  const { scale, share } = bestFittingScale(hist);
  assert.equal(scaleName(scale), "D major");
  assert.equal(share, 7 / 8);
  assert.ok(Number.isNaN(bestFittingScale(new Array(12).fill(0)).share));
});

Deno.test("findKey() tells C major from A minor by the Krumhansl-Kessler profiles", () => {
  const cMajor = [60, 64, 67, 60, 62, 65, 67, 72].map((p, i) => note(p, i, i + 1));
  assert.equal(scaleName(findKey(cMajor).scale), "C major");
  // A minor: tonic triad held long, the rest short.
  const aMinor = [
    note(57, 0, 4),
    note(60, 0, 4),
    note(64, 0, 4),
    note(62, 4, 4.5),
    note(59, 4.5, 5),
  ];
  assert.equal(scaleName(findKey(aMinor).scale), "A minor");
  assert.ok(Number.isNaN(findKey([]).correlation));
});

Deno.test("pitchClassHistogram() counts notes or sums their seconds", () => {
  const notes = [note(60, 0, 2), note(72, 0, 0.5), note(62, 1, 2)];
  assert.equal(pitchClassHistogram(notes, "count")[0], 2);
  assert.equal(pitchClassHistogram(notes, "duration")[0], 2.5);
  assert.equal(pitchClassHistogram(notes, "duration")[2], 1);
});

Deno.test("intervalClass() and intervalConsonance() classify simple and compound intervals", () => {
  assert.equal(intervalClass(60, 72), 0);
  assert.equal(intervalClass(60, 71), 1); // major seventh
  assert.equal(intervalClass(60, 66), 6);
  assert.equal(intervalConsonance(60, 67), 1); // fifth
  assert.equal(intervalConsonance(60, 65), 1); // fourth
  assert.equal(intervalConsonance(60, 73), 0); // minor ninth = compound minor second
  assert.equal(intervalConsonance(60, 62), 0.5);
  assert.equal(intervalConsonance(60, 70), 0.5); // minor seventh
  assert.equal(intervalConsonance(60, 66), 0);
});

Deno.test("beatGrid() interpolates between uneven beats and extends past both ends", () => {
  const grid = beatGrid({ beatsSec: [1, 1.5, 2.5], tempoBpm: 120 });
  assert.equal(grid.position(1.25), 0.5);
  assert.equal(grid.position(2), 1.5); // halfway through the 1 s beat
  assert.equal(grid.position(3.5), 3); // after the last beat: 1 s per beat
  assert.equal(grid.position(0.5), -1); // before the first: 0.5 s per beat
  assert.equal(grid.time(1.5), 2);
  assert.equal(grid.time(3), 3.5);
});

Deno.test("beatGrid() falls back to tempoBpm when there are fewer than two beats", () => {
  const grid = beatGrid({ beatsSec: [], tempoBpm: 90 });
  assert.equal(grid.position(2), 3); // 90 bpm: 2/3 s per beat
  assert.equal(beatGrid({ beatsSec: [0.5], tempoBpm: Number.NaN }).position(1.5), 2); // 120 bpm default
});

Deno.test("topLine() keeps the highest note of each chord, rolled chords included", () => {
  const notes = [
    note(60, 0, 1),
    note(64, 0.01, 1),
    note(67, 0.02, 1),
    note(62, 1, 2),
    note(55, 1, 2),
  ];
  assert.deepEqual(topLine(notes).map((n) => n.pitch), [67, 62]);
});

Deno.test("soundingSegments() lists what sounds between every start and end", () => {
  const segments = soundingSegments([note(60, 0, 2), note(64, 1, 3), note(67, 4, 5)]);
  assert.deepEqual(segments, [
    { startSec: 0, endSec: 1, pitches: [60] },
    { startSec: 1, endSec: 2, pitches: [60, 64] },
    { startSec: 2, endSec: 3, pitches: [64] },
    { startSec: 4, endSec: 5, pitches: [67] },
  ]);
});

Deno.test("forEachOverlappingPair() visits each overlapping pair once with its overlap", () => {
  const seen: string[] = [];
  forEachOverlappingPair(
    [note(60, 0, 2), note(64, 1, 3), note(67, 2, 4), note(72, 2.5, 2.75)],
    (a, b, overlapSec) => seen.push(`${a.pitch}-${b.pitch}:${overlapSec}`),
  );
  // 60 ends when 67 starts: no overlap. 72 lies inside both 64 and 67.
  assert.deepEqual(seen, ["60-64:1", "64-67:1", "64-72:0.25", "67-72:0.25"]);
});

Deno.test("countLeapResolutions() counts leaps of a fifth and steps back", () => {
  // Up a sixth then down a step: resolved. Up a fifth then up a step: not.
  // The final leap into the last note is not counted.
  assert.deepEqual(countLeapResolutions([60, 69, 67, 74, 76, 64]), { leaps: 2, resolved: 1 });
  assert.deepEqual(countLeapResolutions([60, 62, 64]), { leaps: 0, resolved: 0 });
});

Deno.test("weightedMean() renormalises over defined parts and has a fallback", () => {
  assert.equal(weightedMean([{ weight: 1, value: 1 }, { weight: 3, value: 0 }], 0.5), 0.25);
  assert.equal(weightedMean([{ weight: 1, value: 1 }, { weight: 3, value: NaN }], 0.5), 1);
  assert.equal(weightedMean([{ weight: 0, value: 1 }, { weight: 3, value: NaN }], 0.5), 0.5);
});

Deno.test("cropPiece() keeps notes starting in the window, clipped and shifted", () => {
  const piece: Piece = {
    id: "p",
    notes: [note(60, 0, 1), note(62, 1.5, 4), note(64, 3.5, 4)],
    tempoBpm: 60,
    beatsPerBar: 4,
    beatsSec: [0, 1, 2, 3, 4],
  };
  const cut = cropPiece(piece, { startSec: 1, durationSec: 2 });
  assert.deepEqual(cut.notes, [note(62, 0.5, 2)]);
  assert.deepEqual(cut.beatsSec, [0, 1]);
});

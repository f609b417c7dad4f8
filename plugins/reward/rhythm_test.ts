import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import { checkValue } from "../../pipeline/schema.ts";
import { defaultParams } from "../../pipeline/testing.ts";
import type { Note, Piece } from "../_music/types.ts";
import rhythm, { type RhythmOptions, rhythmParts } from "./rhythm.ts";

/** A 120 bpm 4/4 piece (0.5 s per beat, beats for 40 s) from [pitch, startBeat, lengthBeats]. */
function piece(notes: [number, number, number][]): Piece {
  const list: Note[] = notes.map(([pitch, start, length]) => ({
    pitch,
    startSec: start * 0.5,
    endSec: (start + length) * 0.5,
    velocity: 80,
  }));
  list.sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch);
  return {
    id: "p",
    notes: list,
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: 80 }, (_, i) => i * 0.5),
  };
}

const make = (overrides: Record<string, unknown> = {}) =>
  rhythm.create(defaultParams(rhythm, overrides) as Parameters<typeof rhythm.create>[0]);

const STEADY = piece(Array.from({ length: 16 }, (_, i) => [60, i, 1] as [number, number, number]));

Deno.test("reward/rhythm gives a steady quarter-note beat full marks and random onsets less", () => {
  const rng = createRng(7);
  const random = piece(
    Array.from({ length: 16 }, () => [60, rng.next() * 16, 0.2] as [number, number, number]),
  );
  const [steady, noisy] = make().score([STEADY, random], {});
  assert.equal(steady, 1);
  assert.ok(noisy < 0.8, `random onsets scored ${noisy}`);
  const parts = rhythmParts(random, defaultParams(rhythm) as unknown as RhythmOptions);
  assert.ok(parts.onGrid < 1 && parts.groove < 1 && parts.fewEmptyBeats < 1);
});

Deno.test("reward/rhythm matches a hand-computed golden value", () => {
  // Onsets on beats 0, 1, 2.1 and 3, one beat each, in one bar.
  // On the grid: beat 2.1 is 0.4 sixteenths off (tolerance 0.15) → 3/4.
  // Groove: one bar, undefined, left out. Density: 4 notes over 4 beats → 1.
  // Empty beats: beats 0..3 all sound → 1. Score (3/4 + 1 + 1) / 3 = 11/12.
  const golden = piece([[60, 0, 1], [62, 1, 1], [64, 2.1, 1], [65, 3, 0.9]]);
  assert.ok(Math.abs(make().score([golden], {})[0] - 11 / 12) < 1e-12);
});

Deno.test("reward/rhythm penalises density outside the range smoothly", () => {
  // 16 notes within one beat: 16 per beat, twice the maximum of 8 → 8/16.
  const crowded = piece(
    Array.from({ length: 16 }, (_, i) => [48 + i, i / 16, 1 / 16] as [number, number, number]),
  );
  const options = defaultParams(rhythm) as unknown as RhythmOptions;
  assert.equal(rhythmParts(crowded, options).density, 0.5);
  // One note per 4 beats: 0.25 per beat, a quarter of the minimum → 0.25.
  const sparse = piece([[60, 0, 1], [60, 4, 1], [60, 8, 1], [60, 12, 4]]);
  assert.equal(rhythmParts(sparse, options).density, 0.25);
  assert.equal(rhythmParts(sparse, options).fewEmptyBeats, 1 - 9 / 16);
});

Deno.test("reward/rhythm gives a piece without notes 0", () => {
  assert.deepEqual(make().score([piece([])], {}), [0]);
});

Deno.test("reward/rhythm rejects invalid params", () => {
  assert.deepEqual(checkValue(rhythm.params.gridWeight, -0.5), [
    { path: [], message: "Expected a number >= 0, received -0.5" },
  ]);
  assert.equal(checkValue(rhythm.params.stepsPerBeat, 2.5).length, 1);
  assert.equal(checkValue(rhythm.params.toleranceSteps, 0.7).length, 1);
  assert.throws(
    () => make({ minNotesPerBeat: 4, maxNotesPerBeat: 2 }),
    /maxNotesPerBeat \(2\) must be >= minNotesPerBeat \(4\)/,
  );
  assert.throws(
    () => make({ gridWeight: 0, grooveWeight: 0, densityWeight: 0, emptyBeatWeight: 0 }),
    /Cannot create reward term "reward\/rhythm"/,
  );
});

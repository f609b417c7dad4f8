import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import { checkValue } from "../../pipeline/schema.ts";
import { defaultParams } from "../_testing.ts";
import { degeneratePiece } from "../../tests/_degenerate.ts";
import type { Note, Piece } from "../_music/types.ts";
import { corpusContext } from "../_music/scoring.ts";
import rhythm, { type RhythmOptions, rhythmParts } from "./rhythm.ts";
import { excerpts, mean, syntheticCorpus } from "./_testing.ts";

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

const CORPUS = syntheticCorpus();
const CONTEXT = corpusContext(CORPUS, 64);
const HELD_OUT = excerpts(CORPUS.pieces.filter((p) => p.split === "validation"), 8, 3);

const make = (overrides: Record<string, unknown> = {}) =>
  rhythm.create(defaultParams(rhythm, overrides) as Parameters<typeof rhythm.create>[0]);
const OPTIONS = defaultParams(rhythm) as unknown as RhythmOptions;

/** 16 onsets at random times over 16 beats, a fifth of a beat each. */
function randomOnsets(seed: number): Piece {
  const rng = createRng(seed);
  return piece(
    Array.from({ length: 16 }, () => [60, rng.next() * 16, 0.2] as [number, number, number]),
  );
}

Deno.test("rhythmParts() of a steady beat and of random onsets", () => {
  const steady = piece(
    Array.from({ length: 16 }, (_, i) => [60, i, 1] as [number, number, number]),
  );
  assert.deepEqual(rhythmParts(steady, OPTIONS), {
    onGrid: 1,
    groove: 1,
    density: 1,
    fewEmptyBeats: 1,
  });
  const parts = rhythmParts(randomOnsets(7), OPTIONS);
  assert.ok(parts.onGrid < 1 && parts.groove < 1 && parts.fewEmptyBeats < 1);
});

Deno.test("rhythmParts() matches a hand-computed golden value", () => {
  // Onsets on beats 0, 1, 2.1 and 3, in one bar, the last note ending at beat 3.9.
  // On the grid: beat 2.1 is 0.4 sixteenths off (tolerance 0.15) → 3/4.
  // Groove: one bar, undefined. Density: 4 notes over 3.9 beats.
  // Empty beats: beats 0..3 all sound → 1.
  const golden = piece([[60, 0, 1], [62, 1, 1], [64, 2.1, 1], [65, 3, 0.9]]);
  const parts = rhythmParts(golden, OPTIONS);
  assert.equal(parts.onGrid, 3 / 4);
  assert.ok(Number.isNaN(parts.groove));
  assert.ok(Math.abs(parts.density - 4 / 3.9) < 1e-12);
  assert.equal(parts.fewEmptyBeats, 1);
  // A piece without notes has no parts.
  const empty = rhythmParts(piece([]), OPTIONS);
  assert.ok(Object.values(empty).every(Number.isNaN));
});

Deno.test("rhythmParts() density is raw notes per beat, at least one beat long", () => {
  // 16 notes within one beat: 16 per beat.
  const crowded = piece(
    Array.from({ length: 16 }, (_, i) => [48 + i, i / 16, 1 / 16] as [number, number, number]),
  );
  assert.equal(rhythmParts(crowded, OPTIONS).density, 16);
  // One note of a quarter beat: the span counts as one beat.
  assert.equal(rhythmParts(piece([[60, 0, 0.25]]), OPTIONS).density, 1);
  // Four notes from beat 0 to beat 16: 0.25 per beat, 9 of 16 beats silent.
  const sparse = piece([[60, 0, 1], [60, 4, 1], [60, 8, 1], [60, 12, 4]]);
  assert.equal(rhythmParts(sparse, OPTIONS).density, 0.25);
  assert.equal(rhythmParts(sparse, OPTIONS).fewEmptyBeats, 1 - 9 / 16);
});

Deno.test("reward/rhythm ranks held-out real music above random onsets and noise", () => {
  const term = make();
  const real = term.score(HELD_OUT, CONTEXT);
  assert.ok(mean(real) > 0.8, `real ${mean(real)}`);
  const rng = createRng(4);
  for (const kind of ["random-notes", "clusters"] as const) {
    const pieces = Array.from(
      { length: 6 },
      (_, i) => degeneratePiece(kind, { rng, durationSec: 8, id: `${kind}-${i}` }),
    );
    const scores = term.score(pieces, CONTEXT);
    assert.ok(mean(scores) < mean(real) - 0.4, `${kind} ${mean(scores)} vs real ${mean(real)}`);
  }
  const random = term.score([1, 2, 3, 4].map(randomOnsets), CONTEXT);
  assert.ok(mean(random) < mean(real) - 0.4, `random onsets ${mean(random)}`);
});

Deno.test("reward/rhythm matches density to the corpus from both sides", () => {
  const term = make({ gridWeight: 0, grooveWeight: 0, emptyBeatWeight: 0 });
  // 8 s pieces: real music (eighth-note melody over an accompaniment) against far too many
  // notes per beat and far too few.
  const crowded = piece(
    Array.from(
      { length: 256 },
      (_, i) => [48 + (i % 24), i / 16, 1 / 16] as [number, number, number],
    ),
  );
  const sparse = piece([[60, 0, 1], [62, 4, 1], [64, 8, 1], [65, 12, 4]]);
  const [c, s] = term.score([crowded, sparse], CONTEXT);
  const real = term.score(HELD_OUT, CONTEXT);
  assert.ok(Math.min(...real) > 0.9, `real ${real}`);
  assert.ok(c < 0.1, `16 notes per beat scored ${c}`);
  assert.ok(s < 0.1, `0.25 notes per beat scored ${s}`);
});

Deno.test("reward/rhythm gives a piece without notes 0 and needs a reference corpus", () => {
  assert.deepEqual(make().score([piece([])], CONTEXT), [0]);
  assert.throws(
    () => make().score([randomOnsets(1)], {}),
    /^Error: "reward\/rhythm" is calibrated on real music: give reward\/composite \(or eval\/policies\) a "corpus" input$/,
  );
});

Deno.test("reward/rhythm rejects invalid params", () => {
  assert.deepEqual(checkValue(rhythm.params.gridWeight, -0.5), [
    { path: [], message: "Expected a number >= 0, received -0.5" },
  ]);
  assert.equal(checkValue(rhythm.params.stepsPerBeat, 2.5).length, 1);
  assert.equal(checkValue(rhythm.params.toleranceSteps, 0.7).length, 1);
  assert.throws(
    () => make({ gridWeight: 0, grooveWeight: 0, densityWeight: 0, emptyBeatWeight: 0 }),
    /^Error: Cannot create reward term "reward\/rhythm": .* must be >= 0 and not all 0, received 0, 0, 0, 0$/,
  );
});

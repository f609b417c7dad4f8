import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import { checkValue } from "../../pipeline/schema.ts";
import { defaultParams } from "../_testing.ts";
import { degeneratePiece } from "../../tests/_degenerate.ts";
import type { Piece } from "../_music/types.ts";
import { corpusContext } from "../_music/scoring.ts";
import smoothness, {
  intervalScore,
  type SmoothnessOptions,
  smoothnessParts,
} from "./smoothness.ts";
import { excerpts, mean, syntheticCorpus } from "./_testing.ts";

/** A monophonic 120 bpm 4/4 piece: one quarter note per pitch, velocities optional. */
function melody(pitches: number[], velocities: number[] = []): Piece {
  return {
    id: "p",
    notes: pitches.map((pitch, i) => ({
      pitch,
      startSec: i * 0.5,
      endSec: i * 0.5 + 0.5,
      velocity: velocities[i] ?? 80,
    })),
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: pitches.length + 1 }, (_, i) => i * 0.5),
  };
}

const CORPUS = syntheticCorpus();
const CONTEXT = corpusContext(CORPUS, 64);
const HELD_OUT = excerpts(CORPUS.pieces.filter((p) => p.split === "validation"), 8, 3);

const make = (overrides: Record<string, unknown> = {}) =>
  smoothness.create(
    defaultParams(smoothness, overrides) as Parameters<typeof smoothness.create>[0],
  );
const OPTIONS = defaultParams(smoothness) as unknown as SmoothnessOptions;

Deno.test("intervalScore() is 1 up to a third, 0.5 at the octave and 0 beyond", () => {
  assert.equal(intervalScore(2, OPTIONS), 1);
  assert.equal(intervalScore(-4, OPTIONS), 1);
  assert.equal(intervalScore(7, OPTIONS), 1 - 0.5 * 3 / 8);
  assert.equal(intervalScore(12, OPTIONS), 0.5);
  assert.equal(intervalScore(13, OPTIONS), 0);
});

Deno.test("smoothnessParts() of a resolved and an unresolved leap (golden values)", () => {
  // Both: up a fifth (f = 0.8125) then two steps (1, 1): intervals (0.8125 + 2) / 3 = 0.9375.
  // Velocity constant → 1. One bar → density undefined.
  const resolved = smoothnessParts(melody([60, 67, 65, 64]), OPTIONS);
  assert.deepEqual(resolved, { intervals: 0.9375, leapResolution: 1, velocity: 1, density: NaN });
  const unresolved = smoothnessParts(melody([60, 67, 69, 71]), OPTIONS);
  assert.deepEqual(unresolved, {
    intervals: 0.9375,
    leapResolution: 0,
    velocity: 1,
    density: NaN,
  });
  // No leap at all: resolution is undefined; one note: intervals and velocity too.
  assert.ok(Number.isNaN(smoothnessParts(melody([60, 62, 64, 65]), OPTIONS).leapResolution));
  const one = smoothnessParts(melody([60]), OPTIONS);
  assert.ok(Number.isNaN(one.intervals) && Number.isNaN(one.velocity));
});

Deno.test("smoothnessParts() measures jumps of velocity and of density", () => {
  // Beat velocities 80, 96, 64, 64: changes 16, 32, 0 → (0.5 + 0 + 1) / 3.
  const jumpy = melody([60, 62, 64, 65], [80, 96, 64, 64]);
  assert.equal(smoothnessParts(jumpy, OPTIONS).velocity, 0.5);
  // Bar 1: 4 notes, bar 2: 1 note (then silence), bar 3: 4 notes → (1/4 + 1/4) / 2.
  const notes = melody([60, 62, 64, 65, 67, 0, 0, 0, 60, 62, 64, 65]);
  notes.notes = notes.notes.filter((n) => n.pitch > 0);
  assert.equal(smoothnessParts(notes, OPTIONS).density, 0.25);
  const leaps = melody([60, 76, 58, 79, 55, 80, 57, 78]);
  assert.equal(smoothnessParts(leaps, OPTIONS).intervals, 0);
});

Deno.test("reward/smoothness ranks steps above wide leaps, and steady velocity above jumps", () => {
  // Two bars of steps with two fifths, each resolved by a step back.
  const steps = [60, 62, 64, 65, 67, 65, 64, 62, 60, 67, 65, 64, 62, 69, 67, 65];
  // Two bars of leaps past the octave (raw intervals 0); real top lines lie at 0.29 or more.
  const leaps = [60, 76, 58, 79, 55, 80, 57, 78, 60, 76, 58, 79, 55, 80, 57, 78];
  const intervalsOnly = make({ resolutionWeight: 0, velocityWeight: 0, densityWeight: 0 });
  const [a, b] = intervalsOnly.score([melody(steps), melody(leaps)], CONTEXT);
  assert.ok(a > 0.99, `steps ${a}`);
  assert.ok(b < 0.6, `wide leaps ${b}`);
  // The same melody at a steady velocity and with velocity jumping by 80 every beat.
  const loudSoft = steps.map((_, i) => (i % 2 === 0 ? 30 : 110));
  const [steady, jumpy] = make().score([melody(steps), melody(steps, loudSoft)], CONTEXT);
  assert.ok(jumpy < steady - 0.3, `velocity jumps ${jumpy} vs steady ${steady}`);
  // All four parts: the leaps still lose.
  const [x, y] = make().score([melody(steps), melody(leaps)], CONTEXT);
  assert.ok(y < x - 0.1, `leaps ${y} vs steps ${x}`);
});

Deno.test("reward/smoothness ranks held-out real music above a leapless scale walk", () => {
  const term = make();
  const real = term.score(HELD_OUT, CONTEXT);
  assert.ok(mean(real) > 0.75, `real ${mean(real)}`);
  const rng = createRng(4);
  const walks = Array.from(
    { length: 4 },
    (_, i) => degeneratePiece("scale-walk", { rng, durationSec: 8, id: `walk-${i}` }),
  );
  // Steps only, one velocity: every defined part is perfect, but real piano music is hardly
  // ever without a leap in 8 s, so the undefined leap resolution scores low.
  const walkParts = smoothnessParts(walks[0], OPTIONS);
  assert.equal(walkParts.intervals, 1);
  assert.ok(Number.isNaN(walkParts.leapResolution));
  const walk = term.score(walks, CONTEXT);
  assert.ok(mean(walk) < mean(real) - 0.2, `scale walk ${mean(walk)} vs real ${mean(real)}`);
});

Deno.test("reward/smoothness gives a piece without notes 0 and needs a reference corpus", () => {
  assert.deepEqual(make().score([melody([])], CONTEXT), [0]);
  assert.throws(
    () => make().score([melody([60, 62])], {}),
    /^Error: "reward\/smoothness" is calibrated on real music: give reward\/composite \(or eval\/policies\) a "corpus" input$/,
  );
});

Deno.test("reward/smoothness rejects bad params", () => {
  assert.equal(
    checkValue(smoothness.params.velocityWeight, -3)[0].message,
    "Expected a number >= 0, received -3",
  );
  assert.throws(
    () => make({ maxStepSemitones: 12, maxLeapSemitones: 12 }),
    /maxLeapSemitones \(12\) must be > maxStepSemitones \(12\)/,
  );
  assert.throws(
    () => make({ intervalWeight: 0, resolutionWeight: 0, velocityWeight: 0, densityWeight: 0 }),
    /^Error: Cannot create reward term "reward\/smoothness": .* must be >= 0 and not all 0, received 0, 0, 0, 0$/,
  );
});

import assert from "node:assert/strict";
import { checkValue } from "../../pipeline/schema.ts";
import { defaultParams } from "../../pipeline/testing.ts";
import type { Piece } from "../_music/types.ts";
import smoothness, {
  intervalScore,
  type SmoothnessOptions,
  smoothnessParts,
} from "./smoothness.ts";

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

Deno.test("reward/smoothness scores a stepwise melody above wide leaps", () => {
  const stepwise = melody([60, 62, 64, 65, 67, 65, 64, 62]);
  const leaps = melody([60, 76, 58, 79, 55, 80, 57, 78]);
  const [a, b] = make().score([stepwise, leaps], {});
  assert.equal(a, 1);
  assert.equal(smoothnessParts(leaps, OPTIONS).intervals, 0);
  assert.ok(b < a, `leaps ${b} vs steps ${a}`);
});

Deno.test("reward/smoothness rewards a resolved leap over an unresolved one (golden values)", () => {
  // Both: up a fifth (f = 0.8125) then two steps (1, 1): intervals (0.8125 + 2) / 3 = 0.9375.
  // Velocity constant → 1. One bar → density undefined.
  // Resolved (down a step after the leap): (0.9375 + 1 + 1) / 3 = 47/48.
  // Unresolved (on up by a step): (0.9375 + 0 + 1) / 3 = 31/48.
  const [resolved, unresolved] = make().score(
    [melody([60, 67, 65, 64]), melody([60, 67, 69, 71])],
    {},
  );
  assert.ok(Math.abs(resolved - 47 / 48) < 1e-12, `resolved ${resolved}`);
  assert.ok(Math.abs(unresolved - 31 / 48) < 1e-12, `unresolved ${unresolved}`);
});

Deno.test("reward/smoothness penalises jumps of velocity and of density", () => {
  // Beat velocities 80, 96, 64, 64: changes 16, 32, 0 → (0.5 + 0 + 1) / 3.
  const jumpy = melody([60, 62, 64, 65], [80, 96, 64, 64]);
  assert.equal(smoothnessParts(jumpy, OPTIONS).velocity, 0.5);
  // Bar 1: 4 notes, bar 2: 1 note (then silence), bar 3: 4 notes → (1/4 + 1/4) / 2.
  const notes = melody([60, 62, 64, 65, 67, 0, 0, 0, 60, 62, 64, 65]);
  notes.notes = notes.notes.filter((n) => n.pitch > 0);
  assert.equal(smoothnessParts(notes, OPTIONS).density, 0.25);
});

Deno.test("reward/smoothness gives a piece without notes 0 and rejects bad params", () => {
  assert.deepEqual(make().score([melody([])], {}), [0]);
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
    /Cannot create reward term "reward\/smoothness"/,
  );
});

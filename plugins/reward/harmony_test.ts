import assert from "node:assert/strict";
import { defaultParams } from "../../pipeline/testing.ts";
import { checkValue } from "../../pipeline/schema.ts";
import type { Note, Piece } from "../_music/types.ts";
import harmony, { harmonyParts } from "./harmony.ts";

/** A 120 bpm 4/4 piece from [pitch, startSec, endSec] triples. */
function piece(notes: [number, number, number][]): Piece {
  const list: Note[] = notes.map(([pitch, startSec, endSec]) => ({
    pitch,
    startSec,
    endSec,
    velocity: 80,
  }));
  return {
    id: "p",
    notes: list,
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5],
  };
}

const make = (overrides: Record<string, unknown> = {}) =>
  harmony.create(defaultParams(harmony, overrides) as Parameters<typeof harmony.create>[0]);

const C_MAJOR_SCALE = piece(
  [60, 62, 64, 65, 67, 69, 71, 72].map((p, i) => [p, i * 0.5, i * 0.5 + 0.5]),
);
const CHROMATIC_CLUSTER = piece([60, 61, 62, 63, 64].map((p) => [p, 0, 2]));

Deno.test("reward/harmony scores an in-key C major scale 1 and a chromatic cluster far lower", () => {
  const [scale, cluster] = make().score([C_MAJOR_SCALE, CHROMATIC_CLUSTER], {});
  // Monophonic, all in C major, no clusters; consonance is undefined and left out.
  assert.equal(scale, 1);
  // Cluster C..E held together: scale fit 3/5 (C major holds C, D, E);
  // consonance of its 10 pairs (all same overlap):
  //   m2 ×4 → 0, M2 ×3 → 0.5, m3 ×2 → 1, M3 ×1 → 1, so 4.5/10 = 0.45;
  // a cluster sounds all the time → 0. Score (0.6 + 0.45 + 0) / 3 = 0.35.
  assert.ok(Math.abs(cluster - 0.35) < 1e-12, `cluster scored ${cluster}`);
});

Deno.test("reward/harmony matches a hand-computed golden value", () => {
  // C4 0-2 s, E4 0-1 s, C#4 1-2 s, D4 1.5-2 s.
  // Scale fit: note time C 2, E 1, C# 1, D 0.5 (total 4.5); C major holds C, D, E = 3.5 → 7/9.
  // Consonance: C-E overlap 1 s × 1, C-C# 1 s × 0, C-D 0.5 s × 0.5, C#-D 0.5 s × 0;
  //   (1 + 0 + 0.25 + 0) / 3 = 5/12.
  // Clusters: C, C#, D sound together 1.5-2 s of 2 s sounding → 1 - 1/4 = 3/4.
  // Score (7/9 + 5/12 + 3/4) / 3 = 35/54.
  const golden = piece([[60, 0, 2], [64, 0, 1], [61, 1, 2], [62, 1.5, 2]]);
  const parts = harmonyParts(golden.notes);
  assert.ok(Math.abs(parts.scaleFit - 7 / 9) < 1e-12);
  assert.ok(Math.abs(parts.consonance - 5 / 12) < 1e-12);
  assert.ok(Math.abs(parts.noClusters - 3 / 4) < 1e-12);
  assert.ok(Math.abs(make().score([golden], {})[0] - 35 / 54) < 1e-12);
  // Weights 2, 1, 0: (2 × 7/9 + 5/12) / 3 = 71/108.
  const weighted = make({ scaleWeight: 2, consonanceWeight: 1, clusterWeight: 0 });
  assert.ok(Math.abs(weighted.score([golden], {})[0] - 71 / 108) < 1e-12);
});

Deno.test("reward/harmony prefers consonant chords to dissonant ones", () => {
  const triad = piece([[60, 0, 1], [64, 0, 1], [67, 0, 1]]);
  const tritones = piece([[60, 0, 1], [66, 0, 1], [71, 0, 1]]);
  const [a, b] = make().score([triad, tritones], {});
  assert.equal(a, 1);
  assert.ok(b < 0.8, `dissonant chord scored ${b}`);
});

Deno.test("reward/harmony gives a piece without notes 0", () => {
  assert.deepEqual(make().score([piece([])], {}), [0]);
});

Deno.test("reward/harmony rejects negative and all-zero weights", () => {
  assert.deepEqual(checkValue(harmony.params.scaleWeight, -1, ["scaleWeight"]), [
    { path: ["scaleWeight"], message: "Expected a number >= 0, received -1" },
  ]);
  assert.deepEqual(checkValue(harmony.params.consonanceWeight, 0.5), []);
  assert.throws(
    () => make({ scaleWeight: 0, consonanceWeight: 0, clusterWeight: 0 }),
    /Cannot create reward term "reward\/harmony": .* not all 0/,
  );
  assert.throws(() => make({ clusterWeight: -2 }), /must be >= 0/);
});

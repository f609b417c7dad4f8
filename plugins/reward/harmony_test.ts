import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import { defaultParams } from "../_testing.ts";
import { checkValue } from "../../pipeline/schema.ts";
import { DEGENERATE_KINDS, degeneratePiece } from "../../tests/_degenerate.ts";
import { calibratedScore, PART_FLOOR } from "../_music/calibration.ts";
import type { Note, Piece } from "../_music/types.ts";
import { calibrationsFor } from "./_calibrated.ts";
import { corpusContext } from "../_music/scoring.ts";
import harmony, { harmonyParts } from "./harmony.ts";
import { excerpts, mean, syntheticCorpus } from "./_testing.ts";

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

const CORPUS = syntheticCorpus();
const CONTEXT = corpusContext(CORPUS, 64);
const HELD_OUT = excerpts(CORPUS.pieces.filter((p) => p.split === "validation"), 8, 3);

type Params = Parameters<typeof harmony.create>[0];
const make = (overrides: Record<string, unknown> = {}) =>
  harmony.create(defaultParams(harmony, overrides) as Params);

const C_MAJOR_SCALE = piece(
  [60, 62, 64, 65, 67, 69, 71, 72].map((p, i) => [p, i * 0.5, i * 0.5 + 0.5]),
);
const CHROMATIC_CLUSTER = piece([60, 61, 62, 63, 64].map((p) => [p, 0, 2]));

Deno.test("harmonyParts() of an in-key scale and of a chromatic cluster", () => {
  // Monophonic, all in C major, no clusters; consonance is undefined (no two notes overlap).
  const scale = harmonyParts(C_MAJOR_SCALE.notes);
  assert.equal(scale.scaleFit, 1);
  assert.ok(Number.isNaN(scale.consonance));
  assert.equal(scale.noClusters, 1);
  // Cluster C..E held together: scale fit 3/5 (C major holds C, D, E);
  // consonance of its 10 pairs (all same overlap):
  //   m2 ×4 → 0, M2 ×3 → 0.5, m3 ×2 → 1, M3 ×1 → 1, so 4.5/10 = 0.45;
  // a cluster sounds all the time → 0.
  const cluster = harmonyParts(CHROMATIC_CLUSTER.notes);
  assert.ok(Math.abs(cluster.scaleFit - 0.6) < 1e-12);
  assert.ok(Math.abs(cluster.consonance - 0.45) < 1e-12);
  assert.equal(cluster.noClusters, 0);
});

Deno.test("harmonyParts() matches a hand-computed golden value", () => {
  // C4 0-2 s, E4 0-1 s, C#4 1-2 s, D4 1.5-2 s.
  // Scale fit: note time C 2, E 1, C# 1, D 0.5 (total 4.5); C major holds C, D, E = 3.5 → 7/9.
  // Consonance: C-E overlap 1 s × 1, C-C# 1 s × 0, C-D 0.5 s × 0.5, C#-D 0.5 s × 0;
  //   (1 + 0 + 0.25 + 0) / 3 = 5/12.
  // Clusters: C, C#, D sound together 1.5-2 s of 2 s sounding → 1 - 1/4 = 3/4.
  const golden = piece([[60, 0, 2], [64, 0, 1], [61, 1, 2], [62, 1.5, 2]]);
  const parts = harmonyParts(golden.notes);
  assert.ok(Math.abs(parts.scaleFit - 7 / 9) < 1e-12);
  assert.ok(Math.abs(parts.consonance - 5 / 12) < 1e-12);
  assert.ok(Math.abs(parts.noClusters - 3 / 4) < 1e-12);
});

/** The calibrations reward/harmony uses for pieces of `bucketSec` seconds (from its memo). */
function harmonyCalibrations(params: Record<string, unknown>, bucketSec: number) {
  return calibrationsFor(
    {
      name: "reward/harmony",
      params,
      specs: ["scaleFit", "consonance", "noClusters"].map((name) => ({
        name,
        weight: 1,
        direction: "higher" as const,
        minScale: 0.02,
      })),
      parts: (pieces) => pieces.map((p) => ({ ...harmonyParts(p.notes) })),
    },
    CONTEXT.reference!,
    CONTEXT,
    bucketSec,
  );
}

Deno.test("reward/harmony combines its calibrated parts by weight (geometric mean)", () => {
  // A C major triad held 2 s with C#5 over its last half second: scale fit 6 / 6.5 s,
  // consonance (6 + 0.5 × (m2 0 + M6 1 + tritone 0)) / 7.5 = 13/15.
  const triad = piece([[60, 0, 2], [64, 0, 2], [67, 0, 2], [73, 1.5, 2]]);
  const parts = harmonyParts(triad.notes);
  assert.ok(Math.abs(parts.scaleFit - 12 / 13) < 1e-12);
  assert.ok(Math.abs(parts.consonance - 13 / 15) < 1e-12);
  const params = defaultParams(harmony, { scaleWeight: 2, consonanceWeight: 1, clusterWeight: 0 });
  const [score] = harmony.create(params as Params).score([triad], CONTEXT);
  // The piece lasts 2 s: it is measured against 2 s real excerpts.
  const cal = harmonyCalibrations(params, 2);
  const s = calibratedScore(parts.scaleFit, cal.scaleFit);
  const c = calibratedScore(parts.consonance, cal.consonance);
  // Both parts are off real music, neither to the floor, so the weights show.
  assert.ok(s > PART_FLOOR && s < 0.99 && c > PART_FLOOR && c < 0.99, `scale ${s}, cons. ${c}`);
  // Weights 2, 1, 0: (s² · c)^(1/3); the cluster part is left out.
  assert.ok(Math.abs(score - (s * s * c) ** (1 / 3)) < 1e-12, `${score}`);
  const [even] = make().score([triad], CONTEXT);
  const k = calibratedScore(parts.noClusters, cal.noClusters);
  assert.ok(Math.abs(even - (s * c * k) ** (1 / 3)) < 1e-12, `${even}`);
});

Deno.test("reward/harmony ranks held-out real music above a one-voice scale walk and clusters", () => {
  const term = make();
  const real = term.score(HELD_OUT, CONTEXT);
  assert.ok(mean(real) > 0.8, `real ${mean(real)}`);
  const rng = createRng(4);
  for (const kind of DEGENERATE_KINDS) {
    const pieces = Array.from(
      { length: 6 },
      (_, i) => degeneratePiece(kind, { rng, durationSec: 8, id: `${kind}-${i}` }),
    );
    const scores = term.score(pieces, CONTEXT);
    if (kind === "scale-walk") {
      // All in one scale, no cluster, but one voice: consonance is undefined, and real music
      // always has two voices (undefined share 0), so that part scores 0, floored at 0.01.
      const cal = harmonyCalibrations(defaultParams(harmony), 8);
      assert.equal(cal.consonance.undefinedShare, 0);
      for (const s of scores) assert.ok(Math.abs(s - PART_FLOOR ** (1 / 3)) < 1e-12, `${s}`);
    }
    if (kind === "random-notes" || kind === "clusters" || kind === "scale-walk") {
      assert.ok(mean(scores) < mean(real) - 0.5, `${kind} ${mean(scores)} vs real ${mean(real)}`);
    }
  }
});

Deno.test("reward/harmony prefers consonant chords to dissonant ones", () => {
  const triad = piece([[60, 0, 1], [64, 0, 1], [67, 0, 1], [60, 1, 2], [65, 1, 2], [69, 1, 2]]);
  const tritones = piece([[60, 0, 1], [66, 0, 1], [71, 0, 1], [61, 1, 2], [67, 1, 2], [72, 1, 2]]);
  const [a, b] = make().score([triad, tritones], CONTEXT);
  assert.ok(a > 0.9, `triads scored ${a}`);
  assert.ok(b < a - 0.3, `dissonant chords scored ${b} vs ${a}`);
});

Deno.test("reward/harmony gives a piece without notes 0 and needs a reference corpus", () => {
  assert.deepEqual(make().score([piece([])], CONTEXT), [0]);
  assert.throws(
    () => make().score([C_MAJOR_SCALE], {}),
    /^Error: "reward\/harmony" is calibrated on real music: give reward\/composite \(or eval\/policies\) a "corpus" input$/,
  );
});

Deno.test("reward/harmony rejects negative and all-zero weights", () => {
  assert.deepEqual(checkValue(harmony.params.scaleWeight, -1, ["scaleWeight"]), [
    { path: ["scaleWeight"], message: "Expected a number >= 0, received -1" },
  ]);
  assert.deepEqual(checkValue(harmony.params.consonanceWeight, 0.5), []);
  assert.throws(
    () => make({ scaleWeight: 0, consonanceWeight: 0, clusterWeight: 0 }),
    /^Error: Cannot create reward term "reward\/harmony": .* must be >= 0 and not all 0, received 0, 0, 0$/,
  );
  assert.throws(() => make({ clusterWeight: -2 }), /must be >= 0 and not all 0, received 1, 1, -2/);
});

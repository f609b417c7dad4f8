import assert from "node:assert/strict";
import { checkValue } from "../../pipeline/schema.ts";
import { defaultParams, testContext } from "../_testing.ts";
import type { MidiCorpus, Piece, Split } from "../_music/types.ts";
import evalMetrics, { metricsMarkdown, type MetricsReport } from "./metrics.ts";

/** A 120 bpm 4/4 melody: one quarter note per pitch. */
function melody(pitches: number[], id: string): Piece {
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
    beatsSec: Array.from({ length: pitches.length + 1 }, (_, i) => i * 0.5),
  };
}

const scale = (root: number, id: string) =>
  melody([0, 2, 4, 5, 7, 9, 11, 12].map((s) => root + s), id);
const withSplit = (piece: Piece, split: Split) => ({ ...piece, split });

type Params = Parameters<typeof evalMetrics.run>[2];

Deno.test("eval/metrics measures each set, compares with real and writes json and md", async () => {
  const real: MidiCorpus = {
    pieces: [
      withSplit(scale(60, "v1"), "validation"),
      withSplit(scale(62, "v2"), "validation"),
      withSplit(scale(65, "v3"), "validation"),
      withSplit(melody([30, 90, 31, 91], "t1"), "train"),
    ],
    skipped: [],
  };
  const pretrained = [
    melody([60, 61, 60, 61, 60, 61, 60, 61, 60, 61], "g1"),
    melody([40, 80, 41, 81], "g2"),
    { id: "broken", notes: "none" },
  ];
  const ctx = testContext();
  const out = await evalMetrics.run(
    ctx,
    // One piece is broken on purpose: the plugin skips it.
    { real, pretrained } as never,
    defaultParams(evalMetrics) as Params,
  );
  const report = out.metrics as MetricsReport;

  assert.deepEqual(Object.keys(report.sets), ["real", "pretrained"]);
  // Only validation pieces count; each is a one-octave scale: range 12, 7 classes, all in key.
  assert.equal(report.sets.real.pieces, 3);
  assert.equal(report.sets.real.pitchRange, 12);
  assert.equal(report.sets.real.pitchClassesUsed, 7);
  assert.equal(report.sets.real.scaleConsistency, 1);
  // The broken piece is reported and skipped.
  assert.equal(report.sets.pretrained.pieces, 2);
  assert.ok(ctx.logs.some((l) => l.level === "warn" && l.message.includes('"broken"')));
  assert.equal(report.sets.pretrained.pitchRange, (1 + 41) / 2);

  const comparison = report.comparisons.realVsPretrained;
  assert.deepEqual(Object.keys(comparison).sort(), [
    "avgInterOnsetSec",
    "avgPitchInterval",
    "noteCount",
    "noteLengthHistogram",
    "pitchClassHistogram",
    "pitchRange",
  ]);
  for (const { overlap, kl } of Object.values(comparison)) {
    assert.ok(overlap >= 0 && overlap <= 1 && kl >= 0);
  }
  // Real ranges are all 12 (intra distances 0); generated ranges 1 and 41 are far off.
  assert.ok(comparison.pitchRange.overlap < 0.05, `overlap ${comparison.pitchRange.overlap}`);

  const json = JSON.parse(await Deno.readTextFile(`${ctx.runDir}/eval_metrics.json`));
  assert.deepEqual(json, report);
  const md = await Deno.readTextFile(`${ctx.runDir}/eval_metrics.md`);
  assert.match(md, /\| metric \| real \| pretrained \|/);
  assert.match(md, /\| pitchRange \| 12 \| 21 \|/);
  assert.match(md, /realVsPretrained OA/);
});

Deno.test("eval/metrics subsamples to maxPieces and crops to cropSec", async () => {
  const pieces = Array.from({ length: 6 }, (_, i) => scale(60 + i, `g${i}`));
  const ctx = testContext({ seed: 5 });
  const params = defaultParams(evalMetrics, { maxPieces: 4, cropSec: 2 }) as Params;
  const out = await evalMetrics.run(ctx, { finetuned: pieces }, params);
  const report = out.metrics as MetricsReport;
  assert.equal(report.sets.finetuned.pieces, 4);
  // 2 s at 0.5 s per note: 4 notes of each scale, spanning 5 semitones.
  assert.equal(report.sets.finetuned.noteCount, 4);
  assert.equal(report.sets.finetuned.pitchRange, 5);
  assert.deepEqual(report.comparisons, {});
});

Deno.test("eval/metrics with no inputs writes an empty report", async () => {
  const ctx = testContext();
  const out = await evalMetrics.run(ctx, {}, defaultParams(evalMetrics) as Params);
  assert.deepEqual(out.metrics, { sets: {}, comparisons: {} });
  assert.match(metricsMarkdown(out.metrics as MetricsReport), /No sets were given/);
});

Deno.test("eval/metrics rejects bad params and bad inputs", async () => {
  assert.equal(
    checkValue(evalMetrics.params.maxPieces, 1)[0].message,
    "Expected an integer >= 2, received 1",
  );
  assert.equal(checkValue(evalMetrics.params.cropSec, -1).length, 1);
  await assert.rejects(
    evalMetrics.run(
      testContext(),
      { refined: { pieces: [] } } as never,
      defaultParams(evalMetrics) as Params,
    ),
    /Cannot evaluate input "refined": expected a list of pieces/,
  );
});

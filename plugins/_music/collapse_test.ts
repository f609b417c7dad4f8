import assert from "node:assert/strict";
import { batchStats, collapseReason } from "./collapse.ts";
import type { Piece } from "./types.ts";

/** A piece with the given pitches, one per quarter second. */
function piece(pitches: number[]): Piece {
  return {
    id: "p",
    notes: pitches.map((pitch, i) => ({
      pitch,
      startSec: i / 4,
      endSec: i / 4 + 0.2,
      velocity: 80,
    })),
    beatsSec: [0, 0.5, 1, 1.5, 2],
  } as Piece;
}

const scale = [60, 62, 64, 65, 67, 69, 71, 72, 74, 76, 77, 79];

Deno.test("batchStats() measures notes per piece and distinct pitch n-grams", () => {
  const stats = batchStats([piece(scale), piece([60, 60, 60, 60, 60, 60])], { meanLogProb: -2 });
  assert.equal(stats.notesPerPiece, 9);
  // 9 distinct 4-grams in the scale, 1 in the repeated note: 10 distinct of 12.
  assert.equal(stats.distinctNgramRatio, 10 / 12);
  assert.equal(stats.meanLogProb, -2);
  assert.equal(batchStats([]).notesPerPiece, 0);
});

Deno.test("collapseReason() passes a healthy batch and names every sign of a collapsed one", () => {
  const healthy = batchStats([piece(scale), piece(scale.map((p) => p + 2))], { meanLogProb: -2.5 });
  assert.equal(collapseReason(healthy, { notesPerPiece: 14 }), undefined);
  assert.equal(collapseReason(healthy, { tokensSampled: 48 }), undefined);
  // Two notes per piece against 46 in the reference.
  assert.equal(
    collapseReason(batchStats([piece([60, 64])]), { notesPerPiece: 46 }),
    "2.0 notes per piece, far below the reference's 46.0",
  );
  // No reference: 2 notes where 256 tokens were sampled (the floor is 256 / 64 = 4).
  assert.match(
    collapseReason(batchStats([piece([60, 64])]), { tokensSampled: 256 })!,
    /^2\.0 notes per piece in 256 tokens/,
  );
  assert.equal(
    collapseReason(batchStats([piece([60, 64, 67, 72])]), { tokensSampled: 256 }),
    undefined,
  );
  // One pattern repeated, sampled with certainty.
  const loop = Array.from({ length: 40 }, (_, i) => [60, 64, 67][i % 3]);
  const stuck = batchStats([piece(loop), piece(loop)], { meanLogProb: -0.001 });
  assert.equal(
    collapseReason(stuck, { notesPerPiece: 40 }),
    "a distinct n-gram ratio of 0.041 (the pieces repeat one pattern); a mean log-probability " +
      "of -0.0010 per token (the policy samples with near-certainty)",
  );
});

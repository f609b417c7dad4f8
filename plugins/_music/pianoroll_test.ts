import assert from "node:assert/strict";
import {
  CELLS_PER_STEP,
  drawGridNotes,
  joinRoll,
  matchRollNotes,
  pieceToGridNotes,
  pieceToRoll,
  rollToGridNotes,
  rollToPiece,
  secToStep,
  segmentSteps,
  splitRoll,
  stepToSec,
} from "./pianoroll.ts";
import { beatGrid } from "./theory.ts";
import type { Piece } from "./types.ts";

/** Cell index of (step, pitch, channel) in a roll. */
const cell = (step: number, pitch: number, channel: 0 | 1) =>
  (step * 88 + (pitch - 21)) * 2 + channel;

/** 120 BPM, 4/4, beats every 0.5 s: one grid step (4 per beat) is 0.125 s. */
function handMadePiece(): Piece {
  return {
    id: "hand",
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: [0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5],
    notes: [
      { pitch: 60, startSec: 0, endSec: 0.5, velocity: 80 }, // steps [0, 4)
      { pitch: 64, startSec: 0.26, endSec: 0.74, velocity: 70 }, // [round 2.08, round 5.92) = [2, 6)
      { pitch: 67, startSec: 0.5, endSec: 0.55, velocity: 90 }, // [4, max(5, round 4.4)) = [4, 5)
      { pitch: 10, startSec: 0.5, endSec: 1, velocity: 50 }, // below the piano: outside the roll
    ],
  };
}

/** Beats 0.5 s, then 1 s long. */
const UNEVEN: Piece = {
  id: "g",
  notes: [],
  tempoBpm: 120,
  beatsPerBar: 4,
  beatsSec: [0, 0.5, 1.5],
};

Deno.test("secToStep() follows an uneven beat grid and extrapolates past its ends", () => {
  const grid = beatGrid(UNEVEN);
  assert.equal(secToStep(grid, 0.25, 4), 2); // half of beat 0
  assert.equal(secToStep(grid, 1, 4), 6); // half of beat 1 (1 s long)
  assert.equal(secToStep(grid, 2.5, 4), 12); // 1 s past the last beat at its 1 s length
  assert.equal(secToStep(grid, -0.25, 4), -2);
  for (const step of [-2, 0, 3, 6, 7.5, 12]) {
    assert.ok(Math.abs(secToStep(grid, stepToSec(grid, step, 4), 4) - step) < 1e-9);
  }
  // Without a grid the tempo gives it: 90 BPM, 2/3 s per beat.
  const noGrid: Piece = { id: "t", notes: [], tempoBpm: 90, beatsPerBar: 3, beatsSec: [] };
  assert.ok(Math.abs(secToStep(beatGrid(noGrid), 2, 2) - 6) < 1e-9);
  assert.equal(segmentSteps(noGrid, { bars: 2, stepsPerBeat: 4 }), 24);
});

Deno.test("secToStep() drops a repeated beat time, as theory.ts's beatGrid() does", () => {
  const clean = beatGrid(UNEVEN);
  const repeated = beatGrid({ ...UNEVEN, beatsSec: [0, 0.5, 0.5, 1.5] });
  for (const sec of [-0.25, 0.25, 0.5, 0.75, 1, 2.5]) {
    assert.equal(secToStep(repeated, sec, 4), secToStep(clean, sec, 4));
    assert.equal(secToStep(repeated, sec, 4), clean.position(sec) * 4);
  }
  // Counted as a beat of its own, the repeat would put 0.75 s on step 9 (beat 2.25), not 5.
  assert.equal(secToStep(repeated, 0.75, 4), 5);
  assert.equal(stepToSec(repeated, 6, 4), 1);
});

Deno.test("pieceToGridNotes() quantises on the piece's beats as they are now, also after an edit in place", () => {
  const piece: Piece = {
    ...UNEVEN,
    beatsSec: [0, 0.5, 1.5],
    notes: [{ pitch: 60, startSec: 1, endSec: 1.5, velocity: 80 }],
  };
  assert.deepEqual(pieceToGridNotes(piece, 4), [{ pitch: 60, onStep: 6, endStep: 8 }]);
  piece.beatsSec[2] = 1; // beat 2 now at 1 s, beats 0.5 s apart: the note covers beats 2 to 3
  assert.deepEqual(pieceToGridNotes(piece, 4), [{ pitch: 60, onStep: 8, endStep: 12 }]);
});

Deno.test("pieceToRoll() sets onset and sustain cells of a hand-made piece", () => {
  const piece = handMadePiece();
  assert.deepEqual(pieceToGridNotes(piece, 4), [
    { pitch: 60, onStep: 0, endStep: 4 },
    { pitch: 64, onStep: 2, endStep: 6 },
    { pitch: 67, onStep: 4, endStep: 5 },
  ]);
  const roll = pieceToRoll(piece, { stepsPerBeat: 4, multipleOf: 16 });
  assert.equal(roll.steps, 16);
  assert.equal(roll.data.length, 16 * CELLS_PER_STEP);
  const on: number[] = [];
  roll.data.forEach((v, i) => v === 1 && on.push(i));
  const expected = [
    cell(0, 60, 0),
    cell(1, 60, 1),
    cell(2, 60, 1),
    cell(3, 60, 1),
    cell(2, 64, 0),
    cell(3, 64, 1),
    cell(4, 64, 1),
    cell(5, 64, 1),
    cell(4, 67, 0),
  ].sort((a, b) => a - b);
  assert.deepEqual(on, expected);
});

Deno.test("rollToPiece() round-trips notes with their exact timing and velocity", () => {
  const piece = handMadePiece();
  const roll = pieceToRoll(piece, { stepsPerBeat: 4, multipleOf: 16 });
  const { piece: back, match } = rollToPiece(roll, piece);
  assert.equal(back.id, "hand");
  assert.deepEqual(
    back.notes,
    [...piece.notes].sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch),
  );
  assert.equal(match.kept.length, 3);
  assert.equal(match.outside.length, 1);
  assert.equal(match.removed.length, 0);
  assert.equal(match.added.length, 0);
});

Deno.test("rollToPiece() drops a note whose onset is cleared and gives a new one grid timing and mean velocity", () => {
  const piece = handMadePiece();
  const roll = pieceToRoll(piece, { stepsPerBeat: 4, multipleOf: 16 });
  roll.data[cell(2, 64, 0)] = 0.2; // below the threshold: E4 is gone (its sustain alone starts nothing)
  roll.data[cell(8, 72, 0)] = 0.9; // a new C5 at step 8 (1.0 s) ...
  roll.data[cell(9, 72, 1)] = 0.8; // ... held through step 10
  roll.data[cell(10, 72, 1)] = 0.7;
  roll.data[cell(11, 72, 1)] = 0.4; // below the threshold: the note ends at step 11
  const { piece: back, match } = rollToPiece(roll, piece);
  assert.deepEqual(match.removed.map((n) => n.pitch), [64]);
  assert.deepEqual(match.added, [{ pitch: 72, onStep: 8, endStep: 11 }]);
  // Mean velocity of all four original notes: (80 + 70 + 90 + 50) / 4 = 72.5, rounded to 73.
  assert.deepEqual(back.notes.find((n) => n.pitch === 72), {
    pitch: 72,
    startSec: 1,
    endSec: 1.375,
    velocity: 73,
  });
  assert.deepEqual(back.notes.map((n) => n.pitch), [60, 10, 67, 72]);
});

Deno.test("rollToGridNotes() ends a note at the next onset of its key", () => {
  const data = drawGridNotes([{ pitch: 21, onStep: 0, endStep: 6 }, {
    pitch: 21,
    onStep: 3,
    endStep: 5,
  }], { steps: 8 });
  assert.deepEqual(rollToGridNotes(data), [
    { pitch: 21, onStep: 0, endStep: 3 },
    { pitch: 21, onStep: 3, endStep: 6 },
  ]);
  // A window that starts inside a note shows its sustain only.
  const window = drawGridNotes([{ pitch: 108, onStep: 0, endStep: 6 }], { steps: 4, fromStep: 2 });
  assert.equal(window[(0 * 88 + 87) * 2], 0);
  assert.equal(window[(0 * 88 + 87) * 2 + 1], 1);
  assert.deepEqual(rollToGridNotes(window), []);
});

Deno.test("splitRoll() and joinRoll() cut a roll into padded segments and back", () => {
  const piece = handMadePiece();
  const roll = pieceToRoll(piece, { stepsPerBeat: 4 });
  assert.equal(roll.steps, 6);
  const segments = splitRoll(roll, 4);
  assert.equal(segments.length, 2);
  assert.equal(segments[1].length, 4 * CELLS_PER_STEP);
  const joined = joinRoll(segments, 4);
  assert.equal(joined.steps, 8);
  assert.deepEqual(joined.data.subarray(0, roll.data.length), roll.data);
  assert.ok(joined.data.subarray(roll.data.length).every((v) => v === 0));
  // A note across the cut comes back whole.
  assert.deepEqual(rollToGridNotes(joined.data), pieceToGridNotes(piece, 4));
});

Deno.test("matchRollNotes() keeps every original note on a surviving cell", () => {
  const piece: Piece = {
    id: "rep",
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: [0, 0.5],
    notes: [
      { pitch: 60, startSec: 0, endSec: 0.05, velocity: 40 },
      { pitch: 60, startSec: 0.05, endSec: 0.1, velocity: 60 }, // same cell: step 0
    ],
  };
  const match = matchRollNotes(piece, [{ pitch: 60, onStep: 0, endStep: 1 }], 4);
  assert.equal(match.kept.length, 2);
  assert.equal(match.added.length, 0);
});

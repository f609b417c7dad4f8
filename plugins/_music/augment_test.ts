import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import { augmentPiece, stretchPiece, transposePiece, transposeTokens } from "./augment.ts";
import type { Piece } from "./types.ts";

const piece: Piece = {
  id: "p",
  notes: [
    { pitch: 22, startSec: 0, endSec: 1, velocity: 80 },
    { pitch: 60, startSec: 0.5, endSec: 1.5, velocity: 90 },
    { pitch: 107, startSec: 1, endSec: 2, velocity: 100 },
  ],
  tempoBpm: 120,
  beatsPerBar: 4,
  beatsSec: [0, 0.5, 1, 1.5, 2],
};

Deno.test("transposePiece() shifts pitches and drops notes leaving the piano", () => {
  assert.deepEqual(transposePiece(piece, 2).notes.map((n) => n.pitch), [24, 62]);
  assert.deepEqual(transposePiece(piece, -2).notes.map((n) => n.pitch), [58, 105]);
  assert.deepEqual(transposePiece(piece, -1).notes.map((n) => n.pitch), [21, 59, 106]);
  assert.deepEqual(transposePiece(piece, -2, { minPitch: 0 }).notes.map((n) => n.pitch), [
    20,
    58,
    105,
  ]);
  assert.equal(piece.notes[0].pitch, 22, "the input is not modified");
  assert.throws(
    () => transposePiece(piece, 0.5),
    /Cannot transpose "p": semitones must be an integer/,
  );
});

Deno.test("stretchPiece() scales every time and divides the tempo", () => {
  const slow = stretchPiece(piece, 1.25);
  assert.deepEqual(slow.notes[1], { pitch: 60, startSec: 0.625, endSec: 1.875, velocity: 90 });
  assert.deepEqual(slow.beatsSec, [0, 0.625, 1.25, 1.875, 2.5]);
  assert.equal(slow.tempoBpm, 96);
  const fast = stretchPiece(piece, 0.95);
  assert.ok(Math.abs(fast.notes[2].endSec - 1.9) < 1e-12);
  assert.throws(() => stretchPiece(piece, 0), /Cannot stretch "p": factor must be a number > 0/);
});

Deno.test("augmentPiece() draws shifts within ±3 and stretches within 0.95-1.05, by seed", () => {
  const rng = createRng(3);
  const shifts = new Set<number>();
  for (let i = 0; i < 200; i++) {
    const out = augmentPiece(piece, rng, { minPitch: 0, maxPitch: 127 });
    const shift = out.notes[1].pitch - 60;
    const factor = out.notes[1].endSec / 1.5;
    assert.ok(shift >= -3 && shift <= 3);
    assert.ok(factor >= 0.95 && factor <= 1.05);
    assert.ok(Math.abs(out.notes[1].startSec / 0.5 - factor) < 1e-12, "one factor for all times");
    shifts.add(shift);
  }
  assert.equal(shifts.size, 7);
  assert.deepEqual(augmentPiece(piece, createRng(5)), augmentPiece(piece, createRng(5)));
});

Deno.test("transposeTokens() shifts NOTE_ON and NOTE_OFF ids and refuses to leave the range", () => {
  // BOS VELOCITY_19 NOTE_ON_60 TIME_SHIFT_50 NOTE_OFF_60 EOS
  const tokens = Int32Array.from([389, 375, 60, 305, 188, 390]);
  assert.deepEqual(Array.from(transposeTokens(tokens, -3)!), [389, 375, 57, 305, 185, 390]);
  assert.equal(transposeTokens(Int32Array.from([22, 150]), -2), null);
  assert.deepEqual(Array.from(transposeTokens(Int32Array.from([22, 150]), -2, { minPitch: 0 })!), [
    20,
    148,
  ]);
  assert.equal(transposeTokens(Int32Array.from([107]), 2), null);
  assert.deepEqual(Array.from(tokens), [389, 375, 60, 305, 188, 390], "the input is not modified");
});

Deno.test("stretchTokens() scales time shifts without drift and keeps other tokens", async () => {
  const { stretchTokens } = await import("./augment.ts");
  // NOTE_ON 60, shift 10 steps (id 265), NOTE_OFF 60, shift 100 + 50 steps, NOTE_ON 62.
  const tokens = [60, 265, 188, 355, 305, 62];
  // x1.1: 10 -> 11 steps (id 266); 150 -> 165 cumulative: 176 total - 11 = 165 = 100 + 65.
  assert.deepEqual(Array.from(stretchTokens(tokens, 1.1)), [60, 266, 188, 355, 320, 62]);
  assert.deepEqual(Array.from(stretchTokens(tokens, 1)), tokens);
  // x0.95: 10 -> 9.5 rounds to 10 (id 265); total 160 * 0.95 = 152 -> 142 more = 100 + 42.
  assert.deepEqual(Array.from(stretchTokens(tokens, 0.95)), [60, 265, 188, 355, 297, 62]);
  assert.throws(() => stretchTokens(tokens, 0), /factor must be a number > 0/);
});

import assert from "node:assert/strict";
import { matchNotes, measureFidelity } from "./_fidelity.ts";
import type { Note, Piece } from "../_music/types.ts";

const note = (pitch: number, startSec: number, endSec: number): Note => ({
  pitch,
  startSec,
  endSec,
  velocity: 80,
});
const pieceOf = (notes: Note[]): Piece => ({
  id: "t",
  notes,
  tempoBpm: 120,
  beatsPerBar: 4,
  beatsSec: [0],
});

Deno.test("measureFidelity() counts notes back with pitch, onset and offset within tolerance", () => {
  const original = pieceOf([note(60, 0, 1), note(62, 1, 2), note(64, 2, 3), note(65, 3, 4)]);
  const decoded = pieceOf([
    note(60, 0.01, 0.99), // within 0.01
    note(62, 1, 2.02), // offset too far
    note(63, 2, 3), // wrong pitch
    note(65, 3.01, 4.01),
  ]);
  assert.equal(measureFidelity(original, decoded, 0.01), 0.5);
  assert.equal(measureFidelity(original, decoded, 0.01, { offsets: false }), 0.75);
  assert.equal(measureFidelity(original, decoded, 0.02), 0.75);
  assert.equal(measureFidelity(pieceOf([]), decoded, 0.01), 1);
});

Deno.test("matchNotes() matches one to one and takes the nearest onset", () => {
  // Two originals, one decoded note near both: only one can match it.
  const result = matchNotes([note(60, 0, 1), note(60, 0.02, 1)], [note(60, 0.015, 1)], 0.02);
  assert.deepEqual(result, { total: 2, matched: 1, extra: 0 });
  // The nearest candidate is taken, leaving the other for the next original.
  const two = matchNotes(
    [note(60, 0, 1), note(60, 0.03, 1)],
    [note(60, 0.025, 1), note(60, 0.005, 1)],
    0.02,
  );
  assert.deepEqual(two, { total: 2, matched: 2, extra: 0 });
  assert.deepEqual(matchNotes([], [note(60, 0, 1)], 0.01), { total: 0, matched: 0, extra: 1 });
});

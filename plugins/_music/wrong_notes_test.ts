import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import type { Note, Piece } from "./types.ts";
import { addRepair, emptyRepair, plantWrongNotes, repairSummary } from "./wrong_notes.ts";

function piece(notes: Array<[number, number, number]>): Piece {
  return {
    id: "p",
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: [0, 0.5, 1, 1.5],
    notes: notes.map(([pitch, startSec, velocity]): Note => ({
      pitch,
      startSec,
      endSec: startSec + 1,
      velocity,
    })),
  };
}

Deno.test("plantWrongNotes() moves about the given share of notes by one semitone, in place", () => {
  const clean = piece(Array.from({ length: 2000 }, (_, i) => [40 + (i % 40), i * 0.1, 64]));
  const { piece: planted, wrong } = plantWrongNotes(createRng(3), clean, 0.15);
  const share = wrong.filter(Boolean).length / wrong.length;
  assert.ok(share > 0.12 && share < 0.18, `share ${share}`);
  planted.notes.forEach((n, i) => {
    const o = clean.notes[i];
    assert.equal(Math.abs(n.pitch - o.pitch), wrong[i] ? 1 : 0);
    assert.deepEqual([n.startSec, n.endSec, n.velocity], [o.startSec, o.endSec, o.velocity]);
  });
  assert.equal(plantWrongNotes(createRng(3), clean, 0).wrong.some(Boolean), false);
});

Deno.test("addRepair() tells kept, restored, removed and left notes apart", () => {
  // C4 E4 G4 sounding together, then D4; E4 and D4 were made wrong (F4, C#4).
  const clean = piece([[60, 0, 60], [64, 0, 61], [67, 0, 62], [62, 2, 63]]);
  const planted = {
    piece: piece([[60, 0, 60], [65, 0, 61], [67, 0, 62], [61, 2, 63]]),
    wrong: [false, true, false, true],
  };
  // The refinement moves F4 back to E4, moves G4 to G#4 (a right note spoiled), keeps C#4.
  const refined = piece([[60, 0, 60], [64, 0, 61], [68, 0, 62], [61, 2, 63]]);
  const counts = addRepair(emptyRepair(), clean, planted, refined);
  assert.deepEqual(
    [counts.notes, counts.right, counts.rightKept, counts.wrong, counts.wrongRestored],
    [4, 2, 1, 2, 1],
  );
  assert.deepEqual([counts.wrongRemoved, counts.wrongLeft, counts.inputKept], [0, 1, 2]);
  assert.equal(counts.added, 0);
  const s = repairSummary(counts);
  assert.equal(s.rightKept, 0.5);
  assert.equal(s.cleanRestored, 2 / 4);
  // No two notes of these pieces a minor second or major seventh apart sound together.
  assert.deepEqual([s.clashClean, s.clashPlanted, s.clashRefined], [0, 0, 0]);

  // Removing C#4 instead of keeping it, and adding a note with a new timing.
  const refined2 = piece([[60, 0, 60], [64, 0, 61], [67, 0, 62], [72, 3, 90]]);
  const c2 = addRepair(emptyRepair(), clean, planted, refined2);
  assert.deepEqual([c2.rightKept, c2.wrongRestored, c2.wrongRemoved, c2.added], [2, 1, 1, 1]);
});

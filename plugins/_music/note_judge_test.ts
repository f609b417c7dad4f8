import assert from "node:assert/strict";
import { judgeNotes, type JudgeOptions } from "./note_judge.ts";
import { clashRate } from "./metrics.ts";
import type { Note, Piece } from "./types.ts";

const OPTIONS: JudgeOptions = {
  keyWeight: 0.7,
  clashWeight: 1,
  supportWeight: 0.5,
  modelWeight: 0,
  moveCost: 1.3,
  removeCost: 2.6,
  maxMoveSemitones: 1,
  keyWindowSec: 8,
  supportWindowSec: 1,
};

/**
 * Four bars of C major at 120 bpm: a block chord held through each bar (I, IV, V, I) and a
 * melody of quarter notes on the chord's tones above it, each with its own velocity.
 */
function cMajor(): Piece {
  const chords = [[48, 52, 55], [53, 57, 60], [55, 59, 62], [48, 52, 55]];
  const tunes = [[72, 76, 79, 76], [72, 77, 81, 77], [74, 79, 83, 79], [72, 76, 79, 84]];
  const notes: Note[] = [];
  chords.forEach((chord, bar) => {
    for (const pitch of chord) {
      notes.push({ pitch, startSec: bar * 2, endSec: bar * 2 + 2, velocity: 50 });
    }
    tunes[bar].forEach((pitch, beat) => {
      const startSec = bar * 2 + beat * 0.5;
      notes.push({ pitch, startSec, endSec: startSec + 0.45, velocity: 70 + beat + 4 * bar });
    });
  });
  notes.sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch);
  const beatsSec = Array.from({ length: 17 }, (_, i) => i * 0.5);
  return { id: "c-major", tempoBpm: 120, beatsPerBar: 4, beatsSec, notes };
}

/** The piece with note `index` moved by `semitones`. */
function withWrongNote(piece: Piece, index: number, semitones: number): Piece {
  const notes = piece.notes.map((n, i) => i === index ? { ...n, pitch: n.pitch + semitones } : n);
  return { ...piece, notes };
}

const key = (n: Note) => `${n.pitch}@${n.startSec}-${n.endSec}v${n.velocity}`;

Deno.test("judgeNotes() leaves a clean C major piece exactly as it is", () => {
  const piece = cMajor();
  const result = judgeNotes(piece, OPTIONS);
  assert.deepEqual(result.notes.map(key), piece.notes.map(key));
  assert.deepEqual([result.kept, result.moved, result.removed], [piece.notes.length, 0, 0]);
});

Deno.test("judgeNotes() moves a planted wrong note back and keeps every other note identical", () => {
  const clean = cMajor();
  // The melody's E5 on beat 2 of bar 1 becomes F5: in key, but a minor ninth above the E3 held
  // under it, and no F sounds anywhere near.
  const index = clean.notes.findIndex((n) => n.pitch === 76 && n.startSec === 0.5);
  const planted = withWrongNote(clean, index, 1);
  assert.ok(clashRate(planted) > 0);
  const result = judgeNotes(planted, OPTIONS);
  assert.equal(result.decisions[index], "moved");
  assert.deepEqual([result.kept, result.moved, result.removed], [clean.notes.length - 1, 1, 0]);
  // The output is the clean piece: the moved note kept its onset, duration and velocity.
  assert.deepEqual(result.notes.map(key), clean.notes.map(key));
  assert.equal(clashRate({ ...planted, notes: result.notes }), 0);
  // The input was not modified.
  assert.equal(planted.notes[index].pitch, 77);
});

Deno.test("judgeNotes() repairs an out-of-key clash, and removes it when it may not move", () => {
  const clean = cMajor();
  // The G5 on beat 3 of bar 1 becomes G#5: out of C major and a minor ninth above G3.
  const index = clean.notes.findIndex((n) => n.pitch === 79 && n.startSec === 1);
  const planted = withWrongNote(clean, index, 1);
  const moved = judgeNotes(planted, OPTIONS);
  assert.equal(moved.decisions[index], "moved");
  assert.deepEqual(moved.notes.map(key), clean.notes.map(key));

  // Its energy: out of key 0.7 + a full clash 1 + no G# near 0.5 = 2.2, less than removing
  // costs by default (2.6), more than a cheaper removal.
  const held = judgeNotes(planted, { ...OPTIONS, maxMoveSemitones: 0 });
  assert.equal(held.decisions[index], "kept");
  const removed = judgeNotes(planted, { ...OPTIONS, maxMoveSemitones: 0, removeCost: 2 });
  assert.equal(removed.decisions[index], "removed");
  const expected = clean.notes.filter((_, i) => i !== index).map(key);
  assert.deepEqual(removed.notes.map(key), expected);
});

Deno.test("judgeNotes() never adds notes and outputs only original notes or moved originals", () => {
  const clean = cMajor();
  // Several wrong notes at once: every other melody note a semitone off.
  let planted = clean;
  clean.notes.forEach((n, i) => {
    if (n.pitch >= 72 && i % 2 === 0) planted = withWrongNote(planted, i, i % 4 === 0 ? 1 : -1);
  });
  const result = judgeNotes(planted, OPTIONS);
  assert.ok(result.notes.length <= planted.notes.length);
  // Each output note is an input note, or one with the same timing and velocity moved by at
  // most maxMoveSemitones, and no input note accounts for two output notes.
  const unused = [...planted.notes];
  for (const n of result.notes) {
    let at = unused.findIndex((m) => key(m) === key(n));
    if (at < 0) {
      at = unused.findIndex((m) =>
        m.startSec === n.startSec && m.endSec === n.endSec && m.velocity === n.velocity &&
        Math.abs(m.pitch - n.pitch) <= OPTIONS.maxMoveSemitones
      );
    }
    assert.ok(at >= 0, `note ${key(n)} has no original`);
    unused.splice(at, 1);
  }
  planted.notes.forEach((n, i) => {
    if (result.decisions[i] === "kept") assert.ok(result.notes.some((m) => key(m) === key(n)));
  });
  assert.ok(clashRate({ ...planted, notes: result.notes }) < clashRate(planted) / 2);
});

Deno.test("judgeNotes() follows a model's evidence when it is given a weight", () => {
  const clean = cMajor();
  const index = clean.notes.findIndex((n) => n.pitch === 76 && n.startSec === 0.5);
  const planted = withWrongNote(clean, index, 1);
  // A model sure that the F5 belongs where it is, and unsure about anything else there.
  const evidence = (i: number, pitch: number) => (i === index && pitch === 77 ? 1 : 0);
  const trusting = judgeNotes(planted, { ...OPTIONS, modelWeight: 3, evidence });
  assert.equal(trusting.decisions[index], "kept");
  const ignoring = judgeNotes(planted, { ...OPTIONS, modelWeight: 0, evidence });
  assert.equal(ignoring.decisions[index], "moved");
});

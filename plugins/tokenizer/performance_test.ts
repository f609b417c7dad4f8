import assert from "node:assert/strict";
import { defaultParams } from "../_testing.ts";
import { createRng } from "../../pipeline/rng.ts";
import { measureFidelity } from "./_fidelity.ts";
import { generateSyntheticPiece } from "../load/_synthetic.ts";
import type { Note, Piece } from "../_music/types.ts";
import plugin, { binToVelocity, createPerformanceTokenizer, velocityToBin } from "./performance.ts";

function pieceOf(notes: Note[]): Piece {
  return { id: "t", notes, tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5, 1, 1.5, 2] };
}

function names(tokens: ArrayLike<number>): string[] {
  const tokenizer = createPerformanceTokenizer();
  return Array.from(tokens, (id) => tokenizer.tokenName(id));
}

/** Every note finite, pitch 0..127, velocity 1..127, end > start, sorted by (start, pitch). */
function assertValidNotes(piece: Piece): void {
  let previous: Note | undefined;
  for (const note of piece.notes) {
    assert.ok(Number.isFinite(note.startSec) && Number.isFinite(note.endSec), "finite times");
    assert.ok(note.endSec > note.startSec, `end > start: ${JSON.stringify(note)}`);
    assert.ok(note.startSec >= 0);
    assert.ok(Number.isInteger(note.pitch) && note.pitch >= 0 && note.pitch <= 127);
    assert.ok(Number.isInteger(note.velocity) && note.velocity >= 1 && note.velocity <= 127);
    if (previous) {
      assert.ok(
        previous.startSec < note.startSec ||
          (previous.startSec === note.startSec && previous.pitch <= note.pitch),
        "sorted",
      );
    }
    previous = note;
  }
}

Deno.test("tokenizer/performance has Magenta's 388 events plus PAD, BOS, EOS", () => {
  const tokenizer = plugin.create(defaultParams(plugin) as never);
  assert.equal(tokenizer.vocabSize, 391);
  assert.deepEqual(tokenizer.special, { pad: 388, bos: 389, eos: 390 });
  assert.deepEqual(
    [0, 60, 127, 128, 188, 255, 256, 355, 356, 387, 388, 389, 390, 391].map(tokenizer.tokenName),
    [
      "NOTE_ON_0",
      "NOTE_ON_60",
      "NOTE_ON_127",
      "NOTE_OFF_0",
      "NOTE_OFF_60",
      "NOTE_OFF_127",
      "TIME_SHIFT_1",
      "TIME_SHIFT_100",
      "VELOCITY_0",
      "VELOCITY_31",
      "PAD",
      "BOS",
      "EOS",
      "UNKNOWN_391",
    ],
  );
  assert.deepEqual(tokenizer.spec, {
    use: "tokenizer/performance",
    with: { timeShiftMs: 10, maxShiftSteps: 100, velocityBins: 32, maxNoteSec: 5 },
  });
});

Deno.test("velocity bins follow Magenta's 4-wide bins and decode to their middle", () => {
  assert.equal(velocityToBin(1, 32), 0);
  assert.equal(velocityToBin(4, 32), 0);
  assert.equal(velocityToBin(5, 32), 1);
  assert.equal(velocityToBin(80, 32), 19);
  assert.equal(velocityToBin(127, 32), 31);
  assert.equal(binToVelocity(0, 32), 2);
  assert.equal(binToVelocity(19, 32), 78);
  assert.equal(binToVelocity(31, 32), 126);
  for (let bin = 0; bin < 32; bin++) assert.equal(velocityToBin(binToVelocity(bin, 32), 32), bin);
});

Deno.test("encode() writes the hand-computed events of two overlapping notes", () => {
  const tokenizer = createPerformanceTokenizer();
  const tokens = tokenizer.encode(pieceOf([
    { pitch: 60, startSec: 0, endSec: 0.5, velocity: 80 },
    { pitch: 64, startSec: 0.25, endSec: 1.3, velocity: 100 },
  ]));
  assert.deepEqual(names(tokens), [
    "BOS",
    "VELOCITY_19",
    "NOTE_ON_60",
    "TIME_SHIFT_25",
    "VELOCITY_24",
    "NOTE_ON_64",
    "TIME_SHIFT_25",
    "NOTE_OFF_60",
    "TIME_SHIFT_80",
    "NOTE_OFF_64",
    "EOS",
  ]);
  assert.deepEqual(Array.from(tokens), [389, 375, 60, 280, 380, 64, 280, 188, 335, 192, 390]);
});

Deno.test("encode() splits long gaps into several TIME_SHIFTs and repeats no velocity", () => {
  const tokens = createPerformanceTokenizer().encode(pieceOf([
    { pitch: 60, startSec: 0, endSec: 0.1, velocity: 80 },
    { pitch: 62, startSec: 2.6, endSec: 2.604, velocity: 79 },
  ]));
  assert.deepEqual(names(tokens), [
    "BOS",
    "VELOCITY_19",
    "NOTE_ON_60",
    "TIME_SHIFT_10",
    "NOTE_OFF_60",
    "TIME_SHIFT_100",
    "TIME_SHIFT_100",
    "TIME_SHIFT_50",
    "NOTE_ON_62",
    // 4 ms rounds to 0 steps: a note keeps at least one step.
    "TIME_SHIFT_1",
    "NOTE_OFF_62",
    "EOS",
  ]);
});

Deno.test("encode() releases before re-striking a pitch on the same step", () => {
  const tokens = createPerformanceTokenizer().encode(pieceOf([
    { pitch: 60, startSec: 0, endSec: 0.5, velocity: 80 },
    { pitch: 60, startSec: 0.5, endSec: 1, velocity: 80 },
  ]));
  assert.deepEqual(names(tokens).slice(3, 6), ["TIME_SHIFT_50", "NOTE_OFF_60", "NOTE_ON_60"]);
});

Deno.test("encode() ends a note where its pitch is struck again while it sounds", () => {
  const tokenizer = createPerformanceTokenizer();
  const decoded = tokenizer.decode(tokenizer.encode(pieceOf([
    { pitch: 60, startSec: 0, endSec: 1, velocity: 80 },
    { pitch: 60, startSec: 0.5, endSec: 1.5, velocity: 80 },
  ])));
  assert.deepEqual(decoded.notes.map((n) => [n.startSec, n.endSec]), [[0, 0.5], [0.5, 1.5]]);
});

Deno.test("a synthetic piece round-trips exactly within the 10 ms step", () => {
  const tokenizer = createPerformanceTokenizer();
  for (let seed = 1; seed <= 5; seed++) {
    const { piece } = generateSyntheticPiece(createRng(seed), { id: `s${seed}`, bars: 8 });
    const decoded = tokenizer.decode(tokenizer.encode(piece), { id: piece.id });
    assert.equal(decoded.id, piece.id);
    assert.equal(decoded.notes.length, piece.notes.length);
    assert.equal(measureFidelity(piece, decoded, 0.005), 1);
    // Velocities come back within their bin.
    const byKey = new Map(
      decoded.notes.map((n) => [`${n.pitch}@${Math.round(n.startSec * 100)}`, n]),
    );
    for (const note of piece.notes) {
      const back = byKey.get(`${note.pitch}@${Math.round(note.startSec * 100)}`)!;
      assert.ok(Math.abs(back.velocity - note.velocity) <= 2);
    }
    // Re-encoding the decoded piece gives the same tokens.
    assert.deepEqual(tokenizer.encode(decoded), tokenizer.encode(piece));
  }
});

Deno.test("other params change the layout and still round-trip within the step", () => {
  const tokenizer = createPerformanceTokenizer({
    timeShiftMs: 20,
    maxShiftSteps: 50,
    velocityBins: 16,
  });
  assert.equal(tokenizer.vocabSize, 128 + 128 + 50 + 16 + 3);
  assert.equal(tokenizer.tokenName(256 + 49), "TIME_SHIFT_50");
  const { piece } = generateSyntheticPiece(createRng(9), { id: "p", bars: 4 });
  assert.equal(measureFidelity(piece, tokenizer.decode(tokenizer.encode(piece)), 0.01), 1);
  assert.throws(
    () => createPerformanceTokenizer({ velocityBins: 0 }),
    /Cannot create tokenizer "tokenizer\/performance": velocityBins must be an integer 1..127, received 0/,
  );
});

Deno.test("decode() ignores an orphan NOTE_OFF, PAD and BOS, and stops at EOS", () => {
  const tokenizer = createPerformanceTokenizer();
  // BOS OFF_61 PAD VEL_19 ON_60 TS_50 OFF_60 EOS ON_62 TS_10
  const piece = tokenizer.decode([389, 189, 388, 375, 60, 305, 188, 390, 62, 265]);
  assert.deepEqual(piece.notes, [{ pitch: 60, startSec: 0, endSec: 0.5, velocity: 78 }]);
  assert.equal(piece.tempoBpm, 120);
  assert.equal(piece.beatsPerBar, 4);
  assert.deepEqual(piece.beatsSec, [0, 0.5]);
});

Deno.test("decode() ends a re-struck note and drops a note released on its onset step", () => {
  const tokenizer = createPerformanceTokenizer();
  // ON_60 TS_10 ON_60 TS_10 OFF_60 ON_64 OFF_64
  const piece = tokenizer.decode([60, 265, 60, 265, 188, 64, 192]);
  assert.deepEqual(piece.notes.map((n) => [n.pitch, n.startSec, n.endSec]), [
    [60, 0, 0.1],
    [60, 0.1, 0.2],
  ]);
});

Deno.test("decode() closes a note left open after maxNoteSec, and at the end", () => {
  const tokenizer = createPerformanceTokenizer();
  // ON_60, eight seconds of TIME_SHIFT_100, OFF_60 (now an orphan), ON_62, TS_20, end of tokens.
  const tokens = [60, ...new Array(8).fill(355), 188, 62, 275];
  const piece = tokenizer.decode(tokens);
  assert.deepEqual(piece.notes.map((n) => [n.pitch, n.startSec, n.endSec]), [
    [60, 0, 5],
    [62, 8, 8.2],
  ]);
  // A note struck on the very last step still sounds for one step.
  assert.deepEqual(
    tokenizer.decode([355, 60]).notes.map((n) => [n.startSec, n.endSec]),
    [[1, 1.01]],
  );
  const capped = createPerformanceTokenizer({ maxNoteSec: 0.5 }).decode([60, 355, 355]);
  assert.deepEqual(capped.notes.map((n) => [n.startSec, n.endSec]), [[0, 0.5]]);
});

Deno.test("decode() never throws on random tokens and returns only valid notes", () => {
  const tokenizer = createPerformanceTokenizer();
  const rng = createRng(42);
  let noteCount = 0;
  for (let trial = 0; trial < 20; trial++) {
    const tokens: number[] = [];
    for (let i = 0; i < 5000; i++) {
      // Mostly valid ids, some out of range or not integers at all.
      const r = rng.next();
      tokens.push(r < 0.98 ? rng.int(tokenizer.vocabSize) : r < 0.99 ? rng.int(2000) - 1000 : 1.5);
    }
    const piece = tokenizer.decode(tokens);
    assertValidNotes(piece);
    noteCount += piece.notes.length;
    const lastEnd = Math.max(0, ...piece.notes.map((n) => n.endSec));
    assert.ok(piece.beatsSec[piece.beatsSec.length - 1] >= lastEnd);
  }
  assert.ok(noteCount > 1000, `random strings decode to notes (${noteCount})`);
  assert.deepEqual(tokenizer.decode([]).notes, []);
});

Deno.test("encode() skips invalid notes instead of throwing", () => {
  const tokenizer = createPerformanceTokenizer();
  const tokens = tokenizer.encode(pieceOf([
    { pitch: 60, startSec: NaN, endSec: 1, velocity: 80 },
    { pitch: 128, startSec: 0, endSec: 1, velocity: 80 },
    { pitch: 61, startSec: 1, endSec: 0.5, velocity: 80 },
    { pitch: 62, startSec: 0, endSec: 0.1, velocity: 500 },
  ]));
  assert.deepEqual(names(tokens), [
    "BOS",
    "VELOCITY_31",
    "NOTE_ON_62",
    "TIME_SHIFT_10",
    "NOTE_OFF_62",
    "EOS",
  ]);
});

Deno.test("encode() gives the same tokens for notes in any order", () => {
  const tokenizer = createPerformanceTokenizer();
  const { piece } = generateSyntheticPiece(createRng(4), { id: "o", bars: 4 });
  const shuffled = { ...piece, notes: [...piece.notes].reverse() };
  assert.deepEqual(tokenizer.encode(shuffled), tokenizer.encode(piece));
});

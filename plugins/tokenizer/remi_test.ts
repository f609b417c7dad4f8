import assert from "node:assert/strict";
import { defaultParams } from "../_testing.ts";
import { createRng } from "../../pipeline/rng.ts";
import { matchNotes, measureFidelity } from "./_fidelity.ts";
import { generateSyntheticPiece } from "../load/_synthetic.ts";
import type { Note, Piece } from "../_music/types.ts";
import plugin, { createRemiTokenizer, type RemiTokenizer, tempoBinValues } from "./remi.ts";

function uniformBeats(bpm: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => (i * 60) / bpm);
}

function pieceOf(notes: Note[], bpm = 120, beatsPerBar = 4): Piece {
  return { id: "t", notes, tempoBpm: bpm, beatsPerBar, beatsSec: uniformBeats(bpm, 16) };
}

function names(tokenizer: RemiTokenizer, tokens: ArrayLike<number>): string[] {
  return Array.from(tokens, (id) => tokenizer.tokenName(id));
}

function assertValidNotes(piece: Piece): void {
  for (const note of piece.notes) {
    assert.ok(Number.isFinite(note.startSec) && Number.isFinite(note.endSec), "finite times");
    assert.ok(note.endSec > note.startSec, `end > start: ${JSON.stringify(note)}`);
    assert.ok(Number.isInteger(note.pitch) && note.pitch >= 0 && note.pitch <= 127);
    assert.ok(Number.isInteger(note.velocity) && note.velocity >= 1 && note.velocity <= 127);
  }
}

Deno.test("tokenizer/remi lays out BAR, POSITION, PITCH, VELOCITY, DURATION, TEMPO, TIMESIG", () => {
  const tokenizer = plugin.create(defaultParams(plugin) as never);
  // 1 + 48 + 88 + 32 + 32 + 32 + 12 + 3
  assert.equal(tokenizer.vocabSize, 248);
  assert.deepEqual(tokenizer.special, { pad: 245, bos: 246, eos: 247 });
  assert.deepEqual(
    [0, 1, 48, 49, 136, 137, 168, 169, 200, 201, 232, 233, 244, 245, 246, 247, 248].map(
      tokenizer.tokenName,
    ),
    [
      "BAR",
      "POSITION_0",
      "POSITION_47",
      "PITCH_21",
      "PITCH_108",
      "VELOCITY_0",
      "VELOCITY_31",
      "DURATION_1",
      "DURATION_32",
      "TEMPO_39",
      "TEMPO_244",
      "TIMESIG_1",
      "TIMESIG_12",
      "PAD",
      "BOS",
      "EOS",
      "UNKNOWN_248",
    ],
  );
  assert.equal(tokenizer.spec?.use, "tokenizer/remi");
});

Deno.test("tempo bins are geometric with 120 bpm exactly on a bin", () => {
  const bins = tempoBinValues({ tempoBins: 32, minTempoBpm: 40, maxTempoBpm: 250 });
  assert.equal(bins.length, 32);
  assert.equal(bins[19], 120);
  const ratio = Math.pow(250 / 40, 1 / 31);
  for (let k = 1; k < 32; k++) assert.ok(Math.abs(bins[k] / bins[k - 1] - ratio) < 1e-12);
  assert.ok(bins[0] > 38 && bins[0] < 40 && bins[31] > 240 && bins[31] < 250);
});

Deno.test("encode() reads a repeated beat time as theory.ts's beatGrid() does: dropped", () => {
  const tokenizer = createRemiTokenizer();
  const notes: Note[] = [
    { pitch: 60, startSec: 0.25, endSec: 0.75, velocity: 80 },
    { pitch: 64, startSec: 1.25, endSec: 2, velocity: 90 },
    { pitch: 67, startSec: 2.6, endSec: 3.1, velocity: 100 },
  ];
  // An uneven grid (beat 2 lasts 1 s), once clean and once with beat 1 written twice.
  const beatsSec = [0, 0.5, 1, 2, 2.5, 3, 3.5, 4];
  const clean: Piece = { ...pieceOf(notes), beatsSec };
  const repeated: Piece = { ...clean, beatsSec: [0, 0.5, 0.5, 1, 2, 2.5, 3, 3.5, 4] };
  const tokens = names(tokenizer, tokenizer.encode(clean));
  assert.deepEqual(names(tokenizer, tokenizer.encode(repeated)), tokens);
  // The 1 s beat shows: the note at 1.25 s is on beat 2.25 (step 9), not 2.5 as on an even grid.
  assert.ok(tokens.includes("POSITION_9"), tokens.join(" "));
  assert.notDeepEqual(names(tokenizer, tokenizer.encode(pieceOf(notes))), tokens);
});

Deno.test("encode() writes the hand-computed events of a two-bar piece", () => {
  const tokenizer = createRemiTokenizer();
  const tokens = tokenizer.encode(pieceOf([
    { pitch: 60, startSec: 0, endSec: 0.5, velocity: 80 },
    { pitch: 67, startSec: 0, endSec: 0.25, velocity: 80 },
    // Beat 4.5 is bar 1, position 2; it ends on beat 6: 6 sixteenths.
    { pitch: 64, startSec: 2.25, endSec: 3, velocity: 100 },
  ]));
  assert.deepEqual(names(tokenizer, tokens), [
    "BOS",
    "BAR",
    "TIMESIG_4",
    "TEMPO_120",
    "POSITION_0",
    "PITCH_60",
    "VELOCITY_19",
    "DURATION_4",
    "PITCH_67",
    "VELOCITY_19",
    "DURATION_2",
    "BAR",
    "POSITION_2",
    "PITCH_64",
    "VELOCITY_24",
    "DURATION_6",
    "EOS",
  ]);
  assert.deepEqual(Array.from(tokens.slice(0, 6)), [246, 0, 236, 220, 1, 88]);
});

Deno.test("an on-grid piece at 120 bpm round-trips exactly", () => {
  const tokenizer = createRemiTokenizer();
  const piece = pieceOf([
    { pitch: 60, startSec: 0, endSec: 0.5, velocity: 78 },
    { pitch: 64, startSec: 0.125, endSec: 2.125, velocity: 98 },
    { pitch: 67, startSec: 3.875, endSec: 4, velocity: 126 },
  ]);
  const decoded = tokenizer.decode(tokenizer.encode(piece), { id: "back" });
  assert.equal(decoded.id, "back");
  assert.deepEqual(decoded.notes, piece.notes);
  assert.equal(decoded.tempoBpm, 120);
  assert.equal(decoded.beatsPerBar, 4);
  assert.deepEqual(decoded.beatsSec.slice(0, 3), [0, 0.5, 1]);
});

Deno.test("synthetic pieces round-trip within the grid step despite off-bin tempos", () => {
  const tokenizer = createRemiTokenizer();
  for (let seed = 1; seed <= 6; seed++) {
    const { piece } = generateSyntheticPiece(createRng(seed), { id: `s${seed}`, bars: 24 });
    const stepSec = 60 / piece.tempoBpm / 4;
    const decoded = tokenizer.decode(tokenizer.encode(piece));
    assert.equal(decoded.beatsPerBar, piece.beatsPerBar);
    // Onsets lie on the grid: back within half a step. Offsets are quantised
    // too, so within one step.
    assert.equal(
      measureFidelity(piece, decoded, stepSec / 2, { offsets: false }),
      1,
      `seed ${seed}`,
    );
    assert.equal(measureFidelity(piece, decoded, stepSec), 1, `seed ${seed}`);
  }
});

Deno.test("tempo tracking keeps seconds from drifting; trackTempo false drifts", () => {
  const piece = pieceOf([], 97);
  piece.beatsSec = uniformBeats(97, 400);
  for (let beat = 0; beat < 390; beat++) {
    piece.notes.push({
      pitch: 60 + (beat % 12),
      startSec: beat * 60 / 97,
      endSec: (beat + 0.5) * 60 / 97,
      velocity: 80,
    });
  }
  const stepSec = 60 / 97 / 4;
  const tracking = createRemiTokenizer();
  const tokens = tracking.encode(piece);
  assert.equal(measureFidelity(piece, tracking.decode(tokens), stepSec / 2, { offsets: false }), 1);
  const tempoTokens = names(tracking, tokens).filter((name) => name.startsWith("TEMPO_"));
  assert.deepEqual([...new Set(tempoTokens)].sort(), ["TEMPO_100", "TEMPO_95"]);
  // Without tracking: one TEMPO token, and the last notes come back late.
  const plain = createRemiTokenizer({ trackTempo: false });
  const plainTokens = plain.encode(piece);
  assert.deepEqual(names(plain, plainTokens).filter((name) => name.startsWith("TEMPO_")), [
    "TEMPO_95",
  ]);
  assert.ok(
    measureFidelity(piece, plain.decode(plainTokens), stepSec / 2, { offsets: false }) < 0.5,
  );
});

Deno.test("a 3/4 piece with a tempo map keeps its bars and its timing", () => {
  const tokenizer = createRemiTokenizer();
  // An accelerando: beat intervals shrink from 0.6 s to 0.4 s.
  const beatsSec = [0];
  for (let i = 1; i < 40; i++) beatsSec.push(beatsSec[i - 1] + 0.6 - (0.2 * i) / 40);
  const notes: Note[] = [];
  for (let beat = 0; beat < 36; beat++) {
    notes.push({ pitch: 72, startSec: beatsSec[beat], endSec: beatsSec[beat + 1], velocity: 70 });
  }
  const piece: Piece = { id: "acc", notes, tempoBpm: 100, beatsPerBar: 3, beatsSec };
  const tokens = tokenizer.encode(piece);
  const tokenNames = names(tokenizer, tokens);
  assert.equal(tokenNames[2], "TIMESIG_3");
  assert.equal(tokenNames.filter((name) => name === "BAR").length, 12);
  // Notes on beats of 3-beat bars: positions 0, 4 and 8 only.
  const positions = new Set(tokenNames.filter((name) => name.startsWith("POSITION_")));
  assert.deepEqual([...positions].sort(), ["POSITION_0", "POSITION_4", "POSITION_8"]);
  const decoded = tokenizer.decode(tokens);
  assert.equal(decoded.beatsPerBar, 3);
  // Within half a step at the fastest tempo (0.4 s beats).
  assert.equal(measureFidelity(piece, decoded, 0.05, { offsets: false }), 1);
});

Deno.test("encode() drops notes outside the pitch range and caps durations", () => {
  const tokenizer = createRemiTokenizer({ maxDurationBeats: 2 });
  const tokens = tokenizer.encode(pieceOf([
    { pitch: 20, startSec: 0, endSec: 0.5, velocity: 80 },
    { pitch: 60, startSec: 0, endSec: 5, velocity: 80 },
    { pitch: 109, startSec: 0, endSec: 0.5, velocity: 80 },
  ]));
  assert.deepEqual(names(tokenizer, tokens).slice(4), [
    "POSITION_0",
    "PITCH_60",
    "VELOCITY_19",
    "DURATION_8",
    "EOS",
  ]);
});

Deno.test("decode() skips incomplete notes and reads TEMPO and TIMESIG", () => {
  const tokenizer = createRemiTokenizer();
  const id = (name: string) => {
    for (let i = 0; i < tokenizer.vocabSize; i++) if (tokenizer.tokenName(i) === name) return i;
    throw new Error(name);
  };
  const bin60 = tokenizer.tempoBinsBpm.findIndex((bpm) => Math.abs(bpm - 60) < 2);
  const tempo = tokenizer.layout.tempo + bin60;
  const bpm = tokenizer.tempoBinsBpm[bin60];
  const tokens = [
    "BOS",
    "DURATION_4", // no pitch yet: ignored
    "BAR",
    "TIMESIG_2",
    "PITCH_60", // no duration before the next pitch: dropped
    "PITCH_62",
    "DURATION_4", // no velocity: the default 64
    "BAR",
    "POSITION_4",
    "PITCH_64",
    "VELOCITY_31",
    "DURATION_2",
    "EOS",
    "PITCH_65",
    "VELOCITY_0",
    "DURATION_2",
  ].map(id);
  tokens.splice(4, 0, tempo); // TEMPO after TIMESIG in the first bar
  const piece = tokenizer.decode(tokens);
  const beat = 60 / bpm;
  assert.deepEqual(piece.notes.map((n) => [n.pitch, n.startSec, n.endSec, n.velocity]), [
    [62, 0, beat, 64],
    [64, 3 * beat, 3.5 * beat, 126],
  ]);
  assert.equal(piece.beatsPerBar, 2);
  assert.equal(piece.tempoBpm, bpm);
});

Deno.test("decode() never throws on random tokens and returns only valid notes", () => {
  const tokenizer = createRemiTokenizer();
  const rng = createRng(7);
  let noteCount = 0;
  for (let trial = 0; trial < 20; trial++) {
    const tokens: number[] = [];
    for (let i = 0; i < 5000; i++) {
      const r = rng.next();
      tokens.push(r < 0.98 ? rng.int(tokenizer.vocabSize) : r < 0.99 ? rng.int(2000) - 1000 : NaN);
    }
    const piece = tokenizer.decode(tokens);
    assertValidNotes(piece);
    noteCount += piece.notes.length;
    // No two notes of one pitch overlap after decoding.
    const lastEnd = new Map<number, number>();
    for (const note of piece.notes) {
      assert.ok((lastEnd.get(note.pitch) ?? -1) <= note.startSec + 1e-9);
      lastEnd.set(note.pitch, note.endSec);
    }
  }
  assert.ok(noteCount > 200, `random strings decode to notes (${noteCount})`);
});

Deno.test("notes of one pitch struck within one grid step merge into one", () => {
  const tokenizer = createRemiTokenizer();
  const piece = pieceOf([
    { pitch: 60, startSec: 0, endSec: 0.1, velocity: 80 },
    { pitch: 60, startSec: 0.05, endSec: 0.5, velocity: 80 },
  ]);
  const tokens = tokenizer.encode(piece);
  assert.equal(names(tokenizer, tokens).filter((name) => name === "PITCH_60").length, 1);
  const decoded = tokenizer.decode(tokens);
  assert.deepEqual(decoded.notes.map((n) => [n.startSec, n.endSec]), [[0, 0.5]]);
  assert.deepEqual(matchNotes(piece.notes, decoded.notes, 0.0625), {
    total: 2,
    matched: 1,
    extra: 0,
  });
});

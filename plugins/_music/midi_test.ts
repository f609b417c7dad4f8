import assert from "node:assert/strict";
import tonejs from "@tonejs/midi";
import { readMidi, readMidiFile, writeMidi } from "./midi.ts";
import { checkSmf, decodeSmf, MidiError } from "./smf_check.ts";
import type { Note, Piece } from "./types.ts";

const { Midi } = tonejs;

const DATA = new URL("../../../shared/data/", import.meta.url);
const BAD_DIR = new URL("bad-midi/", DATA);
const MAESTRO_DIR = new URL("maestro-v3.0.0/", DATA);
const hasBadMidi = existsSync(new URL("README.txt", BAD_DIR));
const hasMaestro = existsSync(new URL("maestro-v3.0.0.csv", MAESTRO_DIR));

function existsSync(url: URL): boolean {
  try {
    Deno.statSync(url);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// A tiny Standard MIDI File builder for hand-made fixtures.

function vlq(value: number): number[] {
  const bytes = [value & 0x7f];
  for (value = Math.floor(value / 128); value > 0; value = Math.floor(value / 128)) {
    bytes.unshift(0x80 | (value & 0x7f));
  }
  return bytes;
}

function u32(value: number): number[] {
  return [value >>> 24 & 0xff, value >>> 16 & 0xff, value >>> 8 & 0xff, value & 0xff];
}

function chunk(id: string, body: number[]): number[] {
  return [...Array.from(id, (c) => c.charCodeAt(0)), ...u32(body.length), ...body];
}

/** Events as [tick, ...bytes], stably sorted by tick, delta-encoded, with end-of-track. */
function track(events: Array<[number, ...number[]]>, endOfTrack = true): number[] {
  const sorted = events.map((e, i) => ({ e, i })).sort((a, b) => a.e[0] - b.e[0] || a.i - b.i);
  const body: number[] = [];
  let last = 0;
  for (const { e: [tick, ...bytes] } of sorted) {
    body.push(...vlq(tick - last), ...bytes);
    last = tick;
  }
  if (endOfTrack) body.push(0, 0xff, 0x2f, 0);
  return body;
}

function smf(tracks: number[][], options: { format?: number; division?: number } = {}): Uint8Array {
  const division = options.division ?? 480;
  const header = [0, options.format ?? (tracks.length > 1 ? 1 : 0), 0, tracks.length];
  header.push(division >> 8 & 0xff, division & 0xff);
  return new Uint8Array([...chunk("MThd", header), ...tracks.flatMap((t) => chunk("MTrk", t))]);
}

const tempo = (tick: number, usPerQuarter: number): [number, ...number[]] => [
  tick,
  0xff,
  0x51,
  3,
  usPerQuarter >> 16 & 0xff,
  usPerQuarter >> 8 & 0xff,
  usPerQuarter & 0xff,
];
const on = (tick: number, pitch: number, velocity = 80, channel = 0): [number, ...number[]] => [
  tick,
  0x90 | channel,
  pitch,
  velocity,
];
const off = (tick: number, pitch: number, channel = 0): [number, ...number[]] => [
  tick,
  0x80 | channel,
  pitch,
  0x40,
];
const pedal = (tick: number, value: number, channel = 0): [number, ...number[]] => [
  tick,
  0xb0 | channel,
  64,
  value,
];

/** (pitch startSec endSec) triples, times rounded to microseconds, for readable asserts. */
function summary(notes: Note[]): string[] {
  const us = (sec: number) => Math.round(sec * 1e6) / 1e6;
  return notes.map((n) => `${n.pitch} ${us(n.startSec)} ${us(n.endSec)}`);
}

function assertFinitePiece(piece: Piece): void {
  for (const n of piece.notes) {
    assert.ok(Number.isFinite(n.startSec) && n.startSec >= 0, `start ${n.startSec}`);
    assert.ok(Number.isFinite(n.endSec) && n.endSec > n.startSec, `end ${n.endSec}`);
    assert.ok(Number.isInteger(n.pitch) && n.pitch >= 0 && n.pitch <= 127);
    assert.ok(Number.isInteger(n.velocity) && n.velocity >= 1 && n.velocity <= 127);
  }
  assert.ok(Number.isFinite(piece.tempoBpm) && piece.tempoBpm > 0);
  assert.ok(Number.isInteger(piece.beatsPerBar) && piece.beatsPerBar >= 1);
  assert.ok(piece.beatsSec.length >= 1 && piece.beatsSec.every(Number.isFinite));
  for (let i = 1; i < piece.beatsSec.length; i++) {
    assert.ok(piece.beatsSec[i] > piece.beatsSec[i - 1]);
  }
  for (let i = 1; i < piece.notes.length; i++) {
    const a = piece.notes[i - 1];
    const b = piece.notes[i];
    assert.ok(a.startSec < b.startSec || (a.startSec === b.startSec && a.pitch <= b.pitch));
  }
}

function rejects(bytes: Uint8Array, pattern: RegExp): void {
  assert.throws(() => readMidi(bytes, { id: "fixture" }), (error: unknown) => {
    assert.ok(error instanceof MidiError, `expected MidiError, got ${error}`);
    assert.match(error.message, /^Cannot read "fixture": /);
    assert.match(error.message, pattern);
    return true;
  });
}

// ---------------------------------------------------------------------------
// Decoding and timing

const SCALE = [60, 62, 64, 65, 67, 69, 71, 72];
const scaleTrack = () =>
  track([
    tempo(0, 500_000),
    [0, 0xff, 0x58, 4, 4, 2, 24, 8],
    [0, 0xc0, 0],
    ...SCALE.flatMap((p, i) => [on(i * 240, p), off(i * 240 + 240, p)]),
  ]);

Deno.test("readMidi() reads a hand-made C major scale with its tempo, metre and beats", () => {
  const piece = readMidi(smf([scaleTrack()]), { id: "scale", source: "scale.mid" });
  assert.deepEqual(piece.notes.map((n) => n.pitch), SCALE);
  assert.deepEqual(
    summary(piece.notes),
    SCALE.map((p, i) => `${p} ${i * 0.25} ${i * 0.25 + 0.25}`),
  );
  assert.equal(piece.notes[0].velocity, 80);
  assert.equal(piece.tempoBpm, 120);
  assert.equal(piece.beatsPerBar, 4);
  assert.deepEqual(piece.beatsSec, [0, 0.5, 1, 1.5]);
  assert.equal(piece.id, "scale");
  assert.equal(piece.source, "scale.mid");
});

Deno.test("readMidi() follows a tempo map and counts beats in the time signature's unit", () => {
  // 120 bpm for one bar of 6/8 (3 quarters = 1.5 s), then 60 bpm (1 s per quarter).
  const bytes = smf([track([
    tempo(0, 500_000),
    [0, 0xff, 0x58, 4, 6, 3, 24, 8],
    tempo(1440, 1_000_000),
    on(0, 60),
    off(720, 60), // 0.75 s
    on(1440, 62), // 1.5 s
    off(1920, 62), // 1.5 s + 1 quarter at 60 bpm = 2.5 s
  ])]);
  const piece = readMidi(bytes, { id: "map" });
  assert.deepEqual(summary(piece.notes), ["60 0 0.75", "62 1.5 2.5"]);
  assert.equal(piece.tempoBpm, 120);
  assert.equal(piece.beatsPerBar, 6);
  // Eighth-note beats: 0.25 s apart at 120 bpm, 0.5 s apart at 60 bpm, up to 2.5 s.
  assert.deepEqual(piece.beatsSec, [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2]);
});

Deno.test("readMidi() converts SMPTE division ticks to seconds and ignores tempo events", () => {
  // 0xE728: 25 frames/s x 40 ticks/frame = 1000 ticks/s.
  const bytes = smf([
    track([tempo(0, 1_000_000), on(0, 60), off(500, 60), on(500, 64), off(1250, 64)]),
  ], {
    division: 0xe728,
  });
  const piece = readMidi(bytes, { id: "smpte" });
  assert.deepEqual(summary(piece.notes), ["60 0 0.5", "64 0.5 1.25"]);
  assertFinitePiece(piece);
  // 30 drop-frame (0xE3 = -29) runs at 29.97 frames/s: 80 ticks/frame = 2397.6 ticks/s.
  const drop = readMidi(smf([track([on(0, 60), off(2398, 60)])], { division: 0xe350 }), {
    id: "df",
  });
  assert.ok(Math.abs(drop.notes[0].endSec - 2398 / (30000 / 1001 * 80)) < 1e-12);
});

Deno.test("readMidi() merges format 1 tracks and orders notes by onset, then pitch", () => {
  const bytes = smf([
    track([tempo(0, 500_000)]),
    track([on(480, 67), off(960, 67), on(0, 64), off(480, 64)]),
    track([on(480, 60, 90, 1), off(960, 60, 1)]),
  ]);
  const piece = readMidi(bytes, { id: "f1" });
  assert.deepEqual(summary(piece.notes), ["64 0 0.5", "60 0.5 1", "67 0.5 1"]);
  assert.equal(piece.notes[1].velocity, 90);
});

Deno.test("readMidi() pairs a release with the earliest open note of that pitch and closes hanging notes", () => {
  const bytes = smf([track([
    on(0, 60),
    on(100, 60),
    off(200, 60),
    off(300, 60),
    off(400, 61), // orphan release: ignored
    on(480, 64), // never released: ends at the end of the track
    [960, 0xff, 0x01, 0], // empty text event so the track ends at tick 960
  ])]);
  const warnings: string[] = [];
  const piece = readMidi(bytes, {
    id: "pairs",
    sustain: false,
    onWarning: (m) => warnings.push(m),
  });
  const t = (ticks: number) => Math.round(ticks / 960 * 1e6) / 1e6;
  assert.deepEqual(summary(piece.notes), [`60 0 ${t(200)}`, `60 ${t(100)} ${t(300)}`, `64 0.5 1`]);
  assert.deepEqual(warnings, [
    "track 1: 1 notes were never released; ended them at the end of the track",
  ]);
});

Deno.test("readMidi() treats note-on velocity 0 as a release and supports running status", () => {
  const body = [0, 0x90, 60, 80, 0x60, 60, 0, 0, 62, 80, 0x60, 62, 0, 0, 0xff, 0x2f, 0];
  const piece = readMidi(smf([body]), { id: "rs" });
  assert.deepEqual(summary(piece.notes), ["60 0 0.1", "62 0.1 0.2"]);
});

Deno.test("readMidi() leaves out drums by default and can keep only the pianos", () => {
  const bytes = smf([track([
    [0, 0xc1, 40], // channel 2: violin
    on(0, 60),
    off(480, 60),
    on(0, 67, 80, 1),
    off(480, 67, 1),
    on(0, 36, 100, 9),
    off(10, 36, 9),
  ])]);
  const pitches = (options: object) =>
    readMidi(bytes, { id: "mix", ...options }).notes.map((n) => n.pitch);
  assert.deepEqual(pitches({}), [60, 67]);
  assert.deepEqual(pitches({ instruments: "piano" }), [60]);
  assert.deepEqual(pitches({ drums: true }), [36, 60, 67]);
});

Deno.test("readMidi() drops zero-length notes and caps absurd durations", () => {
  const bytes = smf([track([on(0, 60), off(0, 60), on(0, 62), [0x0fffffff, 0x80, 62, 0]])]);
  const warnings: string[] = [];
  const piece = readMidi(bytes, {
    id: "long",
    maxDurationSec: 60,
    onWarning: (m) => warnings.push(m),
  });
  assert.deepEqual(summary(piece.notes), ["62 0 60"]);
  assert.equal(piece.beatsSec.length, 120);
  assert.ok(warnings.some((w) => /zero-length/.test(w)));
  assert.ok(warnings.some((w) => /longer than 60 s/.test(w)));
});

Deno.test("readMidi() reads a piece with no notes as an empty piece with a beat grid", () => {
  const piece = readMidi(smf([track([tempo(0, 600_000), [1920, 0xff, 0x06, 1, 0x41]])]), {
    id: "m",
  });
  assert.deepEqual(piece.notes, []);
  assert.equal(piece.tempoBpm, 100);
  assert.deepEqual(piece.beatsSec.map((s) => Math.round(s * 1e9) / 1e9), [0, 0.6, 1.2, 1.8]);
});

// ---------------------------------------------------------------------------
// Structural checks: what is rejected, with which message, and what is repaired.

Deno.test("readMidi() rejects malformed files with a MidiError that says what is wrong", () => {
  const scale = smf([scaleTrack()]);
  rejects(new Uint8Array(0), /file is empty/);
  rejects(scale.subarray(0, 10), /header chunk is truncated \(2 of 6 bytes present\)/);
  rejects(new Uint8Array([...scale].map((b, i) => i === 3 ? 0x78 : b)), /not a Standard MIDI File/);
  rejects(
    scale.subarray(0, 60),
    /track 1 chunk length \d+ runs past the end of the file \(38 bytes left\)/,
  );
  const huge = scale.slice();
  huge.set([0xff, 0xff, 0xff, 0xff], 18);
  rejects(huge, /track 1 chunk length 4294967295 runs past the end of the file/);
  rejects(
    smf([[0, 60, 80, 0, 0xff, 0x2f, 0]]),
    /data byte 0x3C with no running status to continue/,
  );
  rejects(smf([[0x81, 0x80, 0x80, 0x80, 0, 0x90, 60, 80]]), /delta time is longer than 4 bytes/);
  rejects(smf([[0, 0x90, 60, 0xcc]]), /byte 25: data byte 0xCC has the high bit set/);
  rejects(smf([[0, 0xf4, 0, 0xff, 0x2f, 0]]), /undefined status byte 0xF4/);
  rejects(
    smf([[0, 0xf0, 100, 1, 2, 0xff, 0x2f, 0]]),
    /sysex length 100 runs past the end of the track/,
  );
  rejects(
    smf([[0, 0xff, 0x01, 50, 0x41]]),
    /meta event 0x01 length 50 runs past the end of the track/,
  );
  rejects(smf([[0, 0x90, 60]]), /channel event runs past the end of the track/);
  rejects(smf([scaleTrack()], { division: 0 }), /division is 0 ticks per quarter note/);
  rejects(
    smf([scaleTrack(), scaleTrack()], { format: 2 }),
    /format 2 \(independent sequences\) is not supported/,
  );
  rejects(smf([scaleTrack()], { division: 0xe528 }), /unknown frame rate 27/);
  // Running status resets at each track.
  rejects(
    smf([track([on(0, 60)]), [0, 62, 80, 0xff, 0x2f, 0]]),
    /track 2 at byte \d+: data byte 0x3E/,
  );
});

Deno.test("readMidi() repairs tolerable deviations and says so through onWarning", () => {
  const read = (bytes: Uint8Array) => {
    const warnings: string[] = [];
    const piece = readMidi(bytes, { id: "x", onWarning: (m) => warnings.push(m) });
    return { pitches: piece.notes.map((n) => n.pitch), warnings, piece };
  };
  const scale = smf([scaleTrack()]);
  // Header claims 65,535 tracks: the one present is read, nothing is preallocated.
  const many = scale.slice();
  many.set([0xff, 0xff], 10);
  assert.deepEqual(read(many).pitches, SCALE);
  assert.deepEqual(read(many).warnings, ["header declares 65535 tracks but the file has 1"]);
  // Unknown chunk before the track, 4 extra header bytes, trailing garbage.
  const alien = chunk("XFIH", [1, 2, 3]);
  const header = [...chunk("MThd", [0, 0, 0, 1, 1, 0xe0, 0, 0, 0, 0])];
  const odd = new Uint8Array([...header, ...alien, ...chunk("MTrk", scaleTrack()), 0, 71, 65, 82]);
  assert.deepEqual(read(odd).pitches, SCALE);
  assert.deepEqual(read(odd).warnings, ["ignored 4 bytes after the last track"]);
  // RIFF RMID wrapper.
  const le32 = (n: number) => [n & 0xff, n >> 8 & 0xff, n >> 16 & 0xff, n >>> 24];
  const riff = new Uint8Array([
    ...Array.from("RIFF", (c) => c.charCodeAt(0)),
    ...le32(scale.length + 12),
    ...Array.from("RMIDdata", (c) => c.charCodeAt(0)),
    ...le32(scale.length),
    ...scale,
  ]);
  assert.deepEqual(read(riff).pitches, SCALE);
  // Running status across a meta event, events after end-of-track, tempo 0, no end-of-track.
  const tolerated = smf([
    [0, 0x90, 60, 80, 0, 0xff, 0x01, 1, 0x41, 0x60, 60, 0, 0, 0xff, 0x2f, 0, 0, 0x90, 64, 80],
    track([tempo(0, 0), on(0, 67), off(480, 67)], false),
  ]);
  const result = read(tolerated);
  assert.deepEqual(result.pitches, [60, 67]);
  assert.equal(result.piece.tempoBpm, 120);
  assert.deepEqual(summary(result.piece.notes), ["60 0 0.1", "67 0 0.5"]);
  assert.deepEqual(result.warnings, [
    "track 1 at byte 32: running status continues across a meta or sysex event",
    "track 1: ignored 4 bytes after the end-of-track event",
    "track 2: ignored a tempo of 0 microseconds per quarter note",
    "track 2: no end-of-track event",
  ]);
});

/** Deterministic pseudo-random integers in [0, n) (mulberry32). */
function randomInts(seed: number): (n: number) => number {
  return (n: number) => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) % n;
  };
}

Deno.test("readMidi() never crashes on mutated files: a finite piece or a MidiError", () => {
  const base = smf([
    track([tempo(0, 500_000), [0, 0xff, 0x58, 4, 3, 3, 24, 8], [0, 0xf0, 3, 1, 2, 0xf7]]),
    track([
      pedal(0, 100),
      ...SCALE.flatMap((p, i) => [on(i * 240, p), off(i * 240 + 200, p)]),
      pedal(1000, 0),
      [1000, 0xc0, 3],
      on(1100, 60, 70, 9),
      off(1200, 60, 9),
    ]),
  ]);
  const random = randomInts(7);
  let accepted = 0;
  for (let i = 0; i < 3000; i++) {
    const bytes = [...base];
    for (let m = 1 + random(3); m > 0; m--) {
      if (bytes.length === 0) break;
      const at = random(bytes.length);
      const kind = random(4);
      if (kind === 0) bytes[at] = random(256);
      else if (kind === 1) bytes[at] = [0, 0x7f, 0x80, 0xff][random(4)];
      else if (kind === 2) bytes.length = at;
      else bytes.splice(at, 0, ...bytes.slice(random(bytes.length), random(bytes.length)));
    }
    try {
      assertFinitePiece(readMidi(new Uint8Array(bytes), { id: "fuzz", drums: random(2) === 1 }));
      accepted++;
    } catch (error) {
      if (!(error instanceof MidiError)) throw error;
      assert.match(error.message, /^Cannot read "fuzz": [A-Za-z]/);
      assert.doesNotMatch(error.message, /unexpected error/);
    }
  }
  assert.ok(accepted > 300 && accepted < 2700, `${accepted} accepted`);
});

Deno.test("checkSmf() is empty for a clean file and lists each deviation otherwise", () => {
  assert.deepEqual(checkSmf(smf([scaleTrack()])), []);
  assert.deepEqual(checkSmf(smf([track([on(0, 60)], false)])), [
    "track 1: no end-of-track event",
    "track 1: 1 notes were never released; ended them at the end of the track",
  ]);
  assert.deepEqual(checkSmf(new Uint8Array([1, 2, 3])), [
    'not a Standard MIDI File (expected "MThd", found 0x01 0x02 0x03)',
  ]);
});

Deno.test("decodeSmf() pairs notes exactly as @tonejs/midi does on a mixed fixture", () => {
  const bytes = smf([
    track([tempo(0, 400_000), tempo(960, 700_000)]),
    track([
      [0, 0xc0, 5],
      ...Array.from(
        { length: 40 },
        (_, i) => [on(i * 97, 40 + (i * 7) % 30, 10 + i), off(i * 97 + 300, 40 + (i * 7) % 30)],
      )
        .flat(),
      on(50, 70, 64, 3),
      off(1000, 70, 3),
    ]),
  ]);
  const content = decodeSmf(bytes);
  const ours = content.notes.pitch.map((p, i) =>
    `${p} ${content.notes.startTick[i]} ${content.notes.endTick[i]} ${content.notes.velocity[i]}`
  );
  const midi = new Midi(bytes);
  const theirs = midi.tracks.flatMap((t) =>
    t.notes.map((n) =>
      `${n.midi} ${n.ticks} ${n.ticks + n.durationTicks} ${Math.round(n.velocity * 127)}`
    )
  );
  assert.equal(ours.length, 41);
  assert.deepEqual(ours.sort(), theirs.sort());
  // Seconds agree with tonejs's tempo map too.
  const piece = readMidi(bytes, { id: "x", sustain: false });
  const tonejsTimes = midi.tracks.flatMap((t) =>
    t.notes.map((n) => `${n.midi} ${n.time.toFixed(9)}`)
  ).sort();
  assert.deepEqual(
    piece.notes.map((n) => `${n.pitch} ${n.startSec.toFixed(9)}`).sort(),
    tonejsTimes,
  );
});

// ---------------------------------------------------------------------------
// Sustain pedal (Magenta's apply_sustain_control_changes)

/** Builds a one-track file with tonejs: notes as [pitch, startSec, endSec], pedal as [sec, value]. */
function tonejsFixture(
  notes: Array<[number, number, number]>,
  pedals: Array<[number, number]>,
): Uint8Array {
  const midi = new Midi();
  const t = midi.addTrack();
  for (const [pitch, start, end] of notes) {
    t.addNote({ midi: pitch, time: start, duration: end - start, velocity: 0.5 });
  }
  for (const [time, value] of pedals) t.addCC({ number: 64, time, value: value / 127 });
  return midi.toArray();
}

Deno.test("sustain: a note released under the pedal sounds until the pedal is released", () => {
  const bytes = tonejsFixture([[60, 0, 0.5], [64, 0.25, 2]], [[0.25, 127], [1.5, 0]]);
  assert.deepEqual(summary(readMidi(bytes, { id: "s" }).notes), ["60 0 1.5", "64 0.25 2"]);
  assert.deepEqual(summary(readMidi(bytes, { id: "s", sustain: false }).notes), [
    "60 0 0.5",
    "64 0.25 2",
  ]);
});

Deno.test("sustain: re-striking a pitch under the pedal ends the sustained note at the new onset", () => {
  const bytes = tonejsFixture([[60, 0, 0.25], [60, 1, 1.25], [62, 0.5, 0.75]], [[0, 100], [2, 10]]);
  assert.deepEqual(summary(readMidi(bytes, { id: "s" }).notes), ["60 0 1", "62 0.5 2", "60 1 2"]);
});

Deno.test("sustain: the pedal acts per channel, values below 64 are up, and the end closes held notes", () => {
  const bytes = smf([track([
    pedal(0, 63), // up: no effect
    on(0, 60),
    off(480, 60),
    pedal(0, 64, 1), // channel 2 pedal down, never released
    on(0, 67, 80, 1),
    off(240, 67, 1),
    pedal(960, 0, 3), // last event of the file (on another channel)
  ])]);
  assert.deepEqual(summary(readMidi(bytes, { id: "s" }).notes), ["60 0 0.5", "67 0 1"]);
});

/** Direct port of note_seq.sequences_lib.apply_sustain_control_changes, per channel, on ticks. */
function magentaSustain(
  notes: Array<{ pitch: number; channel: number; start: number; end: number }>,
  pedals: Array<{ tick: number; channel: number; value: number }>,
): Array<{ pitch: number; start: number; end: number }> {
  type N = (typeof notes)[number];
  const events: Array<[number, number, N | (typeof pedals)[number]]> = [];
  for (const n of notes) events.push([n.start, 2, n]);
  for (const n of notes) events.push([n.end, 3, n]);
  for (const p of pedals) events.push([p.tick, p.value >= 64 ? 0 : 1, p]);
  events.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const active = new Map<number, N[]>();
  const sus = new Map<number, boolean>();
  const deleted = new Set<N>();
  let time = 0;
  for (const [t, type, event] of events) {
    time = t;
    const ch = event.channel;
    const list = active.get(ch) ?? [];
    active.set(ch, list);
    if (type === 0) sus.set(ch, true);
    else if (type === 1) {
      sus.set(ch, false);
      active.set(ch, list.filter((n) => n.end < time ? (n.end = time, false) : true));
    } else if (type === 2) {
      const note = event as N;
      if (sus.get(ch)) {
        active.set(
          ch,
          list.filter((n) => {
            if (n.pitch !== note.pitch) return true;
            n.end = time;
            if (n.start === n.end) deleted.add(n);
            return false;
          }),
        );
      }
      active.get(ch)!.push(note);
    } else if (!sus.get(ch)) {
      const i = list.indexOf(event as N);
      if (i >= 0) list.splice(i, 1);
    }
  }
  for (const list of active.values()) for (const n of list) n.end = time;
  return notes.filter((n) => !deleted.has(n));
}

function compareWithMagenta(bytes: Uint8Array, secPerTick: number): number {
  const content = decodeSmf(bytes);
  const raw = content.notes;
  const notes = raw.pitch.map((pitch, i) => ({
    pitch,
    channel: raw.channel[i],
    start: raw.startTick[i],
    end: raw.endTick[i],
  }));
  const pedals = content.sustain.tick.map((tick, i) => ({
    tick,
    channel: content.sustain.channel[i],
    value: content.sustain.value[i],
  }));
  const expected = magentaSustain(notes, pedals)
    .filter((n) => n.end > n.start)
    .map((n) =>
      `${n.pitch} ${(n.start * secPerTick).toFixed(9)} ${(n.end * secPerTick).toFixed(9)}`
    )
    .sort();
  const actual = readMidi(bytes, { id: "m" }).notes
    .map((n) => `${n.pitch} ${n.startSec.toFixed(9)} ${n.endSec.toFixed(9)}`)
    .sort();
  assert.deepEqual(actual, expected);
  return actual.length;
}

Deno.test("sustain matches a direct port of Magenta's algorithm on a dense random fixture", () => {
  const random = randomInts(12345);
  const events: Array<[number, ...number[]]> = [tempo(0, 500_000)];
  for (let i = 0; i < 400; i++) {
    const tick = random(200) * 24; // a coarse grid makes many events share a tick
    const pitch = 60 + random(6);
    const channel = random(2);
    events.push(
      on(tick, pitch, 1 + random(127), channel),
      off(tick + random(8) * 24, pitch, channel),
    );
  }
  for (let i = 0; i < 150; i++) events.push(pedal(random(210) * 24, random(128), random(2)));
  const count = compareWithMagenta(smf([track(events)]), 0.5 / 480);
  assert.ok(count > 300);
});

// ---------------------------------------------------------------------------
// Writing

Deno.test("writeMidi() output is a clean SMF that reads back to the same notes within a tick", () => {
  const notes: Note[] = [];
  for (let i = 0; i < 200; i++) {
    const startSec = Math.round(i * 37.3) / 100;
    notes.push({
      pitch: 21 + (i * 13) % 88,
      startSec,
      endSec: startSec + 0.05 + (i % 7) * 0.31,
      velocity: 1 + (i * 29) % 127,
    });
  }
  notes.sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch);
  const piece: Piece = { id: "round", notes, tempoBpm: 96, beatsPerBar: 3, beatsSec: [] };
  const bytes = writeMidi(piece);
  assert.deepEqual(checkSmf(bytes), []);
  const back = readMidi(bytes, { id: "round", sustain: false });
  assert.equal(back.notes.length, notes.length);
  const tickSec = 60 / 96 / 480;
  back.notes.forEach((n, i) => {
    assert.equal(n.pitch, notes[i].pitch);
    assert.equal(n.velocity, notes[i].velocity);
    assert.ok(Math.abs(n.startSec - notes[i].startSec) <= tickSec, `start of note ${i}`);
    assert.ok(Math.abs(n.endSec - notes[i].endSec) <= tickSec, `end of note ${i}`);
  });
  assert.ok(Math.abs(back.tempoBpm - 96) < 1e-9);
  assert.equal(back.beatsPerBar, 3);
  assert.equal(back.beatsSec[1], 60 / 96);
});

Deno.test("writeMidi() writes the requested program and rejects notes it cannot write", () => {
  const piece: Piece = {
    id: "p",
    notes: [{ pitch: 60, startSec: 0, endSec: 0.0001, velocity: 100 }],
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: [0],
  };
  const violin = writeMidi(piece, { programNumber: 40 });
  assert.deepEqual(decodeSmf(violin).notes.program, [40]);
  assert.equal(readMidi(violin, { id: "p", instruments: "piano" }).notes.length, 0);
  // A note shorter than a tick is written one tick long.
  assert.equal(decodeSmf(writeMidi(piece)).notes.endTick[0], 1);
  const bad = (note: Partial<Note>) => ({ ...piece, notes: [{ ...piece.notes[0], ...note }] });
  assert.throws(
    () => writeMidi(bad({ pitch: 128 })),
    /Cannot write MIDI for "p": note 0 has pitch 128/,
  );
  assert.throws(() => writeMidi(bad({ velocity: 0 })), /note 0 has velocity 0/);
  assert.throws(() => writeMidi(bad({ endSec: NaN })), /note 0 has times 0..NaN/);
  assert.throws(() => writeMidi(piece, { programNumber: 128 }), /programNumber 128/);
});

Deno.test("readMidiFile() names the path in its errors and the id after the file", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const good = `${dir}/scale.mid`;
    Deno.writeFileSync(good, smf([scaleTrack()]));
    const piece = readMidiFile(good);
    assert.equal(piece.id, "scale");
    assert.equal(piece.source, good);
    const bad = `${dir}/bad.mid`;
    Deno.writeFileSync(bad, new Uint8Array([0x4d, 0x54, 0x68, 0x64, 0, 0, 0, 6, 0]));
    assert.throws(() => readMidiFile(bad), (e: unknown) => {
      assert.ok(e instanceof MidiError);
      assert.equal(
        e.message,
        `Cannot read "${bad}": header chunk is truncated (1 of 6 bytes present)`,
      );
      return true;
    });
    assert.throws(
      () => readMidiFile(`${dir}/missing.mid`),
      /^MidiError: Cannot read ".*missing.mid": /,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------
// Shared data: the malformed corpus and MAESTRO

/** What readMidi does with each file of data/bad-midi (see its README.txt): notes kept, or the reason. */
const BAD_MIDI_EXPECTED: Record<string, number | RegExp> = {
  "00_reference_valid_format0.mid": 8,
  "01_zero_length.mid": /file is empty/,
  "02_truncated_in_header.mid": /header chunk is truncated/,
  "03_truncated_mid_track.mid":
    /track 1 chunk length 103 runs past the end of the file \(40 bytes left\)/,
  "04_bad_header_magic.mid": /not a Standard MIDI File/,
  "05_header_claims_more_tracks.mid": 8,
  "06_track_length_past_eof.mid":
    /track 1 chunk length 1095 runs past the end of the file \(95 bytes left\)/,
  "07_running_status_without_prior_status.mid": /no running status to continue/,
  "08_running_status_after_meta.mid": 1,
  "09_running_status_across_tracks.mid":
    /track 2 at byte \d+: data byte 0x40 with no running status/,
  "10_huge_delta_time.mid": 1,
  "11_overlong_vlq_delta.mid": /delta time is longer than 4 bytes/,
  "12_note_on_without_note_off.mid": 5,
  "13_format2.mid": /format 2 \(independent sequences\) is not supported/,
  "14_smpte_division_25fps.mid": 8,
  "15_smpte_division_30drop.mid": 4,
  "16_meta_events_only.mid": 0,
  "17_missing_end_of_track.mid": 8,
  "18_format0_with_two_tracks.mid": 16,
  "19_zero_ticks_per_quarter.mid": /division is 0 ticks per quarter note/,
  "20_data_byte_with_high_bit.mid": /data byte 0xCC has the high bit set/,
  "21_sysex_length_past_track_end.mid": /sysex length 120 runs past the end of the track/,
  "22_meta_length_past_track_end.mid": /meta event 0x01 length 200 runs past the end of the track/,
  "23_tempo_zero.mid": 8,
  "24_header_length_10.mid": 8,
  "25_unknown_chunk_between.mid": 8,
  "26_trailing_garbage.mid": 8,
  "27_header_claims_65535_tracks.mid": 0,
  "28_track_length_0xFFFFFFFF.mid": /track 1 chunk length 4294967295 runs past the end of the file/,
  "29_note_off_without_note_on.mid": 1,
  "30_riff_rmid_wrapper.mid": 8,
  "31_undefined_status_byte.mid": /undefined status byte 0xF4/,
  "32_events_after_end_of_track.mid": 1,
  "33_velocity0_and_running_status_valid.mid": 2,
};

Deno.test({
  name:
    "readMidi() accepts or cleanly rejects every file of the bad-MIDI corpus (needs ../shared/data/bad-midi)",
  ignore: !hasBadMidi,
  fn() {
    const files = [...Deno.readDirSync(BAD_DIR)].map((e) => e.name).filter((n) =>
      n.endsWith(".mid")
    );
    assert.deepEqual(files.sort(), Object.keys(BAD_MIDI_EXPECTED).sort());
    for (const file of files) {
      const expected = BAD_MIDI_EXPECTED[file];
      const bytes = Deno.readFileSync(new URL(file, BAD_DIR));
      if (expected instanceof RegExp) {
        assert.throws(() => readMidi(bytes, { id: file }), (e: unknown) => {
          assert.ok(e instanceof MidiError, `${file}: ${e}`);
          assert.match(e.message, expected, file);
          return true;
        });
      } else {
        const piece = readMidi(bytes, { id: file });
        assert.equal(piece.notes.length, expected, file);
        assertFinitePiece(piece);
      }
    }
  },
});

Deno.test({
  name:
    "readMidi() reads the reference file as a C major scale of 0.25 s notes (needs ../shared/data/bad-midi)",
  ignore: !hasBadMidi,
  fn() {
    const piece = readMidiFile(new URL("00_reference_valid_format0.mid", BAD_DIR).pathname);
    assert.deepEqual(
      summary(piece.notes),
      SCALE.map((p, i) => `${p} ${i * 0.25} ${i * 0.25 + 0.25}`),
    );
    assert.equal(piece.tempoBpm, 120);
    assert.equal(piece.beatsPerBar, 4);
    const smpte = readMidiFile(new URL("14_smpte_division_25fps.mid", BAD_DIR).pathname);
    assert.deepEqual(summary(smpte.notes), SCALE.map((p, i) => `${p} ${i * 0.5} ${i * 0.5 + 0.5}`));
    const huge = readMidiFile(new URL("10_huge_delta_time.mid", BAD_DIR).pathname);
    assert.equal(huge.notes[0].endSec, 4 * 3600);
  },
});

function maestroFiles(): string[] {
  const files: string[] = [];
  for (const year of Deno.readDirSync(MAESTRO_DIR)) {
    if (!year.isDirectory) continue;
    for (const f of Deno.readDirSync(new URL(`${year.name}/`, MAESTRO_DIR))) {
      if (f.name.endsWith(".midi")) files.push(`${year.name}/${f.name}`);
    }
  }
  return files.sort();
}

Deno.test({
  name:
    "readMidi() parses real MAESTRO files like @tonejs/midi and Magenta (needs ../shared/data/maestro-v3.0.0)",
  ignore: !hasMaestro,
  fn() {
    const files = maestroFiles();
    assert.equal(files.length, 1276);
    for (const file of [files[0], files[600], files[1275]]) {
      const bytes = Deno.readFileSync(new URL(file, MAESTRO_DIR));
      const piece = readMidi(bytes, { id: file, sustain: false });
      assertFinitePiece(piece);
      const midi = new Midi(bytes);
      const tonejsNotes = midi.tracks.flatMap((t) => t.notes);
      assert.equal(piece.notes.length, tonejsNotes.length, file);
      assert.ok(piece.notes.length > 500, `${file}: ${piece.notes.length} notes`);
      const durationSec = piece.notes.reduce((m, n) => Math.max(m, n.endSec), 0);
      assert.ok(Math.abs(durationSec - midi.duration) < 1e-6, file);
      const notesPerSec = piece.notes.length / durationSec;
      assert.ok(notesPerSec > 1 && notesPerSec < 40, `${file}: ${notesPerSec} notes/s`);
      // The pedal lengthens notes on average (a re-strike may also cut or drop one).
      const sustained = readMidi(bytes, { id: file });
      const mean = (p: Piece) =>
        p.notes.reduce((s, n) => s + n.endSec - n.startSec, 0) / p.notes.length;
      assert.ok(mean(sustained) > mean(piece) * 1.2, file);
      // MAESTRO files are 120 bpm throughout, so ticks map to seconds by one factor.
      const content = decodeSmf(bytes);
      assert.deepEqual(content.tempos.map((t) => t.usPerQuarter), [500_000]);
      compareWithMagenta(bytes, 0.5 / content.ticksPerQuarter);
    }
  },
});

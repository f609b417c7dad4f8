import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import { generateSyntheticPiece, keyPitchClasses } from "./_synthetic.ts";

Deno.test("keyPitchClasses() gives the major scale and minor with both sevenths", () => {
  assert.deepEqual([...keyPitchClasses(2, "major")].sort((a, b) => a - b), [1, 2, 4, 6, 7, 9, 11]);
  // A minor: A B C D E F G plus G#.
  assert.deepEqual(
    [...keyPitchClasses(9, "minor")].sort((a, b) => a - b),
    [0, 2, 4, 5, 7, 8, 9, 11],
  );
});

Deno.test("generateSyntheticPiece() is determined by the generator's seed", () => {
  const a = generateSyntheticPiece(createRng(5), { id: "x" });
  const b = generateSyntheticPiece(createRng(5), { id: "x" });
  const c = generateSyntheticPiece(createRng(6), { id: "x" });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.piece.notes, c.piece.notes);
});

Deno.test("generateSyntheticPiece() writes notes in key, on the grid, with an exact beat grid", () => {
  const rng = createRng(42);
  const seen = { major: 0, minor: 0, 3: 0, 4: 0 } as Record<string, number>;
  for (let k = 0; k < 60; k++) {
    const { piece, melody, accompaniment, info } = generateSyntheticPiece(rng, {
      id: `p${k}`,
      bars: 8,
    });
    seen[info.mode]++;
    seen[info.beatsPerBar]++;
    const secPerBeat = 60 / info.tempoBpm;
    // Every note belongs to the key (harmonic minor's raised 7th counts as in key).
    const key = keyPitchClasses(info.tonicPitchClass, info.mode);
    const outside = piece.notes.filter((n) => !key.has(n.pitch % 12));
    assert.equal(outside.length, 0, `piece ${k}: ${outside.length} notes outside the key`);
    // Melody onsets on the eighth-note grid, within the piece, one note at a time.
    for (const note of melody) {
      const eighths = (note.startSec / secPerBeat) * 2;
      assert.ok(Math.abs(eighths - Math.round(eighths)) < 1e-9, `off-grid onset ${note.startSec}`);
    }
    for (let i = 1; i < melody.length; i++) assert.ok(melody[i].startSec >= melody[i - 1].endSec);
    // Melody above the accompaniment, so they never share a pitch.
    assert.ok(Math.min(...melody.map((n) => n.pitch)) >= 63);
    assert.ok(Math.max(...accompaniment.map((n) => n.pitch)) <= 61);
    // The melody ends on the tonic over a final tonic chord.
    assert.equal(melody[melody.length - 1].pitch % 12, info.tonicPitchClass);
    assert.deepEqual(info.progression[7], [info.mode === "major" ? "I" : "i"]);
    assert.deepEqual(info.progression[6].slice(-1), ["V"]);
    // The beat grid: bars * beatsPerBar beats, exactly i * 60 / tempo.
    assert.equal(piece.beatsSec.length, 8 * info.beatsPerBar);
    piece.beatsSec.forEach((t, i) => assert.equal(t, (i * 60) / info.tempoBpm));
    // Sorted by (startSec, pitch), valid notes.
    for (let i = 1; i < piece.notes.length; i++) {
      const [p, q] = [piece.notes[i - 1], piece.notes[i]];
      assert.ok(p.startSec < q.startSec || (p.startSec === q.startSec && p.pitch <= q.pitch));
    }
    for (const n of piece.notes) {
      assert.ok(n.endSec > n.startSec && n.velocity >= 1 && n.velocity <= 127);
      assert.ok(n.endSec <= 8 * info.beatsPerBar * secPerBeat + 1e-9);
    }
    assert.ok(info.tempoBpm >= 80 && info.tempoBpm <= 132 && Number.isInteger(info.tempoBpm));
  }
  // Both modes and both metres occur.
  assert.ok(seen.major > 0 && seen.minor > 0 && seen[3] > 0 && seen[4] > 0, JSON.stringify(seen));
});

Deno.test("generateSyntheticPiece() swells towards the middle of a phrase", () => {
  // Mean melody velocity in the middle half of each phrase beats the mean at its edges.
  const rng = createRng(9);
  let middle = 0, edges = 0, middleCount = 0, edgeCount = 0;
  for (let k = 0; k < 20; k++) {
    const { melody, info } = generateSyntheticPiece(rng, { id: "v", bars: 8 });
    const phraseSec = (4 * info.beatsPerBar * 60) / info.tempoBpm;
    for (const n of melody) {
      const t = (n.startSec % phraseSec) / phraseSec;
      if (t > 0.25 && t < 0.75) [middle, middleCount] = [middle + n.velocity, middleCount + 1];
      else [edges, edgeCount] = [edges + n.velocity, edgeCount + 1];
    }
  }
  assert.ok(middle / middleCount > edges / edgeCount + 5);
});

Deno.test("generateSyntheticPiece() handles odd bar counts and rejects bad options", () => {
  for (const bars of [1, 2, 3, 5, 6, 9]) {
    const { info, melody } = generateSyntheticPiece(createRng(bars), { id: "b", bars });
    assert.equal(info.progression.length, bars);
    assert.equal(info.phraseBars.reduce((a, b) => a + b, 0), bars);
    assert.equal(melody[melody.length - 1].pitch % 12, info.tonicPitchClass);
  }
  assert.throws(() => generateSyntheticPiece(createRng(1), { id: "b", bars: 0 }), /"bars" must be/);
  assert.throws(
    () => generateSyntheticPiece(createRng(1), { id: "b", tempoMinBpm: 120, tempoMaxBpm: 100 }),
    /tempo range 120\.\.100 BPM/,
  );
});

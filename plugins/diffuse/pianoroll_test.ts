import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../../mod.ts";
import { createRng } from "../../pipeline/rng.ts";
import { defaultParams, testContext } from "../_testing.ts";
import type { MidiCorpus, Note, Piece } from "../_music/types.ts";
import { initBackend } from "../_tf/backend.ts";
import { createDenoiser, type Denoiser, denoiserConfig, disposeDenoiser } from "../_tf/denoiser.ts";
import { readMaestroMetadata, selectMaestro } from "../load/_maestro.ts";
import { readMidiFile } from "../_music/midi.ts";
import { cropPiece } from "../_music/theory.ts";
import { addRepair, emptyRepair, plantWrongNotes, repairSummary } from "../_music/wrong_notes.ts";
import refine, { applyPreserve, type RefineFigures } from "./pianoroll.ts";
import train from "./train.ts";

await initBackend("wasm");

const beats = (count: number, beatSec = 0.5) =>
  Array.from({ length: count }, (_, i) => i * beatSec);

/**
 * One bar of 4/4 at 120 BPM (grid of 4 steps per beat: 0.125 s per step) in C major,
 * with a wrong F#4 (tritone against C4) and an F4 that rubs against E4.
 */
function handPiece(): Piece {
  return {
    id: "hand",
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: beats(4),
    notes: [
      { pitch: 60, startSec: 0, endSec: 2, velocity: 60 }, // steps [0, 16)
      { pitch: 64, startSec: 0, endSec: 2, velocity: 60 },
      { pitch: 67, startSec: 0, endSec: 1, velocity: 60 }, // [0, 8)
      { pitch: 72, startSec: 0.5, endSec: 1, velocity: 70 }, // [4, 8)
      { pitch: 66, startSec: 1, endSec: 1.5, velocity: 90 }, // [8, 12): out of key
      { pitch: 65, startSec: 1.5, endSec: 2, velocity: 80 }, // [12, 16): minor second with E4
    ],
  };
}

/** What a model might return: it keeps C4, E4, C5, drops G4, F#4 and F4, adds G4 at step 8 and D5 at step 0. */
const REFINED = [
  { pitch: 60, onStep: 0, endStep: 16 },
  { pitch: 64, onStep: 0, endStep: 16 },
  { pitch: 72, onStep: 4, endStep: 8 },
  { pitch: 67, onStep: 8, endStep: 12 },
  { pitch: 74, onStep: 0, endStep: 4 },
];

const describe = (notes: Note[]) =>
  notes.map((n) => `${n.pitch}@${n.startSec}-${n.endSec}v${n.velocity}`).join(" ");

Deno.test("applyPreserve() keeps, restores, moves and drops notes as each mode says", () => {
  const piece = handPiece();
  const run = (preserve: "none" | "remove-only" | "in-key" | "consonant") =>
    applyPreserve(piece, REFINED, { stepsPerBeat: 4, segmentSteps: 16, bars: 1, preserve });

  // Anything goes: new notes get grid timing and the mean velocity (60+60+60+70+90+80)/6 = 70.
  const none = run("none");
  assert.equal(
    describe(none.piece.notes),
    "60@0-2v60 64@0-2v60 74@0-0.5v70 72@0.5-1v70 67@1-1.5v70",
  );
  assert.deepEqual([none.kept, none.removed, none.moved, none.added], [3, 3, 0, 2]);

  const removeOnly = run("remove-only");
  assert.equal(describe(removeOnly.piece.notes), "60@0-2v60 64@0-2v60 72@0.5-1v70");
  assert.deepEqual([removeOnly.kept, removeOnly.removed, removeOnly.added], [3, 3, 0]);

  // Only F#4 is out of C major: it moves to the G4 the model put in its place, with its own
  // timing and velocity; G4 and F4 are in key and come back; D5 is ignored.
  const inKey = run("in-key");
  assert.equal(
    describe(inKey.piece.notes),
    "60@0-2v60 64@0-2v60 67@0-1v60 72@0.5-1v70 67@1-1.5v90 65@1.5-2v80",
  );
  assert.deepEqual([inKey.kept, inKey.removed, inKey.moved, inKey.added], [5, 0, 1, 0]);

  // F4 clashes with E4 (a minor second), so it is a suspect too; no in-key note replaces it.
  const consonant = run("consonant");
  assert.equal(
    describe(consonant.piece.notes),
    "60@0-2v60 64@0-2v60 67@0-1v60 72@0.5-1v70 67@1-1.5v90",
  );
  assert.deepEqual([consonant.kept, consonant.removed, consonant.moved], [4, 1, 1]);
});

const TINY = denoiserConfig({
  channels: 8,
  blocks: 1,
  diffusionSteps: 20,
  bars: 1,
  stepsPerBeat: 4,
});

Deno.test("diffuse/pianoroll refines pieces, rollouts and a corpus in order and skips a bad piece", async () => {
  const before = tf.memory().numTensors;
  const denoiser = createDenoiser(TINY, createRng(1));
  const ctx = testContext();
  const corpus: MidiCorpus = {
    pieces: [{ ...handPiece(), id: "from-corpus", split: "test" }],
    skipped: [],
  };
  const out = await refine.run(
    ctx,
    {
      denoiser,
      // A broken piece on purpose: it is passed through unchanged.
      pieces: [handPiece(), { id: "broken", notes: "none" } as never],
      rollouts: { pieces: [{ ...handPiece(), id: "from-rollout", notes: [] }] },
      corpus,
    },
    defaultParams(refine, { steps: 3 }) as never,
  );
  const pieces = out.pieces as Piece[];
  assert.deepEqual(pieces.map((p) => p.id), ["hand", "from-rollout", "from-corpus"]);
  assert.equal("split" in pieces[2], false);
  assert.deepEqual(pieces[1].notes, []);
  assert.ok(
    ctx.logs.some((l) =>
      l.level === "warn" && l.message === 'Skipping piece "broken": "notes" is not a list'
    ),
  );
  const figures = (out.metrics as { pieces: RefineFigures[] }).pieces;
  assert.equal(figures.length, 3);
  assert.equal(figures[0].notesBefore, 6);
  assert.equal(ctx.recorded.length, 3);
  assert.ok("dissonance/before" in ctx.recorded[0].values);
  disposeDenoiser(denoiser);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("diffuse/pianoroll says which inputs are missing", async () => {
  const denoiser = createDenoiser(TINY, createRng(1));
  await assert.rejects(
    () => refine.run(testContext(), { denoiser }, defaultParams(refine) as never),
    /Cannot refine pieces: connect at least one of the inputs "pieces", "rollouts" or "corpus"/,
  );
  await assert.rejects(
    () => refine.run(testContext(), { pieces: [] } as never, defaultParams(refine) as never),
    /Cannot refine pieces: input "denoiser" is missing or not a denoiser/,
  );
  await assert.rejects(
    () =>
      refine.run(testContext(), { denoiser, pieces: {} as never }, defaultParams(refine) as never),
    /Cannot refine pieces: input "pieces" is not a list of pieces/,
  );
  disposeDenoiser(denoiser);
});

// --- Refinement with a trained model -----------------------------------------------------

const TRIADS = [[0, 4, 7], [2, 5, 9], [5, 9, 12], [7, 11, 14], [9, 12, 16]]; // I ii IV V vi of C
const SCALE = [0, 2, 4, 5, 7, 9, 11];

/** `bars` bars of C major: a held triad in the left hand, eighth notes on the scale above it. */
function cMajorPiece(rng: Rng, id: string, bars: number): Piece {
  const notes: Note[] = [];
  for (let bar = 0; bar < bars; bar++) {
    const chord = TRIADS[rng.int(TRIADS.length)];
    for (const step of chord) {
      notes.push({ pitch: 48 + step, startSec: bar * 2, endSec: bar * 2 + 2, velocity: 60 });
    }
    for (let e = 0; e < 8; e++) {
      const degree = e % 2 === 0 ? chord[rng.int(3)] % 12 : SCALE[rng.int(7)];
      const startSec = bar * 2 + e / 4;
      notes.push({ pitch: 72 + degree, startSec, endSec: startSec + 0.25, velocity: 80 });
    }
  }
  notes.sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch);
  return { id, notes, tempoBpm: 120, beatsPerBar: 4, beatsSec: beats(bars * 4) };
}

Deno.test("diffuse/pianoroll removes planted wrong notes with a denoiser trained in the test (slow: ~10 s of training)", async () => {
  const before = tf.memory().numTensors;
  const rng = createRng(11);
  const corpus: MidiCorpus = {
    pieces: Array.from({ length: 40 }, (_, i) => ({
      ...cMajorPiece(rng, `c${i}`, 8),
      split: "train" as const,
    })),
    skipped: [],
  };
  const trained = await train.run(
    testContext({ seed: 1 }),
    { corpus },
    defaultParams(train, {
      bars: 1,
      stepsPerBeat: 2,
      diffusionSteps: 50,
      channels: 32,
      blocks: 2,
      trainSteps: 300,
      batchSize: 16,
      lr: 3e-3,
      warmupSteps: 20,
      transpose: 0,
    }) as never,
  );
  const denoiser = trained.denoiser as Denoiser;
  const clean = Array.from({ length: 8 }, (_, i) => cMajorPiece(rng, `t${i}`, 4));
  const planted = clean.map((piece) => plantWrongNotes(rng, piece, 0.15).piece);

  for (const preserve of ["consonant", "none"]) {
    const out = await refine.run(
      testContext({ seed: 2 }),
      { denoiser, pieces: planted },
      defaultParams(refine, { strength: 0.3, steps: 10, preserve }) as never,
    );
    const refined = out.pieces as Piece[];
    const mean = (out.metrics as { mean: Record<string, number> }).mean;
    // Which notes survived, judged against the clean pieces (planting kept the note order).
    let right = 0, rightKept = 0, wrong = 0, wrongGone = 0;
    clean.forEach((piece, i) => {
      const key = (n: Note) => `${n.pitch}@${n.startSec}`;
      const result = new Set(refined[i].notes.map(key));
      piece.notes.forEach((n, j) => {
        const p = planted[i].notes[j];
        if (p.pitch === n.pitch) {
          right++;
          if (result.has(key(n))) rightKept++;
        } else {
          wrong++;
          if (!result.has(key(p))) wrongGone++;
        }
      });
    });
    const what = `${preserve}: ${
      JSON.stringify(mean)
    }, right kept ${rightKept}/${right}, wrong gone ${wrongGone}/${wrong}`;
    assert.ok(wrong >= 30, what);
    assert.ok(mean.dissonanceAfter < 0.7 * mean.dissonanceBefore, what);
    assert.ok(mean.outOfKeyAfter < 0.7 * mean.outOfKeyBefore, what);
    // "consonant" protects consonant in-key notes; "none" lets the model drop more of both kinds.
    const [minRightKept, minWrongGone] = preserve === "consonant" ? [0.9, 0.6] : [0.8, 0.8];
    assert.ok(rightKept / right > minRightKept, what);
    assert.ok(wrongGone / wrong > minWrongGone, what);
    assert.ok(mean.keptShare > 0.7, what);
  }
  disposeDenoiser(denoiser);
  assert.equal(tf.memory().numTensors, before);
});

// --- The default judge ----------------------------------------------------------------------

/** Two bars of C major: held I and V chords and a quarter-note melody on their tones. */
function cMajorChords(): Piece {
  const notes: Note[] = [];
  [[48, 52, 55], [55, 59, 62]].forEach((chord, bar) => {
    for (const pitch of chord) {
      notes.push({ pitch, startSec: bar * 2, endSec: bar * 2 + 2, velocity: 50 });
    }
    [[72, 76, 79, 76], [74, 79, 83, 79]][bar].forEach((pitch, beat) => {
      const startSec = bar * 2 + beat * 0.5 + 0.013; // off the grid, as played
      notes.push({ pitch, startSec, endSec: startSec + 0.41, velocity: 71 + beat + 4 * bar });
    });
  });
  notes.sort((a, b) => a.startSec - b.startSec || a.pitch - b.pitch);
  return { id: "chords", tempoBpm: 120, beatsPerBar: 4, beatsSec: beats(8), notes };
}

Deno.test("diffuse/pianoroll judges each note by default: kept notes leave identical, a wrong note goes back, the denoiser is not run", async () => {
  const clean = cMajorChords();
  const index = clean.notes.findIndex((n) => n.pitch === 76 && n.startSec < 1);
  const planted = {
    ...clean,
    notes: clean.notes.map((n, i) => i === index ? { ...n, pitch: 77 } : n),
  };
  // Weights that would throw if the model ran.
  const denoiser = { config: TINY, params: {}, step: 0 } as unknown as Denoiser;
  const ctx = testContext();
  let progressed = 0;
  ctx.progress = () => progressed++;
  const out = await refine.run(
    ctx,
    { denoiser, pieces: [planted, clean] },
    defaultParams(refine) as never,
  );
  const [fixed, untouched] = out.pieces as Piece[];
  assert.deepEqual(fixed.notes.map((n) => ({ ...n })), clean.notes);
  assert.deepEqual(untouched.notes, clean.notes);
  assert.equal(progressed, 0);
  const figures = (out.metrics as { pieces: RefineFigures[] }).pieces;
  assert.deepEqual(
    [figures[0].moved, figures[0].removed, figures[0].added, figures[0].notesAfter],
    [1, 0, 0, clean.notes.length],
  );
  assert.ok(figures[0].clashBefore > 0 && figures[0].clashAfter === 0);
  assert.equal(figures[1].keptShare, 1);
  assert.ok("clash/before" in ctx.recorded[0].values);
});

Deno.test("diffuse/pianoroll's judge runs the denoiser when modelWeight > 0 and still adds no note", async () => {
  const before = tf.memory().numTensors;
  const denoiser = createDenoiser(TINY, createRng(1));
  const clean = cMajorChords();
  const ctx = testContext();
  let progressed = 0;
  ctx.progress = () => progressed++;
  const out = await refine.run(
    ctx,
    { denoiser, pieces: [clean] },
    defaultParams(refine, { modelWeight: 0.5, steps: 2 }) as never,
  );
  assert.ok(progressed > 0);
  const refined = (out.pieces as Piece[])[0];
  const originals = clean.notes.map((n) => `${n.startSec}|${n.endSec}|${n.velocity}`);
  for (const n of refined.notes) {
    const at = originals.indexOf(`${n.startSec}|${n.endSec}|${n.velocity}`);
    assert.ok(at >= 0, "a note with no original timing");
    originals.splice(at, 1);
  }
  disposeDenoiser(denoiser);
  assert.equal(tf.memory().numTensors, before);
});

const SHARED = new URL("../../../shared/data/", import.meta.url).pathname;
const hasSharedData = await Promise.all([
  Deno.stat(`${SHARED}maestro-v3.0.0/maestro-v3.0.0.csv`),
  Deno.stat(`${SHARED}openmsx`),
]).then(() => true, () => false);

Deno.test({
  name:
    "diffuse/pianoroll's judge halves the clashes of real piano with 15% wrong notes and keeps 90% of the notes (needs ../shared/data/maestro-v3.0.0 and ../shared/data/openmsx)",
  ignore: !hasSharedData,
  async fn() {
    const maestro = `${SHARED}maestro-v3.0.0`;
    const test = selectMaestro(readMaestroMetadata(maestro).entries, { splits: ["test"] });
    const pieces = test.filter((_, i) => i % 35 === 0).map((e) =>
      cropPiece(
        readMidiFile(`${maestro}/${e.midiFilename}`, { id: e.midiFilename, sustain: false }),
        {
          startSec: 0,
          durationSec: 30,
        },
      )
    );
    const openmsx = ["boogi_marabi_redfarn.mid", "moo_redfarn.mid", "the_hobo_redfarn.mid"].map((
      f,
    ) =>
      cropPiece(readMidiFile(`${SHARED}openmsx/${f}`, { id: f, instruments: "piano" }), {
        startSec: 0,
        durationSec: 60,
      })
    );
    const denoiser = { config: TINY, params: {}, step: 0 } as unknown as Denoiser;
    for (const [name, set] of [["MAESTRO test", pieces], ["OpenMSX", openmsx]] as const) {
      const rng = createRng(7);
      const planted = set.map((piece) => plantWrongNotes(rng, piece, 0.15));
      const out = await refine.run(
        testContext(),
        { denoiser, pieces: planted.map((p) => p.piece) },
        defaultParams(refine) as never,
      );
      const counts = emptyRepair();
      set.forEach((piece, i) => addRepair(counts, piece, planted[i], (out.pieces as Piece[])[i]));
      const s = repairSummary(counts);
      const what = `${name}: ${JSON.stringify(s)}`;
      assert.ok(counts.wrong > 100, what);
      assert.ok(s.clashRatio <= 0.5, what);
      assert.ok(s.rightKept >= 0.9 && s.inputKept >= 0.9, what);
      assert.equal(counts.added, 0, what);
    }
  },
});

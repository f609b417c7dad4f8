import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { defaultParams, testContext } from "../_testing.ts";
import type { MidiCorpus, Note, Piece } from "../_music/types.ts";
import { initBackend } from "../_tf/backend.ts";
import { type Denoiser, denoiserCodec, disposeDenoiser } from "../_tf/denoiser.ts";
import train from "./train.ts";

await initBackend("wasm");

/** Four bars of C major block chords (I, IV, V, I), one per bar, at 120 BPM. */
function chordPiece(id: string, transpose: number): Piece {
  const notes: Note[] = [];
  [[60, 64, 67], [65, 69, 72], [67, 71, 74], [60, 64, 67]].forEach((chord, bar) => {
    for (const pitch of chord) {
      notes.push({
        pitch: pitch + transpose,
        startSec: bar * 2,
        endSec: bar * 2 + 1.9,
        velocity: 70,
      });
    }
  });
  return {
    id,
    notes,
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: 16 }, (_, i) => i / 2),
  };
}

function corpus(): MidiCorpus {
  return {
    pieces: [
      ...[0, 2, -3, 5].map((t, i) => ({ ...chordPiece(`train${i}`, t), split: "train" as const })),
      { ...chordPiece("val", 1), split: "validation" as const },
    ],
    skipped: [],
  };
}

const TINY = {
  bars: 1,
  stepsPerBeat: 2,
  diffusionSteps: 50,
  channels: 16,
  blocks: 2,
  batchSize: 8,
  lr: 3e-3,
  warmupSteps: 5,
  transpose: 2,
};

Deno.test("diffuse/train lowers the denoising loss and returns a denoiser for its grid", async () => {
  const before = tf.memory().numTensors;
  const ctx = testContext({ seed: 3 });
  const params = defaultParams(train, { ...TINY, trainSteps: 60, checkpointEvery: 10 });
  const { denoiser } = await train.run(ctx, { corpus: corpus() }, params as never) as {
    denoiser: Denoiser;
  };
  assert.equal(denoiser.step, 60);
  assert.equal(denoiser.config.bars, 1);
  assert.equal(denoiser.config.stepsPerBeat, 2);
  assert.equal(denoiser.config.diffusionSteps, 50);
  assert.equal(denoiser.optimizer, undefined, "the artifact holds no Adam state");
  assert.deepEqual(ctx.recorded.map((r) => r.step), [10, 20, 30, 40, 50, 60]);
  const losses = ctx.recorded.map((r) => r.values["loss/denoise"]);
  assert.ok(losses[0] > 0.5, `an untrained model scores about 1, got ${losses[0]}`);
  assert.ok(losses[5] < 0.6 * losses[0], `losses ${losses.map((l) => l.toFixed(3))}`);
  assert.equal(train.outputs.denoiser.codec, denoiserCodec);
  disposeDenoiser(denoiser);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("diffuse/train resumes after an abort to the same weights as an uninterrupted run", async () => {
  const params = defaultParams(train, { ...TINY, trainSteps: 8, checkpointEvery: 2 });
  const whole = await train.run(testContext({ seed: 5 }), { corpus: corpus() }, params as never);
  const expected = whole.denoiser as Denoiser;

  const dir = Deno.makeTempDirSync();
  const controller = new AbortController();
  const first = testContext({ seed: 5, dir, signal: controller.signal });
  first.progress = (u) => {
    if (u.done === 4) controller.abort();
  };
  await assert.rejects(
    () => train.run(first, { corpus: corpus() }, params as never),
    /Cannot finish training: aborted at step 4; rerun to resume from the checkpoint/,
  );
  const second = testContext({ seed: 5, dir });
  const resumed = (await train.run(second, { corpus: corpus() }, params as never))
    .denoiser as Denoiser;
  assert.ok(second.logs.some((l) => l.message.startsWith("Resuming from step 4")));
  assert.equal(resumed.step, 8);
  for (const name of Object.keys(expected.params)) {
    assert.deepEqual(resumed.params[name].dataSync(), expected.params[name].dataSync(), name);
  }
  disposeDenoiser(expected);
  disposeDenoiser(resumed);
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("diffuse/train rejects a corpus with no training piece", async () => {
  const onlyValidation: MidiCorpus = {
    pieces: [{ ...chordPiece("v", 0), split: "validation" }],
    skipped: [],
  };
  await assert.rejects(
    () => train.run(testContext(), { corpus: onlyValidation }, defaultParams(train, TINY) as never),
    /Cannot train denoiser: the corpus has no train-split piece with notes on the 88 piano keys \(1 pieces, 0 in train\)/,
  );
  await assert.rejects(
    () => train.run(testContext(), {} as never, defaultParams(train, TINY) as never),
    /Cannot train denoiser: input "corpus" is missing or not a midi-corpus/,
  );
});

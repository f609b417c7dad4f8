/**
 * `diffuse/train`: trains a piano-roll denoiser (DDPM, Ho et al. 2020, with
 * the cosine schedule of Nichol & Dhariwal 2021) on windows of `bars` bars
 * cut from the training pieces of a corpus, as Polyffusion (Min et al. 2023)
 * does. Maths: `plugins/_tf/diffusion.ts`, network: `plugins/_tf/denoiser.ts`; rolls:
 * `plugins/_music/pianoroll.ts`.
 *
 * Windows start on a bar line of the piece's own metre and are `bars` bars of
 * 4/4 long (`bars * 4 * stepsPerBeat` steps) so that a batch has one shape;
 * the network is convolutional in time, so it also refines 3/4 segments.
 * Each window is transposed by a random number of semitones in
 * `[-transpose, transpose]` (notes pushed off the keyboard are dropped).
 *
 * Resumable: every `checkpointEvery` steps the weights, Adam state, step and
 * RNG state go to `ctx.workDir/checkpoint` (written to a temporary directory
 * and renamed into place); a rerun with the same cache key continues there.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { definePlugin, p, port } from "../../mod.ts";
import type { StageContext } from "../../mod.ts";
import {
  CELLS_PER_STEP,
  drawGridNotes,
  type GridNote,
  pieceToGridNotes,
} from "../_music/pianoroll.ts";
import type { MidiCorpus, Piece } from "../_music/types.ts";
import {
  createTrainer,
  type DenoiserTrainer,
  disposeTrainer,
  trainerCheckpoint,
  trainStep,
} from "../_tf/diffusion.ts";
import {
  createDenoiser,
  type Denoiser,
  denoiserCodec,
  type DenoiserConfig,
  denoiserConfig,
  denoiserParamCount,
  disposeDenoiser,
} from "../_tf/denoiser.ts";

/** A training piece on the step grid, with what window sampling needs. */
interface GridPiece {
  id: string;
  notes: GridNote[];
  /** Steps per bar of the piece's metre: windows start at multiples of it. */
  barSteps: number;
  /** Number of bar-aligned window starts (>= 1). */
  starts: number;
  /** Longest note in steps, to find notes that sound into a window. */
  maxLengthSteps: number;
}

/** Quantises the pieces and drops those without notes on the keyboard. */
function gridPieces(
  pieces: readonly Piece[],
  options: { stepsPerBeat: number; windowSteps: number },
): GridPiece[] {
  const out: GridPiece[] = [];
  for (const piece of pieces) {
    const notes = pieceToGridNotes(piece, options.stepsPerBeat);
    if (notes.length === 0) continue;
    const barSteps = (piece.beatsPerBar > 0 ? piece.beatsPerBar : 4) * options.stepsPerBeat;
    let end = 0, maxLengthSteps = 1;
    for (const n of notes) {
      end = Math.max(end, n.endStep);
      maxLengthSteps = Math.max(maxLengthSteps, n.endStep - n.onStep);
    }
    const starts = Math.max(1, Math.floor((end - options.windowSteps) / barSteps) + 1);
    out.push({ id: piece.id, notes, barSteps, starts, maxLengthSteps });
  }
  return out;
}

/** Index of the first note with `onStep >= step` (notes sorted by onStep). */
function firstOnsetAtOrAfter(notes: readonly GridNote[], step: number): number {
  let lo = 0, hi = notes.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (notes[mid].onStep < step) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Draws a batch of random windows as rolls scaled to [−1, 1]: a piece chosen
 * with probability proportional to its number of windows, a bar-aligned
 * start, a random transposition. Windows with no note are redrawn (up to 10
 * times).
 */
function sampleBatch(
  pieces: readonly GridPiece[],
  cumulativeStarts: Float64Array,
  options: { batchSize: number; windowSteps: number; transpose: number },
  rng: StageContext["rng"],
): Float32Array {
  const { batchSize, windowSteps, transpose } = options;
  const size = windowSteps * CELLS_PER_STEP;
  const out = new Float32Array(batchSize * size);
  const total = cumulativeStarts[cumulativeStarts.length - 1];
  for (let b = 0; b < batchSize; b++) {
    let window: Float32Array = new Float32Array(size);
    for (let attempt = 0; attempt < 10; attempt++) {
      const r = rng.next() * total;
      let i = 0;
      while (i < pieces.length - 1 && cumulativeStarts[i] <= r) i++;
      const piece = pieces[i];
      const fromStep = rng.int(piece.starts) * piece.barSteps;
      const shift = transpose > 0 ? rng.int(2 * transpose + 1) - transpose : 0;
      const lo = firstOnsetAtOrAfter(piece.notes, fromStep - piece.maxLengthSteps);
      const hi = firstOnsetAtOrAfter(piece.notes, fromStep + windowSteps);
      window = drawGridNotes(piece.notes.slice(lo, hi), {
        steps: windowSteps,
        fromStep,
        transpose: shift,
      });
      if (window.some((v) => v > 0)) break;
    }
    for (let j = 0; j < size; j++) out[b * size + j] = window[j] * 2 - 1;
  }
  return out;
}

/** What a checkpoint in the work directory holds besides the denoiser. */
interface TrainState {
  rngState: number[];
  lossSum: number;
  lossCount: number;
}

async function saveCheckpoint(workDir: string, trainer: DenoiserTrainer, state: TrainState) {
  const final = `${workDir}/checkpoint`;
  const temp = `${workDir}/checkpoint.tmp`;
  const old = `${workDir}/checkpoint.old`;
  await Deno.remove(temp, { recursive: true }).catch(() => {});
  await Deno.mkdir(temp, { recursive: true });
  await denoiserCodec.save(await trainerCheckpoint(trainer), temp);
  await Deno.writeTextFile(`${temp}/state.json`, JSON.stringify(state));
  // Keep one complete checkpoint on disk at every moment: old aside, new in, old gone.
  await Deno.remove(old, { recursive: true }).catch(() => {});
  await Deno.rename(final, old).catch(() => {});
  await Deno.rename(temp, final);
  await Deno.remove(old, { recursive: true }).catch(() => {});
}

async function loadCheckpoint(
  workDir: string,
): Promise<{ denoiser: Denoiser; state: TrainState; dir: string } | null> {
  for (const dir of [`${workDir}/checkpoint`, `${workDir}/checkpoint.old`]) {
    try {
      const state = JSON.parse(await Deno.readTextFile(`${dir}/state.json`)) as TrainState;
      const denoiser = await denoiserCodec.load(dir);
      return { denoiser, state, dir };
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
  }
  return null;
}

export default definePlugin({
  name: "diffuse/train",
  kind: "diffuse",
  version: "1.0.0",
  description:
    "Trains a piano-roll diffusion denoiser (DDPM, cosine schedule, ε-prediction) on bar windows of the training pieces",
  params: {
    bars: p.integer({ default: 2, min: 1, max: 16, description: "Bars per roll segment" }),
    stepsPerBeat: p.integer({
      default: 4,
      min: 1,
      max: 24,
      description: "Roll grid steps per beat (4: sixteenth notes)",
    }),
    diffusionSteps: p.integer({
      default: 200,
      min: 10,
      max: 4000,
      description: "Diffusion steps T of the cosine noise schedule",
    }),
    channels: p.integer({ default: 128, min: 8, description: "Hidden width of the denoiser" }),
    blocks: p.integer({
      default: 4,
      min: 1,
      max: 32,
      description: "Residual blocks of the denoiser (dilations 1, 2, 4, 8, ...)",
    }),
    lr: p.number({ default: 1e-3, min: 0, max: 1, description: "Adam learning rate" }),
    batchSize: p.integer({ default: 32, min: 1, description: "Windows per training step" }),
    trainSteps: p.integer({ default: 1000, min: 1, description: "Training steps" }),
    warmupSteps: p.integer({
      default: 100,
      min: 0,
      description: "Steps of linear learning-rate warm-up",
    }),
    transpose: p.integer({
      default: 6,
      min: 0,
      max: 12,
      description: "Random transposition of each window, up to this many semitones either way",
    }),
    checkpointEvery: p.integer({
      default: 100,
      min: 1,
      description: "Steps between resumable checkpoints in the work directory",
    }),
  },
  inputs: {
    corpus: port<MidiCorpus>({
      type: "midi-corpus",
      description: "Pieces to learn from (its train split)",
    }),
  },
  outputs: {
    denoiser: {
      type: "denoiser",
      description: "The trained denoiser: config, weights and step",
      codec: denoiserCodec,
    },
  },
  async run(ctx, inputs, params) {
    const corpus = inputs.corpus;
    if (!corpus || !Array.isArray(corpus.pieces)) {
      throw new Error(`Cannot train denoiser: input "corpus" is missing or not a midi-corpus`);
    }
    const windowSteps = params.bars * 4 * params.stepsPerBeat;
    const train = corpus.pieces.filter((piece) => piece.split === "train");
    const pieces = gridPieces(train, { stepsPerBeat: params.stepsPerBeat, windowSteps });
    if (pieces.length === 0) {
      throw new Error(
        `Cannot train denoiser: the corpus has no train-split piece with notes on the 88 piano keys (${corpus.pieces.length} pieces, ${train.length} in train)`,
      );
    }
    const cumulativeStarts = new Float64Array(pieces.length);
    let sum = 0;
    pieces.forEach((piece, i) => (cumulativeStarts[i] = sum += piece.starts));

    const config: DenoiserConfig = denoiserConfig({
      channels: params.channels,
      blocks: params.blocks,
      diffusionSteps: params.diffusionSteps,
      bars: params.bars,
      stepsPerBeat: params.stepsPerBeat,
    });
    let denoiser: Denoiser;
    let lossSum = 0, lossCount = 0;
    const resumed = await loadCheckpoint(ctx.workDir);
    if (resumed && JSON.stringify(resumed.denoiser.config) === JSON.stringify(config)) {
      denoiser = resumed.denoiser;
      ctx.rng.setState(resumed.state.rngState);
      lossSum = resumed.state.lossSum;
      lossCount = resumed.state.lossCount;
      ctx.log.info(`Resuming from step ${denoiser.step} (checkpoint "${resumed.dir}")`);
    } else {
      if (resumed) {
        ctx.log.warn(`Ignoring checkpoint "${resumed.dir}": it was made for another architecture`);
        disposeDenoiser(resumed.denoiser);
      }
      denoiser = createDenoiser(config, ctx.rng);
    }
    ctx.log.info(
      `Training a ${
        denoiserParamCount(config)
      }-weight denoiser on ${pieces.length} pieces (${sum} windows of ${windowSteps} steps)`,
    );

    const trainer = createTrainer(denoiser);
    const logEvery = Math.max(1, Math.min(10, params.checkpointEvery));
    try {
      while (trainer.denoiser.step < params.trainSteps) {
        if (ctx.signal.aborted) {
          await saveCheckpoint(ctx.workDir, trainer, {
            rngState: ctx.rng.getState(),
            lossSum,
            lossCount,
          });
          throw new Error(
            `Cannot finish training: aborted at step ${trainer.denoiser.step}; rerun to resume from the checkpoint`,
          );
        }
        const values = sampleBatch(
          pieces,
          cumulativeStarts,
          { batchSize: params.batchSize, windowSteps, transpose: params.transpose },
          ctx.rng,
        );
        const x0 = tf.tensor(values, [params.batchSize, windowSteps, 88, 2]); // [B, T, 88, 2]
        let loss: number;
        try {
          loss = await trainStep(trainer, x0, ctx.rng, {
            lr: params.lr,
            warmupSteps: params.warmupSteps,
          });
        } finally {
          x0.dispose();
        }
        if (!Number.isFinite(loss)) {
          throw new Error(
            `Cannot train denoiser: the loss became ${loss} at step ${trainer.denoiser.step}; lower "lr"`,
          );
        }
        lossSum += loss;
        lossCount++;
        const step = trainer.denoiser.step;
        if (step % logEvery === 0 || step === params.trainSteps) {
          ctx.metrics(step, { "loss/denoise": lossSum / lossCount });
          ctx.progress({
            done: step,
            total: params.trainSteps,
            unit: "steps",
            info: { loss: Number((lossSum / lossCount).toFixed(4)) },
          });
          lossSum = 0;
          lossCount = 0;
        }
        if (step % params.checkpointEvery === 0 && step < params.trainSteps) {
          await saveCheckpoint(ctx.workDir, trainer, {
            rngState: ctx.rng.getState(),
            lossSum,
            lossCount,
          });
        }
      }
    } catch (e) {
      disposeTrainer(trainer);
      throw e;
    }
    // A rerun after a crash between here and the artifact being stored returns at once.
    await saveCheckpoint(ctx.workDir, trainer, {
      rngState: ctx.rng.getState(),
      lossSum,
      lossCount,
    });
    // The artifact is config + weights + step; Adam state stays in the work directory only.
    trainer.optimizer.dispose();
    return { denoiser: trainer.denoiser };
  },
});

/**
 * `pretrain/supervised`: next-token maximum-likelihood training of a sequence
 * model on a token corpus, with AdamW, warmup plus cosine decay, gradient
 * clipping, per-epoch validation, early stopping and resumable checkpoints.
 *
 * References: the training loop of Karpathy's nanoGPT `train.py` (random
 * windows of packed sequences, warmup + cosine schedule, AdamW, clipping,
 * keep the checkpoint with the best validation loss); transposition
 * augmentation of up to a minor third as in Music Transformer (Huang et al.,
 * ICLR 2019, section 5.2) for the performance encoding.
 *
 * Windows are cut from the split's sequences laid end to end (each sequence is
 * BOS … EOS, so the model also learns where pieces start and end); no padding
 * is needed. Validation uses fixed, non-overlapping windows of the validation
 * split, so its NLL per token compares across epochs.
 *
 * Resuming: every epoch (and when aborted) the stage writes `last.ckpt`
 * (weights, AdamW moments, step, RNG state, best NLL so far) atomically into
 * `ctx.workDir`, and `best.ckpt` when validation improves. A run killed at any
 * point restarts from `last.ckpt` and continues exactly as if never stopped.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { type ArtifactCodec, definePlugin, DivergenceError, p } from "../../mod.ts";
import { stretchTokens, transposeTokens } from "../_music/augment.ts";
import type { TokenCorpus } from "../_music/components.ts";
import { sequencesOf, validateTokenCorpus } from "../_music/token_corpus.ts";
import type { Split } from "../_music/types.ts";
import {
  AdamW,
  assignWeights,
  checkpointFromModel,
  countParams,
  learningRateAt,
  loadCheckpointFile,
  type ModelCheckpoint,
  modelCodec,
  type ModelSpec,
  nextTokenLoss,
  optimizeStep,
  saveCheckpointFile,
  type SequenceModel,
} from "../_tf/model.ts";

/** Largest transposition either way, in semitones (a minor third). */
const MAX_TRANSPOSE = 3;

/** The sequences of one split laid end to end. */
function streamOf(corpus: TokenCorpus, split: Split): Int32Array {
  const parts = sequencesOf(corpus, split);
  const out = new Int32Array(parts.reduce((a, s) => a + s.length, 0));
  let at = 0;
  for (const s of parts) {
    out.set(s, at);
    at += s.length;
  }
  return out;
}

/** Mean NLL per token over fixed windows `[n, seqLen + 1]`, in batches. */
async function validationNll(
  model: SequenceModel,
  windows: Int32Array[],
  batchSize: number,
): Promise<number> {
  let sum = 0;
  let tokens = 0;
  for (let start = 0; start < windows.length; start += batchSize) {
    const rows = windows.slice(start, start + batchSize);
    const width = rows[0].length;
    const t = tf.tensor2d(concatRows(rows), [rows.length, width], "int32");
    const loss = tf.tidy(() => nextTokenLoss(model, t, { training: false }));
    const value = (await loss.data())[0];
    tf.dispose([t, loss]);
    sum += value * rows.length * (width - 1);
    tokens += rows.length * (width - 1);
  }
  return sum / tokens;
}

function concatRows(rows: Int32Array[]): Int32Array {
  const out = new Int32Array(rows.length * rows[0].length);
  rows.forEach((r, i) => out.set(r, i * r.length));
  return out;
}

/** Names the first weight of `model` that holds NaN or ±Infinity, or undefined when all are finite. */
async function nonFiniteWeight(model: SequenceModel): Promise<string | undefined> {
  for (const [name, variable] of model.variables) {
    const finite = tf.tidy(() => tf.all(tf.isFinite(variable)));
    const ok = (await finite.data())[0] === 1;
    finite.dispose();
    if (!ok) return name;
  }
  return undefined;
}

/**
 * Fails a training whose validation NLL is not finite or more than twice that
 * of a uniform guess over the vocabulary (ln V): an untrained model starts near
 * ln V and training only lowers it, so anything far above is a broken model.
 */
function checkValidationNll(
  nll: number,
  at: { epoch: number; step: number; vocabSize: number; lr: number },
): void {
  const uniform = Math.log(at.vocabSize);
  if (Number.isFinite(nll) && nll <= 2 * uniform) return;
  const what = Number.isFinite(nll)
    ? `${
      nll.toPrecision(4)
    } per token, more than twice that of a uniform guess over the ${at.vocabSize} tokens (${
      uniform.toFixed(2)
    })`
    : `${nll}`;
  throw new DivergenceError(
    `Training diverged at epoch ${at.epoch} (step ${at.step}): the validation NLL is ${what}; ` +
      `likely cause: a learning rate too high ("lr" is ${at.lr}): lower it`,
    { step: at.step },
  );
}

/** What `last.ckpt` keeps besides the model, in its metrics. */
interface LoopState {
  step: number;
  bestNll: number;
  badEpochs: number;
  stopped: boolean;
}

export default definePlugin({
  name: "pretrain/supervised",
  kind: "pretrain",
  version: "1.0.0",
  description:
    "Trains a sequence model to predict the next token (AdamW, cosine schedule, validation, early stopping, resumable)",
  params: {
    model: p.component({
      kind: "model",
      default: "model/lstm",
      description: "The architecture to train (model/lstm or model/transformer with its params)",
    }),
    seqLen: p.integer({ default: 128, min: 2, description: "Tokens per training window" }),
    batchSize: p.integer({ default: 8, min: 1, description: "Windows per optimisation step" }),
    epochs: p.integer({ default: 10, min: 1, description: "Number of epochs" }),
    stepsPerEpoch: p.integer({
      default: 200,
      min: 1,
      description: "Optimisation steps per epoch (each on random windows of the train split)",
    }),
    lr: p.number({ default: 3e-4, min: 0, description: "Peak learning rate" }),
    warmupSteps: p.integer({
      default: 100,
      min: 0,
      description: "Steps of linear warmup to the peak learning rate",
    }),
    minLr: p.number({
      default: 3e-5,
      min: 0,
      description: "Learning rate at the end of the cosine decay",
    }),
    weightDecay: p.number({
      default: 0.01,
      min: 0,
      description: "AdamW decoupled weight decay (matrices and embeddings only)",
    }),
    clipNorm: p.number({
      default: 1,
      min: 0,
      description: "Largest global gradient norm; 0 = no clipping",
    }),
    validationBatches: p.integer({
      default: 8,
      min: 0,
      description: "Batches of validation windows scored after each epoch; 0 = no validation",
    }),
    patience: p.integer({
      default: 3,
      min: 0,
      description: "Stop after this many epochs without a better validation NLL; 0 = never",
    }),
    stretch: p.number({
      default: 0,
      min: 0,
      max: 0.5,
      description:
        "Time-stretch each window by a random factor in [1 - stretch, 1 + stretch] (performance encoding; Music Transformer used 0.05); 0 = off",
    }),
    transpose: p.boolean({
      default: true,
      description:
        "Shift each window by a random -3..+3 semitones (performance encoding only; others are left as they are)",
    }),
  },
  inputs: {
    tokens: {
      type: "token-corpus",
      description: "Tokenised corpus with train and validation splits",
    },
  },
  outputs: {
    model: {
      type: "model",
      description: "The checkpoint with the lowest validation NLL",
      codec: modelCodec as ArtifactCodec,
    },
  },
  async run(ctx, inputs, params) {
    const corpus = inputs.tokens as TokenCorpus;
    validateTokenCorpus(corpus, 'Cannot pretrain on input "tokens"');
    const spec = params.model as ModelSpec;
    const { seqLen, batchSize, epochs, stepsPerEpoch } = params;
    const train = streamOf(corpus, "train");
    if (train.length < seqLen + 1) {
      throw new Error(
        `Cannot pretrain: the train split has ${train.length} tokens, fewer than seqLen + 1 = ${
          seqLen + 1
        }; lower "seqLen" or add data`,
      );
    }
    const validation = streamOf(corpus, "validation");
    const validationWindows: Int32Array[] = [];
    const wantWindows = params.validationBatches * batchSize;
    for (
      let at = 0;
      at + seqLen + 1 <= validation.length && validationWindows.length < wantWindows;
      at += seqLen + 1
    ) {
      validationWindows.push(validation.subarray(at, at + seqLen + 1));
    }
    if (params.validationBatches > 0 && validationWindows.length === 0) {
      ctx.log.warn(
        `The validation split has ${validation.length} tokens, fewer than seqLen + 1 = ${
          seqLen + 1
        }: no validation, the last epoch's model is the output`,
      );
    }
    const transposing = params.transpose && corpus.tokenizer.use === "tokenizer/performance";
    const stretching = params.stretch > 0 && corpus.tokenizer.use === "tokenizer/performance";
    const totalSteps = epochs * stepsPerEpoch;
    const schedule = {
      peakLr: params.lr,
      minLr: params.minLr,
      warmupSteps: params.warmupSteps,
      totalSteps,
    };

    const model = spec.build(corpus.vocabSize, ctx.rng.seed());
    const optimizer = new AdamW(model.variables, { weightDecay: params.weightDecay });
    const lastPath = `${ctx.workDir}/last.ckpt`;
    const bestPath = `${ctx.workDir}/best.ckpt`;
    const loop: LoopState = { step: 0, bestNll: Infinity, badEpochs: 0, stopped: false };
    try {
      const resumed = await readIfExists(lastPath);
      if (resumed !== null) {
        if (JSON.stringify(resumed.spec.config) !== JSON.stringify(spec.config)) {
          throw new Error(
            `Cannot resume from "${lastPath}": it holds a different model config; delete it to start over`,
          );
        }
        assignWeights(model, resumed.weights);
        if (resumed.optimizer) optimizer.setState(resumed.optimizer);
        if (resumed.rngState) ctx.rng.setState(resumed.rngState);
        loop.step = resumed.step;
        loop.bestNll = resumed.metrics.bestNll ?? Infinity;
        loop.badEpochs = resumed.metrics.badEpochs ?? 0;
        loop.stopped = resumed.metrics.stopped === 1;
        ctx.log.info(`Resuming from step ${loop.step} of ${totalSteps} ("${lastPath}")`);
      } else {
        ctx.log.info(
          `Training a ${spec.type} of ${countParams(model)} parameters for ${totalSteps} steps ` +
            `of ${batchSize} x ${seqLen} tokens${transposing ? " with transposition" : ""}`,
        );
      }

      const snapshot = (metrics: Record<string, number>) =>
        checkpointFromModel(model, {
          tokenizer: corpus.tokenizer,
          step: loop.step,
          optimizer,
          rngState: ctx.rng.getState(),
          metrics,
        });
      const saveLast = async () => {
        const metrics: Record<string, number> = {
          badEpochs: loop.badEpochs,
          stopped: loop.stopped ? 1 : 0,
        };
        if (Number.isFinite(loop.bestNll)) metrics.bestNll = loop.bestNll;
        await saveCheckpointFile(lastPath, await snapshot(metrics));
      };

      const started = performance.now();
      const startStep = loop.step;
      const window = new Int32Array(batchSize * (seqLen + 1));
      while (loop.step < totalSteps && !loop.stopped) {
        for (let b = 0; b < batchSize; b++) {
          // Stretching can shorten a window, so a stretched one is cut from a longer slice.
          const slack = stretching ? Math.ceil((seqLen + 1) * 0.25) : 0;
          const at = ctx.rng.int(Math.max(1, train.length - seqLen - slack));
          let w: Int32Array = train.subarray(at, at + seqLen + 1 + slack);
          if (transposing) {
            const shift = ctx.rng.int(2 * MAX_TRANSPOSE + 1) - MAX_TRANSPOSE;
            w = transposeTokens(w, shift, { minPitch: 0, maxPitch: 127 }) ?? w;
          }
          if (stretching) {
            const factor = 1 + (2 * ctx.rng.next() - 1) * params.stretch;
            const stretched = stretchTokens(w, factor);
            w = stretched.length >= seqLen + 1 ? stretched : w;
          }
          w = w.subarray(0, seqLen + 1);
          window.set(w, b * (seqLen + 1));
        }
        const lr = learningRateAt(loop.step, schedule);
        const windows = tf.tensor2d(window, [batchSize, seqLen + 1], "int32");
        const result = await optimizeStep(
          model,
          optimizer,
          () => nextTokenLoss(model, windows, { training: true, rng: ctx.rng }),
          { lr, clipNorm: params.clipNorm },
        );
        windows.dispose();
        loop.step++;
        if (result.skipped) {
          ctx.log.warn(
            `Skipped step ${loop.step}: loss ${result.loss}, gradient norm ${result.gradNorm} (not finite)`,
          );
        }
        ctx.metrics(loop.step, { "loss/train": result.loss, lr, "grad/norm": result.gradNorm });
        const sec = (performance.now() - started) / 1000;
        ctx.progress({
          done: loop.step,
          total: totalSteps,
          unit: "steps",
          info: {
            loss: Number(result.loss.toFixed(4)),
            "tok/s": Math.round(((loop.step - startStep) * batchSize * seqLen) / sec),
          },
        });

        if (loop.step % stepsPerEpoch === 0) {
          const epoch = loop.step / stepsPerEpoch;
          if (validationWindows.length > 0) {
            const nll = await validationNll(model, validationWindows, batchSize);
            ctx.metrics(loop.step, { "nll/validation": nll });
            ctx.log.info(`Epoch ${epoch}: validation NLL ${nll.toFixed(4)} per token`);
            checkValidationNll(nll, {
              epoch,
              step: loop.step,
              vocabSize: corpus.vocabSize,
              lr: params.lr,
            });
            if (nll < loop.bestNll) {
              loop.bestNll = nll;
              loop.badEpochs = 0;
              await saveCheckpointFile(
                bestPath,
                await snapshot({ "nll/validation": nll, epoch, "loss/train": result.loss }),
              );
            } else {
              loop.badEpochs++;
              if (params.patience > 0 && loop.badEpochs >= params.patience) {
                ctx.log.info(
                  `Stopping early after epoch ${epoch}: no better validation NLL for ${loop.badEpochs} epochs`,
                );
                loop.stopped = true;
              }
            }
          }
          await saveLast();
        }
        if (ctx.signal.aborted) {
          await saveLast();
          ctx.signal.throwIfAborted();
        }
      }

      const best = validationWindows.length > 0 ? await readIfExists(bestPath) : null;
      if (best !== null) return { model: best };
      const broken = await nonFiniteWeight(model);
      if (broken !== undefined) {
        throw new DivergenceError(
          `Training diverged: weight "${broken}" holds values that are not finite after step ${loop.step}; ` +
            `likely cause: a learning rate too high ("lr" is ${params.lr}): lower it`,
          { step: loop.step },
        );
      }
      const last: ModelCheckpoint = await snapshot({
        epoch: Math.floor(loop.step / stepsPerEpoch),
      });
      return { model: last };
    } finally {
      optimizer.dispose();
      model.dispose();
    }
  },
});

async function readIfExists(path: string): Promise<ModelCheckpoint | null> {
  try {
    await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  return await loadCheckpointFile(path);
}

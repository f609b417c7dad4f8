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
 * is needed. Validation uses fixed, non-overlapping windows spread evenly over
 * the whole validation split, so its NLL per token compares across epochs and
 * describes every piece, not only the first ones.
 *
 * Resuming: every `checkpointEvery` steps, at every validation and when
 * aborted or out of time, the stage writes `last.ckpt` (weights, AdamW
 * moments, step, RNG state, best NLL so far, training time so far) atomically
 * into `ctx.workDir`, and `best.ckpt` when validation improves. A run killed
 * at any point, even by SIGKILL in the middle of an epoch, restarts from the
 * step of `last.ckpt` and continues exactly as if never stopped (without a
 * time budget; with one, the learning rate also follows the clock).
 *
 * Long runs: validation every `validateEvery` steps keeps the best
 * checkpoint, which is the stage's output; `maxMinutes` stops training
 * cleanly when the budget is spent (the cosine decay then ends at whichever
 * comes first, the last step or the budget, so a cut run still anneals); the
 * progress line and each validation's log line give the time left.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { type ArtifactCodec, definePlugin, DivergenceError, p, port } from "../../mod.ts";
import { stretchTokens, transposeTokens } from "../_music/augment.ts";
import type { TokenCorpus } from "../_music/components.ts";
import { splitStream, spreadWindows, validateTokenCorpus } from "../_music/token_corpus.ts";
import { AdamW, learningRateAt, optimizeStep } from "../_tf/optim.ts";
import {
  assignWeights,
  countParams,
  type ModelCheckpoint,
  type ModelSpec,
  nextTokenLoss,
  type SequenceModel,
} from "../_tf/model.ts";
import {
  checkpointFromModel,
  loadCheckpointFile,
  modelCodec,
  saveCheckpointFile,
} from "../_tf/checkpoint.ts";

/** Largest transposition either way, in semitones (a minor third). */
const MAX_TRANSPOSE = 3;

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
  /** Validations in a row without a better NLL (the name dates from per-epoch validation). */
  badEpochs: number;
  stopped: boolean;
  /** Seconds of training before this session (a resumed run's earlier sessions). */
  elapsedSec: number;
}

/**
 * A duration for progress lines and logs: `45s`, `12m05s`, `3h07m`.
 *
 * @param sec Seconds (rounded; negative counts as 0).
 * @returns The compact text, `?` when `sec` is not finite.
 */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec)) return "?";
  const s = Math.max(0, Math.round(sec));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

/**
 * The step whose learning rate applies under a time budget: after warmup, the
 * cosine decay follows whichever is further along, the steps or the clock, so
 * a run cut by its budget has annealed by then.
 *
 * @param step The optimisation step (0-based).
 * @param options The schedule's `warmupSteps` and `totalSteps`, training seconds so far
 *   and the budget in seconds (0 = none).
 * @returns The step to pass to `learningRateAt`, at least `step`.
 */
export function scheduleStep(
  step: number,
  options: { warmupSteps: number; totalSteps: number; elapsedSec: number; budgetSec: number },
): number {
  const { warmupSteps, totalSteps, elapsedSec, budgetSec } = options;
  if (budgetSec <= 0 || step < warmupSteps) return step;
  const byTime = warmupSteps + Math.min(1, elapsedSec / budgetSec) * (totalSteps - warmupSteps);
  return Math.max(step, Math.floor(byTime));
}

export default definePlugin({
  name: "pretrain/supervised",
  kind: "pretrain",
  version: "1.2.0",
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
      description: "Batches of validation windows scored at each validation; 0 = no validation",
    }),
    validateEvery: p.integer({
      default: 0,
      min: 0,
      description:
        "Steps between validations (each better one is kept as the best checkpoint); 0 = at the end of every epoch",
    }),
    patience: p.integer({
      default: 3,
      min: 0,
      description: "Stop after this many validations without a better validation NLL; 0 = never",
    }),
    maxMinutes: p.number({
      default: 0,
      min: 0,
      description:
        "Time budget: stop cleanly after this many minutes of training (summed over resumed sessions) and output the best checkpoint; the cosine decay ends at the budget if it comes before the last step; 0 = no limit",
    }),
    checkpointEvery: p.integer({
      default: 100,
      min: 1,
      description:
        "Steps between resumable checkpoints in the work directory (also written at every validation and when stopped), so a killed run loses at most this many steps",
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
    tokens: port<TokenCorpus>({
      type: "token-corpus",
      description: "Tokenised corpus with train and validation splits",
    }),
  },
  outputs: {
    model: {
      type: "model",
      description: "The checkpoint with the lowest validation NLL",
      codec: modelCodec as ArtifactCodec,
    },
  },
  async run(ctx, inputs, params) {
    const corpus = inputs.tokens;
    validateTokenCorpus(corpus, 'Cannot pretrain on input "tokens"');
    const spec = params.model as ModelSpec;
    const { seqLen, batchSize, epochs, stepsPerEpoch } = params;
    const train = splitStream(corpus, "train");
    if (train.length < seqLen + 1) {
      throw new Error(
        `Cannot pretrain: the train split has ${train.length} tokens, fewer than seqLen + 1 = ${
          seqLen + 1
        }; lower "seqLen" or add data`,
      );
    }
    const validation = splitStream(corpus, "validation");
    const validationWindows = spreadWindows(
      validation,
      seqLen + 1,
      params.validationBatches * batchSize,
    );
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
    const loop: LoopState = {
      step: 0,
      bestNll: Infinity,
      badEpochs: 0,
      stopped: false,
      elapsedSec: 0,
    };
    const validateEvery = params.validateEvery > 0 ? params.validateEvery : stepsPerEpoch;
    const budgetSec = params.maxMinutes * 60;
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
        loop.elapsedSec = resumed.metrics.elapsedSec ?? 0;
        ctx.log.info(
          `Resuming from step ${loop.step} of ${totalSteps} ("${lastPath}", ${
            formatDuration(loop.elapsedSec)
          } trained so far)`,
        );
      } else {
        ctx.log.info(
          `Training a ${spec.type} of ${countParams(model)} parameters for ${totalSteps} steps ` +
            `of ${batchSize} x ${seqLen} tokens${transposing ? " with transposition" : ""}` +
            (budgetSec > 0 ? `, at most ${params.maxMinutes} minutes` : ""),
        );
      }

      const started = performance.now();
      const startStep = loop.step;
      /** Training seconds so far, earlier sessions included. */
      const elapsed = () => loop.elapsedSec + (performance.now() - started) / 1000;
      /** Seconds left: the steps left at this session's pace, capped by the budget. */
      const eta = () => {
        const done = loop.step - startStep;
        const bySteps = done > 0
          ? ((totalSteps - loop.step) * (performance.now() - started)) / 1000 / done
          : Infinity;
        return budgetSec > 0 ? Math.min(bySteps, budgetSec - elapsed()) : bySteps;
      };
      const snapshot = (metrics: Record<string, number>) =>
        checkpointFromModel(model, {
          component: spec.component,
          tokenizer: corpus.tokenizer,
          step: loop.step,
          optimizer,
          rngState: ctx.rng.getState(),
          metrics,
        });
      let savedStep = -1;
      const saveLast = async () => {
        const metrics: Record<string, number> = {
          badEpochs: loop.badEpochs,
          stopped: loop.stopped ? 1 : 0,
          elapsedSec: elapsed(),
        };
        if (Number.isFinite(loop.bestNll)) metrics.bestNll = loop.bestNll;
        await saveCheckpointFile(lastPath, await snapshot(metrics));
        savedStep = loop.step;
      };
      let validatedStep = -1;
      const validate = async (trainLoss: number) => {
        validatedStep = loop.step;
        if (validationWindows.length === 0) return;
        const nll = await validationNll(model, validationWindows, batchSize);
        const epoch = loop.step / stepsPerEpoch;
        ctx.metrics(loop.step, { "nll/validation": nll });
        checkValidationNll(nll, {
          epoch: Math.ceil(epoch),
          step: loop.step,
          vocabSize: corpus.vocabSize,
          lr: params.lr,
        });
        const improved = nll < loop.bestNll;
        ctx.log.info(
          `Step ${loop.step} of ${totalSteps} (epoch ${Number(epoch.toFixed(2))}): validation NLL ${
            nll.toFixed(4)
          } per token${improved ? " (best so far)" : ""}; ${formatDuration(elapsed())} trained, ${
            loop.step < totalSteps ? `about ${formatDuration(eta())} left` : "done"
          }`,
        );
        if (improved) {
          loop.bestNll = nll;
          loop.badEpochs = 0;
          await saveCheckpointFile(
            bestPath,
            await snapshot({ "nll/validation": nll, epoch, "loss/train": trainLoss }),
          );
        } else {
          loop.badEpochs++;
          if (params.patience > 0 && loop.badEpochs >= params.patience) {
            ctx.log.info(
              `Stopping early at step ${loop.step}: no better validation NLL for ${loop.badEpochs} validations`,
            );
            loop.stopped = true;
          }
        }
      };

      const window = new Int32Array(batchSize * (seqLen + 1));
      let lastLoss = NaN;
      while (loop.step < totalSteps && !loop.stopped) {
        if (budgetSec > 0 && elapsed() >= budgetSec) {
          ctx.log.info(
            `Stopping at step ${loop.step} of ${totalSteps}: the time budget of ${params.maxMinutes} minutes is spent`,
          );
          if (validatedStep !== loop.step && loop.step > startStep) await validate(lastLoss);
          loop.stopped = true;
          await saveLast();
          break;
        }
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
        const lr = learningRateAt(
          scheduleStep(loop.step, { ...schedule, elapsedSec: elapsed(), budgetSec }),
          schedule,
        );
        const windows = tf.tensor2d(window, [batchSize, seqLen + 1], "int32");
        const result = await optimizeStep(
          model,
          optimizer,
          () => nextTokenLoss(model, windows, { training: true, rng: ctx.rng }),
          { lr, clipNorm: params.clipNorm },
        );
        windows.dispose();
        loop.step++;
        lastLoss = result.loss;
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
            eta: formatDuration(eta()),
          },
        });

        if (loop.step % validateEvery === 0 || loop.step === totalSteps) {
          await validate(result.loss);
          await saveLast();
        } else if (loop.step % params.checkpointEvery === 0) {
          await saveLast();
        }
        if (ctx.signal.aborted) {
          if (savedStep !== loop.step) await saveLast();
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

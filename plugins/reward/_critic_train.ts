/**
 * Training the critic: a trainer (variables and AdamW), one step of binary
 * cross-entropy on a batch of real and generated pieces, and the critic
 * artifact made from a trainer.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { Rng } from "../../mod.ts";
import type { Tokenizer } from "../_music/components.ts";
import type { TensorData } from "../_tf/model.ts";
import { AdamW, clipByGlobalNorm } from "../_tf/optim.ts";
import {
  binaryCrossEntropy,
  type CriticBatch,
  criticForward,
  initCriticVariables,
  variablesFrom,
} from "./_critic.ts";
import type { Critic, CriticConfig } from "../_music/artifacts.ts";

/** A critic being trained: live variables and their optimizer. */
export interface CriticTrainer {
  config: CriticConfig;
  variables: Map<string, tf.Variable>;
  optimizer: AdamW;
}

/**
 * A trainer for a new critic, or one that continues a stored critic (weights
 * and AdamW moments). Release it with {@linkcode disposeTrainer}.
 *
 * @param from `{config, rng}` for fresh weights, or a critic to continue.
 * @param options AdamW weight decay.
 */
export function createTrainer(
  from: { config: CriticConfig; rng: Rng } | Critic,
  options: { weightDecay: number },
): CriticTrainer {
  const variables = "weights" in from
    ? variablesFrom(from)
    : initCriticVariables(from.config, from.rng);
  const optimizer = new AdamW(variables, { weightDecay: options.weightDecay, beta2: 0.99 });
  if ("weights" in from && from.optimizer) {
    try {
      optimizer.setState(from.optimizer);
    } catch (error) {
      disposeTrainer({ config: from.config, variables, optimizer });
      throw error;
    }
  }
  return { config: from.config, variables, optimizer };
}

/** Frees a trainer's variables and optimizer moments. */
export function disposeTrainer(trainer: CriticTrainer): void {
  trainer.optimizer.dispose();
  for (const v of trainer.variables.values()) v.dispose();
}

/** What one {@linkcode criticTrainStep} measured, on the batch before the update. */
export interface CriticStepResult {
  loss: number;
  /** Share of examples on the right side of logit 0. */
  accuracy: number;
  /** Mean σ(logit) of the real examples. */
  realScore: number;
  /** Mean σ(logit) of the generated examples. */
  fakeScore: number;
  /** True when the loss or gradient was not finite and nothing changed. */
  skipped: boolean;
}

/**
 * One AdamW step on a batch of real and generated sequences.
 *
 * @param trainer The critic being trained.
 * @param batch Packed sequences.
 * @param labels 1 for real, 0 for generated, per row.
 * @param options Learning rate, clipping norm, dropout, one-sided label smoothing, RNG.
 * @returns Loss and batch figures (measured with dropout on, before the update).
 */
export async function criticTrainStep(
  trainer: CriticTrainer,
  batch: CriticBatch,
  labels: readonly number[],
  options: { lr: number; clipNorm: number; dropout: number; labelSmoothing: number; rng: Rng },
): Promise<CriticStepResult> {
  const targets = tf.tensor1d(labels.map((y) => (y === 1 ? 1 - options.labelSmoothing : 0)));
  let logits: tf.Tensor1D | undefined;
  const names = [...trainer.variables.keys()];
  const { value, grads } = tf.variableGrads(() => {
    const z = criticForward(trainer.variables, trainer.config, batch, {
      training: true,
      dropout: options.dropout,
      rng: options.rng,
    });
    logits = tf.keep(z);
    return binaryCrossEntropy(z, targets);
  }, [...trainer.variables.values()]);
  const byName = new Map<string, tf.Tensor>();
  for (const name of names) {
    const g = grads[trainer.variables.get(name)!.name];
    if (g !== undefined) byName.set(name, g);
  }
  const loss = (await value.data())[0];
  const z = (await logits!.data()) as Float32Array;
  const { grads: clipped, norm } = await clipByGlobalNorm(byName, options.clipNorm);
  tf.dispose([value, targets, logits!, ...Object.values(grads)]);
  const skipped = !Number.isFinite(loss) || !Number.isFinite(norm);
  if (!skipped) trainer.optimizer.apply(clipped, options.lr);
  tf.dispose([...clipped.values()]);
  let right = 0, real = 0, fake = 0, reals = 0;
  labels.forEach((y, i) => {
    const p = 1 / (1 + Math.exp(-z[i]));
    if ((z[i] > 0) === (y === 1)) right++;
    if (y === 1) {
      real += p;
      reals++;
    } else fake += p;
  });
  return {
    loss,
    accuracy: right / labels.length,
    realScore: reals > 0 ? real / reals : NaN,
    fakeScore: labels.length > reals ? fake / (labels.length - reals) : NaN,
    skipped,
  };
}

/**
 * Stores a trainer's state as a critic artifact.
 *
 * @param trainer The trained critic.
 * @param extra The tokenizer and the figures to keep.
 */
export async function criticFromTrainer(
  trainer: CriticTrainer,
  extra: {
    tokenizer: Tokenizer;
    tokenizerSpec: Critic["tokenizerSpec"];
    metrics: Record<string, number>;
  },
): Promise<Critic> {
  const weights: Record<string, TensorData> = {};
  for (const [name, v] of trainer.variables) {
    weights[name] = { shape: [...v.shape], data: (await v.data()) as Float32Array };
  }
  return {
    config: structuredClone(trainer.config),
    tokenizerSpec: structuredClone(extra.tokenizerSpec),
    tokenizer: extra.tokenizer,
    step: trainer.optimizer.step,
    weights,
    optimizer: await trainer.optimizer.getState(),
    metrics: { ...extra.metrics },
  };
}

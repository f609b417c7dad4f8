import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { createRng } from "../../pipeline/rng.ts";
import { defaultParams, testContext } from "../_testing.ts";
import type { Piece } from "../_music/types.ts";
import performance from "../tokenizer/performance.ts";
import type { Tokenizer } from "../_music/components.ts";
import { initBackend } from "../_tf/backend.ts";
import {
  createTrainer,
  criticFromTrainer,
  criticTrainStep,
  disposeTrainer,
} from "./_critic_train.ts";
import {
  criticConfig,
  criticForward,
  criticLogits,
  initCriticVariables,
  packBatch,
} from "./_critic.ts";
import type { Critic, CriticConfig } from "../_music/artifacts.ts";
import { criticCodec } from "./_critic_codec.ts";

await initBackend("wasm");

const TINY: CriticConfig = criticConfig({
  vocabSize: 11,
  embedDim: 3,
  filters: 4,
  widths: [3, 1, 2],
  hiddenDim: 5,
  maxTokens: 9,
});

/**
 * The textbook n-gram CNN the critic must equal: embed the padded tokens,
 * concatenate k shifted slices, multiply by the kernel, ReLU, then mean and
 * max over the windows inside each sequence.
 */
function referenceLogits(
  w: Map<string, tf.Tensor>,
  config: CriticConfig,
  sequences: Int32Array[],
  padId: number,
): tf.Tensor1D {
  return tf.tidy(() => {
    const size = sequences.length;
    const time = Math.max(...sequences.map((s) => s.length));
    const maxK = Math.max(...config.widths);
    const padded = sequences.map((s) =>
      Array.from({ length: time + maxK - 1 }, (_, i) => (i < s.length ? s[i] : padId))
    );
    const d = config.embedDim;
    const x = tf.gather(w.get("embedding")!, tf.tensor2d(padded, undefined, "int32")); // [B, T+K-1, d]
    const means: tf.Tensor[] = [], maxes: tf.Tensor[] = [];
    for (const k of config.widths) {
      const slices = Array.from({ length: k }, (_, j) => tf.slice(x, [0, j, 0], [size, time, d]));
      const windows = tf.reshape(tf.concat(slices, 2), [size * time, k * d]);
      const h = tf.reshape(
        tf.relu(tf.add(tf.matMul(windows, w.get(`ngram/${k}/kernel`)!), w.get(`ngram/${k}/bias`)!)),
        [size, time, config.filters],
      );
      const inside = sequences.map((s) =>
        Array.from({ length: time }, (_, t): number => (t + k <= s.length ? 1 : 0))
      );
      const mask = tf.expandDims(tf.tensor2d(inside), 2);
      const masked = tf.mul(h, mask);
      const counts = tf.tensor2d(inside.map((row) => [Math.max(1, row.reduce((a, b) => a + b))]));
      means.push(tf.div(tf.sum(masked, 1), counts));
      maxes.push(tf.max(masked, 1));
    }
    const features = tf.concat([...means, ...maxes], 1);
    const hidden = tf.relu(tf.add(tf.matMul(features, w.get("head/kernel")!), w.get("head/bias")!));
    return tf.reshape(
      tf.add(tf.matMul(hidden, w.get("out/kernel")!), w.get("out/bias")!),
      [size],
    ) as tf.Tensor1D;
  });
}

Deno.test("criticForward() equals the textbook n-gram CNN, in value and gradient, with loops or tfjs ops", () => {
  const before = tf.memory().numTensors;
  const variables = initCriticVariables(TINY, createRng(4));
  // Biases away from 0, so ReLUs are not all off and the bias gradients mean something.
  for (const [name, v] of variables) {
    if (name.endsWith("bias")) tf.tidy(() => v.assign(tf.fill(v.shape, 0.3)));
  }
  // No token twice in a sequence: tied maxima would make the max-pool gradient ambiguous
  // (tfjs gives each tied window all of it, the critic one of them).
  const sequences = [
    Int32Array.of(1, 4, 2, 7, 3, 9),
    Int32Array.of(5, 2),
    Int32Array.of(8, 1, 6, 10, 2, 5, 4, 9, 3),
    Int32Array.of(6),
  ];
  const batch = packBatch(sequences, TINY, 0);
  const targets = tf.tensor1d([0.3, -1, 2, 0.5]);
  const list = [...variables.values()];
  const gradsOf = (logits: () => tf.Tensor1D) =>
    tf.variableGrads(() => tf.sum(tf.mul(logits(), targets)) as tf.Scalar, list);
  const reference = gradsOf(() => referenceLogits(variables, TINY, sequences, 0));
  for (const loops of [true, false]) {
    const ours = gradsOf(() =>
      criticForward(variables, TINY, batch, { training: false, dropout: 0, loops })
    );
    assert.ok(
      Math.abs(ours.value.dataSync()[0] - reference.value.dataSync()[0]) < 1e-5,
      `loops ${loops}: value ${ours.value.dataSync()[0]} vs ${reference.value.dataSync()[0]}`,
    );
    for (const v of list) {
      const a = ours.grads[v.name].dataSync(), b = reference.grads[v.name].dataSync();
      const worst = Math.max(...Array.from(a, (x, i) => Math.abs(x - b[i])));
      assert.ok(
        worst < 1e-5,
        `loops ${loops}: gradient of ${v.name} differs by ${worst}: ${a} vs ${b}`,
      );
      assert.ok(b.some((x) => x !== 0), "every weight gets some gradient");
    }
    tf.dispose([ours.value, ...Object.values(ours.grads)]);
  }
  tf.dispose([reference.value, ...Object.values(reference.grads), targets, ...list]);
  assert.equal(tf.memory().numTensors, before);
});

Deno.test("criticConfig() rejects repeated widths and windows longer than maxTokens", () => {
  const base = { vocabSize: 10, embedDim: 2, filters: 2, hiddenDim: 2, maxTokens: 8 };
  assert.throws(
    () => criticConfig({ ...base, widths: [2, 3, 2] }),
    /Cannot build critic: width 2 is listed twice in "widths"/,
  );
  assert.throws(
    () => criticConfig({ ...base, widths: [2, 16] }),
    /Cannot build critic: the widest window \(16 tokens\) is longer than "maxTokens" \(8\)/,
  );
  assert.deepEqual(criticConfig({ ...base, widths: [4, 1] }).widths, [1, 4]);
});

function melody(id: string, pitches: number[]): Piece {
  return {
    id,
    notes: pitches.map((pitch, i) => ({
      pitch,
      startSec: i * 0.25,
      endSec: i * 0.25 + 0.2,
      velocity: 60 + (i % 3) * 10,
    })),
    tempoBpm: 120,
    beatsPerBar: 4,
    beatsSec: Array.from({ length: pitches.length }, (_, i) => i * 0.5),
  };
}

async function trainedCritic(tokenizer: Tokenizer): Promise<Critic> {
  const config = criticConfig({
    vocabSize: tokenizer.vocabSize,
    embedDim: 8,
    filters: 8,
    widths: [2, 4],
    hiddenDim: 8,
    maxTokens: 64,
  });
  const rng = createRng(7);
  const trainer = createTrainer({ config, rng }, { weightDecay: 0.01 });
  const up = encode(tokenizer, melody("up", [60, 62, 64, 65, 67, 69]), config);
  const down = encode(tokenizer, melody("down", [72, 71, 69, 67, 65, 64]), config);
  for (let i = 0; i < 5; i++) {
    await criticTrainStep(trainer, packBatch([up, down], config, tokenizer.special.pad), [1, 0], {
      lr: 1e-2,
      clipNorm: 1,
      dropout: 0.1,
      labelSmoothing: 0,
      rng,
    });
  }
  const critic = await criticFromTrainer(trainer, {
    tokenizer,
    tokenizerSpec: tokenizer.spec as Critic["tokenizerSpec"],
    metrics: { "critic/accuracy": 1 },
  });
  disposeTrainer(trainer);
  return critic;
}

function encode(tokenizer: Tokenizer, piece: Piece, config: CriticConfig): Int32Array {
  return tokenizer.encode(piece).slice(0, config.maxTokens);
}

Deno.test("criticCodec round-trips a critic: same scores, weights, optimizer state and tokenizer", async () => {
  const before = tf.memory().numTensors;
  const tokenizer = performance.create(defaultParams(performance, { maxNoteSec: 2 }) as never);
  const critic = await trainedCritic(tokenizer);
  const pieces = [melody("a", [60, 64, 67, 72]), melody("b", [61, 62, 63]), melody("c", [])];
  const dir = await Deno.makeTempDir();
  await criticCodec.save(critic, dir);
  const back = await criticCodec.load(dir, testContext());
  assert.deepEqual(back.config, critic.config);
  assert.deepEqual(back.tokenizerSpec, critic.tokenizerSpec);
  assert.equal(back.tokenizer.vocabSize, tokenizer.vocabSize);
  assert.equal(back.step, 5);
  assert.equal(back.optimizer?.step, 5);
  assert.deepEqual(back.metrics, { "critic/accuracy": 1 });
  assert.deepEqual(back.weights, critic.weights);
  assert.deepEqual(back.optimizer, critic.optimizer);
  const scores = criticLogits(critic, pieces);
  assert.deepEqual(criticLogits(back, pieces), scores);
  // Scored one at a time or together, the same piece gets the same logit (padding is masked).
  assert.ok(Math.abs(criticLogits(critic, [pieces[1]])[0] - scores[1]) < 1e-5);
  assert.equal(tf.memory().numTensors, before);

  // Critics written before the format was renamed "harmonyrl/critic" still load.
  const indexText = await Deno.readTextFile(`${dir}/index.json`);
  assert.ok(indexText.includes('"format":"harmonyrl/critic"'));
  await Deno.writeTextFile(
    `${dir}/index.json`,
    indexText.replace('"format":"harmonyrl/critic"', '"format":"harmonyrl-critic"'),
  );
  const old = await criticCodec.load(dir, testContext());
  assert.deepEqual(old.weights, critic.weights);
  assert.deepEqual(old.optimizer, critic.optimizer);

  const bytes = await Deno.readFile(`${dir}/weights.bin`);
  await Deno.writeFile(`${dir}/weights.bin`, bytes.subarray(0, bytes.length - 4));
  await assert.rejects(
    () => criticCodec.load(dir),
    /Cannot load critic from ".*": "weights\.bin" holds \d+ bytes, expected \d+/,
  );
  await Deno.writeTextFile(`${dir}/index.json`, "{}");
  await assert.rejects(
    () => criticCodec.load(dir),
    /is not a harmonyrl\/critic index of version 1/,
  );
});

Deno.test("criticCodec names an index.json without its tensor list instead of failing inside it", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(
    `${dir}/index.json`,
    JSON.stringify({ format: "harmonyrl/critic", version: 1 }),
  );
  await assert.rejects(
    () => criticCodec.load(dir),
    /Cannot load critic from ".*": "index.json" lacks its "tensors" list/,
  );
});

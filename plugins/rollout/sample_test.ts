import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../_tf/backend.ts";
import { checkpointFromModel } from "../_tf/checkpoint.ts";
import { type SequenceModel } from "../_tf/model.ts";
import { buildTokenCorpus } from "../_music/token_corpus.ts";
import { createPerformanceTokenizer } from "../tokenizer/performance.ts";
import lstm from "../model/lstm.ts";
import transformer from "../model/transformer.ts";
import { createRng } from "../../pipeline/rng.ts";
import { defaultParams, testContext } from "../_testing.ts";
import plugin from "./sample.ts";
import { rolloutsCodec } from "./_codec.ts";
import type { Rollouts } from "../_music/artifacts.ts";
import { chooseToken, samplePolicy } from "../_tf/sampler.ts";

await initBackend("cpu");

const VOCAB = 17;

function tinyModels(vocab = VOCAB): [string, SequenceModel][] {
  return [
    [
      "lstm",
      lstm.create(defaultParams(lstm, { embedDim: 8, hiddenDim: 8, layers: 2 }) as never)
        .build(vocab, 1),
    ],
    [
      "transformer",
      transformer.create(
        defaultParams(transformer, {
          dModel: 16,
          heads: 2,
          layers: 1,
          ffDim: 16,
          maxLen: 64,
        }) as never,
      ).build(vocab, 1),
    ],
  ];
}

const near = (a: number, b: number) => Math.abs(a - b) < 1e-6;

Deno.test("chooseToken() follows temperature, top-k and top-p (hand-computed)", () => {
  const logits = Float32Array.from([1, 2, 3, 4].map(Math.log)); // probabilities .1 .2 .3 .4
  const base = { temperature: 1, topK: 0, topP: 1 };
  // Cumulative .1 .3 .6 1: u = .35 falls in token 2.
  let c = chooseToken(logits, { ...base, u: 0.35 });
  assert.equal(c.token, 2);
  assert.ok(near(c.logProb, Math.log(0.3)) && near(c.samplingLogProb, Math.log(0.3)));
  assert.equal(chooseToken(logits, { ...base, u: 0.05 }).token, 0);
  // Top-2 keeps tokens 3 (4/7) and 2 (3/7), in that order: u = .5 -> 3.5 of 7 falls in token 3.
  c = chooseToken(logits, { ...base, topK: 2, u: 0.5 });
  assert.equal(c.token, 3);
  assert.ok(near(c.logProb, Math.log(0.4)) && near(c.samplingLogProb, Math.log(4 / 7)));
  assert.equal(chooseToken(logits, { ...base, topK: 2, u: 0.6 }).token, 2);
  // Top-p 0.5: .4 < .5, .4 + .3 >= .5, so tokens 3 and 2 remain.
  c = chooseToken(logits, { ...base, topP: 0.5, u: 0.99 });
  assert.equal(c.token, 2);
  assert.ok(near(c.samplingLogProb, Math.log(3 / 7)));
  // Temperature 0.5 squares the probabilities: 1, 4, 9, 16 out of 30.
  c = chooseToken(logits, { ...base, temperature: 0.5, u: 0.5 });
  assert.equal(c.token, 3); // cumulative 1, 5, 14, 30: 15 falls in token 3
  assert.ok(near(c.samplingLogProb, Math.log(16 / 30)) && near(c.logProb, Math.log(0.4)));
  // Greedy: temperature 0 or top-1.
  for (const g of [{ ...base, temperature: 0 }, { ...base, topK: 1 }]) {
    c = chooseToken(logits, { ...g, u: 0.01 });
    assert.equal(c.token, 3);
    assert.equal(c.samplingLogProb, 0);
  }
});

Deno.test("chooseToken() at temperature 1 without truncation draws by the cumulative exponentials, exactly", () => {
  // The plain draw: weights exp(logit - max) in id order, the first whose running total
  // passes u·total; the same float64 operations as chooseToken's own, so exactly equal.
  const reference = (logits: Float32Array, u: number) => {
    const max = Math.max(...logits);
    const weights = Array.from(logits, (l) => Math.exp(l - max));
    const total = weights.reduce((a, b) => a + b, 0);
    let target = u * total, token = logits.length - 1;
    for (let i = 0; i < weights.length; i++) {
      target -= weights[i];
      if (target < 0) {
        token = i;
        break;
      }
    }
    const logZ = max + Math.log(total);
    return {
      token,
      logProb: logits[token] - logZ,
      samplingLogProb: Math.log(weights[token] / total),
    };
  };
  const rng = createRng(5);
  for (let trial = 0; trial < 200; trial++) {
    const logits = Float32Array.from({ length: 388 }, () => 6 * rng.next() - 3);
    const u = trial === 0 ? 0 : trial === 1 ? 1 - 2 ** -53 : rng.next();
    assert.deepEqual(
      chooseToken(logits, { temperature: 1, topK: 0, topP: 1, u }),
      reference(logits, u),
    );
  }
});

for (const [name, model] of tinyModels()) {
  Deno.test(`samplePolicy(${name}): same seed, same tokens; other seed, other tokens`, async () => {
    const run = (seed: number) =>
      samplePolicy(model, { count: 3, length: 12, rng: createRng(seed), startToken: 0 });
    const a = await run(5), b = await run(5), c = await run(6);
    assert.deepEqual(a.tokens, b.tokens);
    assert.deepEqual(a.logProbs, b.logProbs);
    assert.notDeepEqual(a.tokens, c.tokens);
    assert.equal(a.tokens[0].length, 13);
    assert.equal(a.tokens[0][0], 0);
  });

  Deno.test(`samplePolicy(${name}): top-k 1 is greedy decoding of the full forward pass`, async () => {
    const greedy = await samplePolicy(model, {
      count: 2,
      length: 8,
      rng: createRng(1),
      topK: 1,
      prompts: [Int32Array.of(3, 4), Int32Array.of(5, 6)],
    });
    const zeroTemp = await samplePolicy(model, {
      count: 2,
      length: 8,
      rng: createRng(2),
      temperature: 0,
      prompts: [Int32Array.of(3, 4), Int32Array.of(5, 6)],
    });
    assert.deepEqual(greedy.tokens, zeroTemp.tokens);
    assert.equal(greedy.promptLength, 2);
    const argmax = tf.tidy(() => {
      const input = tf.tensor2d(
        greedy.tokens.map((t) => Array.from(t.slice(0, -1))),
        undefined,
        "int32",
      );
      return tf.argMax(model.forward(input, { training: false }), 2).arraySync() as number[][];
    });
    for (let r = 0; r < 2; r++) {
      assert.deepEqual(Array.from(greedy.tokens[r].slice(2)), argmax[r].slice(1));
    }
  });

  Deno.test(`samplePolicy(${name}): log-probs equal a full forward pass and nothing leaks`, async () => {
    const before = tf.memory().numTensors;
    const s = await samplePolicy(model, {
      count: 3,
      length: 10,
      rng: createRng(3),
      temperature: 0.7,
      topK: 9,
      startToken: 1,
    });
    assert.equal(tf.memory().numTensors, before);
    const logP = tf.tidy(() => {
      const input = tf.tensor2d(
        s.tokens.map((t) => Array.from(t.slice(0, -1))),
        undefined,
        "int32",
      );
      return tf.logSoftmax(model.forward(input, { training: false })).arraySync() as number[][][];
    });
    let differs = false;
    for (let r = 0; r < 3; r++) {
      for (let t = 0; t < 10; t++) {
        const expected = logP[r][t][s.tokens[r][t + 1]];
        assert.ok(Math.abs(s.logProbs[r][t] - expected) < 1e-4, `row ${r} token ${t}`);
        if (Math.abs(s.samplingLogProbs[r][t] - expected) > 1e-3) differs = true;
        assert.ok(s.samplingLogProbs[r][t] <= 0);
      }
    }
    assert.ok(differs, "temperature 0.7 and top-9 must change the sampling distribution");
  });
}

Deno.test("samplePolicy() ends a sequence after its stop token, in batches", async () => {
  const [, model] = tinyModels()[0];
  // Stop on whatever the first sampled token of row 0 is, so that it surely ends early.
  const probe = await samplePolicy(model, {
    count: 4,
    length: 30,
    rng: createRng(8),
    startToken: 0,
  });
  const stop = probe.tokens[0][1];
  const s = await samplePolicy(model, {
    count: 4,
    length: 30,
    rng: createRng(8),
    startToken: 0,
    stopToken: stop,
    batchSize: 3,
  });
  assert.deepEqual(Array.from(s.tokens[0]), [0, stop]);
  for (let r = 0; r < 4; r++) {
    const body = Array.from(s.tokens[r].slice(1));
    const at = body.indexOf(stop);
    assert.equal(body.length, at >= 0 ? at + 1 : 30);
    assert.equal(s.logProbs[r].length, body.length);
  }
  await assert.rejects(
    () =>
      samplePolicy(model, {
        count: 2,
        length: 3,
        rng: createRng(1),
        prompts: [Int32Array.of(1), Int32Array.of(1, 2)],
      }),
    /same length/,
  );
});

Deno.test("rollout/sample runs on a checkpoint, primes from a corpus and round-trips its codec", async () => {
  const tokenizer = createPerformanceTokenizer();
  const spec = { use: "tokenizer/performance", with: {} };
  const model = lstm.create(defaultParams(lstm, { embedDim: 8, hiddenDim: 8 }) as never)
    .build(tokenizer.vocabSize, 2);
  const ckpt = await checkpointFromModel(model, { tokenizer: spec, step: 7 });
  model.dispose();
  const { bos, eos } = tokenizer.special;
  // Primer sequences: NOTE_ON_60, TIME_SHIFT, NOTE_OFF_60 ...
  const corpus = buildTokenCorpus({ tokenizer: spec, vocabSize: tokenizer.vocabSize }, [
    { id: "a", split: "train", tokens: [bos, 60, 300, 188, eos] },
    { id: "b", split: "validation", tokens: [bos, 64, 300, 192, 290, eos] },
    { id: "c", split: "validation", tokens: [bos, eos] },
  ]);
  const ctx = testContext({ seed: 4 });
  const params = defaultParams(plugin, { count: 3, length: 20, primerLen: 3 });
  const { rollouts } = await plugin.run(ctx, { model: ckpt, primer: corpus }, params as never) as {
    rollouts: Rollouts;
  };
  assert.equal(rollouts.tokens.length, 3);
  assert.equal(rollouts.primerLen, 3);
  for (let r = 0; r < 3; r++) {
    // Only "b" is a validation sequence longer than BOS + 3 tokens.
    assert.deepEqual(Array.from(rollouts.tokens[r].slice(0, 4)), [bos, 64, 300, 192]);
    assert.equal(rollouts.logProbs[r].length, rollouts.tokens[r].length - 4);
  }
  assert.equal(rollouts.pieces.length, 3);
  assert.equal(rollouts.pieces[0].id, "test-0");
  assert.equal(rollouts.pieces[0].notes[0]?.pitch, 64);
  assert.equal(rollouts.modelStep, 7);
  assert.ok(ctx.recorded.some((m) => m.values["rollout/tokens"] > 0));

  const dir = Deno.makeTempDirSync();
  await rolloutsCodec.save(rollouts, dir);
  const loaded = await rolloutsCodec.load(dir);
  assert.deepEqual(loaded, rollouts);
  // Rollouts cached before the format was renamed "harmonyrl/rollouts" still load.
  const index = JSON.parse(Deno.readTextFileSync(`${dir}/index.json`));
  assert.equal(index.format, "harmonyrl/rollouts");
  Deno.writeTextFileSync(
    `${dir}/index.json`,
    JSON.stringify({ ...index, format: "harmonyrl-rollouts" }),
  );
  assert.deepEqual(await rolloutsCodec.load(dir), rollouts);
  Deno.writeTextFileSync(`${dir}/index.json`, JSON.stringify({ ...index, version: 2 }));
  await assert.rejects(
    () => rolloutsCodec.load(dir),
    /Cannot load rollouts from ".*": "index.json" is not a harmonyrl\/rollouts index of version 1 \(found format "harmonyrl\/rollouts", version 2\)/,
  );
  Deno.removeSync(dir, { recursive: true });

  await assert.rejects(
    () => plugin.run(testContext(), { model: ckpt }, params as never),
    /primerLen is 3 but no "primer" input is connected/,
  );
});

Deno.test("rollout/sample flags a collapsed policy once per run, in the log and the manifest notes", async () => {
  const tokenizer = createPerformanceTokenizer();
  const spec = { use: "tokenizer/performance", with: {} };
  const model = lstm.create(defaultParams(lstm, { embedDim: 8, hiddenDim: 8 }) as never)
    .build(tokenizer.vocabSize, 2);
  // The output bias makes one TIME_SHIFT token certain: the policy writes no notes at all.
  const bias = model.variables.get("output/bias")!;
  const values = new Float32Array(tokenizer.vocabSize);
  values[300] = 60;
  bias.assign(tf.tensor1d(values));
  const ckpt = await checkpointFromModel(model, { tokenizer: spec, step: 1 });
  model.dispose();
  const ctx = testContext({ seed: 4 });
  const params = defaultParams(plugin, { count: 4, length: 32 });
  for (const iteration of [0, 1]) {
    await plugin.run({ ...ctx, iteration }, { model: ckpt }, params as never);
  }
  const warnings = ctx.logs.filter((l) => l.level === "warn");
  assert.equal(warnings.length, 1);
  assert.match(
    warnings[0].message,
    /^The policy looks collapsed at episode 1: 0\.0 notes per piece in 32 tokens .*; a mean log-probability of -?0\.0000 per token/,
  );
  assert.deepEqual(
    { ...(ctx.notes.collapse as Record<string, unknown>), reason: undefined },
    { first: 1, last: 2, episodes: 2, reason: undefined },
  );
  assert.equal(ctx.recorded[0].values["rollout/meanNotes"], 0);
  assert.ok(Number.isNaN(ctx.recorded[0].values["rollout/distinctNgrams"]));
});

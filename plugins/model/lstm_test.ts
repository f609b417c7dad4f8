import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../_tf/backend.ts";
import { AdamW } from "../_tf/optim.ts";
import { nextTokenLoss } from "../_tf/model.ts";
import { createRng } from "../../pipeline/rng.ts";
import { defaultParams } from "../_testing.ts";
import lstm, { lstmSequence } from "./lstm.ts";
import { maxAbsDiff } from "../_tf/testdata/numeric.ts";
import { hasNative, hasOpenBlas } from "../_tf/testdata/libraries.ts";
import { nativeLstm } from "../_tf/native.ts";
import {
  hasLstmSequenceKernels,
  useLstmSequenceKernels,
  useNativeLstmLoops,
} from "../_tf/lstm_kernels.ts";

await initBackend("cpu");

const VOCAB = 11;

function tinyLstm(seed = 3, dropout = 0) {
  return lstm.create(
    defaultParams(lstm, { embedDim: 6, hiddenDim: 8, layers: 2, dropout }) as never,
  ).build(VOCAB, seed);
}

function randomTokens(batch: number, time: number, seed: number): tf.Tensor2D {
  const rng = createRng(seed);
  const data = Int32Array.from({ length: batch * time }, () => rng.int(VOCAB));
  return tf.tensor2d(data, [batch, time], "int32");
}

/** LSTM from plain tfjs ops (autodiff), the reference for the hand-written gradient. */
function referenceLstm(x: tf.Tensor3D, wx: tf.Tensor2D, wh: tf.Tensor2D, b: tf.Tensor1D) {
  const [time, batch] = x.shape;
  const hidden = wh.shape[0];
  let h: tf.Tensor = tf.zeros([batch, hidden]);
  let c: tf.Tensor = tf.zeros([batch, hidden]);
  const hs: tf.Tensor[] = [];
  for (let t = 0; t < time; t++) {
    const xt = tf.squeeze(tf.slice(x, [t], [1]), [0]);
    const z = tf.add(tf.add(tf.matMul(xt, wx), tf.matMul(h, wh)), b);
    const [i, f, g, o] = tf.split(z, 4, 1);
    c = tf.add(tf.mul(tf.sigmoid(f), c), tf.mul(tf.sigmoid(i), tf.tanh(g)));
    h = tf.mul(tf.sigmoid(o), tf.tanh(c));
    hs.push(h);
  }
  return tf.stack(hs);
}

const CASES = [
  ["cpu", 1, true],
  ["cpu", 6, true],
  ["wasm", 6, true],
  ["cpu", 6, false],
  ["wasm", 6, false],
] as const;
for (const [backend, time, fused] of CASES) {
  const how = fused ? "fused kernels" : "composite ops";
  Deno.test(`lstmSequence() with ${how} equals autodiff through ${time} step(s) on ${backend}`, async () => {
    await initBackend(backend);
    try {
      checkAgainstAutodiff(time, fused);
    } finally {
      await initBackend("cpu");
    }
  });
}

/** Checks lstmSequence() against referenceLstm() on the current backend. */
function checkAgainstAutodiff(time: number, fused: boolean) {
  const before = tf.memory().numTensors;
  tf.tidy(() => {
    const rng = createRng(9);
    const n = (shape: number[]) => tf.randomNormal(shape, 0, 0.7, "float32", rng.seed());
    const x = n([time, 3, 5]) as tf.Tensor3D;
    const wx = n([5, 16]) as tf.Tensor2D;
    const wh = n([4, 16]) as tf.Tensor2D;
    const b = n([16]) as tf.Tensor1D;
    // A weighted sum makes every output position matter differently.
    const weight = n([time, 3, 4]);
    const ours = (...t: Parameters<typeof lstmSequence>) =>
      lstmSequence(t[0], t[1], t[2], t[3], { fused });
    const loss = (f: typeof lstmSequence) => (...t: tf.Tensor[]) =>
      tf.sum(
        tf.mul(
          f(t[0] as tf.Tensor3D, t[1] as tf.Tensor2D, t[2] as tf.Tensor2D, t[3] as tf.Tensor1D),
          weight,
        ),
      );
    assert.ok(maxAbsDiff(ours(x, wx, wh, b), referenceLstm(x, wx, wh, b)) < 1e-5);
    const grads = tf.grads(loss(ours))([x, wx, wh, b]);
    const ref = tf.grads(loss(referenceLstm as typeof lstmSequence))([x, wx, wh, b]);
    for (let i = 0; i < 4; i++) {
      assert.ok(maxAbsDiff(grads[i], ref[i]) < 1e-4, `gradient ${i} differs`);
      // With one step the recurrent kernel only ever meets h0 = 0.
      const trivial = time === 1 && i === 2;
      assert.equal(tf.max(tf.abs(ref[i])).dataSync()[0] > 1e-3, !trivial, `gradient ${i} size`);
    }
  });
  assert.equal(tf.memory().numTensors, before);
}

Deno.test("model/lstm forward gives [batch, time, vocab] logits and leaks nothing", () => {
  const model = tinyLstm();
  const tokens = randomTokens(3, 7, 1);
  const before = tf.memory().numTensors;
  const logits = model.forward(tokens, { training: false });
  assert.deepEqual(logits.shape, [3, 7, VOCAB]);
  logits.dispose();
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual(
    [...model.variables.keys()],
    [
      "embedding",
      "lstm/0/inputKernel",
      "lstm/0/recurrentKernel",
      "lstm/0/bias",
      "lstm/1/inputKernel",
      "lstm/1/recurrentKernel",
      "lstm/1/bias",
      "output/kernel",
      "output/bias",
    ],
  );
  assert.deepEqual(model.variables.get("lstm/1/inputKernel")!.shape, [8, 32]);
  tokens.dispose();
  model.dispose();
});

Deno.test("model/lstm step() by step() equals the full forward pass", () => {
  const model = tinyLstm();
  const tokens = randomTokens(2, 9, 4);
  const before = tf.memory().numTensors;
  const full = model.forward(tokens, { training: false }); // [B, T, V]
  let state = model.initState(2);
  const columns = tf.unstack(tokens, 1) as tf.Tensor1D[];
  for (let t = 0; t < 9; t++) {
    const { logits, state: next } = model.step(columns[t], state);
    tf.dispose(state);
    state = next;
    const expected = tf.tidy(() => tf.squeeze(tf.slice(full, [0, t, 0], [2, 1, VOCAB]), [1]));
    assert.ok(maxAbsDiff(logits, expected) < 1e-4, `step ${t} differs`);
    tf.dispose([logits, expected]);
  }
  tf.dispose([state, full, ...columns]);
  assert.equal(tf.memory().numTensors, before);
  tokens.dispose();
  model.dispose();
});

Deno.test("model/lstm: a few AdamW steps lower the loss on a tiny batch", () => {
  const model = tinyLstm(5, 0.1);
  const opt = new AdamW(model.variables, { weightDecay: 0.01 });
  const windows = randomTokens(2, 13, 8);
  const rng = createRng(2);
  const evalLoss = () =>
    tf.tidy(() => nextTokenLoss(model, windows, { training: false }).dataSync()[0]);
  const first = evalLoss();
  const before = tf.memory().numTensors;
  for (let i = 0; i < 15; i++) {
    const { value, grads } = tf.variableGrads(
      () => nextTokenLoss(model, windows, { training: true, rng }),
      [...model.variables.values()],
    );
    const byName = new Map([...model.variables].map(([n, v]) => [n, grads[v.name]]));
    opt.apply(byName, 0.03);
    tf.dispose([value, ...Object.values(grads)]);
  }
  assert.equal(tf.memory().numTensors, before);
  const last = evalLoss();
  assert.ok(first > Math.log(VOCAB) - 0.3, `initial loss ${first} should be near ln(${VOCAB})`);
  assert.ok(last < first - 0.3, `loss went from ${first} to ${last}`);
  opt.dispose();
  windows.dispose();
  model.dispose();
});

Deno.test("model/lstm: the same seed gives the same weights, another seed others", () => {
  const a = tinyLstm(7), b = tinyLstm(7), c = tinyLstm(8);
  const w = (m: ReturnType<typeof tinyLstm>) => m.variables.get("lstm/0/recurrentKernel")!;
  assert.equal(maxAbsDiff(w(a), w(b)), 0);
  assert.ok(maxAbsDiff(w(a), w(c)) > 0);
  for (const m of [a, b, c]) m.dispose();
});

Deno.test("model/lstm dropout without an rng fails with a clear message", () => {
  const model = tinyLstm(1, 0.5);
  const tokens = randomTokens(1, 3, 1);
  assert.throws(() => model.forward(tokens, { training: true }), /training needs an rng/);
  tokens.dispose();
  model.dispose();
});

/**
 * An LSTM layer's output, loss and gradients (output, loss, dx, dWx, dWh, db) on random inputs
 * (seeded: the same every call), computed by lstmSequence with `options`.
 */
function outputAndGradients(
  seed: number,
  [time, batch, inDim, hidden]: number[],
  options: { fused: boolean },
): Float32Array[] {
  return tf.tidy(() => {
    const rng = createRng(seed);
    const n = (shape: number[]) => tf.randomNormal(shape, 0, 1.5, "float32", rng.seed());
    const inputs = [
      n([time, batch, inDim]),
      n([inDim, 4 * hidden]),
      n([hidden, 4 * hidden]),
      n([4 * hidden]),
    ] as [tf.Tensor3D, tf.Tensor2D, tf.Tensor2D, tf.Tensor1D];
    const weight = n([time, batch, hidden]);
    const f = (...t: tf.Tensor[]) =>
      tf.sum(tf.mul(lstmSequence(...(t as typeof inputs), options), weight));
    const { value, grads } = tf.valueAndGrads(f)(inputs);
    return [lstmSequence(...inputs, options), value, ...grads].map((t) =>
      t.dataSync() as Float32Array
    );
  });
}

const GRADIENT_NAMES = ["output", "loss", "dx", "dWx", "dWh", "db"];

for (
  const [backend, native] of [["cpu", false], ["wasm", false], ["cpu", true], [
    "wasm",
    true,
  ]] as const
) {
  const loops = native ? "native loops" : "TypeScript loops";
  Deno.test({
    name:
      `lstmSequence(): fused kernels with ${loops} equal the composite ops bit for bit on ${backend}${
        native ? " (needs cc)" : ""
      }`,
    ignore: native && !hasNative,
    fn: async () => {
      await initBackend(backend);
      useNativeLstmLoops(native);
      assert.equal(nativeLstm() !== null, native || hasNative, "the native loops are loaded");
      try {
        const shape = [7, 5, 6, 9]; // time, batch, in, hidden
        const fused = outputAndGradients(21, shape, { fused: true });
        const composite = outputAndGradients(21, shape, { fused: false });
        fused.forEach((values, i) =>
          assert.deepEqual(
            values,
            composite[i],
            `${GRADIENT_NAMES[i]} differs between fused and composite`,
          )
        );
      } finally {
        useNativeLstmLoops(true);
        await initBackend("cpu");
      }
    },
  });
}

Deno.test({
  name:
    "lstmSequence() on wasm-openblas: one kernel call per sequence equals the per-step kernels and the composite ops bit for bit (needs OpenBLAS and cc)",
  ignore: !hasOpenBlas || !hasNative,
  fn: async () => {
    await initBackend("wasm-openblas");
    try {
      // Hidden 32: Wh and Whᵀ are packed into panels; hidden 9: neither is (4H = 36).
      for (const hidden of [32, 9]) {
        const shape = [7, 5, 6, hidden]; // time, batch, in, hidden
        const run = (fused: boolean, wholeSequence: boolean) => {
          useLstmSequenceKernels(wholeSequence);
          assert.equal(hasLstmSequenceKernels(), wholeSequence);
          return outputAndGradients(22, shape, { fused });
        };
        const whole = run(true, true), perStep = run(true, false), composite = run(false, false);
        whole.forEach((values, i) => {
          const name = `H ${hidden}: ${GRADIENT_NAMES[i]}`;
          assert.deepEqual(values, perStep[i], `${name} differs from per step`);
          assert.deepEqual(values, composite[i], `${name} differs from ops`);
        });
      }
    } finally {
      useLstmSequenceKernels(true);
      await initBackend("cpu");
    }
  },
});

/**
 * One process, one wasm runtime: starts `wasm` with the thread count given as the first
 * argument, runs two AdamW steps of the default graph's LSTM (embed 64, hidden 192) and of a
 * small Transformer on fixed windows, and prints JSON with the backend detail, the first
 * window's logits, the first gradient norm and the losses. `wasm_threads_test.ts` compares a
 * threaded run with a single-threaded one; the wasm build is chosen once per process, hence
 * a process each.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "../backend.ts";
import { type ModelSpec, nextTokenLoss } from "../model.ts";
import { AdamW, optimizeStep } from "../optim.ts";
import lstm from "../../model/lstm.ts";
import transformer from "../../model/transformer.ts";
import { defaultParams } from "../../_testing.ts";

const VOCAB = 388;
const BATCH = 8;
const TIME = 32;

const SPECS: Record<string, () => ModelSpec> = {
  lstm: () =>
    lstm.create(
      defaultParams(lstm, { embedDim: 64, hiddenDim: 192, layers: 1, dropout: 0 }) as never,
    ) as ModelSpec,
  transformer: () =>
    transformer.create(
      defaultParams(transformer, {
        dModel: 64,
        layers: 2,
        heads: 4,
        ffDim: 256,
        dropout: 0,
      }) as never,
    ) as ModelSpec,
};

const info = await initBackend("wasm", { wasmThreads: Number(Deno.args[0]) });
const windows = tf.tensor2d(
  Array.from(
    { length: BATCH },
    (_, b) => Array.from({ length: TIME }, (_, t) => (b * 37 + t * t * 11) % VOCAB),
  ),
  undefined,
  "int32",
); // [batch, time]
const out: Record<string, unknown> = { detail: info.detail };
for (const [kind, spec] of Object.entries(SPECS)) {
  const model = spec().build(VOCAB, 7);
  const optimizer = new AdamW(model.variables);
  const logits = tf.tidy(() => model.forward(windows, { training: false })); // [batch, time, vocab]
  const firstLogits = Array.from((await logits.data()).subarray(0, TIME * VOCAB));
  logits.dispose();
  const losses: number[] = [];
  let gradNorm = NaN;
  for (let i = 0; i < 2; i++) {
    const result = await optimizeStep(
      model,
      optimizer,
      () => nextTokenLoss(model, windows, { training: false }),
      { lr: 0.01, clipNorm: 1 },
    );
    losses.push(result.loss);
    if (i === 0) gradNorm = result.gradNorm;
  }
  out[kind] = { firstLogits, gradNorm, losses };
  optimizer.dispose();
  model.dispose();
}
windows.dispose();
console.log(JSON.stringify(out));

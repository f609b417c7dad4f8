// The same model step on every backend that loads here: cpu (the reference), wasm,
// wasm-openblas and webgpu (a software adapter is allowed for this check). Both model plugins,
// the full path the pretrain stage uses: forward, cross-entropy, gradients, clipping, AdamW.
import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { type BackendName, initBackend } from "../plugins/_tf/backend.ts";
import { AdamW, optimizeStep } from "../plugins/_tf/optim.ts";
import { type ModelSpec, nextTokenLoss } from "../plugins/_tf/model.ts";
import lstm from "../plugins/model/lstm.ts";
import transformer from "../plugins/model/transformer.ts";
import { defaultParams } from "../plugins/_testing.ts";
import { hasOpenBlas } from "../plugins/_tf/testdata/libraries.ts";

const hasGpu = await (async () => {
  try {
    const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
    return (await gpu?.requestAdapter()) != null;
  } catch {
    return false;
  }
})();

const VOCAB = 24;
const WINDOWS = [
  [1, 5, 9, 5, 1, 5, 9, 5, 1, 7],
  [3, 3, 8, 12, 20, 8, 3, 3, 8, 12],
];

const SPECS: Record<string, () => ModelSpec> = {
  lstm: () =>
    lstm.create(
      defaultParams(lstm, { embedDim: 8, hiddenDim: 12, layers: 2, dropout: 0 }) as never,
    ) as ModelSpec,
  transformer: () =>
    transformer.create(
      defaultParams(transformer, {
        dModel: 16,
        layers: 2,
        heads: 2,
        ffDim: 32,
        dropout: 0,
      }) as never,
    ) as ModelSpec,
};

/**
 * On `backend`: the first window's logits from fresh weights, the gradient's global norm, and
 * the loss before and after two AdamW steps.
 */
async function stepOn(backend: BackendName, kind: string) {
  await initBackend(backend, { allowFallbackAdapter: true });
  const before = tf.memory().numTensors;
  const model = SPECS[kind]().build(VOCAB, 7);
  const optimizer = new AdamW(model.variables);
  const windows = tf.tensor2d(WINDOWS, undefined, "int32");
  const logits = tf.tidy(() => model.forward(windows, { training: false })); // [2, 10, vocab]
  const initialLogits = Array.from(await logits.data());
  logits.dispose();
  const losses: number[] = [];
  let firstGradNorm = NaN;
  for (let i = 0; i < 2; i++) {
    const result = await optimizeStep(
      model,
      optimizer,
      () => nextTokenLoss(model, windows, { training: false }),
      { lr: 0.01, clipNorm: 1 },
    );
    losses.push(result.loss);
    if (i === 0) firstGradNorm = result.gradNorm;
  }
  const after = tf.tidy(() => nextTokenLoss(model, windows, { training: false }));
  losses.push((await after.data())[0]);
  tf.dispose([after, windows]);
  optimizer.dispose();
  model.dispose();
  assert.equal(tf.memory().numTensors, before, `tensors leaked on ${backend}`);
  return { losses, initialLogits, gradNorm: firstGradNorm };
}

const BACKENDS: { name: BackendName; ignore: boolean; note: string }[] = [
  { name: "wasm", ignore: false, note: "" },
  { name: "wasm-openblas", ignore: !hasOpenBlas, note: " (needs OpenBLAS)" },
  { name: "webgpu", ignore: !hasGpu, note: " (needs a WebGPU adapter)" },
];

for (const kind of Object.keys(SPECS)) {
  for (const backend of BACKENDS) {
    Deno.test({
      name: `model/${kind}: a training step on ${backend.name} equals cpu${backend.note}`,
      ignore: backend.ignore,
      sanitizeOps: backend.name !== "webgpu",
      sanitizeResources: backend.name !== "webgpu",
      fn: async () => {
        const cpu = await stepOn("cpu", kind);
        const other = await stepOn(backend.name, kind);
        assert.ok(cpu.losses[2] < cpu.losses[0], `the step learns: ${cpu.losses}`);
        cpu.losses.forEach((l, i) =>
          assert.ok(
            Math.abs(other.losses[i] - l) < 2e-3,
            `loss ${i}: ${other.losses[i]} vs cpu ${l}`,
          )
        );
        cpu.initialLogits.forEach((v, i) =>
          assert.ok(
            Math.abs(other.initialLogits[i] - v) < 1e-4,
            `logit ${i}: ${other.initialLogits[i]} vs cpu ${v}`,
          )
        );
        assert.ok(
          Math.abs(other.gradNorm - cpu.gradNorm) < 1e-3 * cpu.gradNorm,
          `gradient norm ${other.gradNorm} vs cpu ${cpu.gradNorm}`,
        );
      },
    });
  }
}

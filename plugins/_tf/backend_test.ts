import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { type BackendName, initBackend } from "./backend.ts";
import { lcg } from "./testdata/numeric.ts";
import { hasOpenBlas } from "./testdata/libraries.ts";

/** Any WebGPU adapter, software ones included (Mesa llvmpipe on CI-like machines). */
const gpuAdapter = await (async () => {
  const gpu = (navigator as unknown as { gpu?: { requestAdapter(): Promise<unknown> } }).gpu;
  try {
    return (await gpu?.requestAdapter()) ?? null;
  } catch {
    return null;
  }
})();
const softwareAdapter = (gpuAdapter as { info?: { isFallbackAdapter?: boolean } } | null)?.info
  ?.isFallbackAdapter === true;

const tfjsNodeMapped = (() => {
  try {
    import.meta.resolve("@tensorflow/tfjs-node-gpu");
    return true;
  } catch {
    return false;
  }
})();

Deno.test("initBackend() rejects an unknown name and lists the valid ones", async () => {
  await assert.rejects(
    () => initBackend("tpu" as BackendName),
    /^Error: Cannot start backend "tpu": unknown name, expected one of "auto", "tfjs-node-gpu"/,
  );
});

Deno.test('initBackend("cpu") selects cpu and a second call returns the same result', async () => {
  const first = await initBackend("cpu");
  assert.deepEqual(first, {
    name: "cpu",
    requested: "cpu",
    detail: "pure JavaScript",
    reason: "named in the config",
    skipped: [],
    tfBackend: "cpu",
  });
  assert.equal(tf.getBackend(), "cpu");
  await initBackend("wasm");
  assert.equal(tf.getBackend(), "wasm");
  assert.equal(await initBackend("cpu"), first);
  assert.equal(tf.getBackend(), "cpu");
});

Deno.test({
  name: 'initBackend("tfjs-node-gpu") says it is not installed and how to install it',
  ignore: tfjsNodeMapped,
  fn: async () => {
    await assert.rejects(
      () => initBackend("tfjs-node-gpu"),
      /Cannot start backend "tfjs-node-gpu": "@tensorflow\/tfjs-node-gpu" is not installed: add/,
    );
  },
});

Deno.test({
  name: 'initBackend("webgpu") skips a software adapter unless allowed (needs a software adapter)',
  ignore: !softwareAdapter,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    await assert.rejects(
      () => initBackend("webgpu"),
      /Cannot start backend "webgpu": software adapter ".*" skipped, it is far slower than wasm/,
    );
    const lines: string[] = [];
    const auto = await initBackend("auto", { log: (msg) => lines.push(msg) });
    assert.notEqual(auto.name, "webgpu");
    const webgpu = auto.skipped.find((s) => s.name === "webgpu");
    assert.match(
      webgpu?.reason ?? "",
      /^software adapter ".*" skipped, it is far slower than wasm/,
    );
    assert.ok(lines.includes(`skipped "webgpu": ${webgpu!.reason}`));
  },
});

Deno.test('initBackend("auto") picks wasm-openblas when OpenBLAS loads, else wasm', async () => {
  const lines: string[] = [];
  const info = await initBackend("auto", { log: (msg) => lines.push(msg) });
  if (!tfjsNodeMapped && !(gpuAdapter !== null && !softwareAdapter)) {
    assert.equal(info.name, hasOpenBlas ? "wasm-openblas" : "wasm");
  }
  assert.equal(info.requested, "auto");
  assert.equal(info.reason, '"auto" picked the fastest that starts here');
  assert.equal(tf.getBackend(), info.tfBackend);
  // The log gets one line per backend skipped, in auto's order, and nothing else.
  assert.deepEqual(lines, info.skipped.map((s) => `skipped "${s.name}": ${s.reason}`));
  const order = ["tfjs-node-gpu", "tfjs-node", "webgpu", "wasm-openblas", "wasm", "cpu"];
  assert.deepEqual(
    info.skipped.map((s) => s.name),
    order.slice(0, order.indexOf(info.name)),
  );
  assert.doesNotMatch(info.detail, /skipped/);
  assert.equal(await initBackend("auto"), info);
});

Deno.test({
  name: 'initBackend("wasm-openblas") reports the library (needs OpenBLAS)',
  ignore: !hasOpenBlas,
  fn: async () => {
    const info = await initBackend("wasm-openblas");
    assert.equal(info.tfBackend, "wasm");
    assert.match(info.detail, /^OpenBLAS via \S+/);
    assert.equal(tf.getBackend(), "wasm");
  },
});

const VOCAB = 11;
const DIM = 8;
const IDS = [[1, 4, 4, 9, 0], [7, 2, 10, 1, 3]]; // [batch 2, time 5]
const TARGETS = [[4, 4, 9, 0, 5], [2, 10, 1, 3, 3]];
const INIT = {
  embedding: lcg(VOCAB * DIM, 11, 0.5),
  kernel: lcg(DIM * VOCAB, 12, 0.5),
  bias: lcg(VOCAB, 13, 0.1),
};

/**
 * Embedding -> tanh -> dense -> softmax cross-entropy, three plain SGD steps
 * from a fixed init. Returns the loss before each step.
 */
async function trainLosses(): Promise<number[]> {
  const before = tf.memory().numTensors;
  const params: tf.Tensor[] = [
    tf.tensor2d(INIT.embedding, [VOCAB, DIM]),
    tf.tensor2d(INIT.kernel, [DIM, VOCAB]),
    tf.tensor1d(INIT.bias),
  ];
  const ids = tf.tensor2d(IDS, [2, 5], "int32");
  const targets = tf.tidy(() => tf.oneHot(tf.tensor2d(TARGETS, [2, 5], "int32"), VOCAB)); // [2, 5, vocab]
  const lossFn = (embedding: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor) => {
    const h = tf.tanh(tf.gather(embedding, ids)); // [2, 5, dim]
    const logits = tf.add(tf.matMul(h, kernel), bias); // [2, 5, vocab]
    return tf.losses.softmaxCrossEntropy(targets, logits);
  };
  const losses: number[] = [];
  for (let step = 0; step < 3; step++) {
    const { value, grads } = tf.valueAndGrads(lossFn)(params);
    losses.push((await value.data())[0]);
    const next = tf.tidy(() => params.map((p, i) => tf.sub(p, tf.mul(grads[i], 0.5))));
    tf.dispose([value, ...grads, ...params]);
    params.splice(0, params.length, ...next);
  }
  tf.dispose([...params, ids, targets]);
  assert.equal(tf.memory().numTensors, before, `tensors leaked on ${tf.getBackend()}`);
  return losses;
}

async function lossesOn(name: BackendName): Promise<number[]> {
  await initBackend(name, { allowFallbackAdapter: true });
  return await trainLosses();
}

Deno.test("a small training step gives the same losses on cpu and wasm, and learns", async () => {
  const cpu = await lossesOn("cpu");
  const wasm = await lossesOn("wasm");
  // Uniform prediction over 11 tokens gives ln 11 = 2.398; the init is near it.
  assert.ok(Math.abs(cpu[0] - Math.log(VOCAB)) < 0.5, `initial loss ${cpu[0]}`);
  assert.ok(cpu[2] < cpu[0], `loss did not fall: ${cpu}`);
  cpu.forEach((l, i) =>
    assert.ok(Math.abs(wasm[i] - l) < 1e-5, `step ${i}: wasm ${wasm[i]} vs cpu ${l}`)
  );
});

Deno.test({
  name: "a small training step gives the same losses on wasm-openblas and cpu (needs OpenBLAS)",
  ignore: !hasOpenBlas,
  fn: async () => {
    const cpu = await lossesOn("cpu");
    const blas = await lossesOn("wasm-openblas");
    cpu.forEach((l, i) => assert.ok(Math.abs(blas[i] - l) < 1e-5, `step ${i}: ${blas[i]} vs ${l}`));
  },
});

Deno.test({
  name: "a small training step gives the same losses on webgpu and cpu (needs a WebGPU adapter)",
  ignore: gpuAdapter === null,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const cpu = await lossesOn("cpu");
    const gpu = await lossesOn("webgpu");
    cpu.forEach((l, i) => assert.ok(Math.abs(gpu[i] - l) < 1e-4, `step ${i}: ${gpu[i]} vs ${l}`));
  },
});

import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "./backend.ts";
import { isWasmMatMulInstalled, uninstallWasmMatMul } from "./wasm_matmul.ts";
import { CASES, referenceMatMul } from "./testdata/matmul_cases.ts";
import { assertClose, lcg, runOn } from "./testdata/numeric.ts";

const size = (shape: number[]) => shape.reduce((p, d) => p * d, 1);

Deno.test("plain wasm matMuls (transposed, batched, folded) equal the reference within 1e-4", async () => {
  for (const [i, c] of CASES.entries()) {
    if (c.stockWrong) continue;
    const a = lcg(size(c.a), 10 + i);
    const b = lcg(size(c.b), 100 + i);
    const expected = referenceMatMul(c.a, a, c.b, b, c.transposeA ?? false, c.transposeB ?? false);
    const [wasm] = await runOn(
      "wasm",
      () => tf.matMul(tf.tensor(a, c.a), tf.tensor(b, c.b), c.transposeA, c.transposeB),
    );
    assert.ok(isWasmMatMulInstalled());
    assertClose(wasm, expected, 1e-4, `${c.name} on wasm`);
  }
});

Deno.test("plain wasm: a product the rewrite folds keeps its output shape", async () => {
  await initBackend("wasm");
  const out = tf.tidy(() => tf.matMul(tf.ones([2, 3, 4, 5]), tf.ones([6, 5]), false, true));
  assert.deepEqual(out.shape, [2, 3, 4, 6]);
  assert.deepEqual(Array.from(new Set(await out.data())), [5]);
  out.dispose();
});

Deno.test("plain wasm: fused matMul with bias and activation equals cpu", async () => {
  const a = lcg(2 * 5 * 6, 4);
  const b = lcg(6 * 3, 5);
  const bias = lcg(3, 6);
  for (const activation of ["linear", "relu", "sigmoid", "leakyrelu"] as const) {
    for (const transposeB of [false, true]) {
      const f = () =>
        tf.fused.matMul({
          a: tf.tensor3d(a, [2, 5, 6]),
          b: transposeB ? tf.tensor2d(b, [3, 6]) : tf.tensor2d(b, [6, 3]),
          transposeB,
          bias: tf.tensor1d(bias),
          activation,
          leakyreluAlpha: 0.3,
        });
      const [wasm] = await runOn("wasm", f);
      const [cpu] = await runOn("cpu", f);
      assertClose(wasm, cpu, 1e-4, `${activation}, transposeB ${transposeB}`);
    }
  }
});

Deno.test("plain wasm: gradients through dense and attention-like products equal cpu", async () => {
  const a = lcg(3 * 6 * 4, 1);
  const b = lcg(4 * 5, 2);
  const c = lcg(3 * 5 * 7, 3);
  const f = () =>
    tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => {
      const h = tf.tanh(tf.matMul(x, y)); // [3, 6, 4] @ [4, 5] = [3, 6, 5]
      const att = tf.matMul(h, h, false, true); // [3, 6, 6]
      return tf.sum(tf.square(tf.matMul(tf.matMul(att, h), z))); // [3, 6, 5] @ [3, 5, 7]
    })([tf.tensor3d(a, [3, 6, 4]), tf.tensor2d(b, [4, 5]), tf.tensor3d(c, [3, 5, 7])]);
  const wasm = await runOn("wasm", f);
  const cpu = await runOn("cpu", f);
  for (const [i, name] of ["dx", "dy", "dz"].entries()) assertClose(wasm[i], cpu[i], 1e-4, name);
});

Deno.test("uninstallWasmMatMul() restores the stock kernels and the backend reinstalls them", async () => {
  await initBackend("wasm");
  const ours = tf.getKernel("BatchMatMul", "wasm")!.kernelFunc;
  uninstallWasmMatMul();
  assert.ok(!isWasmMatMulInstalled());
  assert.notEqual(tf.getKernel("BatchMatMul", "wasm")!.kernelFunc, ours);
  await initBackend("wasm");
  assert.ok(isWasmMatMulInstalled());
});

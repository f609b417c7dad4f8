import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "./backend.ts";
import { CASES, referenceMatMul } from "./testdata/matmul_cases.ts";
import { assertClose, lcg, runOn } from "./testdata/numeric.ts";
import {
  installOpenBlasMatMul,
  isOpenBlasMatMulInstalled,
  loadOpenBlas,
  setOpenBlasThreads,
  uninstallOpenBlasMatMul,
} from "./openblas.ts";
import { hasNative, hasOpenBlas } from "./testdata/libraries.ts";

Deno.test({
  name:
    "OpenBLAS BatchMatMul equals the reference, stock wasm and cpu within 1e-4 (needs OpenBLAS)",
  ignore: !hasOpenBlas,
  fn: async () => {
    for (const [i, c] of CASES.entries()) {
      const size = (s: number[]) => s.reduce((p, d) => p * d, 1);
      const a = lcg(size(c.a), 10 + i);
      const b = lcg(size(c.b), 100 + i);
      const expected = referenceMatMul(
        c.a,
        a,
        c.b,
        b,
        c.transposeA ?? false,
        c.transposeB ?? false,
      );
      const f = () => tf.matMul(tf.tensor(a, c.a), tf.tensor(b, c.b), c.transposeA, c.transposeB);
      const [blas] = await runOn("wasm-openblas", f);
      assertClose(blas, expected, 1e-4, `${c.name} on wasm-openblas`);
      if (!c.stockWrong) {
        const [wasm] = await runOn("wasm", f);
        const [cpu] = await runOn("cpu", f);
        assertClose(wasm, expected, 1e-4, `${c.name} on wasm`);
        assertClose(cpu, expected, 1e-4, `${c.name} on cpu`);
      }
    }
  },
});

Deno.test({
  name: "gradients through batched and transposed matMuls on OpenBLAS equal cpu (needs OpenBLAS)",
  ignore: !hasOpenBlas,
  fn: async () => {
    const a = lcg(3 * 6 * 4, 1);
    const b = lcg(4 * 5, 2);
    const c = lcg(3 * 5 * 7, 3);
    const f = () =>
      tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) => {
        const h = tf.tanh(tf.matMul(x, y)); // [3, 6, 4] @ [4, 5] = [3, 6, 5]
        const att = tf.matMul(h, h, false, true); // [3, 6, 6]
        return tf.sum(tf.square(tf.matMul(tf.matMul(att, h), z))); // [3, 6, 5] @ [3, 5, 7]
      })([tf.tensor3d(a, [3, 6, 4]), tf.tensor2d(b, [4, 5]), tf.tensor3d(c, [3, 5, 7])]);
    const blas = await runOn("wasm-openblas", f);
    const cpu = await runOn("cpu", f);
    for (const [i, name] of ["dx", "dy", "dz"].entries()) assertClose(blas[i], cpu[i], 1e-4, name);
  },
});

Deno.test({
  name: "fused matMul with bias and activation on OpenBLAS equals cpu (needs OpenBLAS)",
  ignore: !hasOpenBlas,
  fn: async () => {
    const a = lcg(2 * 5 * 6, 4);
    const b = lcg(2 * 6 * 3, 5);
    const bias = lcg(3, 6);
    const alpha = lcg(3, 7);
    const activations = [
      "linear",
      "relu",
      "relu6",
      "elu",
      "sigmoid",
      "leakyrelu",
      "prelu",
    ] as const;
    for (const activation of activations) {
      const f = () =>
        tf.fused.matMul({
          a: tf.tensor3d(a, [2, 5, 6]),
          b: tf.tensor3d(b, [2, 3, 6]),
          transposeB: true,
          bias: tf.tensor1d(bias),
          activation,
          preluActivationWeights: activation === "prelu" ? tf.tensor1d(alpha) : undefined,
          leakyreluAlpha: 0.3,
        });
      const [blas] = await runOn("wasm-openblas", f);
      const [cpu] = await runOn("cpu", f);
      assertClose(blas, cpu, 1e-4, activation);
    }
  },
});

Deno.test({
  name: "uninstallOpenBlasMatMul() restores the stock kernels (needs OpenBLAS)",
  ignore: !hasOpenBlas,
  fn: async () => {
    await initBackend("wasm");
    const stock = tf.getKernel("BatchMatMul", "wasm")!.kernelFunc;
    installOpenBlasMatMul();
    assert.ok(isOpenBlasMatMulInstalled());
    assert.notEqual(tf.getKernel("BatchMatMul", "wasm")!.kernelFunc, stock);
    installOpenBlasMatMul(); // idempotent
    uninstallOpenBlasMatMul();
    assert.ok(!isOpenBlasMatMulInstalled());
    assert.equal(tf.getKernel("BatchMatMul", "wasm")!.kernelFunc, stock);
  },
});

Deno.test({
  name: "setOpenBlasThreads() rejects a bad count and sets a good one (needs OpenBLAS)",
  ignore: !hasOpenBlas,
  fn: () => {
    assert.throws(() => setOpenBlasThreads(0), /Cannot set OpenBLAS threads to "0"/);
    const info = loadOpenBlas();
    if (info.threads === null) return; // Accelerate: no thread control
    assert.equal(setOpenBlasThreads(1), true);
    assert.equal(loadOpenBlas().threads, 1);
    setOpenBlasThreads(info.threads);
  },
});

Deno.test({
  name: "loadOpenBlas() names the library it could not open (needs --allow-ffi)",
  ignore: Deno.permissions.querySync({ name: "ffi" }).state !== "granted",
  fn: () => {
    assert.throws(
      () => loadOpenBlas("/nonexistent/libopenblas.so"),
      (e: Error) =>
        e.message.startsWith(
          hasOpenBlas ? 'Cannot load "/nonexistent/libopenblas.so"' : "Cannot load OpenBLAS",
        ) && e.message.includes("/nonexistent/libopenblas.so"),
    );
  },
});

Deno.test({
  name:
    "fused matMul's bias on OpenBLAS: added in place by the native kernels, the same bits as matMul then add; a batched bias too (needs OpenBLAS and cc)",
  ignore: !hasOpenBlas || !hasNative,
  fn: async () => {
    // 70 x 1000 outputs: enough to split the bias addition over the threads.
    const a = lcg(70 * 9, 11), b = lcg(9 * 1000, 12), bias = lcg(1000, 13);
    const fused = (biasShape: number[]) => () =>
      tf.fused.matMul({
        a: tf.tensor2d(a, [70, 9]),
        b: tf.tensor2d(b, [9, 1000]),
        bias: tf.tensor(bias, biasShape),
      });
    const separate = () =>
      tf.add(tf.matMul(tf.tensor2d(a, [70, 9]), tf.tensor2d(b, [9, 1000])), tf.tensor1d(bias));
    const [inPlace] = await runOn("wasm-openblas", fused([1000]));
    const [rowShaped] = await runOn("wasm-openblas", fused([1, 1000]));
    const [added] = await runOn("wasm-openblas", separate);
    assert.deepEqual(inPlace, added);
    assert.deepEqual(rowShaped, added);
    // A bias per batch item ([2, 1, 3]) is not one row: the wasm Add kernel broadcasts it.
    const batched = () =>
      tf.fused.matMul({
        a: tf.tensor3d(lcg(2 * 4 * 5, 14), [2, 4, 5]),
        b: tf.tensor3d(lcg(2 * 5 * 3, 15), [2, 5, 3]),
        bias: tf.tensor3d(lcg(6, 16), [2, 1, 3]),
      });
    const [blas] = await runOn("wasm-openblas", batched);
    const [cpu] = await runOn("cpu", batched);
    assertClose(blas, cpu, 1e-5, "batched bias");
  },
});

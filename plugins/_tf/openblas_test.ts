import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { initBackend } from "./backend.ts";
import {
  installOpenBlasMatMul,
  isOpenBlasMatMulInstalled,
  loadOpenBlas,
  setOpenBlasThreads,
  uninstallOpenBlasMatMul,
} from "./openblas.ts";

const hasOpenBlas = (() => {
  try {
    loadOpenBlas();
    return true;
  } catch {
    return false;
  }
})();

type Engine = "cpu" | "wasm" | "wasm-openblas";

/** Runs `f` on a backend and returns its outputs as plain arrays, checking for leaks. */
async function runOn(engine: Engine, f: () => tf.Tensor | tf.Tensor[]): Promise<number[][]> {
  await initBackend(engine);
  const before = tf.memory().numTensors;
  const out = tf.tidy(f);
  const outs = Array.isArray(out) ? out : [out];
  const values = await Promise.all(outs.map(async (t) => Array.from(await t.data())));
  tf.dispose(outs);
  assert.equal(tf.memory().numTensors, before, `tensors leaked on ${engine}`);
  return values;
}

function assertClose(actual: number[], expected: number[], tol: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const diff = Math.abs(actual[i] - expected[i]);
    assert.ok(
      diff <= tol * Math.max(1, Math.abs(expected[i])),
      `${what}[${i}]: ${actual[i]} vs ${expected[i]}`,
    );
  }
}

/** Deterministic values in [-1, 1) from a linear congruential generator. */
function lcg(n: number, seed: number): number[] {
  const out: number[] = [];
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out.push(s / 2 ** 31 - 1);
  }
  return out;
}

/**
 * Reference BatchMatMul in plain JS with full NumPy broadcasting of the batch
 * dims, written from the definition out[..., i, j] = sum_k A[..., i, k] B[..., k, j].
 */
function referenceMatMul(
  aShape: number[],
  a: number[],
  bShape: number[],
  b: number[],
  transposeA: boolean,
  transposeB: boolean,
): number[] {
  const ar = aShape.length;
  const br = bShape.length;
  const m = transposeA ? aShape[ar - 1] : aShape[ar - 2];
  const k = transposeA ? aShape[ar - 2] : aShape[ar - 1];
  const n = transposeB ? bShape[br - 2] : bShape[br - 1];
  const outerA = aShape.slice(0, -2);
  const outerB = bShape.slice(0, -2);
  const rank = Math.max(outerA.length, outerB.length);
  const padA = [...new Array(rank - outerA.length).fill(1), ...outerA];
  const padB = [...new Array(rank - outerB.length).fill(1), ...outerB];
  const outer = padA.map((d, i) => Math.max(d, padB[i]));
  const batch = outer.reduce((p, d) => p * d, 1);
  const out: number[] = [];
  for (let flat = 0; flat < batch; flat++) {
    // Coordinates of this output batch, then the operands' batch indices.
    const coords: number[] = [];
    let rest = flat;
    for (let d = rank - 1; d >= 0; d--) {
      coords[d] = rest % outer[d];
      rest = Math.floor(rest / outer[d]);
    }
    let ia = 0;
    let ib = 0;
    for (let d = 0; d < rank; d++) {
      ia = ia * padA[d] + (padA[d] === 1 ? 0 : coords[d]);
      ib = ib * padB[d] + (padB[d] === 1 ? 0 : coords[d]);
    }
    const aAt = (i: number, kk: number) => a[ia * m * k + (transposeA ? kk * m + i : i * k + kk)];
    const bAt = (kk: number, j: number) => b[ib * k * n + (transposeB ? j * k + kk : kk * n + j)];
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let kk = 0; kk < k; kk++) sum += aAt(i, kk) * bAt(kk, j);
        out.push(sum);
      }
    }
  }
  return out;
}

interface MatMulCase {
  name: string;
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
  /** Stock kernels mishandle batch broadcasts other than "equal or 1". */
  stockWrong?: boolean;
}

const CASES: MatMulCase[] = [
  { name: "plain", a: [5, 7], b: [7, 3] },
  { name: "transposed A", a: [7, 5], b: [7, 3], transposeA: true },
  { name: "transposed B", a: [5, 7], b: [3, 7], transposeB: true },
  { name: "both transposed", a: [7, 5], b: [3, 7], transposeA: true, transposeB: true },
  { name: "batched", a: [4, 5, 7], b: [4, 7, 3] },
  {
    name: "batched, both transposed",
    a: [4, 7, 5],
    b: [4, 3, 7],
    transposeA: true,
    transposeB: true,
  },
  { name: "broadcast batch of A", a: [1, 5, 7], b: [4, 7, 3] },
  { name: "broadcast batch of B", a: [4, 5, 7], b: [1, 7, 3] },
  { name: "rank 3 times rank 2", a: [2, 3, 5, 7], b: [7, 3] },
  { name: "rank 3 times rank 2, transposed B", a: [3, 5, 7], b: [3, 7], transposeB: true },
  { name: "rank 3 transposed A times rank 2", a: [3, 7, 5], b: [7, 3], transposeA: true },
  { name: "rank 2 times rank 3", a: [5, 7], b: [4, 7, 3] },
  { name: "general broadcast", a: [2, 1, 5, 7], b: [1, 3, 7, 3], stockWrong: true },
  { name: "empty inner dimension", a: [2, 0], b: [0, 3] },
  {
    name: "larger, transposed",
    a: [2, 96, 130],
    b: [2, 70, 96],
    transposeA: true,
    transposeB: true,
  },
];

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

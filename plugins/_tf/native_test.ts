import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs-core";
import { assertClose, lcg, runOn } from "./testdata/numeric.ts";
import { loadNativeKernels, nativeProducts } from "./native.ts";
import { hasNative, hasOpenBlas } from "./testdata/libraries.ts";

/** C = A B in float64, A [m, k], B [k, n] row-major. */
function reference(m: number, n: number, k: number, a: Float32Array, b: Float32Array): number[] {
  const out = new Array<number>(m * n).fill(0);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let sum = 0;
      for (let p = 0; p < k; p++) sum += a[i * k + p] * b[p * n + j];
      out[i * n + j] = sum;
    }
  }
  return out;
}

Deno.test({
  name: "the native small product equals a float64 product, for full and partial blocks (needs cc)",
  ignore: !hasNative,
  fn: () => {
    const product = nativeProducts()!.small;
    // Rows around the 8-row (4 without AVX-512) block, columns around the 32-column block.
    for (const m of [1, 3, 5, 8, 13, 16]) {
      for (const n of [1, 31, 32, 33, 100]) {
        for (const k of [1, 17, 64]) {
          const a = Float32Array.from(lcg(m * k, m * 100 + k));
          const b = Float32Array.from(lcg(k * n, n * 100 + k));
          const c = new Float32Array(m * n).fill(Number.NaN);
          product(m, n, k, a, b, c);
          assertClose([...c], reference(m, n, k, a, b), 1e-5 * k, `${m}x${k} times ${k}x${n}`);
        }
      }
    }
  },
});

Deno.test({
  name:
    "the native product of a packed right operand gives the small product's bits, and the bias rows add in place (needs cc)",
  ignore: !hasNative,
  fn: () => {
    const { small, packed, addRows } = nativeProducts()!;
    for (const m of [1, 8, 13, 16]) {
      for (const panels of [1, 3, 7]) {
        const [n, k] = [panels * packed.columns, 37];
        const a = Float32Array.from(lcg(m * k, m + 1));
        const b = Float32Array.from(lcg(k * n, n + 2));
        const p = new Float32Array(k * n);
        packed.pack(k, n, b, p);
        const expected = new Float32Array(m * n), c = new Float32Array(m * n).fill(Number.NaN);
        small(m, n, k, a, b, expected);
        packed.product(m, n, k, a, p, c);
        assert.deepEqual(c, expected, `${m}x${k} times ${k}x${n}`);
      }
    }
    // 300 rows of 400: enough to split over the threads.
    const bias = Float32Array.from(lcg(400, 3));
    const rows = Float32Array.from(lcg(300 * 400, 4));
    const sums = rows.map((x, i) => Math.fround(x + bias[i % 400]));
    addRows(bias, rows);
    assert.deepEqual(rows, sums);
  },
});

Deno.test({
  name: "the native small product gives the same bits on 1, 2 and 3 threads (needs cc)",
  ignore: !hasNative,
  fn: () => {
    const [m, n, k] = [8, 1000, 300];
    const a = Float32Array.from(lcg(m * k, 1));
    const b = Float32Array.from(lcg(k * n, 2));
    const results = [1, 2, 3].map((threads) => {
      assert.equal(loadNativeKernels({ threads }).threads, threads);
      const c = new Float32Array(m * n);
      nativeProducts()!.small(m, n, k, a, b, c);
      return c;
    });
    loadNativeKernels({ threads: navigator.hardwareConcurrency });
    assert.deepEqual(results[1], results[0]);
    assert.deepEqual(results[2], results[0]);
  },
});

Deno.test({
  name:
    "an LSTM's recurrent product and its gradient on wasm-openblas (native kernels) equal cpu (needs cc and OpenBLAS)",
  ignore: !hasNative || !hasOpenBlas,
  fn: async () => {
    const h = lcg(8 * 96, 3);
    const w = lcg(96 * 384, 4, 0.1);
    const f = () => {
      const x = tf.tensor2d(h, [8, 96]);
      const wt = tf.tensor2d(w, [96, 384]);
      // The gradient's products (x^T dy, dy w^T) have many rows: OpenBLAS takes them.
      const [gradX, gradW] = tf.grads((x: tf.Tensor, v: tf.Tensor) =>
        tf.sum(tf.square(tf.matMul(x, v)))
      )([x, wt]);
      return [tf.matMul(x, wt), gradX, gradW];
    };
    const blas = await runOn("wasm-openblas", f);
    const cpu = await runOn("cpu", f);
    for (let i = 0; i < blas.length; i++) assertClose(blas[i], cpu[i], 1e-3, `output ${i}`);
  },
});

Deno.test({
  name: "native kernels without a working compiler give an error that names each one tried",
  fn: async () => {
    const cacheDir = await Deno.makeTempDir();
    try {
      const module = new URL("./native.ts", import.meta.url).href;
      const code = `import { loadNativeKernels } from ${JSON.stringify(module)};
        try {
          loadNativeKernels({ compilers: ["no-such-cc-1", "no-such-cc-2"], cacheDir: ${
        JSON.stringify(cacheDir)
      } });
        } catch (e) { console.log(e.message); }`;
      const output = await new Deno.Command(Deno.execPath(), {
        args: ["eval", "--quiet", code],
        stdout: "piped",
        stderr: "piped",
      }).output();
      const message = new TextDecoder().decode(output.stdout);
      assert.match(message, /^Cannot load the native kernels: no-such-cc-1: .+; no-such-cc-2: /);
      assert.deepEqual([...Deno.readDirSync(cacheDir)], []);
    } finally {
      await Deno.remove(cacheDir, { recursive: true });
    }
  },
});

Deno.test({
  name: "native kernels are built once into the cache folder and reused (needs cc)",
  ignore: !hasNative,
  fn: () => {
    const info = loadNativeKernels();
    assert.ok(Deno.statSync(info.library).isFile);
    assert.match(info.library, /native-kernels-[0-9a-f]{16}\.(so|dylib|dll)$/);
    assert.equal(loadNativeKernels().library, info.library);
    assert.ok([4, 8, 16].includes(info.vectorFloats), `vector floats ${info.vectorFloats}`);
  },
});

Deno.test({
  name:
    "the native batched product equals a float64 product for every transpose, on any thread count (needs cc)",
  ignore: !hasNative,
  fn: () => {
    const product = nativeProducts()!.batched;
    const [batch, m, n, k] = [5, 19, 37, 11];
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = Float32Array.from(lcg(batch * m * k, 1));
        const b = Float32Array.from(lcg(batch * k * n, 2));
        const results = [1, 2, 3].map((threads) => {
          loadNativeKernels({ threads });
          const c = new Float32Array(batch * m * n).fill(Number.NaN);
          assert.ok(product(batch, m, n, k, transA, transB, a, b, c));
          return c;
        });
        loadNativeKernels({ threads: navigator.hardwareConcurrency });
        for (let i = 0; i < batch; i++) {
          // Untransposed copies of item i, then the float64 product.
          const ai = new Float32Array(m * k), bi = new Float32Array(k * n);
          for (let r = 0; r < m; r++) {
            for (let p = 0; p < k; p++) {
              ai[r * k + p] = transA ? a[i * m * k + p * m + r] : a[i * m * k + r * k + p];
            }
          }
          for (let p = 0; p < k; p++) {
            for (let col = 0; col < n; col++) {
              bi[p * n + col] = transB ? b[i * k * n + col * k + p] : b[i * k * n + p * n + col];
            }
          }
          const what = `item ${i}, transA ${transA}, transB ${transB}`;
          assertClose(
            [...results[0].subarray(i * m * n, (i + 1) * m * n)],
            reference(m, n, k, ai, bi),
            1e-4,
            what,
          );
        }
        assert.deepEqual(results[1], results[0]);
        assert.deepEqual(results[2], results[0]);
      }
    }
  },
});

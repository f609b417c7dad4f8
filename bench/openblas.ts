/**
 * Measures matMul throughput (GFLOP/s) of the stock wasm kernel against the
 * OpenBLAS one on the shapes that matter for training: a square product, its
 * transposed forms (the gradients), and batched attention products.
 *
 * Run: `deno run --allow-read --allow-env --allow-ffi bench/openblas.ts`
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { type BackendName, initBackend } from "../plugins/_tf/backend.ts";

/** One matMul shape to time. */
export interface MatMulShape {
  name: string;
  a: number[];
  b: number[];
  transposeA?: boolean;
  transposeB?: boolean;
}

/** One timing. */
export interface MatMulTiming {
  backend: string;
  shape: string;
  msPerCall: number;
  gflops: number;
}

/** Default shapes: 1024² plain and transposed, and attention-sized batched products. */
export const MATMUL_SHAPES: readonly MatMulShape[] = [
  { name: "1024x1024 @ 1024x1024", a: [1024, 1024], b: [1024, 1024] },
  { name: "1024x1024^T @ 1024x1024", a: [1024, 1024], b: [1024, 1024], transposeA: true },
  { name: "1024x1024 @ 1024x1024^T", a: [1024, 1024], b: [1024, 1024], transposeB: true },
  { name: "[16,256,64] @ [16,256,64]^T", a: [16, 256, 64], b: [16, 256, 64], transposeB: true },
  { name: "[16,256,256]^T @ [16,256,64]", a: [16, 256, 256], b: [16, 256, 64], transposeA: true },
  { name: "[16,256,256] @ [16,256,64]", a: [16, 256, 256], b: [16, 256, 64] },
];

function flops(s: MatMulShape): number {
  const r = s.a.length;
  const m = s.transposeA ? s.a[r - 1] : s.a[r - 2];
  const k = s.transposeA ? s.a[r - 2] : s.a[r - 1];
  const n = s.transposeB ? s.b[s.b.length - 2] : s.b[s.b.length - 1];
  const batch = s.a.slice(0, -2).reduce((p, d) => p * d, 1);
  return 2 * batch * m * n * k;
}

/**
 * Times each shape on each backend for about `budgetMs` per pair (after one
 * warm-up call).
 *
 * @param options backends to compare, shapes, and time budget per measurement
 * @returns one timing per backend and shape
 * @example
 * ```ts
 * import { benchMatMul } from "./openblas.ts";
 * const rows = await benchMatMul({ backends: ["wasm"], shapes: [{ name: "64²", a: [64, 64], b: [64, 64] }], budgetMs: 10 });
 * console.log(rows[0].gflops);
 * ```
 */
export async function benchMatMul(options: {
  backends?: BackendName[];
  shapes?: readonly MatMulShape[];
  budgetMs?: number;
} = {}): Promise<MatMulTiming[]> {
  const backends = options.backends ?? ["wasm", "wasm-openblas"];
  const shapes = options.shapes ?? MATMUL_SHAPES;
  const budgetMs = options.budgetMs ?? 1500;
  const out: MatMulTiming[] = [];
  for (const shape of shapes) {
    for (const backend of backends) {
      await initBackend(backend);
      const a = tf.randomUniform(shape.a, -1, 1);
      const b = tf.randomUniform(shape.b, -1, 1);
      const run = async () => {
        const c = tf.matMul(a, b, shape.transposeA, shape.transposeB);
        await c.data();
        c.dispose();
      };
      await run();
      let calls = 0;
      const start = performance.now();
      while (performance.now() - start < budgetMs || calls < 2) {
        await run();
        calls++;
      }
      const msPerCall = (performance.now() - start) / calls;
      tf.dispose([a, b]);
      out.push({ backend, shape: shape.name, msPerCall, gflops: flops(shape) / msPerCall / 1e6 });
    }
  }
  return out;
}

if (import.meta.main) {
  const backends = (Deno.args.length > 0 ? Deno.args : ["wasm", "wasm-openblas"]) as BackendName[];
  for (const row of await benchMatMul({ backends })) {
    console.log(
      `${row.shape.padEnd(32)} ${row.backend.padEnd(14)} ${
        row.msPerCall.toFixed(2).padStart(9)
      } ms ` +
        `${row.gflops.toFixed(2).padStart(8)} GFLOP/s`,
    );
  }
}

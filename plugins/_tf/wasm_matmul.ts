/**
 * Faster matrix products for the plain wasm backend (no OpenBLAS): the stock
 * `BatchMatMul` and `_FusedMatMul` kernels are fast only for an untransposed
 * product with no batch dimension, and 10-30x slower otherwise, which is
 * exactly what training uses (a matMul's gradient transposes one operand; a
 * dense layer on `[B, T, D]` inputs has a batch dimension).
 *
 * Measured on one wasm thread (`.scratch`-style micro-benchmark, AMD EPYC):
 * `d[2048,388] @ W[192,388]ᵀ` 0.9 GFLOP/s with `transposeB`, 7.9 with the
 * transpose made explicit first; `x[16,256,256] @ W[256,1024]` 0.65 GFLOP/s
 * as a batched product, 21 GFLOP/s as one `[4096,256] @ [256,1024]` product.
 *
 * So these kernels rewrite each product into the fast form before calling the
 * stock kernel: a transposed operand is transposed once with the wasm
 * `Transpose` kernel (a copy, cheap beside the product), and a left operand
 * with batch dimensions against a right operand without any is folded into
 * one tall product. Products whose both operands have batch dimensions
 * (attention) go to the stock kernel unchanged.
 *
 * Reference: tfjs-core's `BatchMatMul` / `_FusedMatMul` kernel contracts
 * (`tfjs-backend-wasm/src/kernels/BatchMatMul.ts`, `_FusedMatMul.ts`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import type { BackendWasm } from "@tensorflow/tfjs-backend-wasm";
import {
  type KernelFn,
  replaceKernel,
  runWasmKernel,
  type WasmKernelArgs,
} from "./wasm_kernels.ts";

/** The stock wasm kernels, kept while ours are installed. */
let originals: { batchMatMul: tf.KernelConfig; fusedMatMul: tf.KernelConfig } | null = null;

/** True while these kernels replace the stock wasm ones. */
export function isWasmMatMulInstalled(): boolean {
  return originals !== null;
}

/**
 * Replaces the wasm backend's `BatchMatMul` and `_FusedMatMul` with the
 * rewriting kernels of this module. Idempotent. Do not combine with the
 * OpenBLAS kernels (`openblas.ts`): uninstall one before installing the other.
 *
 * @throws Error when the wasm kernels are not registered (import
 *   `@tensorflow/tfjs-backend-wasm` first)
 * @example
 * ```ts
 * import "@tensorflow/tfjs-backend-wasm";
 * import { installWasmMatMul, isWasmMatMulInstalled, uninstallWasmMatMul } from "./wasm_matmul.ts";
 * installWasmMatMul();
 * console.log(isWasmMatMulInstalled()); // true
 * uninstallWasmMatMul();
 * ```
 */
export function installWasmMatMul(): void {
  if (originals !== null) return;
  const batchMatMul = tf.getKernel("BatchMatMul", "wasm");
  const fusedMatMul = tf.getKernel("_FusedMatMul", "wasm");
  if (batchMatMul === undefined || fusedMatMul === undefined) {
    throw new Error(
      'Cannot install the wasm matMul kernels: the stock ones are not registered, import "@tensorflow/tfjs-backend-wasm" first',
    );
  }
  originals = { batchMatMul, fusedMatMul };
  replaceKernel(batchMatMul, (args) => rewritten(args, originals!.batchMatMul));
  replaceKernel(fusedMatMul, (args) => rewritten(args, originals!.fusedMatMul));
}

/** Restores the stock wasm `BatchMatMul` and `_FusedMatMul`. Idempotent. */
export function uninstallWasmMatMul(): void {
  if (originals === null) return;
  for (const original of [originals.batchMatMul, originals.fusedMatMul]) {
    tf.unregisterKernel(original.kernelName, "wasm");
    tf.registerKernel(original);
  }
  originals = null;
}

/** `x` with its last two dimensions swapped (a new tensor the caller disposes). */
function transposeLastTwo(x: tf.TensorInfo, backend: BackendWasm): tf.TensorInfo {
  const rank = x.shape.length;
  const perm = [...Array(rank - 2).keys(), rank - 1, rank - 2];
  return runWasmKernel("Transpose", { x }, backend, { perm });
}

/** `x` viewed with another shape (shares its data; the caller disposes the view). */
function reshape(x: tf.TensorInfo, shape: number[], backend: BackendWasm): tf.TensorInfo {
  return runWasmKernel("Reshape", { x }, backend, { shape });
}

/**
 * Runs `original` (BatchMatMul or _FusedMatMul) on an equivalent untransposed
 * product: operands transposed explicitly, and a batched left operand against
 * an unbatched right one folded into a single `[batch·M, K] @ [K, N]` product.
 */
function rewritten(args: WasmKernelArgs, original: tf.KernelConfig): tf.TensorInfo {
  const call = original.kernelFunc as unknown as KernelFn;
  const { a, b } = args.inputs;
  const attrs = args.attrs as { transposeA: boolean; transposeB: boolean } & tf.NamedAttrMap;
  const bias: tf.TensorInfo | undefined = args.inputs.bias;
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const fold = batchA > 1 && batchB === 1 && (bias === undefined || bias.shape.length <= 1);
  if (a.dtype !== "float32" || b.dtype !== "float32" || aRank < 2 || bRank < 2) return call(args);
  if (!attrs.transposeA && !attrs.transposeB && !fold) return call(args);

  const backend = args.backend;
  const temporaries: tf.TensorInfo[] = [];
  const keep = (t: tf.TensorInfo) => {
    temporaries.push(t);
    return t;
  };
  try {
    let left = attrs.transposeA ? keep(transposeLastTwo(a, backend)) : a; // [...batchA, M, K]
    let right = attrs.transposeB ? keep(transposeLastTwo(b, backend)) : b; // [...batchB, K, N]
    const m = left.shape[aRank - 2];
    const k = left.shape[aRank - 1];
    const n = right.shape[bRank - 1];
    if (right.shape[bRank - 2] !== k) return call(args); // the stock kernel reports the mismatch
    if (!fold) {
      return call({
        ...args,
        inputs: { ...args.inputs, a: left, b: right },
        attrs: { ...attrs, transposeA: false, transposeB: false },
      });
    }
    const outer = tf.broadcast_util.assertAndGetBroadcastShape(
      a.shape.slice(0, -2),
      b.shape.slice(0, -2),
    );
    left = keep(reshape(left, [1, batchA * m, k], backend));
    right = keep(reshape(right, [1, k, n], backend));
    const flat = keep(call({
      ...args,
      inputs: { ...args.inputs, a: left, b: right },
      attrs: { ...attrs, transposeA: false, transposeB: false },
    })); // [1, batchA * M, N]
    return reshape(flat, [...outer, m, n], backend);
  } finally {
    for (const t of temporaries) backend.disposeData(t.dataId);
  }
}

/**
 * OpenBLAS (or Apple Accelerate) matrix products for the tfjs wasm backend,
 * through Deno FFI.
 *
 * Reference: the CBLAS interface, `cblas_sgemm` (netlib BLAS Technical Forum
 * standard, ch. 2), and tfjs-core's `BatchMatMul` / `_FusedMatMul` kernel
 * contracts (`tfjs-backend-wasm/src/kernels/BatchMatMul.ts`).
 *
 * Why: stock wasm `BatchMatMul` reaches about 15 GFLOP/s on a plain product
 * but 0.4-1 GFLOP/s with `transposeA` / `transposeB` or a batch dimension,
 * which is exactly what matMul's gradient uses. `cblas_sgemm` reads and writes
 * the wasm heap in place (no copies), so the replacement kernel costs only
 * the product itself. The original kernels are kept and restored by
 * {@link uninstallOpenBlasMatMul}; cases the replacement does not handle
 * (non-float32 dtypes, unknown fused activations) go to them.
 *
 * Needs `--allow-ffi`.
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
import { errorFirstLine } from "../../mod.ts";
import { nativeCpuHasAvx512, type NativeProducts, SMALL_PRODUCT_MAX_ROWS } from "./native.ts";

const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

const SYMBOLS = {
  cblas_sgemm: {
    // order, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc
    parameters: [
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "i32",
      "f32",
      "buffer",
      "i32",
      "buffer",
      "i32",
      "f32",
      "buffer",
      "i32",
    ],
    result: "void",
  },
  openblas_set_num_threads: { parameters: ["i32"], result: "void", optional: true },
  openblas_get_num_threads: { parameters: [], result: "i32", optional: true },
  openblas_get_config: { parameters: [], result: "pointer", optional: true },
} as const;

type BlasLibrary = Deno.DynamicLibrary<typeof SYMBOLS>;

/** Where a BLAS library was found and what it reports about itself. */
export interface OpenBlasInfo {
  /** The path or soname that `Deno.dlopen` opened, e.g. `"libopenblas.so.0"`. */
  library: string;
  /** `openblas_get_config()`, e.g. `"OpenBLAS 0.3.21 DYNAMIC_ARCH ..."`; "" for Accelerate. */
  config: string;
  /** `openblas_get_num_threads()`, or null when the library has no such function. */
  threads: number | null;
}

/**
 * Library names tried in order when no explicit one is given: Debian/Ubuntu
 * `libopenblas0-*`, a plain `libopenblas.so`, Homebrew OpenBLAS, Apple
 * Accelerate, then Windows.
 */
export const OPENBLAS_CANDIDATES: readonly string[] = [
  "libopenblas.so.0",
  "libopenblas.so",
  "/opt/homebrew/opt/openblas/lib/libopenblas.dylib",
  "/usr/local/opt/openblas/lib/libopenblas.dylib",
  "/System/Library/Frameworks/Accelerate.framework/Accelerate",
  "libopenblas.dll",
];

let blas: { lib: BlasLibrary; info: OpenBlasInfo } | null = null;

/** The AVX-512 subsets that OpenBLAS's SkylakeX kernels use. */
const AVX512_FLAGS = ["avx512f", "avx512bw", "avx512dq", "avx512vl"];

/**
 * The OpenBLAS core type to ask for on a CPU, from its `/proc/cpuinfo`: `"SkylakeX"`
 * (the AVX-512 kernels) when the CPU has every subset they use, else null (OpenBLAS's own
 * choice). OpenBLAS 0.3.21 (Debian 12) does not know AMD Zen 4 and Zen 5 and runs its
 * Haswell (AVX2) kernels there: sgemm on two Zen 5 cores measured 200 GFLOP/s with them
 * and 366 GFLOP/s with SkylakeX's.
 *
 * @param cpuinfo the text of `/proc/cpuinfo`
 * @returns `"SkylakeX"` or null
 * @example
 * ```ts
 * import { preferredCoreType } from "./openblas.ts";
 * console.log(preferredCoreType("flags : fpu sse2 avx2 avx512f avx512dq avx512bw avx512vl")); // "SkylakeX"
 * console.log(preferredCoreType("flags : fpu sse2 avx2")); // null
 * ```
 */
export function preferredCoreType(cpuinfo: string): string | null {
  const flagsLine = cpuinfo.split("\n").find((line) => /^flags\s*:/.test(line));
  if (flagsLine === undefined) return null;
  const flags = new Set(flagsLine.slice(flagsLine.indexOf(":") + 1).trim().split(/\s+/));
  return AVX512_FLAGS.every((flag) => flags.has(flag)) ? "SkylakeX" : null;
}

/**
 * How {@link loadOpenBlas} picks OpenBLAS's kernels: `"cpu"` from the CPU's features
 * ({@link preferredCoreType}), overriding `OPENBLAS_CORETYPE` (some machines pin it to an
 * older core for all programs); `"env"` leaves OpenBLAS's own choice and `OPENBLAS_CORETYPE`
 * alone; any other value is an OpenBLAS core name, e.g. `"Haswell"`.
 */
export type OpenBlasCoreChoice = "cpu" | "env" | string;

/**
 * Sets `OPENBLAS_CORETYPE` for the library about to be opened (OpenBLAS reads it once, when
 * it loads). `"cpu"` reads the CPU's flags from `/proc/cpuinfo`, or where that cannot be read
 * from the native kernels when they are loaded; it quietly keeps OpenBLAS's own choice
 * without the permission to set the variable, without either source, or on a CPU without
 * AVX-512.
 */
function chooseCoreType(choice: OpenBlasCoreChoice): void {
  if (choice === "env") return;
  if (
    Deno.permissions.querySync({ name: "env", variable: "OPENBLAS_CORETYPE" }).state !== "granted"
  ) {
    return;
  }
  if (choice !== "cpu") {
    Deno.env.set("OPENBLAS_CORETYPE", choice);
    return;
  }
  let coreType: string | null;
  try {
    coreType = preferredCoreType(Deno.readTextFileSync("/proc/cpuinfo"));
  } catch {
    // Not Linux, or no permission: Deno reads /proc only with --allow-all, so a sandboxed
    // run asks the native kernels (when loaded) what the CPU has.
    coreType = nativeCpuHasAvx512() === true ? "SkylakeX" : null;
  }
  if (coreType !== null) Deno.env.set("OPENBLAS_CORETYPE", coreType);
}

/**
 * Opens the BLAS library (once per process) and returns what it is.
 *
 * @param library a path or soname to open instead of trying {@link OPENBLAS_CANDIDATES}
 * @param coreChoice how to pick OpenBLAS's kernels on the first load (default `"cpu"`)
 * @returns the opened library's description
 * @throws Error when `--allow-ffi` is missing or no candidate library opens;
 *   the message lists each path tried and why it failed
 * @example
 * ```ts
 * import { loadOpenBlas } from "./openblas.ts";
 * try {
 *   console.log(loadOpenBlas().library);
 * } catch (e) {
 *   console.log((e as Error).message);
 * }
 * ```
 */
export function loadOpenBlas(
  library?: string,
  coreChoice: OpenBlasCoreChoice = "cpu",
): OpenBlasInfo {
  if (blas !== null) {
    if (library !== undefined && library !== blas.info.library) {
      throw new Error(
        `Cannot load "${library}": "${blas.info.library}" is already loaded in this process`,
      );
    }
    return { ...blas.info, threads: blas.lib.symbols.openblas_get_num_threads?.() ?? null };
  }
  // Checked up front so that Deno never stops to prompt for FFI mid-run.
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw new Error("Cannot load OpenBLAS: FFI is not allowed, run Deno with --allow-ffi");
  }
  chooseCoreType(coreChoice);
  const reasons: string[] = [];
  for (const candidate of library !== undefined ? [library] : OPENBLAS_CANDIDATES) {
    let lib: BlasLibrary;
    try {
      lib = Deno.dlopen(candidate, SYMBOLS);
    } catch (e) {
      if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
        throw new Error("Cannot load OpenBLAS: FFI is not allowed, run Deno with --allow-ffi");
      }
      // Deno says "Could not open library: Could not open library: <name>: <why>": keep <why>.
      const why = errorFirstLine(e).replace(/^(Could not open library: )+/, "")
        .replace(`${candidate}: `, "");
      reasons.push(`"${candidate}": ${why}`);
      continue;
    }
    const configPtr = lib.symbols.openblas_get_config?.() ?? null;
    const info: OpenBlasInfo = {
      library: candidate,
      config: configPtr === null ? "" : Deno.UnsafePointerView.getCString(configPtr),
      threads: lib.symbols.openblas_get_num_threads?.() ?? null,
    };
    blas = { lib, info };
    return { ...info };
  }
  throw new Error(`Cannot load OpenBLAS: no library opened (${reasons.join("; ")})`);
}

/**
 * Sets the number of OpenBLAS threads. Fewer threads can be faster for the
 * many tiny products of LSTM training; more help large products.
 *
 * @param threads number of threads, at least 1
 * @returns true when set, false when the loaded library has no
 *   `openblas_set_num_threads` (Apple Accelerate)
 * @throws Error when OpenBLAS is not loaded yet or `threads` is not a positive integer
 * @example
 * ```ts
 * import { loadOpenBlas, setOpenBlasThreads } from "./openblas.ts";
 * let threads: number | null = null;
 * try {
 *   threads = loadOpenBlas().threads;
 * } catch (e) {
 *   console.log(`No OpenBLAS here: ${(e as Error).message}`);
 * }
 * if (threads !== null) {
 *   setOpenBlasThreads(1);
 *   setOpenBlasThreads(threads); // back to what it was
 * }
 * ```
 */
export function setOpenBlasThreads(threads: number): boolean {
  if (!Number.isInteger(threads) || threads < 1) {
    throw new Error(`Cannot set OpenBLAS threads to "${threads}": expected an integer >= 1`);
  }
  if (blas === null) throw new Error("Cannot set OpenBLAS threads: call loadOpenBlas() first");
  const set = blas.lib.symbols.openblas_set_num_threads;
  if (set === null || set === undefined) return false;
  set(threads);
  return true;
}

/**
 * The most elements of B (16 MiB of floats) for the small-product kernel: a larger B does not
 * stay in cache from one product to the next, and OpenBLAS streams it faster.
 */
const SMALL_PRODUCT_MAX_RIGHT = 4 * 2 ** 20;

/** The most elements of one product's operand for the batched kernel (1 MiB of floats). */
const BATCHED_PRODUCT_MAX_OPERAND = 2 ** 18;

/** The native products in use, or null (then `cblas_sgemm` and wasm kernels do all). */
let products: NativeProducts | null = null;

/**
 * Hands work to the native products (`nativeProducts()` of native.ts), or takes it back (null):
 * - untransposed products whose A has at most {@link SMALL_PRODUCT_MAX_ROWS} rows and whose B
 *   fits in cache (an LSTM's recurrent product) go to `small`, where `cblas_sgemm` packed all
 *   of B on every call;
 * - {@link repeatedProduct} packs its B once for `packed`;
 * - batched products without broadcasting whose operands are small (an attention's per-head
 *   products) go to `batched`, one call for the whole batch instead of one `cblas_sgemm` call
 *   per item;
 * - a fused matMul's bias is added in place by `addRows`, instead of by the wasm `Add` kernel
 *   into a new tensor.
 *
 * @param native the kernels, or null
 */
export function useNativeProducts(native: NativeProducts | null): void {
  products = native;
}

/**
 * `out [m][n] = a [m][k] b [k][n]` for many `a` and one `b`, with the bits of
 * {@link rowMajorProduct}: where the small-product kernel takes the product, `b` is packed
 * once here and each product streams the packed copy.
 *
 * @param b reads b's values (a view of the wasm heap must be taken anew after it grows)
 * @returns the product of one `a`
 */
export function repeatedProduct(
  m: number,
  n: number,
  k: number,
  b: () => Float32Array,
): (a: Float32Array, out: Float32Array) => void {
  const panels = packForSmallProduct(m, n, k, b());
  if (panels !== null) return (a, out) => products!.packed.product(m, n, k, a, panels, out);
  return (a, out) => rowMajorProduct(m, n, k, a, b(), out);
}

/** `b` `[k, n]` packed into panels when the small-product kernel takes the product, else null. */
function packForSmallProduct(
  m: number,
  n: number,
  k: number,
  b: Float32Array,
): Float32Array | null {
  if (!smallProductTakes(m, n, k) || n % products!.packed.columns !== 0) return null;
  const panels = new Float32Array(k * n);
  products!.packed.pack(k, n, b, panels);
  return panels;
}

/**
 * While {@link withPackedWeights} runs: the weights it named (their data ids) and, once the
 * small-product kernel has met one as a right operand, its packed panels.
 */
let packing: { weights: Set<object>; panels: Map<object, Float32Array> } | null = null;

/**
 * Runs `work` with `weights` packed for the small-product kernel the first time one is the
 * right operand of a small product, and that packed copy used after: a sampler's per-token
 * products by the same weights then stream them as contiguous panels (the same sums, the same
 * bits). The weights must not change while `work` runs (an optimizer's update gives a weight
 * new data, which is then simply not packed).
 *
 * @param weights e.g. a model's variables
 * @param work the sampling
 * @returns what `work` returns
 */
export async function withPackedWeights<T>(
  weights: Iterable<tf.Tensor>,
  work: () => Promise<T>,
): Promise<T> {
  if (products === null || packing !== null) return await work(); // an outer call packs
  packing = { weights: new Set([...weights].map((w) => w.dataId)), panels: new Map() };
  try {
    return await work();
  } finally {
    packing = null;
  }
}

/** The packed panels of right operand `b` inside {@link withPackedWeights}, else null. */
function packedPanels(
  b: tf.TensorInfo,
  m: number,
  n: number,
  k: number,
  values: Float32Array,
): Float32Array | null {
  if (packing === null || !packing.weights.has(b.dataId) || !smallProductTakes(m, n, k)) {
    return null;
  }
  const known = packing.panels.get(b.dataId);
  if (known !== undefined) return known;
  const panels = packForSmallProduct(m, n, k, values);
  if (panels !== null) packing.panels.set(b.dataId, panels);
  return panels;
}

/** Whether the small-product kernel takes an untransposed `[m, k] x [k, n]` product. */
function smallProductTakes(m: number, n: number, k: number): boolean {
  return products !== null && m <= SMALL_PRODUCT_MAX_ROWS && k * n <= SMALL_PRODUCT_MAX_RIGHT;
}

/** The stock wasm kernels, kept while ours are installed. */
let originals: { batchMatMul: tf.KernelConfig; fusedMatMul: tf.KernelConfig } | null = null;

/** True while the OpenBLAS kernels replace the stock wasm ones. */
export function isOpenBlasMatMulInstalled(): boolean {
  return originals !== null;
}

/**
 * Replaces the wasm backend's `BatchMatMul` and `_FusedMatMul` kernels with
 * OpenBLAS ones (loading the library first if needed). Idempotent. Works
 * before or after the wasm backend is initialised.
 *
 * @param library passed to {@link loadOpenBlas} on first load
 * @returns the library in use
 * @throws Error when the library cannot be loaded (see {@link loadOpenBlas})
 *   or the wasm backend's kernels are not registered (import
 *   `@tensorflow/tfjs-backend-wasm` first)
 * @example
 * ```ts
 * import "@tensorflow/tfjs-backend-wasm"; // registers the kernels that are replaced
 * import { installOpenBlasMatMul, loadOpenBlas, uninstallOpenBlasMatMul } from "./openblas.ts";
 * let found = false;
 * try {
 *   loadOpenBlas();
 *   found = true;
 * } catch (e) {
 *   console.log(`No OpenBLAS here: ${(e as Error).message}`);
 * }
 * if (found) {
 *   console.log(`BatchMatMul runs on ${installOpenBlasMatMul().library}`);
 *   uninstallOpenBlasMatMul();
 * }
 * ```
 */
export function installOpenBlasMatMul(library?: string): OpenBlasInfo {
  const info = loadOpenBlas(library);
  if (originals !== null) return info;
  const batchMatMul = tf.getKernel("BatchMatMul", "wasm");
  const fusedMatMul = tf.getKernel("_FusedMatMul", "wasm");
  if (batchMatMul === undefined || fusedMatMul === undefined) {
    throw new Error(
      'Cannot install OpenBLAS matMul: the wasm kernels are not registered, import "@tensorflow/tfjs-backend-wasm" first',
    );
  }
  originals = { batchMatMul, fusedMatMul };
  replaceKernel(batchMatMul, blasBatchMatMul);
  replaceKernel(fusedMatMul, blasFusedMatMul);
  return info;
}

/** Restores the stock wasm `BatchMatMul` and `_FusedMatMul`. Idempotent. */
export function uninstallOpenBlasMatMul(): void {
  if (originals === null) return;
  tf.unregisterKernel("BatchMatMul", "wasm");
  tf.registerKernel(originals.batchMatMul);
  tf.unregisterKernel("_FusedMatMul", "wasm");
  tf.registerKernel(originals.fusedMatMul);
  originals = null;
}

/** Flat index into a broadcast operand's batch for each flat output batch index. */
function broadcastBatchIndex(outOuter: number[], inOuter: number[]): Int32Array {
  const outSize = tf.util.sizeFromShape(outOuter);
  const index = new Int32Array(outSize);
  const inStrides = new Array<number>(outOuter.length).fill(0);
  // Right-align inOuter with outOuter; size-1 dims broadcast (stride 0).
  let stride = 1;
  for (let i = inOuter.length - 1; i >= 0; i--) {
    const dim = outOuter.length - inOuter.length + i;
    inStrides[dim] = inOuter[i] === 1 ? 0 : stride;
    stride *= inOuter[i];
  }
  for (let flat = 0; flat < outSize; flat++) {
    let rest = flat;
    let at = 0;
    for (let dim = outOuter.length - 1; dim >= 0; dim--) {
      const coord = rest % outOuter[dim];
      rest = (rest - coord) / outOuter[dim];
      at += coord * inStrides[dim];
    }
    index[flat] = at;
  }
  return index;
}

/**
 * out [m][n] = a [m][k] b [k][n], all row-major, as the OpenBLAS matMul kernels compute it: by
 * the small-product kernel when one is set and the product is small enough for it, else by
 * `cblas_sgemm`. The LSTM's sequence kernels (lstm_kernels.ts) call it for their recurrent
 * products, so that those equal `tf.matMul`'s bit for bit.
 *
 * @throws when OpenBLAS is not loaded
 */
export function rowMajorProduct(
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  b: Float32Array,
  out: Float32Array,
): void {
  if (blas === null) throw new Error("rowMajorProduct() needs OpenBLAS: call loadOpenBlas() first");
  if (smallProductTakes(m, n, k)) {
    products!.small(m, n, k, a, b, out);
    return;
  }
  blas.lib.symbols.cblas_sgemm(
    CBLAS_ROW_MAJOR,
    CBLAS_NO_TRANS,
    CBLAS_NO_TRANS,
    m,
    n,
    k,
    1,
    a,
    k,
    b,
    n,
    0,
    out,
    n,
  );
}

/**
 * The product a @ b (with optional transposes) into a new output tensor,
 * following tfjs BatchMatMul semantics: a [...batchA, M, K], b [...batchB, K, N]
 * (before transposes), batch dims broadcast, out [...batch, M, N].
 */
function sgemmProduct(
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  backend: BackendWasm,
): tf.TensorInfo {
  const lib = blas!.lib;
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  const m = transposeA ? a.shape[aRank - 1] : a.shape[aRank - 2];
  const k = transposeA ? a.shape[aRank - 2] : a.shape[aRank - 1];
  const kB = transposeB ? b.shape[bRank - 1] : b.shape[bRank - 2];
  const n = transposeB ? b.shape[bRank - 2] : b.shape[bRank - 1];
  if (k !== kB) {
    throw new Error(
      `Error in matMul: inner shapes (${k}) and (${kB}) of Tensors with shapes ${a.shape} and ` +
        `${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const outerA = a.shape.slice(0, -2);
  const outerB = b.shape.slice(0, -2);
  const outOuter = tf.broadcast_util.assertAndGetBroadcastShape(outerA, outerB);
  const batchA = tf.util.sizeFromShape(outerA);
  const batchB = tf.util.sizeFromShape(outerB);
  const batch = tf.util.sizeFromShape(outOuter);

  const out = backend.makeOutput([...outOuter, m, n], "float32"); // [...batch, M, N]
  // Views only after makeOutput (it may grow and detach the heap).
  const outVals = backend.typedArrayFromHeap(out) as Float32Array;
  if (outVals.length === 0) return out;
  if (k === 0) {
    outVals.fill(0);
    return out;
  }
  const aVals = backend.typedArrayFromHeap(a) as Float32Array;
  const bVals = backend.typedArrayFromHeap(b) as Float32Array;
  const transA = transposeA ? CBLAS_TRANS : CBLAS_NO_TRANS;
  const transB = transposeB ? CBLAS_TRANS : CBLAS_NO_TRANS;
  const lda = transposeA ? m : k;
  const ldb = transposeB ? k : n;

  if (batchB === 1 && batchA === batch && !transposeA && !transposeB) {
    const panels = packedPanels(b, batch * m, n, k, bVals);
    if (panels !== null) products!.packed.product(batch * m, n, k, aVals, panels, outVals);
    else rowMajorProduct(batch * m, n, k, aVals, bVals, outVals);
    return out;
  }
  if (batchB === 1 && !transposeA && batchA === batch) {
    // One shared right operand and row-major rows in A: the whole batch is a
    // single [batch*M, K] x [K, N] product (dense layers on [B, T, D] inputs).
    lib.symbols.cblas_sgemm(
      CBLAS_ROW_MAJOR,
      transA,
      transB,
      batch * m,
      n,
      k,
      1,
      aVals,
      lda,
      bVals,
      ldb,
      0,
      outVals,
      n,
    );
    return out;
  }
  if (
    products !== null && batch > 1 && batchA === batch && batchB === batch &&
    m * k <= BATCHED_PRODUCT_MAX_OPERAND && k * n <= BATCHED_PRODUCT_MAX_OPERAND &&
    products.batched(batch, m, n, k, transposeA, transposeB, aVals, bVals, outVals)
  ) {
    return out;
  }
  const aIndex = batchA === batch ? null : broadcastBatchIndex(outOuter, outerA);
  const bIndex = batchB === batch ? null : broadcastBatchIndex(outOuter, outerB);
  const aSize = m * k;
  const bSize = k * n;
  const outSize = m * n;
  for (let i = 0; i < batch; i++) {
    const aAt = (aIndex === null ? i : aIndex[i]) * aSize;
    const bAt = (bIndex === null ? i : bIndex[i]) * bSize;
    lib.symbols.cblas_sgemm(
      CBLAS_ROW_MAJOR,
      transA,
      transB,
      m,
      n,
      k,
      1,
      aVals.subarray(aAt, aAt + aSize),
      lda,
      bVals.subarray(bAt, bAt + bSize),
      ldb,
      0,
      outVals.subarray(i * outSize, (i + 1) * outSize),
      n,
    );
  }
  return out;
}

function blasBatchMatMul(args: WasmKernelArgs): tf.TensorInfo {
  const { a, b } = args.inputs;
  if (a.dtype !== "float32" || b.dtype !== "float32") {
    return (originals!.batchMatMul.kernelFunc as unknown as KernelFn)(args);
  }
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  return sgemmProduct(a, b, transposeA, transposeB, args.backend);
}

/** Fused activations applied by running the wasm backend's own kernel. */
const ACTIVATION_KERNELS: Record<string, string> = {
  relu: "Relu",
  relu6: "Relu6",
  elu: "Elu",
  sigmoid: "Sigmoid",
  leakyrelu: "LeakyRelu",
  prelu: "Prelu",
};

function blasFusedMatMul(args: WasmKernelArgs): tf.TensorInfo {
  const { a, b } = args.inputs;
  const bias: tf.TensorInfo | undefined = args.inputs.bias;
  const preluActivationWeights: tf.TensorInfo | undefined = args.inputs.preluActivationWeights;
  const { transposeA, transposeB, activation, leakyreluAlpha } = args.attrs as {
    transposeA: boolean;
    transposeB: boolean;
    activation: string;
    leakyreluAlpha?: number;
  };
  const activationKernel = ACTIVATION_KERNELS[activation];
  if (
    a.dtype !== "float32" || b.dtype !== "float32" ||
    (activation !== "linear" && activationKernel === undefined)
  ) {
    return (originals!.fusedMatMul.kernelFunc as unknown as KernelFn)(args);
  }
  const backend = args.backend;
  let out = sgemmProduct(a, b, transposeA, transposeB, backend); // [...batch, M, N]
  const n = out.shape[out.shape.length - 1];
  if (
    bias != null && products !== null && bias.dtype === "float32" &&
    tf.util.sizeFromShape(bias.shape) === n &&
    bias.shape.every((d, i) => i === bias.shape.length - 1 || d === 1)
  ) {
    // A bias of one row: added in place, the same float32 sums as the Add kernel's.
    products.addRows(
      backend.typedArrayFromHeap(bias) as Float32Array,
      backend.typedArrayFromHeap(out) as Float32Array,
    );
  } else if (bias != null) {
    const withBias = runWasmKernel("Add", { a: out, b: bias }, backend);
    backend.disposeData(out.dataId);
    out = withBias;
  }
  if (activationKernel !== undefined) {
    const activated = activation === "prelu"
      ? runWasmKernel("Prelu", { x: out, alpha: preluActivationWeights }, backend)
      : runWasmKernel(activationKernel, { x: out }, backend, { alpha: leakyreluAlpha ?? 0.2 });
    backend.disposeData(out.dataId);
    out = activated;
  }
  return out;
}

/**
 * HarmonyRL's native kernels (`native_kernels.c`): compiled once per machine
 * by its own C compiler with `-O3 -march=native`, cached, and called through
 * Deno FFI on the wasm heap in place, as OpenBLAS is.
 *
 * Why: an LSTM's recurrent product (batch x hidden times hidden x 4 hidden)
 * runs thousands of times per training step with few rows. OpenBLAS packs all
 * of the weight matrix on every call: for the seed LSTM's 768 x 3072 weights
 * that took 0.8 ms a product, where the native kernel streams the weights in
 * place on every core in 0.22 ms (AMD EPYC Zen 5, 2 cores).
 *
 * No compiler, no `--allow-run`, or a failed build: {@link loadNativeKernels}
 * throws and the backend goes on with OpenBLAS alone. Needs `--allow-ffi`,
 * `--allow-run` for the compiler, and read and write access to the cache
 * folder ({@link nativeCacheDir}).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { join } from "node:path";
import { errorFirstLine } from "../../mod.ts";

const SOURCE = new URL("./native_kernels.c", import.meta.url);

/** The parameters of a product `C [M][N] = A [M][K] B [K][N]`: M, N, K, A, B, C. */
const PRODUCT_PARAMETERS = ["i32", "i32", "i32", "buffer", "buffer", "buffer"] as const;

/** The parameters of the attention heads and their gradient: 4 sizes, the scale, 6 arrays. */
const HEADS_PARAMETERS = [
  "i32",
  "i32",
  "i32",
  "i32",
  "f32",
  "buffer",
  "buffer",
  "buffer",
  "buffer",
  "buffer",
  "buffer",
] as const;

const SYMBOLS = {
  hrl_sgemm_small: {
    // M, N, K, A, B, C
    parameters: PRODUCT_PARAMETERS,
    result: "void",
  },
  hrl_sgemm_packed: {
    // M, N, K, A, P (B packed by hrl_pack_panels), C
    parameters: PRODUCT_PARAMETERS,
    result: "void",
  },
  hrl_pack_panels: {
    // K, N, B, P
    parameters: ["i32", "i32", "buffer", "buffer"],
    result: "void",
  },
  hrl_panel_columns: { parameters: [], result: "i32" },
  hrl_add_rows: {
    // rows, n, bias, c
    parameters: ["i32", "i32", "buffer", "buffer"],
    result: "void",
  },
  hrl_set_threads: { parameters: ["i32"], result: "i32" },
  hrl_vector_floats: { parameters: [], result: "i32" },
  hrl_cpu_has_avx512: { parameters: [], result: "i32" },
  hrl_lstm_gates_in: {
    // batch, H, xp, zh (or null), zs
    parameters: ["i32", "i32", "buffer", "buffer", "buffer"],
    result: "void",
  },
  hrl_lstm_combine: {
    // batch, H, s, cPrev (or null), a, c, c2
    parameters: ["i32", "i32", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "void",
  },
  hrl_lstm_output: {
    // batch, H, s, a, h, tc
    parameters: ["i32", "i32", "buffer", "buffer", "buffer", "buffer"],
    result: "void",
  },
  hrl_lstm_backward: {
    // batch, H, t, dy, a, c, tc, dhRec (or null), dcNext (or null), dz, dc
    parameters: [
      "i32",
      "i32",
      "i32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "void",
  },
  hrl_gelu: { parameters: ["i32", "buffer", "buffer"], result: "void" },
  hrl_gelu_grad: { parameters: ["i32", "buffer", "buffer", "buffer"], result: "void" },
  hrl_causal_softmax: { parameters: ["i32", "i32", "buffer", "buffer"], result: "void" },
  hrl_causal_softmax_grad: {
    parameters: ["i32", "i32", "buffer", "buffer", "buffer"],
    result: "void",
  },
  hrl_adamw: {
    // n, scalars, w, m, v, g, wOut, mOut, vOut
    parameters: [
      "i32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "void",
  },
  hrl_layer_norm: {
    // rows, n, x, gain, bias, y, xhat, rstd
    parameters: ["i32", "i32", "buffer", "buffer", "buffer", "buffer", "buffer", "buffer"],
    result: "void",
  },
  hrl_layer_norm_grad: {
    // rows, n, dy, gain, xhat, rstd, dx, dgain, dbias
    parameters: [
      "i32",
      "i32",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
      "buffer",
    ],
    result: "void",
  },
  hrl_sgemm_batched: {
    // batch, M, N, K, transA, transB, A, B, C
    parameters: ["i32", "i32", "i32", "i32", "i32", "i32", "buffer", "buffer", "buffer"],
    result: "i32",
  },
  hrl_attention_heads: {
    // batch, time, heads, hd, scale, qkv, cos, sin, q, k, v
    parameters: HEADS_PARAMETERS,
    result: "void",
  },
  hrl_attention_heads_grad: {
    // batch, time, heads, hd, scale, dq, dk, dv (each or null), cos, sin, dqkv
    parameters: HEADS_PARAMETERS,
    result: "void",
  },
  hrl_decode_attention: {
    // heads, len, cap, hd, q, k, v, y
    parameters: ["i32", "i32", "i32", "i32", "buffer", "buffer", "buffer", "buffer"],
    result: "void",
  },
} as const;

type NativeLibrary = Deno.DynamicLibrary<typeof SYMBOLS>;

/** The most rows of A the native product takes; more go to OpenBLAS, which is faster there. */
export const SMALL_PRODUCT_MAX_ROWS = 16;

/** What {@link loadNativeKernels} built and opened. */
export interface NativeInfo {
  /** The compiled library's path. */
  library: string;
  /** The compiler that built it, e.g. `"cc"`. */
  compiler: string;
  /** Floats per vector register in the build: 16 with AVX-512, 8 with AVX2. */
  vectorFloats: number;
  /** Threads each product is split over. */
  threads: number;
}

let native: { lib: NativeLibrary; info: NativeInfo } | null = null;

/**
 * Where compiled kernels are kept: `$XDG_CACHE_HOME/harmonyrl`, else `$HOME/.cache/harmonyrl`,
 * else null (neither variable is set or readable).
 */
export function nativeCacheDir(): string | null {
  const xdg = readableEnv("XDG_CACHE_HOME");
  if (xdg) return join(xdg, "harmonyrl");
  const home = readableEnv("HOME");
  return home ? join(home, ".cache", "harmonyrl") : null;
}

/** An environment variable's value, or undefined when it is unset or may not be read. */
function readableEnv(name: string): string | undefined {
  return Deno.permissions.querySync({ name: "env", variable: name }).state === "granted"
    ? Deno.env.get(name)
    : undefined;
}

/** Options of {@link loadNativeKernels}. */
export interface NativeOptions {
  /** Compilers tried in order (default `$CC` when readable, then `cc`, `gcc`, `clang`). */
  compilers?: string[];
  /** The cache folder (default {@link nativeCacheDir}). */
  cacheDir?: string;
  /** Threads per product (default one per CPU core, at most 16). */
  threads?: number;
}

/**
 * Builds (the first time on a machine) and opens the native kernels, once per process.
 *
 * @param options compilers, cache folder and threads
 * @returns what was opened
 * @throws Error that says why when FFI or running the compiler is not allowed, the kernels'
 *   source is not a local file, no compiler builds them, or the library does not open
 * @example
 * ```ts
 * import { loadNativeKernels } from "./native.ts";
 * try {
 *   const info = loadNativeKernels();
 *   console.log(`${info.library}: ${info.vectorFloats} floats a vector, ${info.threads} threads`);
 * } catch (e) {
 *   console.log(`No native kernels here: ${(e as Error).message}`);
 * }
 * ```
 */
export function loadNativeKernels(options: NativeOptions = {}): NativeInfo {
  if (native !== null) {
    if (options.threads !== undefined) {
      native.info.threads = native.lib.symbols.hrl_set_threads(options.threads);
    }
    return { ...native.info };
  }
  const why = (reason: string) => new Error(`Cannot load the native kernels: ${reason}`);
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    throw why("FFI is not allowed, run Deno with --allow-ffi");
  }
  if (SOURCE.protocol !== "file:") {
    throw why(`their source ${SOURCE.href} is not a local file`);
  }
  const cacheDir = options.cacheDir ?? nativeCacheDir();
  if (cacheDir === null) throw why("no cache folder: set HOME or XDG_CACHE_HOME");
  let source: string;
  try {
    source = Deno.readTextFileSync(SOURCE);
  } catch (e) {
    throw why(`cannot read ${SOURCE.pathname}: ${errorFirstLine(e)}`);
  }
  const reasons: string[] = [];
  for (const compiler of options.compilers ?? defaultCompilers()) {
    try {
      const key = createHash("sha256")
        .update([source, compiler, FLAGS.join(" "), Deno.build.target, targetMacros(compiler)]
          .join("\n"))
        .digest("hex").slice(0, 16);
      const library = join(cacheDir, `native-kernels-${key}.${libraryExtension()}`);
      if (!exists(library)) build(compiler, SOURCE.pathname, library);
      const lib = Deno.dlopen(library, SYMBOLS);
      const threads = options.threads ??
        Math.max(1, Math.min(navigator.hardwareConcurrency ?? 1, 16));
      const info: NativeInfo = {
        library,
        compiler,
        vectorFloats: lib.symbols.hrl_vector_floats(),
        threads: lib.symbols.hrl_set_threads(threads),
      };
      native = { lib, info };
      return { ...info };
    } catch (e) {
      reasons.push(`${compiler}: ${errorFirstLine(e)}`);
    }
  }
  throw why(reasons.join("; "));
}

/** The compiler's flags besides the output and the source. */
const FLAGS = ["-O3", "-march=native", "-shared", "-fPIC", "-pthread"];

function defaultCompilers(): string[] {
  const fromEnv = readableEnv("CC");
  return [...new Set([...(fromEnv ? [fromEnv] : []), "cc", "gcc", "clang"])];
}

/**
 * What `-march=native` means on this machine, as the compiler's predefined macros
 * (`__AVX512F__`, ...): part of the cache key, so that a cache folder shared between machines
 * never hands one a library built for another's vector units.
 */
function targetMacros(compiler: string): string {
  const output = runCompiler(compiler, ["-march=native", "-dM", "-E", "-x", "c", "-"]);
  return new TextDecoder().decode(output.stdout).split("\n").sort().join("\n");
}

function libraryExtension(): string {
  return Deno.build.os === "darwin" ? "dylib" : Deno.build.os === "windows" ? "dll" : "so";
}

function exists(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

/** Compiles into a temporary file first, so that a concurrent build never opens half a file. */
function build(compiler: string, source: string, library: string): void {
  Deno.mkdirSync(join(library, ".."), { recursive: true });
  const partial = `${library}.${Deno.pid}.tmp`;
  runCompiler(compiler, [...FLAGS, "-o", partial, source]);
  Deno.renameSync(partial, library);
}

/** Runs the compiler; throws with its first line of errors when it fails. */
function runCompiler(compiler: string, args: string[]): Deno.CommandOutput {
  let output: Deno.CommandOutput;
  try {
    output = new Deno.Command(compiler, { args, stdin: "null", stdout: "piped", stderr: "piped" })
      .outputSync();
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      throw new Error(`running it is not allowed, run Deno with --allow-run`);
    }
    throw e;
  }
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim().split("\n")[0] ?? "";
    throw new Error(`failed (exit ${output.code}): ${stderr}`);
  }
  return output;
}

/**
 * Whether the CPU has the AVX-512 subsets of OpenBLAS's SkylakeX kernels, as the native
 * kernels see it (`__builtin_cpu_supports`); null before {@link loadNativeKernels} succeeded.
 */
export function nativeCpuHasAvx512(): boolean | null {
  return native === null ? null : native.lib.symbols.hrl_cpu_has_avx512() === 1;
}

/** `C = A B` on dense row-major float32 arrays: A `[m, k]`, B `[k, n]`, C `[m, n]`. */
export type SmallProduct = (
  m: number,
  n: number,
  k: number,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
) => void;

/**
 * A batch of small products `C[i] = op(A[i])·op(B[i])`: op(A) `[m, k]` (A stored `[k, m]` when
 * `transA`), op(B) `[k, n]` (B stored `[n, k]` when `transB`). Returns false when it could not
 * get scratch memory (C is then incomplete).
 */
export type BatchedProduct = (
  batch: number,
  m: number,
  n: number,
  k: number,
  transA: boolean,
  transB: boolean,
  a: Float32Array,
  b: Float32Array,
  c: Float32Array,
) => boolean;

/**
 * The small product with B packed once for many products by one B (an LSTM's recurrent kernel
 * over a sequence): B `[k, n]` in panels of `columns` columns, each one contiguous stream
 * rather than k rows far apart. The same sums in the same order as {@link SmallProduct}.
 */
export interface PackedProduct {
  /** n must be a multiple of this. */
  columns: number;
  /** p (k·n floats) = b `[k, n]` in panels. */
  pack(k: number, n: number, b: Float32Array, p: Float32Array): void;
  /** c `[m, n]` = a `[m, k]` times the b that `p` packs. */
  product(m: number, n: number, k: number, a: Float32Array, p: Float32Array, c: Float32Array): void;
}

/**
 * The native attention of one query per head against a key/value cache, or null before
 * {@link loadNativeKernels} succeeded: `y[h] = Σ_j softmax_j(q[h]·k[h][j]) v[h][j]` over
 * positions `j < len`, with q and y `[heads, hd]` and k and v `[heads, cap, hd]` (rows from
 * `len` on are not read).
 */
export function nativeDecodeAttention():
  | ((
    heads: number,
    len: number,
    cap: number,
    hd: number,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
    y: Float32Array,
  ) => void)
  | null {
  if (native === null) return null;
  const attend = native.lib.symbols.hrl_decode_attention;
  return (heads, len, cap, hd, q, k, v, y) => attend(heads, len, cap, hd, q, k, v, y);
}

/** The native loops of the fused LSTM cell steps (`lstm_kernels.ts`); null stands for zeros. */
export interface NativeLstm {
  /** `zs = zh + xp` (or `xp`), doubled on the g columns; all `[batch, 4H]`. */
  gatesIn(
    batch: number,
    hidden: number,
    xp: Float32Array,
    zh: Float32Array | null,
    zs: Float32Array,
  ): void;
  /** From the gates' sigmoids: activations `a`, the cell state `c` and `2c`. */
  combine(
    batch: number,
    hidden: number,
    s: Float32Array,
    cPrev: Float32Array | null,
    a: Float32Array,
    c: Float32Array,
    c2: Float32Array,
  ): void;
  /** From the sigmoid of `2c`: `tc = tanh c` and `h = o·tc`. */
  output(
    batch: number,
    hidden: number,
    s: Float32Array,
    a: Float32Array,
    h: Float32Array,
    tc: Float32Array,
  ): void;
  /** The backward step `t`: `dz` `[batch, 4H]` and `dc` `[batch, H]`. */
  backward(
    batch: number,
    hidden: number,
    t: number,
    saved: { dy: Float32Array; a: Float32Array; c: Float32Array; tc: Float32Array },
    dhRec: Float32Array | null,
    dcNext: Float32Array | null,
    dz: Float32Array,
    dc: Float32Array,
  ): void;
}

let lstmLoops: NativeLstm | null = null;

/** The native LSTM loops, or null before {@link loadNativeKernels} succeeded. */
export function nativeLstm(): NativeLstm | null {
  if (native === null) return null;
  if (lstmLoops !== null) return lstmLoops;
  const s = native.lib.symbols;
  lstmLoops = {
    gatesIn: (batch, hidden, xp, zh, zs) => s.hrl_lstm_gates_in(batch, hidden, xp, zh, zs),
    combine: (batch, hidden, sig, cPrev, a, c, c2) =>
      s.hrl_lstm_combine(batch, hidden, sig, cPrev, a, c, c2),
    output: (batch, hidden, sig, a, h, tc) => s.hrl_lstm_output(batch, hidden, sig, a, h, tc),
    backward: (batch, hidden, t, saved, dhRec, dcNext, dz, dc) =>
      s.hrl_lstm_backward(
        batch,
        hidden,
        t,
        saved.dy,
        saved.a,
        saved.c,
        saved.tc,
        dhRec,
        dcNext,
        dz,
        dc,
      ),
  };
  return lstmLoops;
}

/** The native GELU, `x·σ(1.702x)`, and its gradient (`dy` given), or null before loading. */
export function nativeGelu():
  | ((x: Float32Array, dy: Float32Array | null, out: Float32Array) => void)
  | null {
  if (native === null) return null;
  const s = native.lib.symbols;
  return (x, dy, out) =>
    dy === null ? s.hrl_gelu(x.length, x, out) : s.hrl_gelu_grad(x.length, x, dy, out);
}

/**
 * The native causal softmax over rows of `t` scores (row r is position r mod t: positions
 * after it get 0), or its gradient when `dy` is given (then `input` is the softmax's output),
 * or null before loading.
 */
export function nativeCausalSoftmax():
  | ((t: number, input: Float32Array, dy: Float32Array | null, out: Float32Array) => void)
  | null {
  if (native === null) return null;
  const s = native.lib.symbols;
  return (t, input, dy, out) =>
    dy === null
      ? s.hrl_causal_softmax(input.length / t, t, input, out)
      : s.hrl_causal_softmax_grad(input.length / t, t, input, dy, out);
}

/**
 * The native AdamW step of one weight, or null before loading: reads `w`, `m`, `v`, `g` and
 * writes `wOut`, `mOut`, `vOut` (all of one length). `scalars` holds the float32 values b1,
 * 1 − b1, b2, 1 − b2, the two bias corrections, epsilon, the decay factor, the learning rate,
 * and 1 when the weight decays (else 0).
 */
export function nativeAdamW():
  | ((
    scalars: Float32Array,
    w: Float32Array,
    m: Float32Array,
    v: Float32Array,
    g: Float32Array,
    wOut: Float32Array,
    mOut: Float32Array,
    vOut: Float32Array,
  ) => void)
  | null {
  if (native === null) return null;
  const step = native.lib.symbols.hrl_adamw;
  return (scalars, w, m, v, g, wOut, mOut, vOut) =>
    step(w.length, scalars, w, m, v, g, wOut, mOut, vOut);
}

/** The native layer normalisation over rows of `n` and its gradient. */
export interface NativeLayerNorm {
  /** `y = (x − mean)·rstd·gain + bias` per row; also writes `xhat` and `rstd` (per row). */
  forward(
    n: number,
    x: Float32Array,
    gain: Float32Array,
    bias: Float32Array,
    y: Float32Array,
    xhat: Float32Array,
    rstd: Float32Array,
  ): void;
  /** `dx`, `dgain` and `dbias` from `dy` and the forward's `xhat` and `rstd`. */
  backward(
    n: number,
    dy: Float32Array,
    gain: Float32Array,
    xhat: Float32Array,
    rstd: Float32Array,
    dx: Float32Array,
    dgain: Float32Array,
    dbias: Float32Array,
  ): void;
}

/** The native layer normalisation, or null before {@link loadNativeKernels} succeeded. */
export function nativeLayerNorm(): NativeLayerNorm | null {
  if (native === null) return null;
  const s = native.lib.symbols;
  return {
    forward: (n, x, gain, bias, y, xhat, rstd) =>
      s.hrl_layer_norm(x.length / n, n, x, gain, bias, y, xhat, rstd),
    backward: (n, dy, gain, xhat, rstd, dx, dgain, dbias) =>
      s.hrl_layer_norm_grad(dy.length / n, n, dy, gain, xhat, rstd, dx, dgain, dbias),
  };
}

/** `c[r][j] += bias[j]` for c `[rows, n]` in place (rows = c.length / bias.length). */
export type AddRows = (bias: Float32Array, c: Float32Array) => void;

/** The native products that OpenBLAS's matMul kernels hand work to (openblas.ts). */
export interface NativeProducts {
  small: SmallProduct;
  packed: PackedProduct;
  batched: BatchedProduct;
  addRows: AddRows;
}

/** The native products, or null before {@link loadNativeKernels} succeeded. */
export function nativeProducts(): NativeProducts | null {
  if (native === null) return null;
  const s = native.lib.symbols;
  return {
    small: (m, n, k, a, b, c) => s.hrl_sgemm_small(m, n, k, a, b, c),
    packed: {
      columns: s.hrl_panel_columns(),
      pack: (k, n, b, p) => s.hrl_pack_panels(k, n, b, p),
      product: (m, n, k, a, p, c) => s.hrl_sgemm_packed(m, n, k, a, p, c),
    },
    batched: (batch, m, n, k, transA, transB, a, b, c) =>
      s.hrl_sgemm_batched(batch, m, n, k, transA ? 1 : 0, transB ? 1 : 0, a, b, c) === 0,
    addRows: (bias, c) => s.hrl_add_rows(c.length / bias.length, bias.length, bias, c),
  };
}

/** The shape of an attention's heads: `[batch, heads, time, headDim]` each of q, k and v. */
export interface HeadsShape {
  batch: number;
  time: number;
  heads: number;
  headDim: number;
}

/** The native attention heads (`hrl_attention_heads` in native_kernels.c) and their gradient. */
export interface NativeAttentionHeads {
  /** q, k, v `[B, NH, T, hd]` from qkv `[B*T, 3*NH*hd]`, cos and sin `[T, hd]`. */
  forward(
    shape: HeadsShape,
    scale: number,
    qkv: Float32Array,
    cos: Float32Array,
    sin: Float32Array,
    q: Float32Array,
    k: Float32Array,
    v: Float32Array,
  ): void;
  /** dqkv from dq, dk, dv (null: zero). */
  backward(
    shape: HeadsShape,
    scale: number,
    dq: Float32Array | null,
    dk: Float32Array | null,
    dv: Float32Array | null,
    cos: Float32Array,
    sin: Float32Array,
    dqkv: Float32Array,
  ): void;
}

/** The native attention heads, or null before {@link loadNativeKernels} succeeded. */
export function nativeAttentionHeads(): NativeAttentionHeads | null {
  if (native === null) return null;
  const s = native.lib.symbols;
  return {
    forward: ({ batch, time, heads, headDim }, scale, qkv, cos, sin, q, k, v) =>
      s.hrl_attention_heads(batch, time, heads, headDim, scale, qkv, cos, sin, q, k, v),
    backward: ({ batch, time, heads, headDim }, scale, dq, dk, dv, cos, sin, dqkv) =>
      s.hrl_attention_heads_grad(batch, time, heads, headDim, scale, dq, dk, dv, cos, sin, dqkv),
  };
}

/**
 * Picks and starts the TensorFlow.js backend that training and sampling run on.
 *
 * Order for `"auto"` (fastest first): `tfjs-node-gpu`, `tfjs-node`, `webgpu`
 * on a hardware adapter, `wasm-openblas`, `wasm`, `cpu`. Facts behind it are
 * in `TECH_NOTES.md`: wasm is 20-60x faster than cpu, OpenBLAS makes wasm's
 * batched and transposed products (the gradients) 30x faster, and a software
 * WebGPU adapter is slower than cpu-side wasm.
 *
 * Importing this module also registers tfjs's gradients and chained tensor
 * methods (`t.sum()`): tfjs-core's Node bundle ships neither, and
 * `tf.grads()` otherwise fails with "gradient function not found". It also
 * replaces the `BatchMatMul` gradient with one that handles broadcast batch
 * dimensions (`backend_gradients.ts`).
 *
 * Permissions: `--allow-read` (the wasm binaries), `--allow-ffi` (OpenBLAS),
 * `--allow-env` (tfjs reads flags). WebGPU needs no flag in Deno 2.9.
 *
 * @module
 */

// Side effect: the tfjs union package registers all gradients and chained ops
// into the same tfjs-core instance.
import "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-cpu";
import * as tf from "@tensorflow/tfjs-core";
import { fileURLToPath } from "node:url";
import { errorFirstLine } from "../../mod.ts";
import { registerBackendGradients } from "./backend_gradients.ts";
import { registerWasmKernels } from "./wasm_kernels.ts";
import {
  disableWasmThreads,
  MAX_WASM_THREADS,
  wasmThreadsUnavailable,
  withWasmThreads,
} from "./wasm_threads.ts";
import {
  installOpenBlasMatMul,
  loadOpenBlas,
  type OpenBlasCoreChoice,
  setOpenBlasThreads,
  uninstallOpenBlasMatMul,
  useNativeProducts,
} from "./openblas.ts";
import { loadNativeKernels, nativeProducts, SMALL_PRODUCT_MAX_ROWS } from "./native.ts";
import { installWasmMatMul, uninstallWasmMatMul } from "./wasm_matmul.ts";

// tfjs's own BatchMatMul gradient fails on broadcast batch dims (x [B, T, D] @ w [D, N]).
registerBackendGradients();

/** A backend that {@link initBackend} can start, or `"auto"` for the fastest available. */
export type BackendName =
  | "auto"
  | "tfjs-node-gpu"
  | "tfjs-node"
  | "webgpu"
  | "wasm-openblas"
  | "wasm"
  | "cpu";

/** Every accepted {@link BackendName}, `"auto"` first, then in `"auto"`'s order. */
export const BACKEND_NAMES: readonly BackendName[] = [
  "auto",
  "tfjs-node-gpu",
  "tfjs-node",
  "webgpu",
  "wasm-openblas",
  "wasm",
  "cpu",
];

/** A backend that `"auto"` tried and could not start. */
export interface SkippedBackend {
  name: BackendName;
  /** Why, in one line (for OpenBLAS: every library path tried). */
  reason: string;
}

/** What {@link initBackend} started. */
export interface BackendInfo {
  /** What actually runs: one of the {@link BackendName}s other than `"auto"`. */
  name: string;
  /** What the caller asked for. */
  requested: string;
  /** What runs, in a few words, e.g. `"OpenBLAS via libopenblas.so.0 (...); wasm SIMD on"`. */
  detail: string;
  /**
   * Why this backend: `"auto" picked the fastest that starts here`, or `named in the
   * config`.
   */
  reason: string;
  /** For `"auto"`: the faster backends tried first, in order, with why each did not start. */
  skipped: SkippedBackend[];
  /** The tfjs registry name to pass to `tf.setBackend()`: `"tensorflow"`, `"webgpu"`, `"wasm"` or `"cpu"`. */
  tfBackend: string;
}

/** Options of {@link initBackend}. */
export interface InitBackendOptions {
  /**
   * Receives one line per backend that `"auto"` tried and skipped
   * (`skipped "wasm-openblas": ...`), as it happens: details for a verbose log.
   */
  log?: (msg: string) => void;
  /**
   * Accept a software WebGPU adapter (e.g. Mesa llvmpipe). Off by default: it
   * is far slower than wasm. Tests turn it on to check webgpu numerics.
   */
  allowFallbackAdapter?: boolean;
  /** BLAS library path or soname to open instead of the default candidates. */
  openBlasLibrary?: string;
  /**
   * How OpenBLAS's kernels are picked on its first load in the process (`openblas.ts`):
   * `"cpu"` (default) from the CPU's features (AVX-512: SkylakeX), overriding
   * `OPENBLAS_CORETYPE`; `"env"` OpenBLAS's own choice and `OPENBLAS_CORETYPE`; or a core name
   * such as `"Haswell"`.
   */
  openBlasCoreType?: OpenBlasCoreChoice;
  /**
   * Build and use the native kernels (`native.ts`) for products with few rows, on
   * wasm-openblas (default true). Without a C compiler or `--allow-run` the backend goes on
   * without them, and `log` says why.
   */
  nativeKernels?: boolean;
  /** OpenBLAS thread count to set (wasm-openblas only); default: OpenBLAS's own. */
  openBlasThreads?: number;
  /**
   * Threads of the `wasm` backend (tfjs's threaded SIMD build, see `wasm_threads.ts`):
   * 0 or absent = one per CPU core (at most 8), 1 = the single-threaded build. Takes effect
   * only when the wasm runtime starts, the first time a wasm backend starts in the process;
   * `wasm-openblas` always starts it single-threaded (OpenBLAS runs its own threads).
   */
  wasmThreads?: number;
}

interface Started {
  tfBackend: string;
  detail: string;
}

const TFJS_NODE_PACKAGES = {
  "tfjs-node-gpu": "@tensorflow/tfjs-node-gpu",
  "tfjs-node": "@tensorflow/tfjs-node",
} as const;

/**
 * tfjs-node registers itself only when imported. We import it only when the
 * project maps it in deno.json: a bare `npm:` import would make Deno
 * download it (and another tfjs-core) on every run, then fail for want of
 * its native library.
 */
async function startTfjsNode(name: "tfjs-node-gpu" | "tfjs-node"): Promise<Started> {
  const pkg = TFJS_NODE_PACKAGES[name];
  let specifier: string;
  try {
    specifier = import.meta.resolve(pkg);
  } catch {
    throw new Error(
      `"${pkg}" is not installed: add "${pkg}": "npm:${pkg}@4.22.0" to the imports in deno.json ` +
        `and run "deno install --allow-scripts=npm:${pkg}"`,
    );
  }
  try {
    await import(specifier);
  } catch (e) {
    throw new Error(`"${pkg}" failed to load: ${errorFirstLine(e)}`);
  }
  await setTfBackend("tensorflow");
  return { tfBackend: "tensorflow", detail: `libtensorflow via ${pkg}` };
}

/** The subset of the WebGPU API used here (Deno's lib types vary by version). */
interface GpuLike {
  requestAdapter(options?: { powerPreference?: string }): Promise<
    {
      info?: {
        description?: string;
        vendor?: string;
        device?: string;
        isFallbackAdapter?: boolean;
      };
      isFallbackAdapter?: boolean;
    } | null
  >;
}

/** Names of software rasterisers that may not set `isFallbackAdapter`. */
const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|softpipe|swiftshader|basic render driver|warp/i;

async function startWebGpu(allowFallbackAdapter: boolean): Promise<Started> {
  const gpu = (navigator as unknown as { gpu?: GpuLike }).gpu;
  if (gpu === undefined) throw new Error("navigator.gpu is missing in this runtime");
  // Mesa's Vulkan drivers print "XDG_RUNTIME_DIR is invalid" on every probe when it is unset
  // (containers, CI); a private directory of our own quiets them and changes nothing else.
  try {
    if (Deno.build.os === "linux" && !Deno.env.get("XDG_RUNTIME_DIR")) {
      const dir = Deno.makeTempDirSync({ prefix: "harmonyrl-xdg-" });
      Deno.env.set("XDG_RUNTIME_DIR", dir);
      globalThis.addEventListener("unload", () => {
        try {
          Deno.removeSync(dir, { recursive: true });
        } catch {
          // Already gone, or not ours to remove any more: nothing to do.
        }
      });
    }
  } catch {
    // In the sandbox (no temp folder of its own) the drivers' warnings stay: nothing else changes.
  }
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (adapter === null) {
    throw new Error("no WebGPU adapter found (no Vulkan, Metal or D3D12 driver)");
  }
  const info = adapter.info ?? {};
  const description = info.description || info.device || info.vendor || "unknown adapter";
  const software = info.isFallbackAdapter === true || adapter.isFallbackAdapter === true ||
    SOFTWARE_ADAPTER.test(description);
  if (software && !allowFallbackAdapter) {
    throw new Error(
      `software adapter "${description}" skipped, it is far slower than wasm ` +
        `(pass allowFallbackAdapter: true to use it)`,
    );
  }
  // Imported only now: it registers "webgpu" with the highest priority, and a
  // software adapter must never be picked by tfjs's own default.
  await import("@tensorflow/tfjs-backend-webgpu");
  await setTfBackend("webgpu");
  return {
    tfBackend: "webgpu",
    detail: `adapter "${description}"${software ? " (software adapter allowed)" : ""}`,
  };
}

let wasmModule: typeof import("@tensorflow/tfjs-backend-wasm") | null = null;

/**
 * Loads tfjs-backend-wasm and points it at its .wasm binaries by absolute
 * path, so that it works from any working directory.
 */
async function loadWasmModule(): Promise<typeof import("@tensorflow/tfjs-backend-wasm")> {
  if (wasmModule === null) {
    const module = await import("@tensorflow/tfjs-backend-wasm");
    const url = import.meta.resolve("@tensorflow/tfjs-backend-wasm");
    if (url.startsWith("file:")) {
      const dir = fileURLToPath(new URL(".", url));
      const binary = `${dir}tfjs-backend-wasm-simd.wasm`;
      try {
        Deno.statSync(binary);
      } catch (e) {
        throw new Error(`"${binary}" cannot be read (${errorFirstLine(e)}); run "deno install"`);
      }
      module.setWasmPaths(dir);
    }
    wasmModule = module;
  }
  registerWasmKernels();
  return wasmModule;
}

/**
 * Starts the wasm backend. The first start in a process decides its build: threaded SIMD
 * with `wantThreads` threads when that is above 1 and the runtime allows it, single-threaded
 * SIMD otherwise; the detail says which, and why not threaded when threads were asked for.
 */
async function startWasm(wantThreads: number): Promise<string> {
  const module = await loadWasmModule();
  let note = "";
  if (!wasmRuntimeStarted() && wantThreads > 1) {
    const unavailable = wasmThreadsUnavailable();
    if (unavailable !== null) {
      note = ` (threads unavailable: ${unavailable})`;
    } else {
      try {
        await withWasmThreads(wantThreads, {
          setThreadsCount: module.setThreadsCount,
          start: () => setTfBackend("wasm"),
        });
      } catch (e) {
        // No time limit on the start: on a busy (or stopped) machine it can take minutes, and a
        // start still pending could not be retried. A failed one can, single-threaded.
        disableWasmThreads(module.setThreadsCount);
        note = ` (threads failed: ${errorFirstLine(e)})`;
      }
    }
  } else if (wantThreads > 1 && module.getThreadsCount() === 1) {
    note = " (the wasm runtime had already started single-threaded in this process)";
  }
  await setTfBackend("wasm");
  const simd = await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT");
  const threads = module.getThreadsCount();
  return `SIMD ${simd ? "on" : "off"}, ${threads} thread${threads === 1 ? "" : "s"}${note}`;
}

/**
 * Whether tfjs has started (or is starting) the wasm runtime in this process. Not
 * `tf.findBackend()`, which would start it.
 */
function wasmRuntimeStarted(): boolean {
  const engine = tf.engine() as unknown as { registry: Record<string, unknown> };
  return "wasm" in engine.registry;
}

/** The thread count `wasmThreads` asks for: 0 / absent means one per core, at most 8. */
function wasmThreadCount(options: InitBackendOptions): number {
  const asked = options.wasmThreads ?? 0;
  if (asked > 0) return Math.min(asked, MAX_WASM_THREADS);
  return Math.max(1, Math.min(navigator.hardwareConcurrency ?? 1, MAX_WASM_THREADS));
}

async function startWasmOpenBlas(options: InitBackendOptions): Promise<Started> {
  // The native kernels first: where /proc/cpuinfo cannot be read, they tell OpenBLAS's core
  // type. Open the library before loading the wasm runtime, so that a missing library costs
  // nothing.
  const nativeDetail = startNativeKernels(options);
  loadOpenBlas(options.openBlasLibrary, options.openBlasCoreType);
  await loadWasmModule();
  uninstallWasmMatMul();
  const blas = installOpenBlasMatMul(options.openBlasLibrary);
  if (options.openBlasThreads !== undefined) setOpenBlasThreads(options.openBlasThreads);
  let wasmDetail: string;
  try {
    wasmDetail = await startWasm(1);
  } catch (e) {
    uninstallOpenBlasMatMul();
    throw e;
  }
  const config = blas.config === "" ? "" : ` (${blas.config})`;
  const threads = options.openBlasThreads ?? blas.threads;
  return {
    tfBackend: "wasm",
    detail: `OpenBLAS via ${blas.library}${config}` +
      `${threads === null ? "" : `, ${threads} BLAS threads`}; ` +
      `${nativeDetail}wasm ${wasmDetail}`,
  };
}

/**
 * Loads the native kernels for OpenBLAS's small products, unless turned off. Returns the
 * part of the backend's detail that says so ("" without them; the log says why).
 */
function startNativeKernels(options: InitBackendOptions): string {
  useNativeProducts(null);
  if (options.nativeKernels === false) return "";
  try {
    const info = loadNativeKernels();
    useNativeProducts(nativeProducts());
    const width = info.vectorFloats * 32;
    return `native kernels (${info.compiler}, ${width}-bit vectors, ${info.threads} threads) ` +
      `for products of up to ${SMALL_PRODUCT_MAX_ROWS} rows; `;
  } catch (e) {
    options.log?.(`no native kernels: ${errorFirstLine(e)}`);
    return "";
  }
}

/** Plain wasm: the stock kernels, with matrix products rewritten into their fast form. */
async function startPlainWasm(options: InitBackendOptions): Promise<Started> {
  uninstallOpenBlasMatMul();
  const detail = await startWasm(wasmThreadCount(options));
  installWasmMatMul();
  return { tfBackend: "wasm", detail };
}

async function startCpu(): Promise<Started> {
  await setTfBackend("cpu");
  // Its first-use banner tells users to install tfjs-node, which initBackend
  // already tried: silence it.
  (tf.backend() as unknown as { firstUse?: boolean }).firstUse = false;
  return { tfBackend: "cpu", detail: "pure JavaScript" };
}

async function setTfBackend(tfName: string): Promise<void> {
  if (tf.getBackend() === tfName) return;
  if (!(await tf.setBackend(tfName))) {
    throw new Error(`tfjs could not initialise "${tfName}" (its warning above says why)`);
  }
}

function start(name: Exclude<BackendName, "auto">, options: InitBackendOptions): Promise<Started> {
  switch (name) {
    case "tfjs-node-gpu":
    case "tfjs-node":
      return startTfjsNode(name);
    case "webgpu":
      return startWebGpu(options.allowFallbackAdapter ?? false);
    case "wasm-openblas":
      return startWasmOpenBlas(options);
    case "wasm":
      return startPlainWasm(options);
    case "cpu":
      return startCpu();
  }
}

/** Results of earlier calls, so that repeating one is cheap. */
const started = new Map<string, BackendInfo>();

/**
 * Starts a tfjs backend and makes it the current one (`tf.getBackend()`).
 *
 * `"auto"` tries, in order: `tfjs-node-gpu`, `tfjs-node` (only when mapped
 * in deno.json), `webgpu` on a hardware adapter (a software one is skipped),
 * `wasm-openblas` (when an OpenBLAS or Accelerate library opens), `wasm`,
 * `cpu`. A named backend is started or the call throws. Every wasm start also
 * registers the kernels of `wasm_kernels.ts` (`UnsortedSegmentSum`, ...).
 * `"wasm"` restores the stock matMul kernels after `"wasm-openblas"`.
 *
 * Calling again with the same name and options is cheap: it re-selects the
 * backend already started.
 *
 * @param name the backend to start, default `"auto"`
 * @param options logging, WebGPU and OpenBLAS settings
 * @returns what runs and why
 * @throws Error naming the backend and the reason when a named backend
 *   cannot start, or the name is unknown
 * @example
 * ```ts
 * import { initBackend } from "./backend.ts";
 * const info = await initBackend("auto", { log: console.log });
 * console.log(`${info.name} (${info.detail}), ${info.reason}`);
 * ```
 */
export async function initBackend(
  name: BackendName = "auto",
  options: InitBackendOptions = {},
): Promise<BackendInfo> {
  if (!BACKEND_NAMES.includes(name)) {
    throw new Error(
      `Cannot start backend "${name}": unknown name, expected one of ${
        BACKEND_NAMES.map((n) => `"${n}"`).join(", ")
      }`,
    );
  }
  const log = options.log ?? (() => {});
  const key = `${name}|${options.allowFallbackAdapter ?? false}|${options.openBlasLibrary ?? ""}|${
    options.wasmThreads ?? 0
  }`;
  const known = started.get(key);
  if (known !== undefined) {
    if (known.name === "wasm-openblas") {
      uninstallWasmMatMul();
      installOpenBlasMatMul(options.openBlasLibrary);
    }
    if (known.name === "wasm") {
      uninstallOpenBlasMatMul();
      installWasmMatMul();
    }
    if (known.name === "wasm-openblas" && options.openBlasThreads !== undefined) {
      setOpenBlasThreads(options.openBlasThreads);
    }
    await setTfBackend(known.tfBackend);
    for (const s of known.skipped) log(`skipped "${s.name}": ${s.reason}`);
    return known;
  }

  let info: BackendInfo;
  if (name === "auto") {
    const skipped: SkippedBackend[] = [];
    let chosen: BackendInfo | null = null;
    for (const candidate of BACKEND_NAMES.slice(1) as Exclude<BackendName, "auto">[]) {
      try {
        const s = await start(candidate, options);
        chosen = {
          name: candidate,
          requested: name,
          detail: s.detail,
          reason: '"auto" picked the fastest that starts here',
          skipped,
          tfBackend: s.tfBackend,
        };
        break;
      } catch (e) {
        log(`skipped "${candidate}": ${errorFirstLine(e)}`);
        skipped.push({ name: candidate, reason: errorFirstLine(e) });
      }
    }
    if (chosen === null) {
      throw new Error(
        `Cannot start any backend: ${skipped.map((s) => `${s.name}: ${s.reason}`).join("; ")}`,
      );
    }
    info = chosen;
  } else {
    try {
      const s = await start(name, options);
      info = {
        name,
        requested: name,
        detail: s.detail,
        reason: "named in the config",
        skipped: [],
        tfBackend: s.tfBackend,
      };
    } catch (e) {
      throw new Error(`Cannot start backend "${name}": ${errorFirstLine(e)}`);
    }
  }
  started.set(key, info);
  return info;
}

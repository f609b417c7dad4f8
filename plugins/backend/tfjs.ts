/**
 * The TensorFlow.js tensor backend as a component plugin. A graph's
 * `backend: NAME` is shorthand for `{use: backend/tfjs, with: {name: NAME}}`.
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import { BACKEND_NAMES, type BackendName, initBackend } from "../_tf/backend.ts";
import { nativeCacheDir } from "../_tf/native.ts";

export default definePlugin({
  name: "backend/tfjs",
  kind: "backend",
  version: "1.2.0",
  description:
    "TensorFlow.js backend: auto picks tfjs-node-gpu, tfjs-node, webgpu (hardware adapter only), wasm-openblas, wasm, then cpu",
  // OpenBLAS is opened by name through FFI, after the CPU's flags pick its core type
  // (OPENBLAS_CORETYPE; Deno reads /proc/cpuinfo only with --allow-all, so in the sandbox
  // the native kernels tell the flags); the native kernels are built by the C compiler into
  // the cache folder (found from HOME or XDG_CACHE_HOME); Mesa's Vulkan drivers want
  // XDG_RUNTIME_DIR.
  permissions: (params) => {
    const blas = params.name === "auto" || params.name === "wasm-openblas";
    const vulkan = params.name === "auto" || params.name === "webgpu";
    const native = blas && params.nativeKernels;
    const cache = native ? nativeCacheDir() : null;
    return {
      ffi: blas,
      env: [
        ...(vulkan ? ["XDG_RUNTIME_DIR"] : []),
        ...(blas ? ["OPENBLAS_CORETYPE"] : []),
        ...(native ? ["CC", "HOME", "XDG_CACHE_HOME"] : []),
      ],
      read: cache === null ? [] : [cache],
      write: cache === null ? [] : [cache],
      run: native ? ["cc", "gcc", "clang"] : [],
    };
  },
  params: {
    name: p.string({
      default: "auto",
      enum: BACKEND_NAMES,
      description: "Backend to start; auto takes the fastest that loads",
    }),
    openBlasThreads: p.integer({
      default: 0,
      min: 0,
      description: "OpenBLAS threads for wasm-openblas (0 = OpenBLAS's default)",
    }),
    openBlasCoreType: p.string({
      default: "cpu",
      description:
        'OpenBLAS kernels: "cpu" picks them from the CPU (AVX-512: SkylakeX, which OpenBLAS 0.3.21 does not choose on AMD Zen 4 and 5), overriding OPENBLAS_CORETYPE; "env" keeps OpenBLAS\'s own choice and OPENBLAS_CORETYPE; or a core name such as "Haswell"',
    }),
    nativeKernels: p.boolean({
      default: true,
      description:
        "wasm-openblas: build the native kernels with the machine's C compiler (cached) and run products of up to 16 rows (an LSTM's recurrent step) on them",
    }),
    wasmThreads: p.integer({
      default: 0,
      min: 0,
      max: 8,
      description:
        "Threads for wasm (tfjs's threaded SIMD build; 0 = one per CPU core, 1 = single-threaded build)",
    }),
  },
  create: (params) => ({
    async init(log: (message: string) => void) {
      const info = await initBackend(params.name as BackendName, {
        log,
        openBlasThreads: params.openBlasThreads > 0 ? params.openBlasThreads : undefined,
        openBlasCoreType: params.openBlasCoreType,
        nativeKernels: params.nativeKernels,
        wasmThreads: params.wasmThreads,
      });
      return { name: info.name, detail: info.detail, reason: info.reason, skipped: info.skipped };
    },
  }),
});

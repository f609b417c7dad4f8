/**
 * Which native libraries load here, probed once when a test module loads. Opening them then,
 * outside any test, keeps Deno's leak check quiet when a test later starts `wasm-openblas`
 * (which opens OpenBLAS and the native kernels).
 *
 * @module
 */

import { loadOpenBlas } from "../openblas.ts";
import { loadNativeKernels } from "../native.ts";

function loads(open: () => unknown): boolean {
  try {
    open();
    return true;
  } catch {
    return false;
  }
}

/** OpenBLAS (or Accelerate) opened. */
export const hasOpenBlas: boolean = loads(() => loadOpenBlas());

/** The native kernels built (or came from the cache) and opened. */
export const hasNative: boolean = loads(() => loadNativeKernels());

/**
 * Starts tfjs-backend-wasm's threaded SIMD build (`tfjs-backend-wasm-threaded-simd.wasm`,
 * XNNPACK with a pthreadpool) under Deno, where tfjs itself only ever starts one thread.
 *
 * Why tfjs does not do it, and what this module changes (tfjs-backend-wasm 4.22, the Emscripten
 * glue inside `dist/tf-backend-wasm.node.js`):
 *
 * 1. The flag `WASM_HAS_MULTITHREAD_SUPPORT` returns false whenever tfjs detects Node
 *    (tfjs issue 3830). Deno passes every check the flag makes otherwise (SharedArrayBuffer,
 *    threads opcodes), so we set it to true.
 * 2. The glue's main thread takes its Node path (`ENVIRONMENT_IS_NODE`), sets
 *    `globalThis.Worker = require("worker_threads").Worker`, then starts its pool of 8 pthread
 *    workers with `new Worker(blobUrl)`, the worker script being a `blob:` URL; Deno's
 *    `node:worker_threads` refuses `blob:` URLs. While the backend starts, `globalThis.Worker`
 *    ignores that assignment and returns {@link PthreadWorker}: a `node:worker_threads` worker
 *    started from a `data:` URL (which Deno accepts) holding {@link PTHREAD_SHIM}. The shim
 *    fetches the blob's text and evaluates it, hides `process` so that the script takes its
 *    web-worker path (`self.onmessage`, `postMessage`), and gives it the synchronous
 *    `importScripts` that path needs by reading the main script's `Blob` before it hands the
 *    `load` message on. Deno posts the `WebAssembly.Module` and the shared
 *    `WebAssembly.Memory` to such a worker as it should.
 * 3. The glue refs a worker while a pthread runs on it, and XNNPACK's threads never end, so the
 *    process would never exit: {@link PthreadWorker} ignores `ref()` (the glue unrefs workers
 *    once loaded).
 * 4. The pool size is `min(requested, 8, emscripten_num_logical_cores() / 2)`, the last read
 *    once, in a static constructor, from `os.cpus().length` (halved for hyper-threading): on a
 *    2-core machine that is 1 thread whatever you ask. While the backend starts, `os.cpus()`
 *    reports twice the requested count.
 *
 * The heap is then a SharedArrayBuffer. It grows in place (views stay valid but keep their old
 * length), and tfjs re-takes `HEAPU8` after every `_malloc` on the main thread, so JS kernels
 * that take their views after `makeOutput()` (as `wasm_kernels.ts` does) keep working.
 *
 * Permissions: none beyond the wasm backend's own (`--allow-read` of the binaries).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import os from "node:os";
import { Worker as NodeWorker } from "node:worker_threads";

/** The most threads the build can use: its pool holds 8 workers (`PTHREAD_POOL_SIZE`). */
export const MAX_WASM_THREADS = 8;

/**
 * Runs in each pthread worker. `SCRIPT_URL` is replaced by the `blob:` URL of tfjs's worker
 * script. Messages are handed to the script in order, each after the previous one (and the
 * script itself) is ready.
 */
const PTHREAD_SHIM = `
const { parentPort } = await import("node:worker_threads");
const scriptUrl = SCRIPT_URL;
// Emscripten tests "typeof process" to pick its Node path; the web-worker path is the one
// that works here.
Object.defineProperty(globalThis, "process", { value: undefined, configurable: true, writable: true });
globalThis.self = globalThis;
globalThis.postMessage = (message, transfer) => parentPort.postMessage(message, transfer);
const urlTexts = new Map();
const blobTexts = new Map();
const createObjectURL = URL.createObjectURL;
URL.createObjectURL = (blob) => {
  const url = createObjectURL(blob);
  if (blobTexts.has(blob)) urlTexts.set(url, blobTexts.get(blob));
  return url;
};
globalThis.importScripts = (...urls) => {
  for (const url of urls) {
    const text = urlTexts.get(url);
    if (text === undefined) throw new Error('Cannot import "' + url + '": it was not read ahead');
    (0, eval)(text + "\\n//# sourceURL=tfjs-backend-wasm-threaded-simd.js");
  }
};
let ready = fetch(scriptUrl).then((r) => r.text()).then((text) => {
  (0, eval)(text + "\\n//# sourceURL=tfjs-backend-wasm-threaded-simd.worker.js");
});
parentPort.on("message", (data) => {
  ready = ready.then(async () => {
    if (data !== null && typeof data === "object" && data.cmd === "load") {
      const source = data.urlOrBlob;
      if (typeof source === "string") {
        urlTexts.set(source, await (await fetch(source)).text());
      } else {
        blobTexts.set(source, await source.text());
      }
    }
    globalThis.onmessage({ data });
  }).catch((e) => {
    // Report it as the worker's error (the glue logs and rethrows it) and keep the queue going.
    setTimeout(() => { throw e; });
  });
});
`;

/**
 * What the glue's `new Worker(url)` makes while the backend starts: a `node:worker_threads`
 * worker (the glue's main thread speaks its `on("message")` / `unref()` API) running
 * {@link PTHREAD_SHIM}.
 */
class PthreadWorker extends NodeWorker {
  constructor(scriptUrl: string | URL) {
    const code = PTHREAD_SHIM.replace("SCRIPT_URL", JSON.stringify(String(scriptUrl)));
    super(new URL(`data:text/javascript,${encodeURIComponent(code)}`));
  }

  /** XNNPACK's threads never end: a ref'd worker would keep the process alive forever. */
  override ref(): void {}
}

/**
 * Why the threaded build cannot start in this runtime, or null when it can.
 *
 * @returns One line, or null
 */
export function wasmThreadsUnavailable(): string | null {
  if (typeof SharedArrayBuffer !== "function") return "SharedArrayBuffer is missing";
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
  } catch (e) {
    return `shared WebAssembly memory is not supported (${(e as Error).message})`;
  }
  const desc = Object.getOwnPropertyDescriptor(globalThis, "Worker");
  if (desc === undefined || !desc.configurable) return "globalThis.Worker cannot be replaced";
  return null;
}

/**
 * Runs `start` (which must initialise tfjs's `wasm` backend for the first time in this
 * process) so that the backend starts with the threaded SIMD build and `threads` threads
 * (the main thread is one of them). Sets tfjs's `WASM_HAS_MULTITHREAD_SUPPORT` flag; restores
 * `globalThis.Worker` and `os.cpus` afterwards, whether `start` succeeds or not.
 *
 * @param threads XNNPACK threads, 2 to {@link MAX_WASM_THREADS}
 * @param options `setThreadsCount` from tfjs-backend-wasm; `start`, which starts the backend
 * @returns What `start` returns
 * @throws Error when `threads` is out of range, or what `start` throws
 */
export async function withWasmThreads<T>(
  threads: number,
  options: { setThreadsCount: (n: number) => void; start: () => Promise<T> },
): Promise<T> {
  if (!Number.isInteger(threads) || threads < 2 || threads > MAX_WASM_THREADS) {
    throw new Error(
      `Cannot start ${threads} wasm threads: expected an integer from 2 to ${MAX_WASM_THREADS}`,
    );
  }
  const workerDesc = Object.getOwnPropertyDescriptor(globalThis, "Worker")!;
  const osWithCpus = os as unknown as { cpus: () => unknown[] };
  const cpus = osWithCpus.cpus;
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true);
  options.setThreadsCount(threads);
  // The glue assigns Node's Worker to globalThis.Worker, then constructs it: keep ours.
  Object.defineProperty(globalThis, "Worker", {
    configurable: true,
    get: () => PthreadWorker,
    set: () => {},
  });
  // The pool is capped at half the logical cores the glue sees (see the module comment).
  osWithCpus.cpus = () =>
    Array.from({ length: 2 * threads }, () => ({
      model: "",
      speed: 0,
      times: { user: 0, nice: 0, sys: 0, idle: 0, irq: 0 },
    }));
  try {
    return await options.start();
  } finally {
    osWithCpus.cpus = cpus;
    Object.defineProperty(globalThis, "Worker", workerDesc);
  }
}

/**
 * Undoes {@link withWasmThreads}'s flag after a failed start, so that a retry starts the
 * single-threaded SIMD build.
 *
 * @param setThreadsCount `setThreadsCount` from tfjs-backend-wasm
 */
export function disableWasmThreads(setThreadsCount: (n: number) => void): void {
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
  setThreadsCount(-1);
}

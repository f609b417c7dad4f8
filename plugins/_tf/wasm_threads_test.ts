import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { wasmThreadsUnavailable, withWasmThreads } from "./wasm_threads.ts";

const unavailable = wasmThreadsUnavailable();

/** Runs `testdata/wasm_step.ts` with `threads` in a fresh process (the wasm build is per process). */
async function stepIn(threads: number) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", "plugins/_tf/testdata/wasm_step.ts", `${threads}`],
    cwd: fileURLToPath(new URL("../../", import.meta.url)),
    stdout: "piped",
    stderr: "piped",
    // A threaded process that never exits (a ref'd pthread worker) fails here instead of hanging.
    signal: AbortSignal.timeout(180_000),
  }).output();
  const err = new TextDecoder().decode(stderr);
  assert.equal(code, 0, `wasm_step.ts ${threads} failed: ${err}`);
  type Step = { firstLogits: number[]; gradNorm: number; losses: number[] };
  return JSON.parse(new TextDecoder().decode(stdout)) as {
    detail: string;
    lstm: Step;
    transformer: Step;
  };
}

Deno.test("wasmThreadsUnavailable() finds shared wasm memory and a replaceable Worker in Deno", () => {
  assert.equal(unavailable, null);
});

Deno.test("withWasmThreads() rejects a thread count outside 2 to 8 before touching anything", async () => {
  for (const threads of [1, 9, 2.5]) {
    await assert.rejects(
      () => withWasmThreads(threads, { setThreadsCount: () => {}, start: () => Promise.resolve() }),
      new RegExp(`^Error: Cannot start ${threads} wasm threads: expected an integer from 2 to 8$`),
    );
  }
  assert.equal(typeof globalThis.Worker, "function");
});

Deno.test({
  name: "wasm on 2 threads trains the LSTM and the Transformer exactly as on 1 thread " +
    "(needs SharedArrayBuffer and shared wasm memory)",
  ignore: unavailable !== null,
  fn: async () => {
    const [single, threaded] = await Promise.all([stepIn(1), stepIn(2)]);
    assert.equal(single.detail, "SIMD on, 1 thread");
    assert.equal(threaded.detail, "SIMD on, 2 threads");
    for (const kind of ["lstm", "transformer"] as const) {
      const a = single[kind];
      const b = threaded[kind];
      assert.ok(a.losses[1] < a.losses[0], `${kind} learns: ${a.losses}`);
      a.losses.forEach((l, i) =>
        assert.ok(
          Math.abs(b.losses[i] - l) <= 1e-5 * Math.abs(l),
          `${kind} loss ${i}: ${b.losses[i]} vs ${l}`,
        )
      );
      assert.ok(
        Math.abs(b.gradNorm - a.gradNorm) <= 1e-5 * a.gradNorm,
        `${kind} gradient norm ${b.gradNorm} vs ${a.gradNorm}`,
      );
      assert.equal(b.firstLogits.length, a.firstLogits.length);
      a.firstLogits.forEach((v, i) =>
        assert.ok(
          Math.abs(b.firstLogits[i] - v) <= 1e-5,
          `${kind} logit ${i}: ${b.firstLogits[i]} vs ${v}`,
        )
      );
    }
  },
});

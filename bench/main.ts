/**
 * Benchmarks: `deno task bench [tokenize] [models] [--maestro DIR] [--backend NAME]`.
 *
 * Prints each figure and appends it as a JSON line
 * `{"name", "value", "unit", "backend", "date"}` to `bench/results.jsonl`, so
 * runs can be compared over time. Speed targets live here, never in tests.
 *
 * - tokenize: read and tokenise every MAESTRO file with both tokenizers, in
 *   two workers (files/s, notes/s, wall time, peak memory). Target: all of
 *   MAESTRO in 10 s or less on two cores.
 * - models: training and sampling tokens/s and peak memory for the
 *   configurations of the models issue, beside PyTorch running the same
 *   workloads (`bench/torch_reference.py`) on the same machine, when
 *   `--python` (default `python3`) imports torch; `--python none` skips it.
 *   `--rounds N` (default 2) rounds alternate PyTorch's script and ours, and
 *   each side's figure is its best round (the machine's speed drifts by tens
 *   of percent). Without PyTorch the ratios use recorded figures, and say so.
 * - backends: the default graph's own model work (its LSTM's training step
 *   and its rollout sampling) and a 1024² matMul, each in a fresh process
 *   (the wasm build is chosen once per process), on plain wasm with one
 *   thread, on plain wasm with one thread per core (tfjs's threaded SIMD
 *   build) and on wasm-openblas when OpenBLAS loads: the plain-machine
 *   figures beside the OpenBLAS ones. Also prints the CPU seconds each used,
 *   so that a busy machine still shows how much the threads cost.
 * - default-models: the workloads of `backends` on `--backend` only.
 *
 * @module
 */

import { parseArgs } from "node:util";
import process from "node:process";
import * as tf from "@tensorflow/tfjs-core";
import { join } from "node:path";
import { type BackendName, initBackend } from "../plugins/_tf/backend.ts";
import { loadOpenBlas } from "../plugins/_tf/openblas.ts";
import { type BenchResult, benchSample, benchTrain, type KernelSplit } from "./model_bench.ts";
import { pytorchReference, RECORDED, type Reference, type Workload } from "./pytorch.ts";
import type { ModelSpec } from "../plugins/_tf/model.ts";
import lstm from "../plugins/model/lstm.ts";
import transformer from "../plugins/model/transformer.ts";
import { tokenizeFiles } from "../plugins/tokenize/events.ts";
import { defaultParams, testContext } from "../plugins/_testing.ts";
import type { Tokenizer } from "../plugins/_music/components.ts";

const args = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    maestro: { type: "string", default: "data/maestro-v3.0.0" },
    backend: { type: "string", default: "auto" },
    "wasm-threads": { type: "string", default: "0" },
    out: { type: "string", default: "bench/results.jsonl" },
    python: { type: "string", default: "python3" },
    rounds: { type: "string", default: "2" },
  },
});
const rounds = Number(args.values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(
    `bench: --rounds must be a whole number of at least 1, not "${args.values.rounds}"`,
  );
  Deno.exit(2);
}
const sections = args.positionals.length > 0
  ? args.positionals
  : ["tokenize", "models", "backends"];
const date = new Date().toISOString();
let backendName = "none";

/** Prints a figure and appends it to the results file. */
async function record(
  name: string,
  value: number,
  unit: string,
  reference?: number,
): Promise<void> {
  const shown = value >= 100 ? value.toFixed(0) : value.toPrecision(3);
  const ref = reference === undefined
    ? ""
    : `   (PyTorch: ${reference.toFixed(0)}; ratio ${(value / reference).toFixed(2)})`;
  console.log(`  ${name.padEnd(58)} ${shown.padStart(10)} ${unit}${ref}`);
  const line = JSON.stringify({ name, value, unit, backend: backendName, date }) + "\n";
  await Deno.writeTextFile(args.values.out!, line, { append: true });
}

/** Samples the process's resident memory while `work` runs; returns its result and the peak. */
async function withPeakRss<T>(work: () => Promise<T>): Promise<{ result: T; peakBytes: number }> {
  let peak = Deno.memoryUsage().rss;
  const timer = setInterval(() => peak = Math.max(peak, Deno.memoryUsage().rss), 50);
  try {
    const result = await work();
    peak = Math.max(peak, Deno.memoryUsage().rss);
    return { result, peakBytes: peak };
  } finally {
    clearInterval(timer);
  }
}

async function listMaestro(dir: string): Promise<string[]> {
  const files: string[] = [];
  const walk = async (sub: string) => {
    for await (const entry of Deno.readDir(join(dir, sub))) {
      const rel = join(sub, entry.name);
      if (entry.isDirectory) await walk(rel);
      else if (/\.midi?$/i.test(entry.name)) files.push(join(dir, rel));
    }
  };
  await walk("");
  return files.sort();
}

async function benchTokenize(): Promise<void> {
  console.log(`\nTokenisation of MAESTRO (${args.values.maestro})`);
  let files: string[];
  try {
    files = await listMaestro(args.values.maestro!);
  } catch {
    console.log(`  skipped: no MAESTRO at "${args.values.maestro}" (give --maestro DIR)`);
    return;
  }
  for (const use of ["tokenizer/performance", "tokenizer/remi"]) {
    const short = use.split("/")[1];
    const ctx = testContext();
    const tokenizer = await ctx.component<Tokenizer>(use, "tokenizer");
    const module = await ctx.componentSpec(use, "tokenizer");
    const t0 = performance.now();
    const { result, peakBytes } = await withPeakRss(() =>
      tokenizeFiles(files, tokenizer, {
        workers: 2,
        worker: { url: module.url!, spec: module.spec },
        readOptions: { sustain: true },
      })
    );
    const sec = (performance.now() - t0) / 1000;
    const prefix = `tokenize/${short}/maestro-all/2-workers`;
    await record(`${prefix}/wall`, sec, "s");
    await record(`${prefix}/files-per-sec`, files.length / sec, "files/s");
    await record(`${prefix}/notes-per-sec`, result.noteCount / sec, "notes/s");
    await record(`${prefix}/tokens`, result.corpus.tokens.length, "tokens");
    await record(`${prefix}/skipped`, result.skipped.length, "files");
    await record(`${prefix}/peak-rss`, peakBytes / 2 ** 20, "MiB");
  }
}

function spec(
  plugin: typeof lstm | typeof transformer,
  params: Record<string, unknown>,
): ModelSpec {
  return plugin.create(defaultParams(plugin, params) as never) as ModelSpec;
}

/** One workload of `models`: its figure's name, PyTorch's matching figure and its run. */
interface ModelWorkload {
  name: string;
  torch: Workload;
  run: () => Promise<BenchResult>;
}

/** The figure of the round with the most tokens per second. */
function best(results: BenchResult[]): BenchResult {
  return results.reduce((a, b) => b.tokensPerSec > a.tokensPerSec ? b : a);
}

async function benchModels(): Promise<void> {
  const transformerSpec = spec(transformer, {
    dModel: 256,
    layers: 4,
    heads: 4,
    ffDim: 1024,
    dropout: 0,
  });
  const lstmSmall = spec(lstm, { embedDim: 256, hiddenDim: 512, layers: 2, dropout: 0 });
  const lstmSeed = spec(lstm, { embedDim: 512, hiddenDim: 768, layers: 3, dropout: 0.2 });
  const workloads: ModelWorkload[] = [
    {
      name: "train/transformer-d256-l4-h4-ff1024/b16-t256",
      torch: "transformerTrain",
      run: () => benchTrain(transformerSpec, { batch: 16, seqLen: 256, steps: 4, warmup: 3 }),
    },
    {
      name: "train/lstm-e256-h512-l2/b16-t256",
      torch: "lstmSmallTrain",
      run: () => benchTrain(lstmSmall, { batch: 16, seqLen: 256, steps: 4, warmup: 3 }),
    },
    {
      name: "train/lstm-seed-e512-h768-l3/b8-t512",
      torch: "lstmSeedTrain",
      run: () => benchTrain(lstmSeed, { batch: 8, seqLen: 512, steps: 3, warmup: 2 }),
    },
    {
      name: "sample/lstm-e256-h512-l2/b16x512",
      torch: "lstmSmallSample",
      run: () => benchSample(lstmSmall, { batch: 16, length: 512, reps: 3 }),
    },
    {
      name: "sample/lstm-seed-e512-h768-l3/b16x512",
      torch: "lstmSeedSample",
      run: () => benchSample(lstmSeed, { batch: 16, length: 512, reps: 3 }),
    },
    {
      name: "sample/transformer-d256-l4-kv-cache/b16x512",
      torch: "transformerSample",
      run: () => benchSample(transformerSpec, { batch: 16, length: 512, reps: 3 }),
    },
  ];
  const peak = await matMulRate(2048, 3);
  console.log(`\nModels on ${backendName} (vocab 388), ${rounds} round(s)`);
  console.log(
    "  Each round runs PyTorch's script (a fresh process, its sections in this order) and then\n" +
      "  these workloads; each side's figure is its best round, and the rounds are listed.",
  );
  await record("matmul/2048x2048", peak, "GFLOP/s");
  // Rounds alternate between the two sides, so that a slow spell of the machine falls on both.
  const torchRounds: Reference[] = [];
  const ours: BenchResult[][] = workloads.map(() => []);
  let torchNote: string | undefined;
  for (let round = 1; round <= rounds; round++) {
    if (args.values.python !== "none" && torchNote === undefined) {
      console.log(`  round ${round}: PyTorch (${args.values.python} bench/torch_reference.py)`);
      const run = await pytorchReference(args.values.python!);
      if (run.note === undefined) torchRounds.push(run.reference);
      else torchNote = run.note;
    }
    console.log(`  round ${round}: HarmonyRL`);
    for (const [i, workload] of workloads.entries()) ours[i].push(await workload.run());
  }
  let reference = RECORDED;
  if (args.values.python === "none") {
    console.log(`  PyTorch not run (--python none): ratios use ${RECORDED.label}`);
  } else if (torchRounds.length === 0) {
    console.log(`  ${torchNote}: ratios use ${RECORDED.label}`);
  } else {
    reference = torchRounds[0];
    console.log(`  ${reference.label}`);
  }
  console.log("");
  const splits: string[] = [];
  for (const [i, workload] of workloads.entries()) {
    const r = best(ours[i]);
    const torchFigures = torchRounds.map((t) => t.tokensPerSec[workload.torch]);
    const torchBest = torchFigures.length > 0
      ? Math.max(...torchFigures)
      : reference.tokensPerSec[workload.torch];
    await record(`${workload.name}/tokens-per-sec`, r.tokensPerSec, "tok/s", torchBest);
    const each = (xs: number[]) => xs.map((x) => x.toFixed(0)).join(" / ");
    console.log(
      `    rounds: ${each(ours[i].map((x) => x.tokensPerSec))} tok/s` +
        (torchFigures.length > 0 ? `; PyTorch ${each(torchFigures)} tok/s` : ""),
    );
    await record(`${workload.name}/peak-tensor-memory`, r.peakBytes / 2 ** 20, "MiB");
    if (r.split === undefined) continue;
    // Matrix-product FLOPs of a step over the step's median time.
    const rate = r.split.matMulFlops / r.medianSec / 1e9;
    await record(`${workload.name}/matmul-rate`, rate, "GFLOP/s");
    await record(`${workload.name}/share-of-2048-matmul`, (100 * rate) / peak, "%");
    splits.push(formatSplit(workload.name, r.split));
  }
  console.log("\nWhere one training step's time goes (tf.profile, kernel time per kernel)");
  for (const split of splits) console.log(split);
}

/** GFLOP/s of an n × n matMul on the current backend: the mean of `reps` runs after a warm-up. */
async function matMulRate(n: number, reps: number): Promise<number> {
  const a = tf.randomUniform([n, n], -1, 1);
  // wasm and cpu run kernels synchronously: the call is the product. Reading the result back
  // (16 MiB at n = 2048) took as long as the product itself on wasm, so it is left out there;
  // other backends must be waited for.
  const synchronous = ["wasm", "cpu"].includes(tf.getBackend());
  const run = async () => {
    const c = tf.matMul(a, a);
    if (!synchronous) await c.data();
    c.dispose();
  };
  await run();
  const t0 = performance.now();
  for (let i = 0; i < reps; i++) await run();
  a.dispose();
  return (reps * 2 * n ** 3) / ((performance.now() - t0) / 1000) / 1e9;
}

/** A Markdown table of a step's kernel time split (the top 8, the rest, and time outside kernels). */
function formatSplit(name: string, split: KernelSplit): string {
  const lines = [
    `\n${name}: step ${split.stepMs.toFixed(0)} ms while profiled`,
    "",
    "| kernel | calls | ms | share |",
    "| --- | ---: | ---: | ---: |",
  ];
  const row = (label: string, calls: string, ms: number) =>
    lines.push(
      `| ${label} | ${calls} | ${ms.toFixed(1)} | ${((100 * ms) / split.stepMs).toFixed(1)}% |`,
    );
  const top = split.kernels.slice(0, 8);
  for (const k of top) row(k.name, `${k.calls}`, k.ms);
  const rest = split.kernels.slice(8);
  const restMs = rest.reduce((sum, k) => sum + k.ms, 0);
  row(`${rest.length} other kernels`, `${rest.reduce((sum, k) => sum + k.calls, 0)}`, restMs);
  const inKernels = split.kernels.reduce((sum, k) => sum + k.ms, 0);
  row(
    "outside kernels (JavaScript, tfjs engine, native ops)",
    "",
    Math.max(0, split.stepMs - inKernels),
  );
  return lines.join("\n");
}

/** One figure of {@link benchDefaultModels}: its value and the process CPU seconds it took. */
interface DefaultFigure {
  name: string;
  value: number;
  unit: string;
  wallSec: number;
  cpuSec: number;
}

/** Runs `work`, returning its wall and CPU seconds (all threads of the process). */
async function timed(work: () => Promise<number>) {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const value = await work();
  const cpu = process.cpuUsage(cpu0);
  return { value, wallSec: (performance.now() - t0) / 1000, cpuSec: (cpu.user + cpu.system) / 1e6 };
}

/**
 * The default graph's (configs/pipeline.yaml) model work on the current backend: its LSTM
 * (embed 64, hidden 192, 1 layer) trained on 16 × 128 windows, sampled 32 × 256 as a rollout
 * does, and a 1024² matMul.
 */
async function benchDefaultModels(): Promise<DefaultFigure[]> {
  const model = spec(lstm, { embedDim: 64, hiddenDim: 192, layers: 1, dropout: 0.1 });
  const figures: DefaultFigure[] = [];
  const add = async (name: string, unit: string, work: () => Promise<number>) => {
    const { value, wallSec, cpuSec } = await timed(work);
    await record(name, value, unit);
    figures.push({ name, value, unit, wallSec, cpuSec });
  };
  await add(
    "default/train/lstm-e64-h192-l1/b16-t128",
    "tok/s",
    async () => (await benchTrain(model, { batch: 16, seqLen: 128, steps: 8 })).tokensPerSec,
  );
  await add(
    "default/sample/lstm-e64-h192-l1/b32x256",
    "tok/s",
    async () => (await benchSample(model, { batch: 32, length: 256, reps: 2 })).tokensPerSec,
  );
  await add("matmul/1024x1024", "GFLOP/s", () => matMulRate(1024, 5));
  return figures;
}

/** The backend configurations `backends` compares, each run in its own process. */
function backendConfigs(): { label: string; backend: BackendName; wasmThreads: number }[] {
  const cores = navigator.hardwareConcurrency ?? 1;
  const configs: { label: string; backend: BackendName; wasmThreads: number }[] = [
    { label: "wasm, 1 thread", backend: "wasm", wasmThreads: 1 },
  ];
  if (cores > 1) {
    configs.push({ label: `wasm, ${Math.min(cores, 8)} threads`, backend: "wasm", wasmThreads: 0 });
  }
  try {
    loadOpenBlas();
    configs.push({ label: "wasm-openblas", backend: "wasm-openblas", wasmThreads: 1 });
  } catch (e) {
    console.log(`  wasm-openblas skipped: ${(e as Error).message.split("\n")[0]}`);
  }
  return configs;
}

async function benchBackends(): Promise<void> {
  console.log("\nThe default graph's model work, plain wasm beside OpenBLAS (a process each)");
  const rows: { label: string; detail: string; figures: DefaultFigure[] }[] = [];
  for (const config of backendConfigs()) {
    console.log(`\n${config.label}`);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-write",
        "--allow-env",
        "--allow-ffi",
        "--allow-sys",
        "--allow-run", // the C compiler of the native kernels
        import.meta.filename!,
        "default-models",
        "--backend",
        config.backend,
        "--wasm-threads",
        `${config.wasmThreads}`,
        "--out",
        args.values.out!,
      ],
      stdout: "piped",
      stderr: "inherit",
    });
    const { code, stdout } = await child.output();
    const lines = new TextDecoder().decode(stdout).trimEnd().split("\n");
    const last = lines.pop() ?? "";
    for (const line of lines.slice(1)) console.log(line);
    if (code !== 0 || !last.startsWith("{")) {
      console.log(`  failed (exit code ${code})`);
      continue;
    }
    rows.push({ label: config.label, ...JSON.parse(last) });
  }
  if (rows.length === 0) return;
  console.log("\n| workload | " + rows.map((r) => r.label).join(" | ") + " |");
  console.log("| --- |" + " ---: |".repeat(rows.length));
  for (let i = 0; i < rows[0].figures.length; i++) {
    const f = rows[0].figures[i];
    const cells = rows.map((r) => {
      const g = r.figures[i];
      return `${g.value >= 100 ? g.value.toFixed(0) : g.value.toPrecision(3)} ${g.unit} ` +
        `(${g.cpuSec.toFixed(1)} CPU s in ${g.wallSec.toFixed(1)} s)`;
    });
    console.log(`| ${f.name} | ${cells.join(" | ")} |`);
  }
}

console.log(`HarmonyRL benchmarks, ${date}; results appended to ${args.values.out}`);
if (sections.includes("tokenize")) await benchTokenize();
if (sections.includes("models") || sections.includes("default-models")) {
  const info = await initBackend(args.values.backend as "auto", {
    wasmThreads: Number(args.values["wasm-threads"]),
  });
  const threads = /(\d+) threads?/.exec(info.detail)?.[1];
  backendName = info.name === "wasm" && threads !== undefined
    ? `wasm-${threads}-thread${threads === "1" ? "" : "s"}`
    : info.name;
  console.log(`\nbackend: ${info.name} (${info.detail})`);
  if (sections.includes("models")) await benchModels();
  if (sections.includes("default-models")) {
    const figures = await benchDefaultModels();
    console.log(JSON.stringify({ detail: info.detail, figures }));
  }
}
if (sections.includes("backends")) await benchBackends();

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
 *   configurations of the models issue, beside PyTorch 1.13 measured on the
 *   same kind of 2-core machine (`shared/bench/torch_reference.py`).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { initBackend } from "../plugins/_tf/backend.ts";
import { type BenchResult, benchSample, benchTrain } from "./model_bench.ts";
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
    out: { type: "string", default: "bench/results.jsonl" },
  },
});
const sections = args.positionals.length > 0 ? args.positionals : ["tokenize", "models"];
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
    : `   (PyTorch 1.13: ${reference}; ratio ${(value / reference).toFixed(2)})`;
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

/** PyTorch 1.13 on this kind of 2-core machine, tokens/s (from the models issue). */
const TORCH = {
  transformerTrain: 2828,
  lstmSmallTrain: 2001,
  lstmSeedTrain: 219,
  lstmSmallSample: 3763,
  lstmSeedSample: 1276,
  transformerSample: 715,
};

async function benchModels(): Promise<void> {
  console.log(`\nModels on ${backendName} (vocab 388)`);
  const transformerSpec = spec(transformer, {
    dModel: 256,
    layers: 4,
    heads: 4,
    ffDim: 1024,
    dropout: 0,
  });
  const lstmSmall = spec(lstm, { embedDim: 256, hiddenDim: 512, layers: 2, dropout: 0 });
  const lstmSeed = spec(lstm, { embedDim: 512, hiddenDim: 768, layers: 3, dropout: 0.2 });
  const show = async (name: string, r: BenchResult, reference: number) => {
    await record(`${name}/tokens-per-sec`, r.tokensPerSec, "tok/s", reference);
    await record(`${name}/peak-tensor-memory`, r.peakBytes / 2 ** 20, "MiB");
  };
  await show(
    "train/transformer-d256-l4-h4-ff1024/b16-t256",
    await benchTrain(transformerSpec, { batch: 16, seqLen: 256, steps: 3 }),
    TORCH.transformerTrain,
  );
  await show(
    "train/lstm-e256-h512-l2/b16-t256",
    await benchTrain(lstmSmall, { batch: 16, seqLen: 256, steps: 3 }),
    TORCH.lstmSmallTrain,
  );
  await show(
    "train/lstm-seed-e512-h768-l3/b8-t512",
    await benchTrain(lstmSeed, { batch: 8, seqLen: 512, steps: 2 }),
    TORCH.lstmSeedTrain,
  );
  await show(
    "sample/lstm-e256-h512-l2/b16x512",
    await benchSample(lstmSmall, { batch: 16, length: 512 }),
    TORCH.lstmSmallSample,
  );
  await show(
    "sample/lstm-seed-e512-h768-l3/b16x512",
    await benchSample(lstmSeed, { batch: 16, length: 512 }),
    TORCH.lstmSeedSample,
  );
  await show(
    "sample/transformer-d256-l4-kv-cache/b16x512",
    await benchSample(transformerSpec, { batch: 16, length: 512 }),
    TORCH.transformerSample,
  );
}

console.log(`HarmonyRL benchmarks, ${date}; results appended to ${args.values.out}`);
if (sections.includes("tokenize")) await benchTokenize();
if (sections.includes("models")) {
  const info = await initBackend(args.values.backend as "auto");
  backendName = info.name;
  console.log(`\nbackend: ${info.name} (${info.detail})`);
  await benchModels();
}

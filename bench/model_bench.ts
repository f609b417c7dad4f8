/**
 * Timing of sequence-model training and sampling on the current tfjs
 * backend, for the project's bench script. Not tests: nothing here asserts.
 *
 * The workloads mirror `bench/torch_reference.py` (vocabulary 388,
 * random tokens, Adam-style update per step; sampling from a start token
 * with the model's incremental state), so figures compare with PyTorch's.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs-core";
import { createRng } from "../mod.ts";
import { samplePolicy } from "../plugins/_tf/sampler.ts";
import { AdamW, optimizeStep } from "../plugins/_tf/optim.ts";
import { countParams, type ModelSpec, nextTokenLoss } from "../plugins/_tf/model.ts";

/** Options of {@link benchTrain}. */
export interface BenchTrainOptions {
  batch: number;
  seqLen: number;
  /** Timed steps (after `warmup` untimed ones). */
  steps: number;
  /** Default 1. */
  warmup?: number;
  /** Default 388 (the performance encoding of the PyTorch reference). */
  vocabSize?: number;
  /** Default 0. */
  seed?: number;
}

/** Options of {@link benchSample}. */
export interface BenchSampleOptions {
  batch: number;
  /** Tokens sampled per sequence. */
  length: number;
  /** Timed runs (after one untimed warmup run of the same length). Default 1. */
  reps?: number;
  vocabSize?: number;
  seed?: number;
}

/** What a benchmark measured. */
export interface BenchResult {
  /** `"lstm"` or `"transformer"` and its config. */
  model: string;
  backend: string;
  params: number;
  /** Tokens per second: batch × seqLen per training step, or sampled tokens per second. */
  tokensPerSec: number;
  /** Median seconds per training step or per sampling run. */
  medianSec: number;
  /** Every timed step or run, in seconds. */
  runsSec: number[];
  /** Peak bytes of live tensors during one profiled step or run (`tf.profile`). */
  peakBytes: number;
  /** Size of the wasm heap afterwards (it only grows), on the wasm backend. */
  wasmHeapBytes?: number;
  /** Where one profiled training step spent its time (training only). */
  split?: KernelSplit;
}

/** The per-kernel time split of one profiled step. */
export interface KernelSplit {
  /** Wall time of the profiled step (profiling adds a little), ms. */
  stepMs: number;
  /** Time per kernel name, most first. */
  kernels: { name: string; ms: number; calls: number }[];
  /** Floating-point operations of the step's matrix products (2·M·N·K each). */
  matMulFlops: number;
}

const MATMUL_KERNELS = new Set(["BatchMatMul", "_FusedMatMul"]);
/** Kernels that run an LSTM layer's recurrent products inside them (lstm_kernels.ts). */
const RECURRENT_KERNELS = new Set(["HarmonyLstmSequence", "HarmonyLstmSequenceGrad"]);

/**
 * Sums a profile's kernels by name. Leaves out the entries of composite ops
 * (`…__op`) and custom-gradient scopes (`unnamed scope`): their time is that
 * of kernels already counted inside them.
 */
export async function kernelSplit(
  profile: Awaited<ReturnType<typeof tf.profile>>,
  stepMs: number,
): Promise<KernelSplit> {
  const byName = new Map<string, { ms: number; calls: number }>();
  let matMulFlops = 0;
  for (const k of profile.kernels) {
    if (k.name.endsWith("__op") || k.name === "unnamed scope") continue;
    const ms = await (k.kernelTimeMs as unknown as Promise<number | { error: string }>);
    const entry = byName.get(k.name) ?? { ms: 0, calls: 0 };
    entry.ms += typeof ms === "number" ? ms : 0;
    entry.calls++;
    byName.set(k.name, entry);
    if (RECURRENT_KERNELS.has(k.name)) {
      // The T − 1 recurrent products inside: [B, H] x [H, 4H] forward, [B, 4H] x [4H, H] back.
      const [time, batch] = k.inputShapes.find((shape) => shape.length === 3)!; // [T, B, ...]
      const weight = k.inputShapes.find((shape) => shape.length === 2)!; // Wh or Whᵀ
      matMulFlops += 2 * (time - 1) * batch * weight[0] * weight[1];
    } else if (MATMUL_KERNELS.has(k.name)) {
      // out [..., M, N]; a is [..., M, K] or [..., K, M]: K = size(a) / (batch(a) · M).
      const out = k.outputShapes[0], a = k.inputShapes[0];
      const m = out[out.length - 2];
      const size = tf.util.sizeFromShape;
      matMulFlops += 2 * size(out) * (size(a) / (size(a.slice(0, -2)) * m));
    }
  }
  const kernels = [...byName].map(([name, e]) => ({ name, ...e })).sort((x, y) => y.ms - x.ms);
  return { stepMs, kernels, matMulFlops };
}

function describe(spec: ModelSpec): string {
  const { type: _type, ...rest } = spec.config;
  return `${spec.type} ${JSON.stringify(rest)}`;
}

function wasmHeapBytes(): number | undefined {
  const backend = tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } };
  return backend.wasm?.HEAPU8?.buffer.byteLength;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Times training steps (forward, backward, clipping, AdamW update) on random
 * token windows.
 *
 * @param spec the model to build (fresh weights)
 * @param options batch, window length and step counts
 * @returns tokens per second, step times and peak memory
 */
export async function benchTrain(
  spec: ModelSpec,
  options: BenchTrainOptions,
): Promise<BenchResult> {
  const vocabSize = options.vocabSize ?? 388;
  const rng = createRng(options.seed ?? 0);
  const model = spec.build(vocabSize, rng.seed());
  const optimizer = new AdamW(model.variables);
  const data = Int32Array.from(
    { length: options.batch * (options.seqLen + 1) },
    () => rng.int(vocabSize),
  );
  const windows = tf.tensor2d(data, [options.batch, options.seqLen + 1], "int32");
  const step = () =>
    optimizeStep(
      model,
      optimizer,
      () => nextTokenLoss(model, windows, { training: true, rng }),
      { lr: 1e-4, clipNorm: 1 },
    );
  try {
    for (let i = 0; i < (options.warmup ?? 1); i++) await step();
    const runsSec: number[] = [];
    for (let i = 0; i < options.steps; i++) {
      const t0 = performance.now();
      await step();
      runsSec.push((performance.now() - t0) / 1000);
    }
    const t0 = performance.now();
    const profile = await tf.profile(async () => {
      await step();
    });
    const split = await kernelSplit(profile, performance.now() - t0);
    const medianSec = median(runsSec);
    return {
      model: describe(spec),
      backend: tf.getBackend(),
      params: countParams(model),
      tokensPerSec: (options.batch * options.seqLen) / medianSec,
      medianSec,
      runsSec,
      peakBytes: profile.peakBytes,
      wasmHeapBytes: wasmHeapBytes(),
      split,
    };
  } finally {
    windows.dispose();
    optimizer.dispose();
    model.dispose();
  }
}

/**
 * Times sampling with incremental decoding (`samplePolicy`, temperature 1)
 * from a start token, without a stop token.
 *
 * @param spec the model to build (fresh weights)
 * @param options batch, tokens per sequence and repetitions
 * @returns sampled tokens per second, run times and peak memory
 */
export async function benchSample(
  spec: ModelSpec,
  options: BenchSampleOptions,
): Promise<BenchResult> {
  const vocabSize = options.vocabSize ?? 388;
  const rng = createRng(options.seed ?? 0);
  const model = spec.build(vocabSize, rng.seed());
  const run = (length: number) =>
    samplePolicy(model, { count: options.batch, length, rng, startToken: 0 });
  try {
    await run(options.length); // a whole run to warm up, as the PyTorch reference does
    const runsSec: number[] = [];
    for (let i = 0; i < (options.reps ?? 1); i++) {
      const t0 = performance.now();
      await run(options.length);
      runsSec.push((performance.now() - t0) / 1000);
    }
    const profile = await tf.profile(async () => {
      await run(Math.min(options.length, 64));
    });
    const medianSec = median(runsSec);
    return {
      model: describe(spec),
      backend: tf.getBackend(),
      params: countParams(model),
      tokensPerSec: (options.batch * options.length) / medianSec,
      medianSec,
      runsSec,
      peakBytes: profile.peakBytes,
      wasmHeapBytes: wasmHeapBytes(),
    };
  } finally {
    model.dispose();
  }
}

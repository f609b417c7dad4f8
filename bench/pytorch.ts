/**
 * PyTorch beside HarmonyRL in `deno task bench models`: runs
 * `bench/torch_reference.py` (the same workloads) with the given Python before
 * HarmonyRL's own runs, so both are measured on the same machine in the same
 * session. Without PyTorch, the recorded figures of an earlier session stand
 * in, and say so.
 *
 * @module
 */

import { fileURLToPath } from "node:url";

/** The workloads compared, by their key in {@link RECORDED}. */
export type Workload =
  | "transformerTrain"
  | "lstmSmallTrain"
  | "lstmSeedTrain"
  | "lstmSmallSample"
  | "lstmSeedSample"
  | "transformerSample";

/** PyTorch tokens/s per workload, and where they come from. */
export interface Reference {
  /** e.g. "PyTorch 2.13.0+cpu, this session" or "PyTorch 1.13 (recorded ...)". */
  label: string;
  tokensPerSec: Record<Workload, number>;
}

/**
 * PyTorch 1.13 on the project's earlier 2-core machine (AMD EPYC Zen 2, AVX2),
 * 2026-11-25, tokens/s: used only when PyTorch cannot be run here.
 */
export const RECORDED: Reference = {
  label: "PyTorch 1.13 recorded 2026-11-25 on an AMD EPYC Zen 2",
  tokensPerSec: {
    transformerTrain: 2828,
    lstmSmallTrain: 2001,
    lstmSeedTrain: 219,
    lstmSmallSample: 3763,
    lstmSeedSample: 1276,
    transformerSample: 715,
  },
};

/** torch_reference.py's `bench` and `kind` of each workload. */
const KEYS: Record<string, Workload> = {
  "tf_d256_L4_H4_ff1024/train": "transformerTrain",
  "lstm_E256_H512_L2/train": "lstmSmallTrain",
  "lstm_E512_H768_L3/train": "lstmSeedTrain",
  "lstm_E256_H512_L2/sample": "lstmSmallSample",
  "lstm_E512_H768_L3/sample": "lstmSeedSample",
  "tf_d256_L4_H4_ff1024/sample_kvcache": "transformerSample",
};

const SECTIONS = [
  "tf_train",
  "lstm_small",
  "lstm_big",
  "lstm_sample",
  "lstm_big_sample",
  "tf_sample_cache",
];

/**
 * Parses torch_reference.py's output: one JSON object per line (other lines
 * are ignored).
 *
 * @throws when a workload is missing
 */
export function parseTorchOutput(output: string): Reference {
  const found: Partial<Record<Workload, number>> = {};
  let framework = "PyTorch";
  let threads = 0;
  for (const line of output.split("\n")) {
    if (!line.startsWith("{")) continue;
    const row = JSON.parse(line) as {
      bench: string;
      kind?: string;
      tok_per_s?: number;
      framework?: string;
      threads?: number;
    };
    const key = KEYS[`${row.bench}/${row.kind}`];
    if (key !== undefined && row.tok_per_s !== undefined) found[key] = row.tok_per_s;
    if (row.framework) framework = row.framework.replace(/^torch-/, "PyTorch ");
    if (row.threads) threads = row.threads;
  }
  const missing = Object.values(KEYS).filter((k) => found[k] === undefined);
  if (missing.length > 0) {
    throw new Error(`torch_reference.py printed no figure for ${missing.join(", ")}`);
  }
  return {
    label: `${framework}, ${threads} threads, this session`,
    tokensPerSec: found as Record<Workload, number>,
  };
}

/**
 * Runs torch_reference.py with `python` and returns its figures, or the
 * recorded ones with the reason PyTorch could not run.
 */
export async function pytorchReference(
  python: string,
): Promise<{ reference: Reference; note?: string }> {
  const script = fileURLToPath(new URL("./torch_reference.py", import.meta.url));
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(python, {
      // PyTorch's own threading defaults (its OpenMP threads spin while waiting, which is
      // what makes its small per-step ops fast: OMP_WAIT_POLICY=passive halves its sampling).
      args: [script, ...SECTIONS],
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (e) {
    return { reference: RECORDED, note: `cannot run "${python}": ${(e as Error).message}` };
  }
  if (!output.success) {
    const stderr = new TextDecoder().decode(output.stderr).trim().split("\n");
    return { reference: RECORDED, note: `"${python}" failed: ${stderr.at(-1)}` };
  }
  try {
    return { reference: parseTorchOutput(new TextDecoder().decode(output.stdout)) };
  } catch (e) {
    return { reference: RECORDED, note: (e as Error).message };
  }
}

import assert from "node:assert/strict";
import { parseTorchOutput, pytorchReference, RECORDED } from "./pytorch.ts";

const line = (bench: string, kind: string, tokPerSec: number) =>
  JSON.stringify({ bench, kind, tok_per_s: tokPerSec, framework: "torch-2.13.0+cpu", threads: 2 });

Deno.test("parseTorchOutput() maps torch_reference.py's lines to the bench's workloads", () => {
  const output = [
    "# kv-cache max abs diff 1e-6",
    line("tf_d256_L4_H4_ff1024", "train", 4920),
    line("lstm_E256_H512_L2", "train", 4103),
    line("lstm_E512_H768_L3", "train", 681),
    line("lstm_E256_H512_L2", "sample", 10807),
    line("lstm_E512_H768_L3", "sample", 3023),
    line("tf_d256_L4_H4_ff1024", "sample_kvcache", 2314),
    line("tf_d256_L4_H4_ff1024", "sample_nocache_real", 99),
  ].join("\n");
  const ref = parseTorchOutput(output);
  assert.equal(ref.label, "PyTorch 2.13.0+cpu, 2 threads, this session");
  assert.deepEqual(ref.tokensPerSec, {
    transformerTrain: 4920,
    lstmSmallTrain: 4103,
    lstmSeedTrain: 681,
    lstmSmallSample: 10807,
    lstmSeedSample: 3023,
    transformerSample: 2314,
  });
});

Deno.test("parseTorchOutput() names the workloads it did not get", () => {
  assert.throws(
    () => parseTorchOutput(line("lstm_E256_H512_L2", "train", 4103)),
    /no figure for transformerTrain, lstmSeedTrain, lstmSmallSample/,
  );
});

Deno.test("pytorchReference() falls back to the recorded figures and says why", async () => {
  const run = await pytorchReference("/nonexistent/python3");
  assert.equal(run.reference, RECORDED);
  assert.match(run.note!, /cannot run "\/nonexistent\/python3"/);
});

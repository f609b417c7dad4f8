// The default graph end to end, shrunk by --set overrides so it runs in seconds: every stage of
// configs/pipeline.yaml runs on real plugins, and the run directory holds what the README says.
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadGraph } from "../pipeline/graph.ts";
import { runPipeline } from "../pipeline/run.ts";
import { registry } from "../plugins/registry.ts";
import { readMidiFile } from "../plugins/_music/midi.ts";

const config = new URL("../configs/pipeline.yaml", import.meta.url).pathname;

const SMALL = [
  "backend=cpu",
  "stages.load.with.count=24",
  "stages.load.with.bars=4",
  "stages.pretrain.with.epochs=2",
  "stages.pretrain.with.stepsPerEpoch=4",
  "stages.pretrain.with.seqLen=32",
  "stages.pretrain.with.batchSize=4",
  "stages.pretrain.with.validationBatches=1",
  "stages.pretrain.with.warmupSteps=2",
  "stages.finetune.loop.episodes=3",
  "stages.finetune.loop.checkpointEvery=2",
  "stages.finetune.loop.stages.rollout.with.count=4",
  "stages.finetune.loop.stages.rollout.with.length=48",
  "stages.evaluate.with.samples=4",
  "stages.evaluate.with.length=48",
  "stages.evaluate.with.nllWindows=2",
  "stages.evaluate.with.seqLen=32",
  "stages.denoiser.with.trainSteps=3",
  "stages.denoiser.with.batchSize=4",
  "stages.report.with.audio=false",
];

Deno.test("the default graph runs end to end: MIDI, evaluation table, metrics and report", async () => {
  const runsDir = await Deno.makeTempDir({ prefix: "harmonyrl-default-" });
  const graph = await loadGraph(config, { registry, overrides: SMALL });
  const result = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(result.status, "ok", result.error?.message);
  for (const [name, stage] of Object.entries(result.stages)) {
    assert.ok(stage.status === "done", `${name}: ${stage.status}`);
  }
  const runDir = result.runDir!;
  const manifest = JSON.parse(await Deno.readTextFile(join(runDir, "manifest.json")));
  assert.equal(manifest.status, "ok");
  assert.equal(manifest.backend.name, "cpu");

  // The evaluation table compares both policies on the same metrics.
  const evaluation = JSON.parse(await Deno.readTextFile(join(runDir, "evaluation.json")));
  for (const policy of ["pretrained", "finetuned"]) {
    for (
      const metric of [
        "notesInKey",
        "leapsResolved",
        "reward/total",
        "kl/pretrained",
        "nll/validation",
      ]
    ) {
      assert.ok(metric in evaluation.policies[policy], `${policy} ${metric}`);
    }
  }
  assert.equal(evaluation.policies.pretrained["kl/pretrained"], 0);
  assert.ok(evaluation.policies.finetuned["kl/pretrained"] >= 0);

  // Every refined piece was exported as a MIDI file that reads back with its notes.
  const midiDir = join(runDir, "midi");
  const files = [...Deno.readDirSync(midiDir)].map((e) => e.name).sort();
  assert.equal(files.length, 4);
  for (const file of files) {
    const piece = readMidiFile(join(midiDir, file));
    assert.ok(piece.notes.every((n) => Number.isFinite(n.startSec) && n.endSec > n.startSec));
  }

  // The report and its figures are in the run directory.
  const html = await Deno.readTextFile(join(runDir, "report.html"));
  assert.match(html, /<svg/);
  assert.ok([...Deno.readDirSync(join(runDir, "figures"))].length > 3);

  // RL metrics were recorded for every episode.
  const metrics = JSON.parse(await Deno.readTextFile(join(runDir, "metrics.json")));
  assert.equal(metrics["finetune/update"].length, 3);
  assert.ok("reward/total" in metrics["finetune/reward"][0].values);

  // A second run takes every cached stage from the cache and still shows the outputs.
  const again = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(again.status, "ok", again.error?.message);
  assert.equal(again.stages.pretrain.status, "cached");
  assert.equal(again.stages.finetune.status, "cached");
  await Deno.stat(join(again.runDir!, "evaluation.json"));
  await Deno.stat(join(again.runDir!, "report.html"));
});

// configs/refine.yaml as a user runs it on a folder: one refined file per input, same base name,
// and the refinement's before/after figures in the run. (Shrunk: a denoiser of a few steps.)
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadGraph } from "../pipeline/graph.ts";
import { runPipeline } from "../pipeline/run.ts";
import { createRng } from "../pipeline/rng.ts";
import { registry } from "../plugins/registry.ts";
import { readMidiFile, writeMidi } from "../plugins/_music/midi.ts";
import { generateSyntheticPiece } from "../plugins/_music/synthetic.ts";

const config = new URL("../configs/refine.yaml", import.meta.url).pathname;

Deno.test("configs/refine.yaml writes one refined file per input with the same base name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-refine-" });
  await Deno.mkdir(join(dir, "in"));
  const rng = createRng(11);
  const names = ["etude", "nocturne"];
  for (const name of names) {
    const { piece } = generateSyntheticPiece(rng, { id: name, bars: 4 });
    await Deno.writeFile(join(dir, "in", `${name}.mid`), writeMidi(piece));
  }
  const graph = await loadGraph(config, {
    registry,
    overrides: [
      "backend=cpu",
      `stages.load.with.dir=${join(dir, "in")}`,
      `stages.export.with.dir=${join(dir, "out")}`,
      "stages.training.with.count=8",
      "stages.training.with.bars=2",
      "stages.denoiser.with.trainSteps=2",
      "stages.denoiser.with.channels=8",
      "stages.denoiser.with.blocks=1",
      "stages.denoiser.with.batchSize=4",
      "stages.refine.with.steps=2",
    ],
  });
  const result = await runPipeline(graph, { runsDir: join(dir, "runs"), quiet: true });
  assert.equal(result.status, "ok", result.error?.message);
  // The export keeps a hidden record of the files it wrote there (.harmonyrl-export.json).
  const written = [...Deno.readDirSync(join(dir, "out"))].map((e) => e.name)
    .filter((n) => !n.startsWith(".")).sort();
  assert.deepEqual(written, names.map((n) => `${n}.mid`).sort());
  for (const name of names) {
    const refined = readMidiFile(join(dir, "out", `${name}.mid`));
    assert.ok(refined.notes.length > 0, `${name} lost all its notes`);
  }
  const refine = result.stages.refine.metrics!;
  for (const key of Object.keys(refine)) assert.ok(Number.isFinite(refine[key]), key);
  assert.ok(Object.keys(refine).some((k) => /dissonance/i.test(k)), Object.keys(refine).join());
});

// configs/refine.yaml as a user runs it on a folder: one refined file per input, same base name,
// and the refinement's before/after figures in the run. (Shrunk: a denoiser of a few steps, trained
// on a two-piece MAESTRO in the official layout made here.)
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadGraph } from "../pipeline/graph.ts";
import { runPipeline } from "../pipeline/run.ts";
import { createRng } from "../pipeline/rng.ts";
import { registry } from "../plugins/registry.ts";
import { readMidiFile, writeMidi } from "../plugins/_music/midi.ts";
import { generateSyntheticPiece } from "../plugins/load/_synthetic.ts";
import type { Piece } from "../plugins/_music/types.ts";

const config = new URL("../configs/refine.yaml", import.meta.url).pathname;

Deno.test("configs/refine.yaml writes one refined file per input with the same base name", async () => {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-refine-" });
  await Deno.mkdir(join(dir, "in"));
  const rng = createRng(11);
  const names = ["etude", "nocturne"];
  const inputs = new Map<string, Piece>();
  for (const name of names) {
    const { piece } = generateSyntheticPiece(rng, { id: name, bars: 4 });
    await Deno.writeFile(join(dir, "in", `${name}.mid`), writeMidi(piece));
    inputs.set(name, readMidiFile(join(dir, "in", `${name}.mid`), { sustain: false }));
  }
  const maestro = join(dir, "maestro");
  await Deno.mkdir(join(maestro, "2004"), { recursive: true });
  const rows = [
    "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration",
  ];
  for (const file of ["a", "b"]) {
    const { piece } = generateSyntheticPiece(rng, { id: file, bars: 4 });
    await Deno.writeFile(join(maestro, "2004", `${file}.midi`), writeMidi(piece));
    rows.push(`Composer,Title ${file},train,2004,2004/${file}.midi,2004/${file}.wav,8`);
  }
  await Deno.writeTextFile(join(maestro, "maestro-v3.0.0.csv"), rows.join("\n") + "\n");
  const graph = await loadGraph(config, {
    registry,
    overrides: [
      "backend=cpu",
      `stages.load.with.dir=${join(dir, "in")}`,
      `stages.export.with.dir=${join(dir, "out")}`,
      `stages.training.with.dir=${maestro}`,
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
    const refined = readMidiFile(join(dir, "out", `${name}.mid`), { sustain: false });
    assert.ok(refined.notes.length > 0, `${name} lost all its notes`);
    // The judge adds nothing: every refined note has the onset and velocity of an input note.
    const input = inputs.get(name)!.notes.map((n) => `${n.startSec.toFixed(3)}|${n.velocity}`);
    for (const n of refined.notes) {
      assert.ok(input.includes(`${n.startSec.toFixed(3)}|${n.velocity}`), `${name}: new note`);
    }
  }
  const refine = result.stages.refine.metrics!;
  for (const key of Object.keys(refine)) assert.ok(Number.isFinite(refine[key]), key);
  assert.ok(Object.keys(refine).some((k) => /dissonance/i.test(k)), Object.keys(refine).join());
  assert.ok(Object.keys(refine).some((k) => /^clash/i.test(k)), Object.keys(refine).join());
});

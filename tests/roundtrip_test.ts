// configs/roundtrip.yaml as a user runs it on their own folder: one decoded file per input, same
// base name, the notes back within the tokenizer's quantisation; a broken file is skipped.
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadGraph } from "../pipeline/graph.ts";
import { runPipeline } from "../pipeline/run.ts";
import { createRng } from "../pipeline/rng.ts";
import { registry } from "../plugins/registry.ts";
import { readMidiFile, writeMidi } from "../plugins/_music/midi.ts";
import { generateSyntheticPiece } from "../plugins/load/_synthetic.ts";
import { measureFidelity } from "../plugins/tokenizer/_fidelity.ts";

const config = new URL("../configs/roundtrip.yaml", import.meta.url).pathname;

async function folderOfMidi(): Promise<{ dir: string; names: string[] }> {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-roundtrip-" });
  await Deno.mkdir(join(dir, "in", "nested"), { recursive: true });
  const rng = createRng(5);
  const names = ["alpha", "beta", "gamma"];
  for (const [i, name] of names.entries()) {
    const { piece } = generateSyntheticPiece(rng, { id: name, bars: 4 });
    const sub = i === 2 ? "in/nested" : "in";
    await Deno.writeFile(join(dir, sub, `${name}.mid`), writeMidi(piece));
  }
  // A truncated file: reported and skipped, the rest goes on.
  await Deno.writeFile(join(dir, "in", "broken.mid"), new TextEncoder().encode("MThd\0\0\0\x06\0"));
  return { dir, names };
}

for (
  const [tokenizer, toleranceSec, minFidelity] of [
    ["tokenizer/performance", 0.006, 1],
    ["tokenizer/remi", 0.13, 0.95],
  ] as const
) {
  Deno.test(`configs/roundtrip.yaml decodes every file back with ${tokenizer}`, async () => {
    const { dir, names } = await folderOfMidi();
    const graph = await loadGraph(config, {
      registry,
      overrides: [
        `stages.load.with.dir=${join(dir, "in")}`,
        `stages.tokenize.with.tokenizer=${tokenizer}`,
        `stages.export.with.dir=${join(dir, "out")}`,
      ],
    });
    const result = await runPipeline(graph, { runsDir: join(dir, "runs"), quiet: true });
    assert.equal(result.status, "ok", result.error?.message);
    // The export keeps a hidden record of the files it wrote there (.harmonyrl-export.json).
    const written = [...Deno.readDirSync(join(dir, "out"))].map((e) => e.name)
      .filter((n) => !n.startsWith(".")).sort();
    assert.deepEqual(written, names.map((n) => `${n}.mid`));
    for (const [i, name] of names.entries()) {
      const original = readMidiFile(join(dir, i === 2 ? "in/nested" : "in", `${name}.mid`));
      const decoded = readMidiFile(join(dir, "out", `${name}.mid`));
      const fidelity = measureFidelity(original, decoded, toleranceSec);
      assert.ok(fidelity >= minFidelity, `${name}: fidelity ${fidelity}`);
    }
    // The manifest lists the skipped file and why.
    const manifest = JSON.parse(await Deno.readTextFile(join(result.runDir!, "manifest.json")));
    assert.deepEqual(manifest.stages.load.notes.skipped, [
      { file: "broken.mid", reason: "header chunk is truncated (1 of 6 bytes present)" },
    ]);
    const events = await Deno.readTextFile(join(result.runDir!, "events.jsonl"));
    assert.match(events, /Skipped \\"broken\.mid\\"/);
  });
}

// A user's reward plugin (written to a temporary directory) and stage plugin (a fixture with a
// typed input that imports only mod.ts), loaded by path, exactly as the README tells users to
// write them: no file of the project changes.
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadGraph } from "../pipeline/graph.ts";
import { runPipeline } from "../pipeline/run.ts";
import { registry } from "../plugins/registry.ts";

const root = new URL("../", import.meta.url);

/** The README's example reward plugin, with its import pointed at this checkout's mod.ts. */
async function readmeRewardPlugin(): Promise<string> {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const block = readme.match(
    /```ts\n(import \{ definePlugin, p, type Piece \} from "\.\.\/mod\.ts";[\s\S]*?)```/,
  );
  assert.ok(block, "README has the reward plugin example");
  return block[1].replace('"../mod.ts"', JSON.stringify(new URL("mod.ts", root).href));
}

Deno.test("a user's reward plugin from the README, loaded by path, is scored and weighted by reward/composite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-user-" });
  await Deno.writeTextFile(join(dir, "pitch_range.ts"), await readmeRewardPlugin());
  // A user stage plugin too, with a typed input (tests/fixtures/as_rollouts.ts): it passes a
  // corpus on as rollouts, so the rewards score real pieces.
  const asRollouts = fileURLToPath(new URL("tests/fixtures/as_rollouts.ts", root));
  const graphFile = join(dir, "graph.yaml");
  await Deno.writeTextFile(
    graphFile,
    `name: user
backend: cpu
stages:
  load: { use: load/synthetic, with: { count: 3, bars: 2 } }
  pieces: { use: ${JSON.stringify(asRollouts)}, in: { corpus: load.corpus } }
  reward:
    use: reward/composite
    in: { rollouts: pieces.rollouts, corpus: load.corpus }
    with:
      terms:
        - { use: reward/harmony, weight: 1 }
        - { use: ./pitch_range.ts, weight: 3, with: { maxSemitones: 6 } }
`,
  );
  const graph = await loadGraph(graphFile, { registry });
  const result = await runPipeline(graph, { runsDir: join(dir, "runs"), quiet: true });
  assert.equal(result.status, "ok", result.error?.message);
  const key = result.stages.reward.key!;
  const rewards = JSON.parse(
    await Deno.readTextFile(join(dir, "runs", ".cache", key, "outputs", "rewards", "value.json")),
  );
  const corpusKey = result.stages.load.key!;
  const { midiCorpusCodec } = await import("../plugins/_music/corpus_codec.ts");
  const corpus = await midiCorpusCodec.load(
    join(dir, "runs", ".cache", corpusKey, "outputs", "corpus"),
  );
  // The README's formula, by hand: 1 within 6 semitones, else 6 / range.
  const expected = corpus.pieces.map((piece) => {
    const pitches = piece.notes.map((n) => n.pitch);
    const range = Math.max(...pitches) - Math.min(...pitches);
    return range <= 6 ? 1 : 6 / range;
  });
  assert.deepEqual(rewards.terms["pitch-range"], expected);
  for (let i = 0; i < expected.length; i++) {
    // The composite's length guard (minNotes 16) scales short pieces.
    const guard = Math.min(1, corpus.pieces[i].notes.length / 16);
    const total = guard * (rewards.terms.harmony[i] * 1 + expected[i] * 3) / 4;
    assert.ok(Math.abs(rewards.total[i] - total) < 1e-12);
  }
  assert.ok(result.stages.reward.metrics!["reward/pitch-range"] > 0);
});

// The shipped graphs that read a dataset: they read it from data/ in the project (where the
// README's "Data" instructions put it), their folder can be set with --set, and a missing one
// gives one error that says how to get it, before anything runs.
import assert from "node:assert/strict";
import { join } from "node:path";
import { main } from "../pipeline/cli.ts";
import { loadGraph } from "../pipeline/graph.ts";
import { registry } from "../plugins/registry.ts";
import { writeMidi } from "../plugins/_music/midi.ts";
import { generateSyntheticPiece } from "../plugins/load/_synthetic.ts";
import { createRng } from "../pipeline/rng.ts";

const configs = new URL("../configs/", import.meta.url).pathname;
const SHARED_MAESTRO = new URL("../../shared/data/maestro-v3.0.0", import.meta.url).pathname;
const hasSharedMaestro = await Deno.stat(join(SHARED_MAESTRO, "maestro-v3.0.0.csv"))
  .then(() => true, () => false);

/** A stage of a shipped graph that reads a dataset folder, and its default folder. */
interface DatasetStage {
  stage: string;
  plugin: "load/maestro" | "load/midi-dir";
  dir: string;
}

/** Each shipped graph that reads a dataset, with every stage that reads one. */
const DATASETS: { config: string; stages: DatasetStage[] }[] = [
  {
    config: "maestro.yaml",
    stages: [{ stage: "load", plugin: "load/maestro", dir: "data/maestro-v3.0.0" }],
  },
  {
    config: "maestro-seed-gpu.yaml",
    stages: [{ stage: "load", plugin: "load/maestro", dir: "data/maestro-v3.0.0" }],
  },
  {
    config: "refine.yaml",
    stages: [
      { stage: "load", plugin: "load/midi-dir", dir: "data/maestro-v3.0.0/2004" },
      { stage: "training", plugin: "load/maestro", dir: "data/maestro-v3.0.0" },
    ],
  },
  {
    config: "roundtrip.yaml",
    stages: [{ stage: "load", plugin: "load/midi-dir", dir: "data/maestro-v3.0.0/2004" }],
  },
  {
    config: "score.yaml",
    stages: [
      // The files to score are the user's own: no default dataset to point at.
      { stage: "load", plugin: "load/midi-dir", dir: "midi" },
      { stage: "reference", plugin: "load/maestro", dir: "data/maestro-v3.0.0" },
    ],
  },
];

/** Runs the CLI with console output captured. */
async function cli(args: string[]): Promise<{ code: number; out: string[]; err: string[] }> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    return { code: await main(args, registry), out, err };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("every shipped graph that reads a dataset reads it from data/ in the project", async () => {
  const shipped = [...Deno.readDirSync(configs)].map((e) => e.name).filter((n) =>
    n.endsWith(".yaml")
  );
  for (const name of shipped) {
    const text = await Deno.readTextFile(join(configs, name));
    assert.doesNotMatch(text, /\.\.\/shared/, `${name} points outside the project`);
  }
  for (const { config, stages } of DATASETS) {
    const graph = await loadGraph(join(configs, config), { registry });
    const readers = graph.stages.filter((s) =>
      /^load\/(maestro|midi-dir)$/.test(s.plugin?.name ?? "")
    );
    assert.deepEqual(readers.map((s) => s.name), stages.map((s) => s.stage), config);
    for (const { stage, plugin, dir } of stages) {
      const node = graph.stages.find((s) => s.name === stage)!;
      assert.equal(node.plugin!.name, plugin, config);
      assert.equal(node.params.dir, dir, config);
    }
  }
});

Deno.test("a missing dataset is one error that says how to get it, and nothing runs", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "harmonyrl-datasets-" });
  const runsDir = join(tmp, "runs");
  for (const { config, stages } of DATASETS) {
    // --set points each folder elsewhere: the errors name the new folders, so the overrides took.
    const missing = (stage: string) => join(tmp, stage, "maestro-v3.0.0");
    const sets = stages.flatMap((
      { stage },
    ) => ["--set", `stages.${stage}.with.dir=${missing(stage)}`]);
    const { code, out, err } = await cli([
      "--config",
      join(configs, config),
      "--runs-dir",
      runsDir,
      ...sets,
    ]);
    assert.equal(code, 2, config);
    assert.deepEqual(out, [], config);
    // One line per missing folder, and nothing else.
    assert.deepEqual(
      err,
      stages.map(({ stage, plugin }) => {
        const how = plugin === "load/maestro"
          ? `download "maestro-v3.0.0-midi.zip" from https://magenta.tensorflow.org/datasets/maestro ` +
            `and unzip it in "${
              join(tmp, stage)
            }" (it unpacks to "maestro-v3.0.0"; see "Data" in README.md)`
          : `give a folder of your own .mid files, or get the example data (MAESTRO: see "Data" in README.md)`;
        const what = plugin === "load/maestro" ? "MAESTRO" : "MIDI files";
        return `error: Stage "${stage}" (${plugin}) cannot run: Cannot load ${what} from ` +
          `"${missing(stage)}": the directory does not exist; ${how}; ` +
          `or point "dir" elsewhere with --set stages.${stage}.with.dir=...`;
      }),
      config,
    );
  }
  // Nothing ran: no run directory, no cache.
  assert.equal(await Deno.stat(runsDir).then(() => true, () => false), false);
});

Deno.test("--set points configs/maestro.yaml at a MAESTRO folder, and the plan then runs it", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "harmonyrl-datasets-" });
  const dir = join(tmp, "maestro-v3.0.0");
  await Deno.mkdir(join(dir, "2004"), { recursive: true });
  const { piece } = generateSyntheticPiece(createRng(3), { id: "a", bars: 4 });
  await Deno.writeFile(join(dir, "2004", "a.midi"), writeMidi(piece));
  await Deno.writeTextFile(
    join(dir, "maestro-v3.0.0.csv"),
    "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration\n" +
      "Anon,Etude,train,2004,2004/a.midi,2004/a.wav,16\n",
  );
  for (const config of ["maestro.yaml", "maestro-seed-gpu.yaml"]) {
    const plan = await cli([
      "plan",
      "--config",
      join(configs, config),
      "--runs-dir",
      join(tmp, "runs"),
      "--set",
      `stages.load.with.dir=${dir}`,
    ]);
    assert.equal(plan.code, 0, plan.err.join("\n"));
    assert.match(plan.out.join("\n"), /load\s+would-run\s+load\/maestro/);
  }
});

Deno.test({
  name: "configs/maestro.yaml plans on the real MAESTRO (needs ../shared/data/maestro-v3.0.0)",
  ignore: !hasSharedMaestro,
  async fn() {
    const runsDir = await Deno.makeTempDir({ prefix: "harmonyrl-datasets-" });
    const plan = await cli([
      "plan",
      "--config",
      join(configs, "maestro.yaml"),
      "--runs-dir",
      runsDir,
      "--set",
      `stages.load.with.dir=${SHARED_MAESTRO}`,
    ]);
    assert.equal(plan.code, 0, plan.err.join("\n"));
    assert.match(plan.out.join("\n"), /load\s+would-run\s+load\/maestro/);
  },
});

// Pretraining survives kill -9 in the middle of an epoch: the CLI runs a small graph in a child
// process, which is killed with SIGKILL as soon as its first mid-epoch checkpoint is on disk; the
// next run of the same graph resumes from that step (not from the epoch's start) and produces the
// very model an uninterrupted run produces.
import assert from "node:assert/strict";
import { join } from "node:path";
import { loadGraph } from "../pipeline/graph.ts";
import { runPipeline } from "../pipeline/run.ts";
import { registry } from "../plugins/registry.ts";

const root = new URL("..", import.meta.url).pathname;
const STEPS_PER_EPOCH = 20;
const CHECKPOINT_EVERY = 3;

const GRAPH = `
name: kill-test
seed: 5
backend: cpu
stages:
  load: { use: load/synthetic, with: { count: 12, bars: 4 } }
  tokenize:
    use: tokenize/events
    in: { corpus: load.corpus }
    with: { workers: 1 }
  pretrain:
    use: pretrain/supervised
    in: { tokens: tokenize.tokens }
    with:
      model: { use: model/lstm, with: { embedDim: 8, hiddenDim: 16, layers: 1, dropout: 0.1 } }
      seqLen: 8
      batchSize: 2
      epochs: 2
      stepsPerEpoch: ${STEPS_PER_EPOCH}
      warmupSteps: 4
      validationBatches: 2
      checkpointEvery: ${CHECKPOINT_EVERY}
`;

/** Every file of a directory tree with its bytes, by relative path. */
async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  const walk = async (sub: string) => {
    for await (const entry of Deno.readDir(join(dir, sub))) {
      const rel = join(sub, entry.name);
      if (entry.isDirectory) await walk(rel);
      else out.set(rel, await Deno.readFile(join(dir, rel)));
    }
  };
  await walk("");
  return out;
}

/** The path of the first `last.ckpt` under `<runsDir>/.cache/work/`, or null. */
function findCheckpoint(runsDir: string): string | null {
  const work = join(runsDir, ".cache", "work");
  try {
    for (const entry of Deno.readDirSync(work)) {
      const path = join(work, entry.name, "last.ckpt");
      try {
        Deno.statSync(path);
        return path;
      } catch { /* not yet */ }
    }
  } catch { /* no work directory yet */ }
  return null;
}

Deno.test("pretraining killed with SIGKILL mid-epoch resumes from its last saved step and ends identically", async () => {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-kill-" });
  const config = join(dir, "kill.yaml");
  await Deno.writeTextFile(config, GRAPH);
  const runsDir = join(dir, "runs");

  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "--config", config, "--runs-dir", runsDir, "--quiet"],
    cwd: root,
    stdout: "null",
    stderr: "null",
  }).spawn();
  let checkpoint: string | null = null;
  const deadline = Date.now() + 120_000;
  while (checkpoint === null && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 5));
    checkpoint = findCheckpoint(runsDir);
  }
  child.kill("SIGKILL");
  const status = await child.status;
  assert.ok(checkpoint !== null, "the child wrote no checkpoint within 2 minutes");
  assert.equal(status.signal, "SIGKILL", "the child finished before it was killed");

  // The same graph again, in this process: it resumes in the same work directory.
  const graph = await loadGraph(config, { registry });
  const resumed = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(resumed.status, "ok", resumed.error?.message);
  assert.equal(resumed.stages.pretrain.status, "done");
  const events = (await Deno.readTextFile(join(resumed.runDir!, "events.jsonl")))
    .trim().split("\n").map((line) => JSON.parse(line));
  const resuming = events.find((e) => e.type === "log" && /^Resuming from step/.test(e.message));
  assert.ok(resuming, "the second run did not resume");
  const step = Number(/^Resuming from step (\d+) of 40/.exec(resuming.message)![1]);
  assert.ok(step > 0 && step % CHECKPOINT_EVERY === 0, `resumed at step ${step}`);
  assert.ok(step % STEPS_PER_EPOCH !== 0, `resumed at step ${step}, an epoch boundary`);
  // events.jsonl keeps the killed attempt's lines too, marked "resumedFrom"; this run's follow.
  const trainedBy = (mine: boolean) =>
    events.filter((e) =>
      e.type === "metric" && e.stage === "pretrain" && "loss/train" in e.values &&
      (e.resumedFrom === undefined) === mine
    ).map((e) => e.step);
  const trained = trainedBy(true);
  assert.equal(trained[0], step + 1);
  assert.equal(trained[trained.length - 1], 40);
  const before = trainedBy(false);
  assert.ok(before.length >= step, `the killed attempt's ${before.length} steps were not kept`);

  // An uninterrupted run of the same graph stores the same model, byte for byte.
  const whole = await runPipeline(graph, { runsDir: join(dir, "whole"), quiet: true });
  assert.equal(whole.status, "ok", whole.error?.message);
  assert.equal(whole.stages.pretrain.key, resumed.stages.pretrain.key);
  const key = whole.stages.pretrain.key!;
  const a = await filesOf(join(runsDir, ".cache", key, "outputs", "model"));
  const b = await filesOf(join(dir, "whole", ".cache", key, "outputs", "model"));
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [name, bytes] of a) assert.deepEqual(bytes, b.get(name), `${name} differs`);
  await Deno.remove(dir, { recursive: true });
});

import assert from "node:assert/strict";
import { join } from "node:path";
import { loadGraph, parseGraph } from "./graph.ts";
import { runPipeline } from "./run.ts";
import { collectGarbage, listRuns } from "./runs.ts";
import { calls, toyRegistry as registry } from "./testdata/toy_plugins.ts";

const dir = new URL("./testdata/", import.meta.url).pathname;

/** Runs the toy CLI in its own process (which may kill itself with SIGKILL). */
async function toyCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<Deno.CommandOutput> {
  return await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${dir}toy_cli.ts`, ...args, "--quiet"],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
}

const readJson = async (path: string) => JSON.parse(await Deno.readTextFile(path));

Deno.test("after kill -9 and a rerun, metrics, events and manifests hold the whole history", async () => {
  const runsDir = await Deno.makeTempDir();
  const args = ["--config", `${dir}loop.yaml`, "--runs-dir", runsDir];
  // Episodes 1-2 are checkpointed, then the process dies in episode 4.
  const killed = await toyCli(args, { HARMONYRL_TOY_KILL_AT: "3" });
  assert.equal(killed.signal, "SIGKILL", new TextDecoder().decode(killed.stderr));
  const [dead] = await listRuns(runsDir, "loop");
  assert.equal((await readJson(join(dead.dir, "manifest.json"))).status, "running");

  calls.clear();
  const graph = await loadGraph(`${dir}loop.yaml`, { registry });
  const resumed = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(resumed.status, "ok", resumed.error?.message);
  // Episodes 3-5 ran here; 1-2 came from the killed attempt's checkpoint.
  assert.equal(calls.get("train/add"), 3);
  assert.equal(resumed.stages.train.resumedFrom, dead.runId);

  // The killed run's manifest now says what happened to it.
  const deadManifest = await readJson(join(dead.dir, "manifest.json"));
  assert.equal(deadManifest.status, "interrupted");
  assert.equal(deadManifest.stages.train.status, "interrupted");
  assert.match(deadManifest.interruption, /the process ended while the run was going/);

  // Every episode is in metrics.json once, with the values of an uninterrupted run.
  const metrics = await readJson(join(resumed.runDir!, "metrics.json"));
  assert.deepEqual(
    metrics["train/add"].map((m: { step: number; values: Record<string, number> }) => [
      m.step,
      m.values["toy/value"],
    ]),
    [[0, 11], [1, 13], [2, 15], [3, 17], [4, 19]],
  );
  const fresh = await runPipeline(graph, { runsDir: await Deno.makeTempDir(), quiet: true });
  assert.deepEqual(
    (await readJson(join(fresh.runDir!, "metrics.json")))["train/add"],
    metrics["train/add"],
  );
  // events.jsonl keeps the killed attempt's lines, marked with its run, then this run's.
  const events = (await Deno.readTextFile(join(resumed.runDir!, "events.jsonl"))).trim().split("\n")
    .map((line) => JSON.parse(line));
  const steps = events.filter((e) => e.type === "metric" && e.stage === "train/add")
    .map((e) => `${e.step}${e.resumedFrom ? ` from ${e.resumedFrom}` : ""}`);
  assert.deepEqual(steps, [
    `0 from ${dead.runId}`,
    `1 from ${dead.runId}`,
    `2 from ${dead.runId}`,
    `3 from ${dead.runId}`,
    "2",
    "3",
    "4",
  ]);
  // Nothing is left in the work folder once the loop finished.
  assert.deepEqual([...Deno.readDirSync(join(runsDir, ".cache", "work"))], []);
});

Deno.test("gc removes old runs, orphaned work folders, leftovers and unused entries; --dry-run only lists", async () => {
  const runsDir = await Deno.makeTempDir();
  const cacheDir = join(runsDir, ".cache");
  const graph = await loadGraph(`${dir}chain.yaml`, { registry });
  const first = await runPipeline(graph, { runsDir, quiet: true });
  const changed = await loadGraph(`${dir}chain.yaml`, {
    registry,
    overrides: ["stages.scale.with.factor=4"],
  });
  const runs = [first];
  for (let i = 0; i < 3; i++) runs.push(await runPipeline(changed, { runsDir, quiet: true }));
  // Leftovers of killed runs: an empty work folder, one with only a journal, a temp entry.
  await Deno.mkdir(join(cacheDir, "work", "a".repeat(24)), { recursive: true });
  await Deno.mkdir(join(cacheDir, "work", "b".repeat(24)));
  await Deno.writeTextFile(join(cacheDir, "work", "b".repeat(24), ".events.jsonl"), "");
  await Deno.mkdir(join(cacheDir, `.tmp-${"c".repeat(24)}-1234`));
  const entriesBefore = [...Deno.readDirSync(cacheDir)].filter((e) =>
    /^[0-9a-f]{24}$/.test(e.name)
  );

  const plan = await collectGarbage(runsDir, { keep: 2, dryRun: true });
  assert.deepEqual(plan.runs, [runs[0].runDir, runs[1].runDir]);
  assert.equal(plan.work.length, 2);
  assert.equal(plan.leftovers.length, 1);
  assert.ok(plan.locks.length >= 3, `${plan.locks.length} unused locks`);
  // The first run's scale and total (factor 3) are used by no kept run.
  assert.equal(plan.entries.length, 2);
  assert.ok(plan.bytes > 0);
  assert.ok(Deno.statSync(runs[0].runDir!).isDirectory, "dry run removed a run");

  const done = await collectGarbage(runsDir, { keep: 2 });
  assert.deepEqual(done.runs, plan.runs);
  assert.deepEqual((await listRuns(runsDir, "chain")).map((r) => r.dir), [
    runs[2].runDir,
    runs[3].runDir,
  ]);
  assert.deepEqual([...Deno.readDirSync(join(cacheDir, "work"))], []);
  const entriesAfter = [...Deno.readDirSync(cacheDir)].filter((e) => /^[0-9a-f]{24}$/.test(e.name));
  assert.equal(entriesAfter.length, entriesBefore.length - 2);
  // What is left still serves the kept graph from the cache.
  const again = await runPipeline(changed, { runsDir, quiet: true });
  assert.deepEqual(Object.values(again.stages).map((s) => s.status), [
    "cached",
    "cached",
    "cached",
  ]);
});

Deno.test("two identical runs started together both succeed and compute each stage once", async () => {
  const runsDir = await Deno.makeTempDir();
  calls.clear();
  const text = [
    "name: together",
    "stages:",
    "  a: { use: toy/train, with: { steps: 3, sleepMs: 30 } }",
    "  b: { use: toy/train, in: { value: a.value }, with: { steps: 3, sleepMs: 30 } }",
    "",
  ].join("\n");
  const graph = await parseGraph(text, "together.yaml", { registry });
  const results = await Promise.all([
    runPipeline(graph, { runsDir, quiet: true }),
    runPipeline(graph, { runsDir, quiet: true }),
  ]);
  for (const result of results) assert.equal(result.status, "ok", result.error?.message);
  assert.deepEqual(Object.fromEntries(calls), { a: 1, b: 1 });
  for (const stage of ["a", "b"]) {
    assert.deepEqual(results.map((r) => r.stages[stage].status).sort(), ["cached", "done"]);
  }
  assert.notEqual(results[0].runDir, results[1].runDir);
});

Deno.test("runs in separate processes share one runs folder and cache safely", async () => {
  const runsDir = await Deno.makeTempDir();
  const file = join(runsDir, "procs.yaml");
  await Deno.writeTextFile(
    file,
    [
      "name: procs",
      "stages:",
      "  a: { use: toy/train, with: { steps: 4, sleepMs: 40 } }",
      "  b: { use: toy/train, in: { value: a.value }, with: { steps: 4, sleepMs: 40 } }",
      "",
    ].join("\n"),
  );
  const outputs = await Promise.all(
    [0, 1, 2].map(() => toyCli(["--config", file, "--runs-dir", runsDir])),
  );
  for (const out of outputs) assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  const runs = await listRuns(runsDir, "procs");
  assert.equal(runs.length, 3);
  for (const stage of ["a", "b"]) {
    const statuses = await Promise.all(
      runs.map(async (r) => (await readJson(join(r.dir, "manifest.json"))).stages[stage].status),
    );
    assert.deepEqual(statuses.sort(), ["cached", "cached", "done"], `stage ${stage}`);
  }
  assert.ok(runs.every((r) => r.status === "ok" && !r.live));
});

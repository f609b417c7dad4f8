import assert from "node:assert/strict";
import { join } from "node:path";
import { loadGraph, parseGraph } from "./graph.ts";
import { runPipeline } from "./run.ts";
import { calls, setAbortHook, toyRegistry } from "./testdata/toy_plugins.ts";

const dir = new URL("./testdata/", import.meta.url).pathname;
const registry = toyRegistry;

async function totalOf(runDir: string, stage: string, port: string): Promise<unknown> {
  const manifest = JSON.parse(await Deno.readTextFile(join(runDir, "manifest.json")));
  const key = manifest.stages[stage].key;
  return JSON.parse(
    await Deno.readTextFile(join(runDir, "..", "..", ".cache", key, "outputs", port, "value.json")),
  );
}

Deno.test("runPipeline() runs stages in order and a second run takes every stage from the cache", async () => {
  const runsDir = await Deno.makeTempDir();
  calls.clear();
  const graph = await loadGraph(`${dir}chain.yaml`, { registry });
  const first = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(first.status, "ok", first.error?.message);
  // numbers 1..4, scaled by 3 = 30, plus 1..4 = 10, plus offset 10 * 1 and user offset 2000 * 0.5.
  assert.equal(await totalOf(first.runDir!, "total", "total"), 30 + 10 + 10 + 1000);
  assert.deepEqual(Object.values(first.stages).map((s) => s.status), ["done", "done", "done"]);
  assert.equal(first.stages.load.reason, "no cached result");
  const second = await runPipeline(graph, { runsDir, quiet: true });
  assert.deepEqual(Object.values(second.stages).map((s) => s.status), [
    "cached",
    "cached",
    "cached",
  ]);
  assert.deepEqual([...calls.values()], [1, 1, 1]);
  // The latest link leads to the newest run; the manifest and event log are there.
  assert.equal(
    await Deno.readLink(join(runsDir, "chain", "latest")),
    second.runDir!.split("/").pop(),
  );
  const manifest = JSON.parse(await Deno.readTextFile(join(second.runDir!, "manifest.json")));
  assert.equal(manifest.status, "ok");
  assert.equal(manifest.seed, 7);
  assert.equal(manifest.stages.total.status, "cached");
  // Files a stage wrote into its run directory come back with it from the cache.
  assert.equal(await Deno.readTextFile(join(second.runDir!, "sums", "total.txt")), "8");
  // Metrics of cached stages come from the cache, so a report of this run still has them.
  const metrics = JSON.parse(await Deno.readTextFile(join(second.runDir!, "metrics.json")));
  assert.deepEqual(metrics.total, [{ step: 0, values: { "toy/sum": 40 } }]);
  assert.match(await Deno.readTextFile(join(second.runDir!, "graph.mmd")), /^flowchart TD/);
  const firstEvents = (await Deno.readTextFile(join(first.runDir!, "events.jsonl"))).trim().split(
    "\n",
  ).map((l) => JSON.parse(l));
  assert.ok(
    firstEvents.some((e) =>
      e.type === "metric" && e.stage === "total" && e.values["toy/sum"] === 40
    ),
  );
});

Deno.test("a changed param re-runs only that stage and the ones downstream, and says why", async () => {
  const runsDir = await Deno.makeTempDir();
  calls.clear();
  await runPipeline(await loadGraph(`${dir}chain.yaml`, { registry }), { runsDir, quiet: true });
  const changed = await loadGraph(`${dir}chain.yaml`, {
    registry,
    overrides: ["stages.scale.with.factor=4"],
  });
  const plan = await runPipeline(changed, { runsDir, dryRun: true });
  assert.equal(plan.status, "planned");
  assert.equal(plan.stages.load.status, "cached");
  assert.equal(plan.stages.scale.status, "would-run");
  assert.equal(plan.stages.scale.reason, "params changed: factor 3 -> 4");
  assert.equal(plan.stages.total.reason, "an input will be recomputed");
  const result = await runPipeline(changed, { runsDir, quiet: true });
  assert.deepEqual(Object.values(result.stages).map((s) => s.status), ["cached", "done", "done"]);
  assert.equal(result.stages.total.reason, "input changed: numbers");
  assert.equal(await totalOf(result.runDir!, "total", "total"), 40 + 10 + 10 + 1000);
  assert.deepEqual(Object.fromEntries(calls), { load: 1, scale: 2, total: 2 });
});

Deno.test("--force re-runs everything and --only runs one stage from cached inputs", async () => {
  const runsDir = await Deno.makeTempDir();
  const graph = await loadGraph(`${dir}chain.yaml`, { registry });
  const missing = await runPipeline(graph, { runsDir, only: "total", quiet: true });
  assert.equal(missing.status, "failed");
  assert.match(
    missing.error!.message,
    /needs "scale\.numbers", "load\.numbers", which has no cached result/,
  );
  await runPipeline(graph, { runsDir, quiet: true });
  calls.clear();
  const only = await runPipeline(graph, { runsDir, only: "scale", quiet: true });
  assert.deepEqual(Object.values(only.stages).map((s) => s.status), ["skipped", "done", "skipped"]);
  const forced = await runPipeline(graph, { runsDir, force: true, quiet: true });
  assert.deepEqual(Object.values(forced.stages).map((s) => s.status), ["done", "done", "done"]);
  const until = await runPipeline(graph, { runsDir, until: "scale", quiet: true });
  assert.deepEqual(Object.values(until.stages).map((s) => s.status), [
    "cached",
    "cached",
    "skipped",
  ]);
  const from = await runPipeline(graph, { runsDir, from: "scale", quiet: true });
  assert.deepEqual(Object.values(from.stages).map((s) => s.status), ["skipped", "done", "cached"]);
  await assert.rejects(
    () => runPipeline(graph, { runsDir, only: "nope" }),
    /Unknown stage "nope" for --only/,
  );
});

Deno.test("a failed stage is reported with stage, plugin and cause, and the next run resumes after the finished stages", async () => {
  const runsDir = await Deno.makeTempDir();
  calls.clear();
  const text =
    "name: resume\nstages:\n  load: { use: toy/numbers }\n  check: { use: toy/fail, in: { numbers: load.numbers } }\n  total: { use: toy/sum, in: { numbers: check.numbers } }\n";
  const failing = await parseGraph(text, "resume.yaml", { registry });
  const result = await runPipeline(failing, { runsDir, quiet: true });
  assert.equal(result.status, "failed");
  assert.equal(result.error!.message, 'Stage "check" (toy/fail) failed: the toy failed on purpose');
  assert.deepEqual(Object.values(result.stages).map((s) => s.status), [
    "done",
    "failed",
    "pending",
  ]);
  const manifest = JSON.parse(await Deno.readTextFile(join(result.runDir!, "manifest.json")));
  assert.equal(manifest.status, "failed");
  assert.equal(manifest.stages.check.error, result.error!.message);
  const fixed = await parseGraph(
    text.replace("toy/fail,", "toy/fail, with: { fail: false },"),
    "resume.yaml",
    { registry },
  );
  const again = await runPipeline(fixed, { runsDir, quiet: true });
  assert.deepEqual(Object.values(again.stages).map((s) => s.status), ["cached", "done", "done"]);
  assert.equal(calls.get("load"), 1);
});

Deno.test("a loop block carries its value through every episode, and an outer stage reads the result", async () => {
  const runsDir = await Deno.makeTempDir();
  calls.clear();
  const graph = await loadGraph(`${dir}loop.yaml`, { registry });
  const result = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(result.status, "ok", result.error?.message);
  // start = 5 + 6 = 11; five episodes of +2 = 21; after adds 100.
  assert.equal(await totalOf(result.runDir!, "train", "value"), 21);
  assert.equal(await totalOf(result.runDir!, "after", "value"), 121);
  assert.equal(calls.get("train/add"), 5);
  assert.deepEqual(result.stages.train.metrics, { "toy/value": 19 });
  const again = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(again.stages.train.status, "cached");
  const longer = await loadGraph(`${dir}loop.yaml`, {
    registry,
    overrides: ["stages.train.loop.episodes=6"],
  });
  const plan = await runPipeline(longer, { runsDir, dryRun: true });
  assert.equal(plan.stages.train.status, "would-run");
  assert.equal(plan.stages.train.reason, "loop changed: episodes 5 -> 6");
});

Deno.test("an interrupted loop resumes from its last checkpoint and ends with the same result", async () => {
  const runsDir = await Deno.makeTempDir();
  calls.clear();
  const graph = await loadGraph(`${dir}loop.yaml`, {
    registry,
    overrides: ["stages.train.loop.stages.add.with.abortAt=3"],
  });
  const controller = new AbortController();
  setAbortHook(() => controller.abort());
  const stopped = await runPipeline(graph, { runsDir, quiet: true, signal: controller.signal });
  setAbortHook(undefined);
  assert.equal(stopped.status, "interrupted");
  assert.equal(stopped.stages.train.status, "interrupted");
  assert.equal(calls.get("train/add"), 4);
  // Episodes 1-2 and 3-4 were checkpointed; the resumed run does episode 5 only.
  const resumed = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(resumed.status, "ok", resumed.error?.message);
  assert.equal(calls.get("train/add"), 5);
  assert.equal(await totalOf(resumed.runDir!, "train", "value"), 21);
});

Deno.test("a stage whose data is missing stops the run before anything runs, with one message", async () => {
  const runsDir = await Deno.makeTempDir();
  const data = join(runsDir, "numbers.json");
  calls.clear();
  const text = `name: preflight\nstages:\n  first: { use: toy/numbers }\n` +
    `  load: { use: toy/read, with: { path: ${JSON.stringify(data)} } }\n` +
    `  total: { use: toy/sum, in: { numbers: load.numbers } }\n`;
  const graph = await parseGraph(text, "preflight.yaml", { registry });
  const missing = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(missing.status, "failed");
  assert.equal(
    missing.error!.message,
    `Stage "load" (toy/read) cannot run: Cannot read numbers from "${data}": no such file; ` +
      `write one first; or point "path" elsewhere with --set stages.load.with.path=...`,
  );
  assert.equal(missing.runDir, undefined);
  assert.equal(calls.size, 0, "no stage ran, not even the one before");
  assert.deepEqual([...Deno.readDirSync(runsDir)], []);
  const plan = await runPipeline(graph, { runsDir, dryRun: true });
  assert.equal(plan.error!.message, missing.error!.message);

  // With the file there it runs; once cached, the file is not needed any more.
  await Deno.writeTextFile(data, "[1, 2, 3]");
  const ok = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(ok.status, "ok", ok.error?.message);
  await Deno.remove(data);
  const cached = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(cached.status, "ok", cached.error?.message);
  assert.equal(cached.stages.load.status, "cached");
});

Deno.test("a loop body stage's missing data names the loop's --set path", async () => {
  const runsDir = await Deno.makeTempDir();
  const graph = await loadGraph(`${dir}loop.yaml`, {
    registry,
    overrides: [
      "stages.train.loop.stages.extra={use: toy/read, with: {path: /nonexistent/n.json}}",
    ],
  });
  const result = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(result.status, "failed");
  assert.match(
    result.error!.message,
    /^Stage "train\/extra" \(toy\/read\) cannot run: Cannot read numbers from "\/nonexistent\/n\.json": .*--set stages\.train\.loop\.stages\.extra\.with\.path=\.\.\.$/,
  );
});

Deno.test("a stage whose loss stays NaN fails at the third step, names the cause and caches nothing", async () => {
  const runsDir = await Deno.makeTempDir();
  calls.clear();
  const text = "name: nan\nstages:\n  train: { use: toy/train, with: { nanFrom: 4, lr: 1e9 } }\n";
  const graph = await parseGraph(text, "nan.yaml", { registry });
  const result = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(result.status, "failed");
  assert.equal(
    result.error!.message,
    'Stage "train" (toy/train) failed: training diverged at step 4: "loss/train" was NaN for 3 ' +
      "recorded steps in a row (step 4 to step 6); likely cause: a learning rate too high " +
      '("lr" is 1000000000): lower it; nothing of this stage was cached',
  );
  assert.equal(result.stages.train.status, "failed");
  // No cache entry, no checkpoint left to resume from: the next run starts the stage afresh.
  const cacheDir = join(runsDir, ".cache");
  const entries = [...Deno.readDirSync(cacheDir)].map((e) => e.name).filter((n) =>
    /^[0-9a-f]{24}$/.test(n)
  );
  assert.deepEqual(entries, []);
  assert.deepEqual([...Deno.readDirSync(join(cacheDir, "work"))], []);
  const again = await runPipeline(graph, { runsDir, quiet: true });
  assert.equal(again.stages.train.status, "failed");
  assert.equal(calls.get("train"), 2);
});

Deno.test("one or two NaN losses in a row are tolerated, but a stage that ends on one fails", async () => {
  const runsDir = await Deno.makeTempDir();
  const graph = (nan: string) =>
    parseGraph(`name: nan\nstages:\n  train: { use: toy/train, with: { ${nan} } }\n`, "nan.yaml", {
      registry,
    });
  // Steps 2-3 are NaN, then the loss recovers; "toy/rate" is always NaN but is not a loss.
  const recovered = await runPipeline(await graph("nanFrom: 2, nanUntil: 3"), {
    runsDir,
    quiet: true,
  });
  assert.equal(recovered.status, "ok", recovered.error?.message);
  const ended = await runPipeline(await graph("nanFrom: 8"), { runsDir, quiet: true });
  assert.equal(ended.status, "failed");
  assert.match(
    ended.error!.message,
    /failed: training diverged: it ended with "loss\/train" NaN at step 9; likely cause: a learning rate too high \("lr" is 0\.1\)/,
  );
});

Deno.test("a loop body whose loss stays NaN fails the loop at the third episode", async () => {
  const runsDir = await Deno.makeTempDir();
  const text = [
    "name: nanloop",
    "stages:",
    "  start: { use: toy/train, with: { steps: 1 } }",
    "  rl:",
    "    loop:",
    "      episodes: 8",
    "      checkpointEvery: 1",
    "      carry: { value: { init: start.value, next: update.value } }",
    "      stages:",
    "        update: { use: toy/train, in: { value: rl.value }, with: { steps: 1, nanFrom: 2 } }",
    "",
  ].join("\n");
  const result = await runPipeline(await parseGraph(text, "nanloop.yaml", { registry }), {
    runsDir,
    quiet: true,
  });
  assert.equal(result.status, "failed");
  assert.match(
    result.error!.message,
    /^Stage "rl" \(loop\) failed: episode 5, body stage "update" \(toy\/train\): training diverged at episode 3: "loss\/train" was NaN for 3 episodes in a row \(episode 3 to episode 5\)/,
  );
  assert.equal(result.stages.start.status, "done");
  assert.deepEqual([...Deno.readDirSync(join(runsDir, ".cache", "work"))], []);
});

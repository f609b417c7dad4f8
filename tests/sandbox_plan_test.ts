import assert from "node:assert/strict";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadGraph } from "../pipeline/graph.ts";
import { onPath, sandboxFlags, sandboxPlan } from "../pipeline/sandbox.ts";
import { registry } from "../plugins/registry.ts";
import { nativeCacheDir } from "../plugins/_tf/native.ts";

const project = fileURLToPath(new URL("..", import.meta.url));
const config = `${project}configs/pipeline.yaml`;

Deno.test("sandboxPlan() grants the default graph the project, its runs, FluidSynth, OpenBLAS and the native kernels' compiler and cache", async () => {
  const graph = await loadGraph(config, { registry });
  const plan = sandboxPlan(graph, { runsDir: "runs", projectRoot: project });
  const cache = nativeCacheDir();
  assert.deepEqual(plan.write, [resolve("runs"), ...(cache === null ? [] : [cache])].sort());
  assert.ok(plan.read.includes(resolve(project)) && plan.read.includes(resolve("runs")));
  assert.ok(cache === null || plan.read.includes(cache), "the native kernels' cache");
  assert.ok(plan.read.includes("/usr/share/sounds/sf2/FluidR3_GM.sf2"), "system SoundFonts");
  // FluidSynth and the C compilers when they are installed; a program that is not is left
  // out of --allow-run.
  const installed = ["cc", "clang", "fluidsynth", "gcc"].filter((name) => onPath(name));
  assert.deepEqual(plan.run, installed);
  assert.ok(plan.env.includes("HOME") && plan.env.includes("CC"));
  assert.equal(onPath("definitely-not-a-program-here"), false);
  assert.ok(plan.env.includes("HARMONYRL_SOUNDFONT") && plan.env.includes("XDG_RUNTIME_DIR"));
  assert.equal(plan.ffi, true);
  const flags = sandboxFlags(plan);
  assert.equal(flags[0], "--no-prompt");
  assert.ok(flags.includes(`--allow-write=${plan.write.join(",")}`));
  assert.equal(flags.includes(`--allow-run=${installed.join(",")}`), installed.length > 0);
  assert.ok(!flags.some((f) => f.startsWith("--allow-net") || f === "--allow-all"));
});

Deno.test("sandboxPlan() adds the graph's data and export folders, and drops what the graph does not use", async () => {
  const graph = await loadGraph(config, {
    registry,
    overrides: [
      "backend=cpu",
      "stages.load={use: load/midi-dir, with: {dir: data/in}}",
      "stages.export.with.dir=out/midi",
      "stages.report.with.audio=false",
    ],
  });
  const plan = sandboxPlan(graph, { runsDir: "/tmp/runs", projectRoot: project });
  assert.deepEqual(plan.write, ["/tmp/runs", resolve("out/midi")].sort());
  assert.ok(plan.read.includes(resolve("data/in")));
  assert.ok(plan.read.includes(resolve("out/midi")));
  assert.deepEqual(plan.run, []);
  assert.equal(plan.ffi, false);
  assert.deepEqual(plan.env, ["LOG_STREAM", "LOG_TOKENS"]);
  assert.throws(
    () => sandboxFlags({ ...plan, read: ["/data/a,b"] }),
    /Cannot run in the sandbox: "\/data\/a,b" holds a comma/,
  );
});

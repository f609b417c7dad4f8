// Least privilege, end to end: the real command line (with the task's broad permissions) runs a
// graph whose user plugin, kept outside the project, tries to escape at load time and when it
// runs: read a secret, write outside the runs folder, start a program, read the environment,
// reach the network, import a file the graph does not name, open a native library.
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const project = fileURLToPath(new URL("..", import.meta.url));
const TASK_FLAGS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-ffi",
  "--allow-run",
  "--allow-sys",
];

/** Runs `deno task pipeline` as a user would (same flags), from the project. */
async function pipeline(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...TASK_FLAGS, "main.ts", ...args],
    cwd: project,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes);
  return { code: output.code, out: text(output.stdout), err: text(output.stderr) };
}

/** A folder outside the project with a secret, a graph, and a plugin that tries to escape. */
async function setUp(): Promise<{ dir: string; outside: string; secret: string; graph: string }> {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-sandbox-" });
  const outside = join(dir, "outside");
  await Deno.mkdir(outside);
  const secret = join(dir, "secret.txt");
  await Deno.writeTextFile(secret, "the user's private key");
  await Deno.writeTextFile(join(outside, "other.ts"), "export const x = 1;\n");
  const mod = new URL("../mod.ts", import.meta.url).href;
  await Deno.writeTextFile(
    join(dir, "escape.ts"),
    `import { definePlugin } from "${mod}";
const OUT = ${JSON.stringify(outside)};
async function attempt(f: () => unknown): Promise<string> {
  try {
    await f();
    return "allowed";
  } catch (error) {
    // fetch and import wrap the permission error in a TypeError: look at the message too.
    const e = error as Error;
    const byPermission = e instanceof Deno.errors.NotCapable ||
      /Requires \\w+ access/.test(String(e.message));
    return byPermission ? "denied" : "failed: " + e.name + ": " + e.message;
  }
}
const top = {
  write: await attempt(() => Deno.writeTextFile(OUT + "/top-write.txt", "x")),
  run: await attempt(() => new Deno.Command("touch", { args: [OUT + "/top-run.txt"] }).output()),
};
console.error("escape at load: " + JSON.stringify(top));
export default definePlugin({
  name: "user/escape",
  kind: "eval",
  version: "1.0.0",
  description: "Tries to escape the sandbox",
  params: {},
  inputs: { corpus: { type: "midi-corpus", description: "Anything" } },
  outputs: { report: { type: "escape-report", description: "What it could do" } },
  async run(ctx) {
    const report = {
      readSecret: await attempt(() => Deno.readTextFile(${JSON.stringify(secret)})),
      writeOutside: await attempt(() => Deno.writeTextFile(OUT + "/run-write.txt", "x")),
      runProgram: await attempt(() =>
        new Deno.Command("touch", { args: [OUT + "/run-run.txt"] }).output()
      ),
      env: await attempt(() => Deno.env.get("HOME")),
      net: await attempt(() => fetch("http://127.0.0.1:8765/")),
      importOutside: await attempt(() => import("file://" + OUT + "/other.ts")),
      ffi: await attempt(() => Deno.dlopen("libc.so.6", {})),
      writeRunDir: await attempt(() => Deno.writeTextFile(ctx.runDir + "/escape.txt", "x")),
    };
    await Deno.writeTextFile(ctx.runDir + "/escape.json", JSON.stringify(report));
    return { report };
  },
});
`,
  );
  const graph = join(dir, "escape.yaml");
  await Deno.writeTextFile(
    graph,
    [
      "name: escape",
      "backend: cpu",
      "stages:",
      "  load: { use: load/synthetic, with: { count: 4, bars: 2 } }",
      "  escape: { use: ./escape.ts, in: { corpus: load.corpus } }",
      "",
    ].join("\n"),
  );
  return { dir, outside, secret, graph };
}

const listing = (dir: string) => [...Deno.readDirSync(dir)].map((e) => e.name).sort();

Deno.test("plan, graph and --dry-run load a user plugin without write or run rights", async () => {
  const { dir, outside, graph } = await setUp();
  try {
    const runs = join(dir, "runs");
    for (const args of [["plan"], ["graph"], ["--dry-run"]]) {
      const result = await pipeline([...args, "--config", graph, "--runs-dir", runs]);
      assert.equal(result.code, 0, result.err);
      assert.match(
        result.err,
        /escape at load: \{"write":"denied","run":"denied"\}/,
      );
    }
    assert.deepEqual(listing(outside), ["other.ts"]);
    assert.equal(await Deno.stat(runs).then(() => "made", () => "absent"), "absent");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("run gives a user plugin only what the graph needs: no secret, no program, no way out", async () => {
  const { dir, outside, graph } = await setUp();
  try {
    const runs = join(dir, "runs");
    const result = await pipeline(["--config", graph, "--runs-dir", runs, "--quiet"]);
    assert.equal(result.code, 0, result.err);
    // At load time, in the planning process and in the run itself.
    const loads = result.err.match(/escape at load: .*/g) ?? [];
    assert.equal(loads.length, 2, result.err);
    for (const line of loads) {
      assert.equal(line, 'escape at load: {"write":"denied","run":"denied"}');
    }
    const runDir = join(runs, "escape", "latest");
    assert.deepEqual(JSON.parse(await Deno.readTextFile(join(runDir, "escape.json"))), {
      readSecret: "denied",
      writeOutside: "denied",
      runProgram: "denied",
      env: "denied",
      net: "denied",
      importOutside: "denied",
      ffi: "denied",
      writeRunDir: "allowed",
    });
    assert.deepEqual(listing(outside), ["other.ts"]);
    const manifest = JSON.parse(await Deno.readTextFile(join(runDir, "manifest.json")));
    assert.equal(manifest.status, "ok");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the sandbox refuses system folders, and URL plugins with a message that says why", async () => {
  const { dir, graph } = await setUp();
  try {
    const text = await Deno.readTextFile(graph);
    await Deno.writeTextFile(
      graph,
      text.replace(
        "  escape:",
        "  export: { use: export/midi, in: { pieces: load.corpus } }\n  escape:",
      ),
    );
    const system = await pipeline([
      "--config",
      graph,
      "--runs-dir",
      join(dir, "runs"),
      "--set",
      "stages.export.with.dir=/",
    ]);
    assert.equal(system.code, 2, system.err);
    assert.match(
      system.err,
      /stages\.export\.with\.dir: Expected a folder of your own, received "\/": it is in the system folder "\/", and HarmonyRL never writes there/,
    );
    const url = await pipeline([
      "plan",
      "--config",
      graph,
      "--set",
      "stages.escape.use=http://127.0.0.1:8765/evil.ts",
    ]);
    assert.equal(url.code, 2);
    assert.match(
      url.err,
      /Cannot load plugin "http:\/\/127\.0\.0\.1:8765\/evil\.ts": plugins are loaded from files only/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

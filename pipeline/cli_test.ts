import assert from "node:assert/strict";
import { main } from "./cli.ts";
import { toyRegistry } from "./testdata/toy_plugins.ts";

const dir = new URL("./testdata/", import.meta.url).pathname;

/** Runs the CLI with console output captured. */
async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => out.push(a.join(" "));
  console.error = (...a: unknown[]) => err.push(a.join(" "));
  try {
    const code = await main(args, toyRegistry);
    return { code, out: out.join("\n"), err: err.join("\n") };
  } finally {
    console.log = log;
    console.error = error;
  }
}

Deno.test("the CLI exits 2 on an invalid graph, prints every problem and runs nothing", async () => {
  const runsDir = await Deno.makeTempDir();
  const { code, err } = await cli(["--config", `${dir}invalid.yaml`, "--runs-dir", runsDir]);
  assert.equal(code, 2);
  assert.match(err, /invalid\.yaml:6:5 stages\.load\.use: Unknown plugin "toy\/numbrs"/);
  assert.match(err, /9 problem\(s\) in ".*invalid\.yaml": nothing was run/);
  assert.deepEqual([...Deno.readDirSync(runsDir)], []);
});

Deno.test("the CLI exits 0 on success, 1 when a stage fails, and 2 on a bad argument", async () => {
  const runsDir = await Deno.makeTempDir();
  const ok = await cli(["--config", `${dir}chain.yaml`, "--runs-dir", runsDir, "--quiet"]);
  assert.equal(ok.code, 0, ok.err);
  assert.match(ok.out, /Run "chain": ok/);
  const file = `${runsDir}/fail.yaml`;
  await Deno.writeTextFile(
    file,
    "stages:\n  a: { use: toy/numbers }\n  b: { use: toy/fail, in: { numbers: a.numbers } }\n",
  );
  const failed = await cli(["--config", file, "--runs-dir", runsDir, "--quiet"]);
  assert.equal(failed.code, 1);
  assert.match(failed.err, /Stage "b" \(toy\/fail\) failed: the toy failed on purpose/);
  assert.equal((await cli(["--bogus"])).code, 2);
  assert.equal((await cli(["frobnicate"])).code, 2);
  assert.equal(
    (await cli(["--config", `${dir}chain.yaml`, "--runs-dir", runsDir, "--only", "nope"])).code,
    2,
  );
});

Deno.test("the CLI exits 2 when --only needs inputs that are not cached: nothing ran", async () => {
  const runsDir = await Deno.makeTempDir();
  const only = await cli([
    "--config",
    `${dir}chain.yaml`,
    "--runs-dir",
    runsDir,
    "--only",
    "total",
  ]);
  assert.equal(only.code, 2);
  assert.match(
    only.err,
    /Stage "total" needs "scale\.numbers", "load\.numbers", which has no cached result/,
  );
  assert.deepEqual([...Deno.readDirSync(runsDir)], []);
});

Deno.test("plan, graph and plugins print without running anything", async () => {
  const runsDir = await Deno.makeTempDir();
  const plan = await cli(["plan", "--config", `${dir}chain.yaml`, "--runs-dir", runsDir]);
  assert.equal(plan.code, 0);
  assert.match(plan.out, /load\s+would-run\s+toy\/numbers\s+\[no cached result\]/);
  assert.deepEqual([...Deno.readDirSync(runsDir)], []);
  const dry = await cli(["--dry-run", "--config", `${dir}chain.yaml`, "--runs-dir", runsDir]);
  assert.equal(dry.out, plan.out);
  const graph = await cli(["graph", "--config", `${dir}loop.yaml`]);
  assert.match(graph.out, /^flowchart TD/);
  const plugins = await cli(["plugins"]);
  assert.match(plugins.out, /toy\/scale {2}\[tokenize stage, v1\.0\.0\]/);
  assert.match(plugins.out, /- factor \(a number >= 0; default 2\): The factor/);
  const json = JSON.parse((await cli(["plugins", "--json"])).out);
  assert.equal(
    json.find((p: { name: string }) => p.name === "toy/sum").inputs.extra,
    "numbers (optional)",
  );
});

Deno.test("the backend choice is one line at the start; --verbose adds what was skipped and why", async () => {
  const runsDir = await Deno.makeTempDir();
  const args = ["--config", `${dir}chain.yaml`, "--runs-dir", runsDir, "--set", "backend=auto"];
  const plain = await cli(args);
  assert.equal(plain.code, 0, plain.err);
  const backendLines = (text: string) => text.split("\n").filter((l) => l.startsWith("backend: "));
  // One line on stderr as the run starts, and one short line in the summary at the end.
  assert.deepEqual(backendLines(plain.err), [
    'backend: none (toy): "auto" picked the fastest that starts here; ' +
    "2 faster ones skipped (--verbose says why)",
  ]);
  assert.ok(plain.err.split("\n")[0].startsWith("backend: "), plain.err);
  assert.deepEqual(backendLines(plain.out), ["backend: none (toy)"]);
  assert.doesNotMatch(plain.err + plain.out, /libfast|no device/);

  const verbose = await cli([...args, "--force", "--verbose"]);
  assert.equal(verbose.code, 0, verbose.err);
  assert.deepEqual(backendLines(verbose.err), [
    'backend: skipped "fast": no "libfast.so" in /usr/lib, /opt/lib',
    'backend: skipped "faster": no device',
    'backend: none (toy): "auto" picked the fastest that starts here',
  ]);
  assert.deepEqual(backendLines(verbose.out), ["backend: none (toy)"]);

  // The manifest keeps the whole story either way.
  const manifest = JSON.parse(await Deno.readTextFile(`${runsDir}/chain/latest/manifest.json`));
  assert.deepEqual(manifest.backend.skipped.map((s: { name: string }) => s.name), [
    "fast",
    "faster",
  ]);

  const named = await cli([...args.slice(0, -1), "backend=cpu", "--force"]);
  assert.deepEqual(backendLines(named.err), ["backend: none (toy): named in the config"]);
});

Deno.test("gc --dry-run lists what gc removes, and a bad --keep exits 2", async () => {
  const runsDir = await Deno.makeTempDir();
  const args = ["--config", `${dir}chain.yaml`, "--runs-dir", runsDir, "--quiet"];
  assert.equal((await cli(args)).code, 0);
  assert.equal((await cli([...args, "--force"])).code, 0);
  const dry = await cli(["gc", "--runs-dir", runsDir, "--keep", "1", "--dry-run"]);
  assert.equal(dry.code, 0, dry.err);
  assert.match(dry.out, /^would remove {2}run {9}.*\/chain\/\d{8}-\d{6}-[0-9a-f]{4}$/m);
  assert.match(
    dry.out,
    /Dry run: \d+ item\(s\), [\d.]+ MiB would be freed in ".*"; nothing was removed/,
  );
  assert.equal([...Deno.readDirSync(`${runsDir}/chain`)].length, 3); // two runs and "latest"
  const real = await cli(["gc", "--runs-dir", runsDir, "--keep", "1"]);
  assert.match(real.out, /^removed {2}run /m);
  assert.equal([...Deno.readDirSync(`${runsDir}/chain`)].length, 2);
  assert.equal((await cli(["gc", "--runs-dir", runsDir, "--keep", "-1"])).code, 2);
});

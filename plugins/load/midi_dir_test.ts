import assert from "node:assert/strict";
import { defaultParams, testContext } from "../_testing.ts";
import { writeMidi } from "../_music/midi.ts";
import { generateSyntheticPiece } from "./_synthetic.ts";
import { createRng } from "../../pipeline/rng.ts";
import type { MidiCorpus } from "../_music/types.ts";
import { parseGraph } from "../../pipeline/graph.ts";
import { runPipeline } from "../../pipeline/run.ts";
import { registry } from "../registry.ts";
import plugin, { listMidiFiles, pathFraction } from "./midi_dir.ts";

// The shared corpus beside the project checkout (absent on a fresh clone: the test is ignored).
const BAD_MIDI = new URL("../../../shared/data/bad-midi", import.meta.url).pathname;
const hasBadMidi = await Deno.stat(BAD_MIDI).then(() => true, () => false);

async function load(dir: string, overrides: Record<string, unknown> = {}) {
  const ctx = testContext();
  const out = await plugin.run(ctx, {}, defaultParams(plugin, { dir, ...overrides }) as never);
  return { corpus: out.corpus as MidiCorpus, ctx };
}

/** A temp dir with project-made MIDI files in nested folders, mixed-case extensions and a stray text file. */
async function makeFixtureDir(): Promise<{ dir: string; notes: Map<string, number> }> {
  const dir = await Deno.makeTempDir({ prefix: "harmonyrl-midi-dir-" });
  await Deno.mkdir(`${dir}/b/deeper`, { recursive: true });
  const rng = createRng(7);
  const notes = new Map<string, number>();
  const files = ["one.mid", "b/two.MIDI", "b/deeper/three.Mid", "four.midi"];
  for (const file of files) {
    const { piece } = generateSyntheticPiece(rng, { id: file, bars: 2 });
    await Deno.writeFile(`${dir}/${file}`, writeMidi(piece));
    notes.set(file.replace(/^.*\//, "").replace(/\.midi?$/i, ""), piece.notes.length);
  }
  await Deno.writeTextFile(`${dir}/notes.txt`, "not midi");
  await Deno.writeFile(`${dir}/b/broken.mid`, new Uint8Array([0x4d, 0x54, 0x68, 0x64, 0, 0]));
  return { dir, notes };
}

Deno.test("pathFraction() is a stable value in [0, 1)", () => {
  // Golden values: a change here would move files between splits for every user.
  assert.equal(pathFraction("a.mid"), 0.22352727851830423);
  assert.equal(pathFraction("sub/b.midi"), 0.7689355835318565);
  const values = Array.from({ length: 2000 }, (_, i) => pathFraction(`dir/file_${i}.mid`));
  assert.ok(values.every((v) => v >= 0 && v < 1));
  const below = values.filter((v) => v < 0.1).length;
  assert.ok(below > 150 && below < 250, `${below} of 2000 under 0.1`);
});

Deno.test("load/midi-dir reads every MIDI file recursively and skips a broken one", async () => {
  const { dir, notes } = await makeFixtureDir();
  try {
    assert.deepEqual(await listMidiFiles(dir), [
      "b/broken.mid",
      "b/deeper/three.Mid",
      "b/two.MIDI",
      "four.midi",
      "one.mid",
    ]);
    const { corpus, ctx } = await load(dir, { validationShare: 0.5 });
    assert.deepEqual(corpus.pieces.map((p) => p.id), ["three", "two", "four", "one"]);
    for (const piece of corpus.pieces) assert.equal(piece.notes.length, notes.get(piece.id));
    assert.equal(corpus.skipped.length, 1);
    assert.equal(corpus.skipped[0].file, "b/broken.mid");
    assert.match(corpus.skipped[0].reason, /\S/);
    assert.doesNotMatch(corpus.skipped[0].reason, /^Cannot read/);
    const warnings = ctx.logs.filter((l) => l.level === "warn").map((l) => l.message);
    assert.deepEqual(warnings, [`Skipped "b/broken.mid": ${corpus.skipped[0].reason}`]);
    // The split follows the path hash alone.
    for (const piece of corpus.pieces) {
      const file = piece.source!.slice(dir.length + 1);
      assert.equal(piece.split, pathFraction(file) < 0.5 ? "validation" : "train");
    }
    // Adding a file does not move the others.
    await Deno.copyFile(`${dir}/one.mid`, `${dir}/b/five.mid`);
    const again = await load(dir, { validationShare: 0.5 });
    const splitOf = (c: MidiCorpus) => new Map(c.pieces.map((p) => [p.id, p.split]));
    for (const [id, split] of splitOf(corpus)) assert.equal(splitOf(again.corpus).get(id), split);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load/midi-dir keeps the folder in ids whose file name occurs twice", async () => {
  const { dir } = await makeFixtureDir();
  try {
    await Deno.copyFile(`${dir}/one.mid`, `${dir}/b/one.mid`);
    const { corpus } = await load(dir);
    const ids = corpus.pieces.map((p) => p.id).sort();
    assert.deepEqual(ids, ["b/one", "four", "one", "three", "two"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load/midi-dir names the directory when it is missing, empty or all broken", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () => load(`${dir}/nope`),
      new RegExp(`"${dir}/nope": the directory does not exist`),
    );
    await Deno.writeTextFile(`${dir}/readme.txt`, "no midi here");
    await assert.rejects(() => load(dir), new RegExp(`"${dir}": no \\.mid or \\.midi files found`));
    await Deno.writeFile(`${dir}/bad.mid`, new Uint8Array([1, 2, 3]));
    await assert.rejects(
      () => load(dir),
      /none of the 1 files could be read \(first: "bad\.mid": /,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name:
    "load/midi-dir loads the valid files of the shared bad-midi set and skips the rest (needs ../shared/data/bad-midi)",
  ignore: !hasBadMidi,
  async fn() {
    const { corpus, ctx } = await load(BAD_MIDI);
    const files = await listMidiFiles(BAD_MIDI);
    assert.equal(files.length, 34);
    assert.equal(corpus.pieces.length + corpus.skipped.length, 34);
    const loaded = new Set(corpus.pieces.map((p) => p.id));
    // The control file and spec-valid edge cases load.
    for (
      const id of [
        "00_reference_valid_format0",
        "24_header_length_10",
        "25_unknown_chunk_between",
        "33_velocity0_and_running_status_valid",
      ]
    ) {
      assert.ok(loaded.has(id), `${id} should load`);
    }
    assert.equal(corpus.pieces.find((p) => p.id === "00_reference_valid_format0")!.notes.length, 8);
    // Files that no reader should accept are skipped, each with a reason and a warning.
    const skipped = new Map(corpus.skipped.map((s) => [s.file, s.reason]));
    for (
      const file of [
        "01_zero_length.mid",
        "02_truncated_in_header.mid",
        "04_bad_header_magic.mid",
        "28_track_length_0xFFFFFFFF.mid",
        "31_undefined_status_byte.mid",
      ]
    ) {
      assert.ok(skipped.get(file)?.length, `${file} should be skipped with a reason`);
    }
    const warned = ctx.logs.filter((l) => l.level === "warn" && l.message.startsWith("Skipped "));
    assert.equal(warned.length, corpus.skipped.length);
    // Tolerated deviations are reported too, one line each.
    assert.ok(
      ctx.logs.some((l) => l.message.startsWith(`Repaired "26_trailing_garbage.mid": `)),
    );
  },
});

Deno.test("load/midi-dir re-runs when a file is added, edited or removed, and says which", async () => {
  const { dir } = await makeFixtureDir();
  const runsDir = await Deno.makeTempDir({ prefix: "harmonyrl-midi-dir-runs-" });
  try {
    const graph = await parseGraph(
      [
        "name: folder",
        "backend: cpu",
        "stages:",
        `  load: { use: load/midi-dir, with: { dir: ${JSON.stringify(dir)} } }`,
        "  tokenize: { use: tokenize/events, in: { corpus: load.corpus }, with: { workers: 1 } }",
        "",
      ].join("\n"),
      "folder.yaml",
      { registry },
    );
    const run = async () => {
      const result = await runPipeline(graph, { runsDir, quiet: true });
      assert.equal(result.status, "ok", result.error?.message);
      const { load, tokenize } = result.stages;
      return [
        `${load.status}: ${load.reason ?? ""}`,
        `${tokenize.status}: ${tokenize.reason ?? ""}`,
      ];
    };
    assert.deepEqual(await run(), ["done: no cached result", "done: no cached result"]);
    assert.deepEqual(await run(), ["cached: ", "cached: "]);
    const { piece } = generateSyntheticPiece(createRng(99), { id: "five", bars: 2 });
    await Deno.writeFile(`${dir}/five.mid`, writeMidi(piece));
    assert.deepEqual(await run(), [
      'done: files changed: added "five.mid"',
      "done: input changed: corpus",
    ]);
    await Deno.writeFile(`${dir}/one.mid`, writeMidi({ ...piece, notes: piece.notes.slice(1) }));
    await Deno.remove(`${dir}/b/two.MIDI`);
    assert.deepEqual(await run(), [
      'done: files changed: changed "one.mid"; removed "b/two.MIDI"',
      "done: input changed: corpus",
    ]);
    // A file touched without a change re-runs the loader, whose output is the same:
    // what depends on it comes from the cache.
    const later = new Date(Date.now() + 5000);
    await Deno.utime(`${dir}/four.midi`, later, later);
    assert.deepEqual(await run(), ['done: files changed: changed "four.midi"', "cached: "]);
    assert.deepEqual(await run(), ["cached: ", "cached: "]);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(runsDir, { recursive: true });
  }
});

Deno.test("listMidiFiles() leaves out a folder it may not read and says why", async () => {
  const { dir } = await makeFixtureDir();
  try {
    await Deno.mkdir(`${dir}/locked`);
    await Deno.copyFile(`${dir}/one.mid`, `${dir}/locked/hidden.mid`);
    const project = new URL("../../", import.meta.url).pathname;
    const script = `
      import { listMidiFiles } from "${new URL("./midi_dir.ts", import.meta.url).href}";
      const unreadable = [];
      const files = await listMidiFiles(${JSON.stringify(dir)}, { unreadable });
      console.log(JSON.stringify({ files, unreadable }));`;
    // `deno eval` has every permission: a script file run with `deno run` does not.
    const scriptFile = `${dir}/list.ts`;
    await Deno.writeTextFile(scriptFile, script);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        `--allow-read=${project},${dir}`,
        `--deny-read=${dir}/locked`,
        "--config",
        `${project}deno.json`,
        scriptFile,
      ],
      cwd: project,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const { files, unreadable } = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(files, [
      "b/broken.mid",
      "b/deeper/three.Mid",
      "b/two.MIDI",
      "four.midi",
      "one.mid",
    ]);
    assert.equal(unreadable.length, 1);
    assert.equal(unreadable[0].file, "locked/");
    assert.match(unreadable[0].reason, /^cannot read the folder \(.*locked/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

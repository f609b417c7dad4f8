import assert from "node:assert/strict";
import { defaultParams, testContext } from "../_testing.ts";
import { checkValue } from "../../pipeline/schema.ts";
import { createRng } from "../../pipeline/rng.ts";
import { writeMidi } from "../_music/midi.ts";
import { generateSyntheticPiece } from "./_synthetic.ts";
import type { MidiCorpus } from "../_music/types.ts";
import plugin, { findMaestroRoot } from "./maestro.ts";

// The shared dataset beside the project checkout (absent on a fresh clone: the test is ignored).
const MAESTRO = new URL("../../../shared/data/maestro-v3.0.0", import.meta.url).pathname;
const hasMaestro = await Deno.stat(`${MAESTRO}/maestro-v3.0.0.csv`).then(() => true, () => false);

async function load(dir: string, overrides: Record<string, unknown> = {}) {
  const ctx = testContext();
  const out = await plugin.run(ctx, {}, defaultParams(plugin, { dir, ...overrides }) as never);
  return { corpus: out.corpus as MidiCorpus, ctx };
}

/**
 * A miniature MAESTRO in the official layout: five rows, of which one file is
 * absent and one is not MIDI. Returns the dataset folder and notes per file id.
 */
async function makeMiniMaestro(root: string): Promise<Map<string, number>> {
  const rows = [
    ["Frédéric Chopin", "Ballade No. 1", "train", 2004, "2004/a.midi"],
    ["Johann Sebastian Bach", "Prelude", "validation", 2006, "2006/b.midi"],
    ['Franz "Liszt"', "Etude, S. 139", "test", 2006, "2006/c.midi"],
    ["Frédéric Chopin", "Waltz", "test", 2004, "2004/missing.midi"],
    ["Claude Debussy", "Reverie", "train", 2006, "2006/broken.midi"],
  ] as const;
  const notes = new Map<string, number>();
  await Deno.mkdir(`${root}/2004`, { recursive: true });
  await Deno.mkdir(`${root}/2006`, { recursive: true });
  const rng = createRng(3);
  for (const [, , , , file] of rows.slice(0, 3)) {
    const { piece } = generateSyntheticPiece(rng, { id: file, bars: 2 });
    await Deno.writeFile(`${root}/${file}`, writeMidi(piece));
    notes.set(file.slice(5, -5), piece.notes.length);
  }
  await Deno.writeTextFile(`${root}/2006/broken.midi`, "MThd but not really");
  const quote = (v: string | number) =>
    typeof v === "string" && /[",]/.test(v) ? `"${v.replaceAll('"', '""')}"` : String(v);
  const csv = [
    "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration",
    ...rows.map((r) => [...r, r[4].replace(".midi", ".wav"), 12.5].map(quote).join(",")),
  ].join("\n");
  await Deno.writeTextFile(`${root}/maestro-v3.0.0.csv`, csv + "\n");
  return notes;
}

Deno.test("load/maestro keeps the official split and skips absent and broken files", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const notes = await makeMiniMaestro(dir);
    const { corpus, ctx } = await load(dir);
    assert.deepEqual(
      corpus.pieces.map((p) => [p.id, p.split, p.notes.length]),
      [["a", "train", notes.get("a")], ["b", "validation", notes.get("b")], [
        "c",
        "test",
        notes.get("c"),
      ]],
    );
    assert.equal(corpus.pieces[0].source, `${dir}/2004/a.midi`);
    assert.deepEqual(corpus.skipped.map((s) => s.file), ["2004/missing.midi", "2006/broken.midi"]);
    assert.equal(corpus.skipped[0].reason, "the file listed in the metadata is missing");
    assert.match(corpus.skipped[1].reason, /\S/);
    const warnings = ctx.logs.filter((l) => l.level === "warn").map((l) => l.message);
    assert.deepEqual(warnings, corpus.skipped.map((s) => `Skipped "${s.file}": ${s.reason}`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load/maestro filters by split, year, composer and limit", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await makeMiniMaestro(dir);
    const ids = async (overrides: Record<string, unknown>) =>
      (await load(dir, overrides)).corpus.pieces.map((p) => p.id);
    assert.deepEqual(await ids({ splits: ["test", "validation"] }), ["b", "c"]);
    assert.deepEqual(await ids({ years: [2006] }), ["b", "c"]);
    assert.deepEqual(await ids({ composers: ["CHOPIN", "liszt"] }), ["a", "c"]);
    assert.deepEqual(await ids({ limit: 1 }), ["a"]);
    await assert.rejects(
      () => load(dir, { years: [2017] }),
      /no piece matches splits \["train","validation","test"\], years \[2017\]/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load/maestro finds the unzipped folder and explains missing data", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await assert.rejects(
      () => load(`${dir}/nowhere`),
      (e: Error) =>
        e.message.startsWith(
          `Cannot load MAESTRO from "${dir}/nowhere": the directory does not exist`,
        ) &&
        e.message.includes("maestro-v3.0.0-midi.zip"),
    );
    await assert.rejects(
      () => load(dir),
      /it has no "maestro-v3\.0\.0\.csv" or "maestro-v3\.0\.0\.json" metadata file; download/,
    );
    // The official zip unpacks to maestro-v3.0.0/: pointing at its parent works too.
    await makeMiniMaestro(`${dir}/maestro-v3.0.0`);
    assert.equal(await findMaestroRoot(dir), `${dir}/maestro-v3.0.0`);
    assert.equal((await load(dir)).corpus.pieces.length, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load/maestro rejects an unknown split name", () => {
  assert.notDeepEqual(checkValue(plugin.params.splits, ["train", "dev"]), []);
  assert.notDeepEqual(checkValue(plugin.params.limit, -1), []);
});

Deno.test({
  name:
    "load/maestro reads real MAESTRO performances with the sustain pedal (needs ../shared/data/maestro-v3.0.0)",
  ignore: !hasMaestro,
  async fn() {
    const params = { splits: ["test"], composers: ["chopin"], limit: 2 };
    const { corpus } = await load(MAESTRO, params);
    assert.equal(corpus.pieces.length, 2);
    assert.deepEqual(corpus.skipped, []);
    const dry = await load(MAESTRO, { ...params, sustain: false });
    for (const [i, piece] of corpus.pieces.entries()) {
      assert.equal(piece.split, "test");
      assert.ok(piece.notes.length > 1000);
      assert.match(piece.id, /^MIDI-|^ORIG-MIDI/);
      // The pedal only lengthens notes.
      const held = piece.notes.reduce((s, n) => s + n.endSec - n.startSec, 0);
      const dryHeld = dry.corpus.pieces[i].notes.reduce((s, n) => s + n.endSec - n.startSec, 0);
      assert.ok(held > dryHeld * 1.2, `${piece.id}: ${held} vs ${dryHeld}`);
    }
  },
});

Deno.test("load/maestro's fingerprint covers the metadata and the selected files only", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await makeMiniMaestro(dir);
    const print = (overrides: Record<string, unknown> = {}) =>
      plugin.fingerprint!(defaultParams(plugin, { dir, ...overrides }) as never) as Promise<
        Record<string, string>
      >;
    const all = await print();
    assert.deepEqual(Object.keys(all), [
      "2004/a.midi",
      "2004/missing.midi",
      "2006/b.midi",
      "2006/broken.midi",
      "2006/c.midi",
      "maestro-v3.0.0.csv",
    ]);
    assert.equal(all["2004/missing.midi"], "missing");
    const size = (await Deno.stat(`${dir}/2006/b.midi`)).size;
    assert.match(all["2006/b.midi"], new RegExp(`^${size}:\\d+$`));
    assert.deepEqual(Object.keys(await print({ splits: ["validation"] })), [
      "2006/b.midi",
      "maestro-v3.0.0.csv",
    ]);
    // Editing a selected file changes the fingerprint; a file outside the selection does not.
    await Deno.writeTextFile(`${dir}/2006/broken.midi`, "still not MIDI, longer");
    assert.deepEqual(
      await print({ splits: ["validation"] }),
      await print({ splits: ["validation"] }),
    );
    assert.notDeepEqual(await print(), all);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

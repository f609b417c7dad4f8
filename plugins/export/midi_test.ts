import assert from "node:assert/strict";
import { defaultParams, testContext } from "../_testing.ts";
import { createRng } from "../../pipeline/rng.ts";
import { readMidiFile } from "../_music/midi.ts";
import { generateSyntheticPiece } from "../load/_synthetic.ts";
import type { TokenCorpus, Tokenizer } from "../_music/components.ts";
import type { Note, Piece } from "../_music/types.ts";
import performance from "../tokenizer/performance.ts";
import plugin from "./midi.ts";
import type { ExportedFiles } from "../_music/artifacts.ts";
import { safeFileName } from "../_music/midi.ts";

function pieces(count: number, seed = 1): Piece[] {
  const rng = createRng(seed);
  return Array.from(
    { length: count },
    (_, i) => generateSyntheticPiece(rng, { id: `p${i}`, bars: 2 }).piece,
  );
}

/** Same notes, with times equal within a millisecond (files hold 480 ticks per quarter note). */
function assertSameNotes(actual: Note[], expected: Note[], what: string) {
  assert.equal(actual.length, expected.length, `${what}: note count`);
  actual.forEach((note, i) => {
    const want = expected[i];
    assert.equal(note.pitch, want.pitch, `${what}: note ${i} pitch`);
    assert.equal(note.velocity, want.velocity, `${what}: note ${i} velocity`);
    assert.ok(Math.abs(note.startSec - want.startSec) < 1e-3, `${what}: note ${i} start`);
    assert.ok(Math.abs(note.endSec - want.endSec) < 1e-3, `${what}: note ${i} end`);
  });
}

async function runExport(inputs: Record<string, unknown>, overrides: Record<string, unknown> = {}) {
  const ctx = testContext();
  const out = await plugin.run(ctx, inputs, defaultParams(plugin, overrides) as never);
  return { files: out.files as ExportedFiles, ctx };
}

Deno.test("safeFileName() keeps ids readable and free of path parts", () => {
  assert.equal(
    safeFileName("MIDI-Unprocessed_01_R1_2004_wav--1"),
    "MIDI-Unprocessed_01_R1_2004_wav--1",
  );
  assert.equal(safeFileName("a/b\\c:d*e"), "a_b_c_d_e");
  assert.equal(safeFileName(".."), "piece");
  assert.equal(safeFileName(""), "piece");
});

Deno.test("export/midi writes one file per piece that reads back to the same notes", async () => {
  const input = pieces(3);
  const { files, ctx } = await runExport({ pieces: input });
  assert.equal(files.dir, `${ctx.runDir}/midi`);
  assert.deepEqual(files.files, ["p0", "p1", "p2"].map((id) => `${ctx.runDir}/midi/${id}.mid`));
  // Nothing else is left in the directory (no temporary files).
  const names = [...Deno.readDirSync(files.dir)].map((e) => e.name).sort();
  assert.deepEqual(names, ["p0.mid", "p1.mid", "p2.mid"]);
  for (const [i, path] of files.files.entries()) {
    const back = readMidiFile(path);
    assert.equal(back.id, input[i].id);
    // MIDI stores whole microseconds per quarter note, so 123 BPM reads back as 123.0002.
    assert.ok(Math.abs(back.tempoBpm - input[i].tempoBpm) < 1e-3);
    assert.equal(back.beatsPerBar, input[i].beatsPerBar);
    assertSameNotes(back.notes, input[i].notes, path);
  }
});

Deno.test("export/midi makes ids safe and distinct, in the directory asked for", async () => {
  const [a, b] = pieces(2, 5);
  const dir = await Deno.makeTempDir();
  try {
    const { files, ctx } = await runExport({
      pieces: [{ ...a, id: "set/one" }, { ...b, id: "set/one" }],
    }, { dir: `${dir}/out`, programNumber: 40 });
    assert.deepEqual(files.files, [`${dir}/out/set_one.mid`, `${dir}/out/set_one-2.mid`]);
    assert.ok(ctx.logs.some((l) => l.level === "warn" && l.message.includes('"set_one-2.mid"')));
    assertSameNotes(readMidiFile(files.files[1]).notes, b.notes, "second");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("export/midi decodes a token corpus with its tokenizer and names files by id", async () => {
  const withParams = { timeShiftMs: 10 };
  const tokenizer = performance.create({
    ...defaultParams(performance),
    ...withParams,
  } as never) as Tokenizer;
  const input = pieces(2, 9);
  const encoded = input.map((piece) => tokenizer.encode(piece));
  const offsets = new Uint32Array(encoded.length + 1);
  encoded.forEach((seq, i) => (offsets[i + 1] = offsets[i] + seq.length));
  const tokens = new Int32Array(offsets[encoded.length]);
  encoded.forEach((seq, i) => tokens.set(seq, offsets[i]));
  const corpus: TokenCorpus = {
    tokenizer: { use: "tokenizer/performance", with: withParams },
    vocabSize: tokenizer.vocabSize,
    tokens,
    offsets,
    ids: ["first", "second"],
    splits: ["train", "validation"],
  };
  const { files } = await runExport({ tokens: corpus });
  assert.deepEqual(files.files.map((f) => f.replace(/^.*\//, "")), ["first.mid", "second.mid"]);
  for (const [i, path] of files.files.entries()) {
    const decoded = tokenizer.decode(encoded[i], { id: corpus.ids[i] });
    assertSameNotes(readMidiFile(path).notes, decoded.notes, path);
    // Decoding on a 10 ms grid keeps the notes of the original piece within 10 ms.
    assert.equal(decoded.notes.length, input[i].notes.length);
  }
});

Deno.test("export/midi accepts rollouts and rejects a graph with no input", async () => {
  const { files } = await runExport({ rollouts: { pieces: pieces(2, 3) } });
  assert.equal(files.files.length, 2);
  await assert.rejects(
    () => runExport({}),
    /connect at least one of the inputs "pieces", "rollouts" or "tokens"/,
  );
});

Deno.test("export/midi names the tokenizer it cannot create", async () => {
  const tokens: TokenCorpus = {
    tokenizer: { use: "tokenizer/nope", with: {} },
    vocabSize: 1,
    tokens: new Int32Array(0),
    offsets: new Uint32Array([0]),
    ids: [],
    splits: [],
  };
  await assert.rejects(() => runExport({ tokens }), /Cannot create tokenizer "tokenizer\/nope"/);
});

Deno.test("export/midi is never cached, since its files live outside the artifact store", () => {
  assert.equal(plugin.cache, false);
});

Deno.test("export/midi replaces only the files it wrote, unless told to, and never writes into a system folder", async () => {
  const [a, b] = pieces(2, 9);
  const dir = await Deno.makeTempDir();
  try {
    const out = `${dir}/out`;
    await runExport({ pieces: [a] }, { dir: out });
    // Its own file is replaced on the next export.
    await runExport({ pieces: [b] }, { dir: out, programNumber: 5 });
    const ours = await Deno.readFile(`${out}/p0.mid`);
    // A file of the user's with a name it wants is left alone, and the error says what to do.
    await Deno.writeTextFile(`${out}/mine.mid`, "the user's own file");
    await assert.rejects(
      () => runExport({ pieces: [a, { ...b, id: "mine" }] }, { dir: out }),
      /^Error: Cannot export MIDI to ".*\/out\/mine\.mid": the file is there already and HarmonyRL did not write it; move it away, choose another "dir", or set "overwrite: true"$/,
    );
    assert.equal(await Deno.readTextFile(`${out}/mine.mid`), "the user's own file");
    // A file it wrote but the user changed since is the user's now.
    await Deno.writeFile(`${out}/p0.mid`, ours.subarray(0, ours.length - 1));
    await assert.rejects(
      () => runExport({ pieces: [a] }, { dir: out }),
      /HarmonyRL wrote it but it was changed since/,
    );
    await runExport({ pieces: [a, { ...b, id: "mine" }] }, { dir: out, overwrite: true });
    assertSameNotes(readMidiFile(`${out}/mine.mid`).notes, b.notes, "overwritten");
    for (const system of ["/", "/etc/harmonyrl", "/usr/share"]) {
      await assert.rejects(
        () => runExport({ pieces: [a] }, { dir: system }),
        new RegExp(`Cannot export MIDI to "${system}": it is in the system folder`),
      );
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

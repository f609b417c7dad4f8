import assert from "node:assert/strict";
import { midiCorpusCodec } from "./corpus_codec.ts";
import type { MidiCorpus } from "./types.ts";

function sampleCorpus(): MidiCorpus {
  return {
    pieces: [
      {
        id: "a",
        split: "train",
        source: "dir/a.mid",
        tempoBpm: 97.5,
        beatsPerBar: 3,
        beatsSec: [0, 60 / 97.5, 120 / 97.5],
        notes: [
          // Times that Float32 could not hold exactly.
          { pitch: 60, startSec: 0.1 + 0.2, endSec: 1 / 3, velocity: 1 },
          { pitch: 127, startSec: 3599.123456789, endSec: 3600.000000001, velocity: 127 },
          { pitch: 0, startSec: 3599.123456789, endSec: 3599.5, velocity: 64 },
        ],
      },
      { id: "empty", split: "validation", tempoBpm: 120, beatsPerBar: 4, beatsSec: [], notes: [] },
      {
        id: "c",
        split: "test",
        tempoBpm: 120,
        beatsPerBar: 4,
        beatsSec: [0, 0.5],
        notes: [{ pitch: 72, startSec: 0.5, endSec: 0.75, velocity: 80 }],
      },
    ],
    skipped: [{ file: "bad.mid", reason: "track chunk runs past the end of the file" }],
  };
}

async function withDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("midiCorpusCodec round-trips a corpus bit for bit", async () => {
  await withDir(async (dir) => {
    const corpus = sampleCorpus();
    await midiCorpusCodec.save(corpus, dir);
    const back = await midiCorpusCodec.load(dir);
    assert.deepEqual(back, corpus);
    assert.equal(back.pieces[0].notes[0].startSec, 0.1 + 0.2);
    // 4 notes: 4 bytes of pitch, 32 bytes of onsets; 5 beats: 40 bytes.
    assert.equal((await Deno.stat(`${dir}/pitch.u8`)).size, 4);
    assert.equal((await Deno.stat(`${dir}/start.f64`)).size, 32);
    assert.equal((await Deno.stat(`${dir}/beats.f64`)).size, 40);
    // The index holds no note data.
    const index = await Deno.readTextFile(`${dir}/index.json`);
    assert.ok(!index.includes("3599.123456789"));
  });
});

Deno.test("midiCorpusCodec keeps extra piece fields and an empty corpus", async () => {
  await withDir(async (dir) => {
    const corpus = sampleCorpus();
    const extra = { ...corpus.pieces[2], composer: "Chopin", year: 2004 };
    await midiCorpusCodec.save({ pieces: [extra], skipped: [] }, dir);
    const back = await midiCorpusCodec.load(dir);
    assert.deepEqual(back.pieces[0], extra);
  });
  await withDir(async (dir) => {
    await midiCorpusCodec.save({ pieces: [], skipped: [] }, dir);
    assert.deepEqual(await midiCorpusCodec.load(dir), { pieces: [], skipped: [] });
  });
});

Deno.test("midiCorpusCodec.load() names the directory and file when the data is corrupt", async () => {
  await withDir(async (dir) => {
    await midiCorpusCodec.save(sampleCorpus(), dir);
    const full = await Deno.readFile(`${dir}/end.f64`);
    await Deno.writeFile(`${dir}/end.f64`, full.subarray(0, 20));
    await assert.rejects(
      () => midiCorpusCodec.load(dir),
      (e: Error) =>
        e.message.includes(`Cannot load MIDI corpus from ${JSON.stringify(dir)}`) &&
        e.message.includes(`"end.f64" holds 20 bytes, expected 32 (8 x 4)`),
    );
    await Deno.remove(`${dir}/end.f64`);
    await assert.rejects(() => midiCorpusCodec.load(dir), /cannot read "end\.f64"/);
  });
  await withDir(async (dir) => {
    await midiCorpusCodec.save(sampleCorpus(), dir);
    const index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
    index.pieces[0].noteCount = 2;
    await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index));
    await assert.rejects(
      () => midiCorpusCodec.load(dir),
      /counts 4 notes and 5 beats but its pieces add up to 3 and 5/,
    );
    await Deno.writeTextFile(`${dir}/index.json`, "{");
    await assert.rejects(() => midiCorpusCodec.load(dir), /"index\.json" is missing or not JSON/);
    await Deno.writeTextFile(`${dir}/index.json`, "{}");
    await assert.rejects(() => midiCorpusCodec.load(dir), /is not a harmonyrl\/midi-corpus index/);
  });
});

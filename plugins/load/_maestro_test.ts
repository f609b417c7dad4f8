import assert from "node:assert/strict";
import { type MaestroEntry, parseCsv, readMaestroMetadata, selectMaestro } from "./_maestro.ts";

const MAESTRO_DIR = new URL("../../../shared/data/maestro-v3.0.0", import.meta.url).pathname;
const hasMaestro = (() => {
  try {
    return Deno.statSync(`${MAESTRO_DIR}/maestro-v3.0.0.csv`).isFile;
  } catch {
    return false;
  }
})();

const HEADER =
  "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration";

function withDir(files: Record<string, string>, fn: (dir: string) => void): void {
  const dir = Deno.makeTempDirSync();
  try {
    for (const [name, text] of Object.entries(files)) {
      Deno.writeTextFileSync(`${dir}/${name}`, text);
    }
    fn(dir);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("parseCsv() handles quoted commas, doubled quotes, line breaks in quotes and CRLF", () => {
  const text = '\ufeffa,b,c\r\n"Sonata No. 9, Op. 68, ""Black Mass""",,x\r\n"two\nlines",2,"3"\n\n';
  assert.deepEqual(parseCsv(text), [
    ["a", "b", "c"],
    ['Sonata No. 9, Op. 68, "Black Mass"', "", "x"],
    ["two\nlines", "2", "3"],
  ]);
  assert.deepEqual(parseCsv('"",""'), [["", ""]]);
  assert.deepEqual(parseCsv(""), []);
});

Deno.test("readMaestroMetadata() reads the CSV and warns about the rows it skips", () => {
  const csv = [
    HEADER,
    'Alexander Scriabin,"Sonata No. 9, Op. 68, ""Black Mass""",test,2018,2018/a.midi,2018/a.wav,520.5',
    'Claude Debussy,"""Feux d\'artifice"" from Book II",train,2008,2008/b.midi,2008/b.wav,242.75',
    "Somebody,Etude,dev,2009,2009/c.midi,2009/c.wav,10",
    "Somebody,Etude,validation,2009,,2009/d.wav,10",
    "Somebody,Etude,validation,20x9,2009/e.midi,2009/e.wav,10",
  ].join("\n");
  withDir({ "maestro-v3.0.0.csv": csv }, (dir) => {
    const { entries, warnings } = readMaestroMetadata(dir);
    assert.deepEqual(entries, [
      {
        canonicalComposer: "Alexander Scriabin",
        canonicalTitle: 'Sonata No. 9, Op. 68, "Black Mass"',
        split: "test",
        year: 2018,
        midiFilename: "2018/a.midi",
        audioFilename: "2018/a.wav",
        durationSec: 520.5,
      },
      {
        canonicalComposer: "Claude Debussy",
        canonicalTitle: `"Feux d'artifice" from Book II`,
        split: "train",
        year: 2008,
        midiFilename: "2008/b.midi",
        audioFilename: "2008/b.wav",
        durationSec: 242.75,
      },
    ]);
    assert.deepEqual(warnings, [
      'maestro-v3.0.0.csv row 3 ("2009/c.midi"): unknown split "dev"; skipped',
      "maestro-v3.0.0.csv row 4: no midi_filename; skipped",
      'maestro-v3.0.0.csv row 5 ("2009/e.midi"): year "20x9" is not an integer; skipped',
    ]);
  });
});

Deno.test("readMaestroMetadata() falls back to column-oriented JSON and to other versions", () => {
  const json = JSON.stringify({
    canonical_composer: { "0": "Frédéric Chopin", "1": "Franz Liszt" },
    canonical_title: { "0": "Ballade No. 1", "1": "Mephisto Waltz" },
    split: { "0": "validation", "1": "train" },
    year: { "0": 2006, "1": 2004 },
    midi_filename: { "0": "2006/x.midi", "1": "2004/y.midi" },
    audio_filename: { "0": "2006/x.wav", "1": "2004/y.wav" },
    duration: { "0": 500.25, "1": 700 },
  });
  withDir({ "maestro-v3.0.0.json": json }, (dir) => {
    const { entries, warnings } = readMaestroMetadata(dir);
    assert.deepEqual(warnings, []);
    assert.deepEqual(entries.map((e) => [e.canonicalComposer, e.split, e.year, e.durationSec]), [
      ["Frédéric Chopin", "validation", 2006, 500.25],
      ["Franz Liszt", "train", 2004, 700],
    ]);
  });
  const csv = `${HEADER}\nA,B,train,2004,2004/z.midi,2004/z.wav,1\n`;
  withDir({ "maestro-v1.0.0.json": json, "maestro-v2.0.0.csv": csv }, (dir) => {
    assert.deepEqual(readMaestroMetadata(dir).entries.map((e) => e.midiFilename), ["2004/z.midi"]);
  });
});

Deno.test("readMaestroMetadata() names the folder and the files it looked for when none is there", () => {
  withDir({ "notes.txt": "hello" }, (dir) => {
    assert.throws(
      () => readMaestroMetadata(dir),
      new Error(
        `Cannot read MAESTRO metadata in "${dir}": found none of maestro-v3.0.0.csv, maestro-v3.0.0.json, maestro-v*.csv, maestro-v*.json`,
      ),
    );
  });
  withDir({ "maestro-v3.0.0.csv": "canonical_composer,split\nA,train\n" }, (dir) => {
    assert.throws(
      () => readMaestroMetadata(dir),
      /maestro-v3.0.0.csv": no "canonical_title" column/,
    );
  });
  assert.throws(
    () => readMaestroMetadata("/nonexistent/maestro"),
    /Cannot read MAESTRO metadata in "\/nonexistent\/maestro"/,
  );
});

Deno.test("selectMaestro() filters by split, year and composer and is deterministic", () => {
  const entry = (
    composer: string,
    split: MaestroEntry["split"],
    year: number,
    midi: string,
  ): MaestroEntry => ({
    canonicalComposer: composer,
    canonicalTitle: "t",
    split,
    year,
    midiFilename: midi,
    audioFilename: "",
    durationSec: 1,
  });
  const entries = [
    entry("Frédéric Chopin", "train", 2008, "2008/c.midi"),
    entry("Franz Liszt", "test", 2004, "2004/b.midi"),
    entry("Frédéric Chopin / Franz Liszt", "test", 2009, "2009/a.midi"),
    entry("Johann Sebastian Bach", "validation", 2004, "2004/a.midi"),
  ];
  const names = (selection: Parameters<typeof selectMaestro>[1]) =>
    selectMaestro(entries, selection).map((e) => e.midiFilename);
  assert.deepEqual(names({}), ["2004/a.midi", "2004/b.midi", "2008/c.midi", "2009/a.midi"]);
  assert.deepEqual(names({ splits: ["test"] }), ["2004/b.midi", "2009/a.midi"]);
  assert.deepEqual(names({ composers: ["LISZT"] }), ["2004/b.midi", "2009/a.midi"]);
  assert.deepEqual(names({ composers: ["bach", "chopin"], years: [2004, 2008] }), [
    "2004/a.midi",
    "2008/c.midi",
  ]);
  assert.deepEqual(names({ limit: 2 }), ["2004/a.midi", "2004/b.midi"]);
  assert.deepEqual(
    selectMaestro([...entries].reverse(), { limit: 3 }),
    selectMaestro(entries, { limit: 3 }),
  );
  assert.throws(
    () => selectMaestro(entries, { limit: -1 }),
    /limit -1 is not a non-negative integer/,
  );
});

Deno.test({
  name:
    "readMaestroMetadata() reads the official split of MAESTRO v3.0.0 (needs ../shared/data/maestro-v3.0.0)",
  ignore: !hasMaestro,
  fn() {
    const { entries, warnings } = readMaestroMetadata(MAESTRO_DIR);
    assert.deepEqual(warnings, []);
    assert.equal(entries.length, 1276);
    const count = (split: string) => entries.filter((e) => e.split === split).length;
    assert.deepEqual([count("train"), count("validation"), count("test")], [962, 137, 177]);
    const hours = entries.reduce((s, e) => s + e.durationSec, 0) / 3600;
    assert.ok(Math.abs(hours - 198.65) < 0.01, `${hours} h`);
    for (const e of entries.slice(0, 20)) Deno.statSync(`${MAESTRO_DIR}/${e.midiFilename}`);
    // The JSON copy of the table gives the same entries.
    const dir = Deno.makeTempDirSync();
    try {
      Deno.copyFileSync(`${MAESTRO_DIR}/maestro-v3.0.0.json`, `${dir}/maestro-v3.0.0.json`);
      assert.deepEqual(readMaestroMetadata(dir).entries, entries);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

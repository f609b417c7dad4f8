/**
 * `load/maestro`: the MAESTRO v3.0.0 piano performances (Hawthorne et al.,
 * "Enabling Factorized Piano Music Modeling and Generation with the MAESTRO
 * Dataset", ICLR 2019) with their official train/validation/test split.
 *
 * Files are parsed one after another, on purpose: all 1,276 files (7.04
 * million notes) take about 3 s of CPU (user + system) in this loop. A
 * two-worker prototype spent 3.4 s of user CPU against 2.5 s for one thread
 * (the copies back to the main thread), so on two idle cores it would save
 * about a second (an estimate: the machine was shared when measured), once
 * per cache key. Not worth a worker pool.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";
import { definePlugin, fingerprintFiles, p } from "../../mod.ts";
import { midiCorpusCodec } from "../_music/corpus_codec.ts";
import { type MaestroEntry, readMaestroMetadata, selectMaestro } from "./_maestro.ts";
import type { MidiCorpus, Split } from "../_music/types.ts";
import { readPieceOrSkip } from "./_read.ts";

/** Metadata tables that `readMaestroMetadata` may read. */
const METADATA_RE = /^maestro-v.*\.(csv|json)$/;

/** The folder the official zip unpacks to, looked for inside `dir` as a convenience. */
const ZIP_FOLDER = "maestro-v3.0.0";

/**
 * Where users get the data, named in every "data missing" error: the official
 * zip unpacks to `maestro-v3.0.0/`, so it is unzipped in the folder above a
 * `dir` of that name (`data/` for the default), else in `dir` itself.
 */
function howToGet(dir: string): string {
  const into = basename(dir) === ZIP_FOLDER ? dirname(dir) : dir;
  return 'download "maestro-v3.0.0-midi.zip" from https://magenta.tensorflow.org/datasets/maestro ' +
    `and unzip it in "${into}" (it unpacks to "${ZIP_FOLDER}"; see "Data" in README.md)`;
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch {
    return false;
  }
}

/** True when `dir` holds a metadata table that `readMaestroMetadata` would read. */
async function hasMetadata(dir: string): Promise<boolean> {
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && METADATA_RE.test(entry.name)) return true;
  }
  return false;
}

/**
 * Finds the dataset root: `dir` itself, or `dir/maestro-v3.0.0` when the
 * official zip was unpacked inside `dir`.
 *
 * @param dir The folder the user configured.
 * @returns The folder that holds the metadata.
 * @throws {Error} Naming `dir` and how to get the data when neither holds it.
 */
export async function findMaestroRoot(dir: string): Promise<string> {
  if (!(await isDirectory(dir))) {
    throw new Error(
      `Cannot load MAESTRO from "${dir}": the directory does not exist; ${howToGet(dir)}`,
    );
  }
  if (await hasMetadata(dir)) return dir;
  const nested = join(dir, ZIP_FOLDER);
  if ((await isDirectory(nested)) && (await hasMetadata(nested))) return nested;
  throw new Error(
    `Cannot load MAESTRO from "${dir}": it has no "maestro-v3.0.0.csv" or "maestro-v3.0.0.json" ` +
      `metadata file; ${howToGet(dir)}`,
  );
}

/** The dataset root, the entries the params select, and the metadata's warnings. */
async function selectFiles(params: {
  dir: string;
  splits: string[];
  years: number[];
  composers: string[];
  limit: number;
}): Promise<{ root: string; selected: MaestroEntry[]; warnings: string[] }> {
  const root = await findMaestroRoot(params.dir);
  const { entries, warnings } = readMaestroMetadata(root);
  // Empty lists and a limit of 0 mean "no filter" here, but "nothing" to selectMaestro.
  const selected = selectMaestro(entries, {
    splits: params.splits as Split[],
    years: params.years.length > 0 ? params.years : undefined,
    composers: params.composers.length > 0 ? params.composers : undefined,
    limit: params.limit > 0 ? params.limit : undefined,
  });
  return { root, selected, warnings };
}

export default definePlugin({
  name: "load/maestro",
  kind: "load",
  version: "1.0.0",
  description:
    "Loads the MAESTRO v3.0.0 piano performances with their official train/validation/test split",
  params: {
    dir: p.string({
      path: "read",
      default: "data/maestro-v3.0.0",
      description:
        "Folder of the unzipped MAESTRO v3.0.0 MIDI release (holding maestro-v3.0.0.csv), or the folder it was unzipped in",
    }),
    splits: p.array({
      items: p.string({ enum: ["train", "validation", "test"], description: "An official split" }),
      default: ["train", "validation", "test"],
      minItems: 1,
      description: "Official splits to load",
    }),
    years: p.array({
      items: p.integer({ description: "A competition year, e.g. 2017" }),
      default: [],
      description: "Competition years to load; empty loads every year",
    }),
    composers: p.array({
      items: p.string({ description: "Part of a composer's name" }),
      default: [],
      description: "Keep pieces whose composer contains one of these (any case); empty keeps all",
    }),
    limit: p.integer({
      default: 0,
      min: 0,
      description: "Most pieces to load, after the other filters; 0 loads all",
    }),
    sustain: p.boolean({
      default: true,
      description: "Lengthen notes held by the sustain pedal (CC64) to the pedal release",
    }),
  },
  inputs: {},
  outputs: {
    corpus: { type: "midi-corpus", description: "The performances read", codec: midiCorpusCodec },
  },
  async preflight(params) {
    try {
      await findMaestroRoot(params.dir);
      return undefined;
    } catch (error) {
      return { param: "dir", message: (error as Error).message };
    }
  },
  // The cache key covers the metadata and every selected file (size and modification time).
  async fingerprint(params) {
    const { root, selected } = await selectFiles(params);
    const metadata: string[] = [];
    for await (const entry of Deno.readDir(root)) {
      if (entry.isFile && METADATA_RE.test(entry.name)) metadata.push(entry.name);
    }
    return await fingerprintFiles(root, [...metadata, ...selected.map((e) => e.midiFilename)]);
  },
  async run(ctx, _inputs, params) {
    const { root, selected, warnings } = await selectFiles(params);
    for (const warning of warnings) ctx.log.warn(warning);
    if (selected.length === 0) {
      throw new Error(
        `Cannot load MAESTRO from "${params.dir}": no piece matches splits ` +
          `${JSON.stringify(params.splits)}, years ${JSON.stringify(params.years)} and composers ` +
          `${JSON.stringify(params.composers)}`,
      );
    }

    const corpus: MidiCorpus = { pieces: [], skipped: [] };
    const startMs = performance.now();
    let noteCount = 0;
    for (const [i, entry] of selected.entries()) {
      if (ctx.signal.aborted) throw new Error("Cannot finish loading MAESTRO: the run was aborted");
      const file = entry.midiFilename;
      const piece = await readPieceOrSkip(
        ctx,
        {
          path: join(root, file),
          label: file,
          missingReason: "the file listed in the metadata is missing",
        },
        {
          id: file.replace(/^.*\//, "").replace(/\.midi?$/i, ""),
          sustain: params.sustain,
          skipped: corpus.skipped,
        },
      );
      if (piece) {
        noteCount += piece.notes.length;
        corpus.pieces.push({ ...piece, split: entry.split as Split });
      }
      if (i % 25 === 24 || i === selected.length - 1) {
        ctx.progress({
          done: i + 1,
          total: selected.length,
          unit: "files",
          info: { notes: noteCount },
        });
      }
    }
    if (corpus.pieces.length === 0) {
      throw new Error(
        `Cannot load MAESTRO from "${params.dir}": none of the ${selected.length} selected files ` +
          `could be read (first: "${corpus.skipped[0].file}": ${corpus.skipped[0].reason})`,
      );
    }
    const counts = (["train", "validation", "test"] as const)
      .map((split) => `${corpus.pieces.filter((piece) => piece.split === split).length} ${split}`)
      .join(", ");
    ctx.log.info(
      `Loaded ${corpus.pieces.length} MAESTRO performances (${counts}; ${noteCount} notes) in ` +
        `${((performance.now() - startMs) / 1000).toFixed(1)} s, skipped ${corpus.skipped.length}`,
    );
    // The run's manifest lists what was skipped and why.
    if (corpus.skipped.length > 0) ctx.note("skipped", corpus.skipped);
    return { corpus };
  },
});

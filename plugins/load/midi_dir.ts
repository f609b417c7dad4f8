/**
 * `load/midi-dir`: every `.mid`/`.midi` file under a directory, recursively.
 * The train/validation split comes from a hash of each file's relative path,
 * so adding files never moves the others to another split.
 *
 * @module
 */

import { basename, relative, resolve, sep } from "node:path";
import { definePlugin, errorFirstLine, fingerprintFiles, p } from "../../mod.ts";
import { midiCorpusCodec } from "../_music/corpus_codec.ts";
import type { MidiCorpus, Split } from "../_music/types.ts";
import { readPieceOrSkip } from "./_read.ts";

/**
 * A stable number in [0, 1) for a relative path: FNV-1a over its UTF-8
 * bytes, then MurmurHash3's 32-bit finaliser so similar names spread evenly.
 *
 * @param relativePath Path relative to the loaded directory, with `/` separators.
 * @returns The same value on every machine and run.
 */
export function pathFraction(relativePath: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(relativePath)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 4294967296;
}

/**
 * Checks that `dir` is a directory, for the error before anything runs.
 *
 * @param dir The directory to load.
 * @returns The problem (`Cannot load MIDI files from "<dir>": ...`), or undefined.
 */
async function checkMidiDir(dir: string): Promise<string | undefined> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(dir);
  } catch {
    return `Cannot load MIDI files from "${dir}": the directory does not exist; give a folder ` +
      `of your own .mid files, or get the example data (MAESTRO: see "Data" in README.md)`;
  }
  if (!info.isDirectory) {
    return `Cannot load MIDI files from "${dir}": it is a file, not a directory`;
  }
  return undefined;
}

/**
 * Lists the MIDI files under `dir`, recursively, as sorted relative paths
 * with `/` separators. Symbolic links are not followed.
 *
 * Folders inside `dir` that cannot be read (no permission, `/proc`) are left
 * out and listed in `options.unreadable`, so loading from a broad folder
 * reads what it can.
 *
 * @param dir The directory to search.
 * @param options `unreadable` collects `{ file, reason }` for each folder left out.
 * @returns Relative paths of files ending in `.mid` or `.midi` (any case).
 * @throws {Error} When `dir` does not exist or is not a directory.
 */
export async function listMidiFiles(
  dir: string,
  options: { unreadable?: { file: string; reason: string }[] } = {},
): Promise<string[]> {
  const problem = await checkMidiDir(dir);
  if (problem !== undefined) throw new Error(problem);
  const root = resolve(dir);
  const found: string[] = [];
  const walk = async (path: string) => {
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(path));
    } catch (error) {
      if (path === root) throw error;
      const reason = errorFirstLine(error);
      options.unreadable?.push({
        file: `${relative(root, path).split(sep).join("/")}/`,
        reason: `cannot read the folder (${reason})`,
      });
      return;
    }
    for (const entry of entries) {
      const child = `${path}${sep}${entry.name}`;
      if (entry.isDirectory) await walk(child);
      else if (entry.isFile && /\.midi?$/i.test(entry.name)) {
        found.push(relative(root, child).split(sep).join("/"));
      }
    }
  };
  await walk(root);
  // Plain code-unit order, the same on every platform and locale.
  return found.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

export default definePlugin({
  name: "load/midi-dir",
  kind: "load",
  version: "1.0.0",
  description:
    "Loads every .mid/.midi file under a directory, split into train and validation by a hash of each path",
  params: {
    dir: p.string({
      path: "read",
      description: "Directory to search recursively for .mid and .midi files",
    }),
    validationShare: p.number({
      default: 0.1,
      min: 0,
      max: 1,
      description:
        "Share of files put in the validation split (chosen by a stable hash of the path)",
    }),
    sustain: p.boolean({
      default: true,
      description: "Lengthen notes held by the sustain pedal (CC64) to the pedal release",
    }),
    drums: p.boolean({
      default: false,
      description: "Keep notes on the drum channel (channel 10)",
    }),
    instruments: p.string({
      default: "all",
      enum: ["all", "piano"],
      description: 'Which tracks to keep: "all", or "piano" (General MIDI programs 0..7 only)',
    }),
  },
  inputs: {},
  outputs: {
    corpus: { type: "midi-corpus", description: "The pieces read", codec: midiCorpusCodec },
  },
  async preflight(params) {
    const message = await checkMidiDir(params.dir);
    return message === undefined ? undefined : { param: "dir", message };
  },
  // The cache key covers the file list with each file's size and modification time.
  async fingerprint(params) {
    return await fingerprintFiles(params.dir, await listMidiFiles(params.dir));
  },
  async run(ctx, _inputs, params) {
    const unreadable: { file: string; reason: string }[] = [];
    const files = await listMidiFiles(params.dir, { unreadable });
    for (const { file, reason } of unreadable) ctx.log.warn(`Skipped "${file}": ${reason}`);
    if (files.length === 0) {
      throw new Error(`Cannot load MIDI files from "${params.dir}": no .mid or .midi files found`);
    }
    // Piece ids are base names without extension; names found twice keep their relative path.
    const baseId = (file: string) => basename(file).replace(/\.midi?$/i, "");
    const seen = new Map<string, number>();
    for (const file of files) seen.set(baseId(file), (seen.get(baseId(file)) ?? 0) + 1);

    const corpus: MidiCorpus = { pieces: [], skipped: [...unreadable] };
    for (const [i, file] of files.entries()) {
      if (ctx.signal.aborted) {
        throw new Error("Cannot finish loading MIDI files: the run was aborted");
      }
      const id = seen.get(baseId(file))! > 1 ? file.replace(/\.midi?$/i, "") : baseId(file);
      const path = `${params.dir.replace(/[\/\\]+$/, "")}/${file}`;
      const piece = await readPieceOrSkip(
        ctx,
        { path, label: file },
        {
          id,
          sustain: params.sustain,
          drums: params.drums,
          instruments: params.instruments,
          skipped: corpus.skipped,
        },
      );
      if (piece) {
        const split: Split = pathFraction(file) < params.validationShare ? "validation" : "train";
        corpus.pieces.push({ ...piece, split });
      }
      if (i % 25 === 24 || i === files.length - 1) {
        ctx.progress({ done: i + 1, total: files.length, unit: "files" });
      }
    }
    if (corpus.pieces.length === 0) {
      const first = corpus.skipped[0];
      throw new Error(
        `Cannot load MIDI files from "${params.dir}": none of the ${files.length} files could be read ` +
          `(first: "${first.file}": ${first.reason})`,
      );
    }
    const renamed = [...seen].filter(([, count]) => count > 1).length;
    if (renamed > 0) {
      ctx.log.info(`${renamed} file name(s) occur in several folders: their ids keep the folder`);
    }
    const validation = corpus.pieces.filter((piece) => piece.split === "validation").length;
    ctx.log.info(
      `Loaded ${corpus.pieces.length} of ${files.length} MIDI files from "${params.dir}" ` +
        `(${validation} for validation, ${corpus.skipped.length} skipped)`,
    );
    // The run's manifest lists what was skipped and why.
    if (corpus.skipped.length > 0) ctx.note("skipped", corpus.skipped);
    return { corpus };
  },
});

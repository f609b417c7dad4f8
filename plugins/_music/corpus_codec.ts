/**
 * Compact storage for `midi-corpus` artifacts. MAESTRO alone has about 7
 * million notes, so notes are stored as columns of typed arrays, not JSON:
 *
 * | file | content |
 * | --- | --- |
 * | `pitch.u8` | pitch of every note of every piece, piece after piece |
 * | `velocity.u8` | velocity of every note |
 * | `start.f64`, `end.f64` | onset and release in seconds, little-endian Float64 |
 * | `beats.f64` | every piece's `beatsSec`, piece after piece |
 * | `index.json` | per piece: id, split, other scalar fields, note and beat counts; `skipped` |
 *
 * Times are Float64, not Float32: Float32 keeps 24 bits of mantissa, which is
 * only about 0.25 ms of resolution an hour into a recording, and it would make
 * a corpus loaded from the cache differ from the one just computed. With
 * Float64 a round trip is bit-exact, so downstream stages (and their cache
 * keys) see the same numbers either way. It costs 16 bytes per note
 * (about 110 MB for MAESTRO).
 *
 * @module
 */

import { blockReader, readIndex, writeBlocks } from "../../mod.ts";
import type { ArtifactCodec, BinaryFormat } from "../../mod.ts";
import type { MidiCorpus, Note, Piece, Split } from "./types.ts";

const FORMAT: BinaryFormat = { format: "harmonyrl/midi-corpus", version: 1 };
const SPLITS: readonly Split[] = ["train", "validation", "test"];

/** One piece's entry in `index.json`. */
interface IndexEntry {
  /** Every field of the piece except `notes` and `beatsSec` (id, split, tempoBpm, ...). */
  fields: Record<string, unknown>;
  noteCount: number;
  beatCount: number;
}

interface IndexFile {
  format: string;
  version: number;
  noteCount: number;
  beatCount: number;
  pieces: IndexEntry[];
  skipped: MidiCorpus["skipped"];
}

/**
 * Stores a {@linkcode MidiCorpus} as typed-array columns plus a small JSON
 * index (see the module doc). `load` checks every size against the index and
 * throws an error naming the directory and the file when they disagree.
 *
 * @example
 * ```ts
 * import { midiCorpusCodec } from "./corpus_codec.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await midiCorpusCodec.save({ pieces: [], skipped: [] }, dir);
 * const back = await midiCorpusCodec.load(dir);
 * console.assert(back.pieces.length === 0);
 * ```
 */
export const midiCorpusCodec: ArtifactCodec<MidiCorpus> = {
  async save(corpus, dir) {
    let noteCount = 0, beatCount = 0;
    for (const piece of corpus.pieces) {
      noteCount += piece.notes.length;
      beatCount += piece.beatsSec.length;
    }
    const pitch = new Uint8Array(noteCount);
    const velocity = new Uint8Array(noteCount);
    const start = new Float64Array(noteCount);
    const end = new Float64Array(noteCount);
    const beats = new Float64Array(beatCount);
    const entries: IndexEntry[] = [];
    let n = 0, b = 0;
    for (const piece of corpus.pieces) {
      for (const note of piece.notes) {
        pitch[n] = note.pitch;
        velocity[n] = note.velocity;
        start[n] = note.startSec;
        end[n] = note.endSec;
        n++;
      }
      beats.set(piece.beatsSec, b);
      b += piece.beatsSec.length;
      const { notes: _notes, beatsSec: _beats, ...fields } = piece;
      entries.push({ fields, noteCount: piece.notes.length, beatCount: piece.beatsSec.length });
    }
    const index: IndexFile = {
      format: FORMAT.format,
      version: FORMAT.version,
      noteCount,
      beatCount,
      pieces: entries,
      skipped: corpus.skipped,
    };
    await writeBlocks(dir, index, {
      "pitch.u8": pitch,
      "velocity.u8": velocity,
      "start.f64": start,
      "end.f64": end,
      "beats.f64": beats,
    });
  },

  async load(dir) {
    const where = `Cannot load MIDI corpus from ${JSON.stringify(dir)}`;
    const index = await readIndex<IndexFile>(dir, FORMAT, where);
    if (!Array.isArray(index.pieces) || !Array.isArray(index.skipped)) {
      throw new Error(`${where}: "index.json" lacks its "pieces" or "skipped" list`);
    }
    let noteTotal = 0, beatTotal = 0;
    index.pieces.forEach((entry, i) => {
      const okCount = (x: unknown) => Number.isInteger(x) && (x as number) >= 0;
      if (!okCount(entry?.noteCount) || !okCount(entry?.beatCount)) {
        throw new Error(`${where}: piece ${i} in "index.json" has invalid note or beat counts`);
      }
      if (typeof entry.fields?.id !== "string" || !SPLITS.includes(entry.fields.split as Split)) {
        throw new Error(`${where}: piece ${i} in "index.json" lacks a string id or a valid split`);
      }
      noteTotal += entry.noteCount;
      beatTotal += entry.beatCount;
    });
    if (noteTotal !== index.noteCount || beatTotal !== index.beatCount) {
      throw new Error(
        `${where}: "index.json" counts ${index.noteCount} notes and ${index.beatCount} beats ` +
          `but its pieces add up to ${noteTotal} and ${beatTotal}`,
      );
    }

    const block = blockReader(dir, where);
    const pitch = await block("pitch.u8", Uint8Array, noteTotal);
    const velocity = await block("velocity.u8", Uint8Array, noteTotal);
    const start = await block("start.f64", Float64Array, noteTotal);
    const end = await block("end.f64", Float64Array, noteTotal);
    const beats = await block("beats.f64", Float64Array, beatTotal);

    const pieces: MidiCorpus["pieces"] = [];
    let n = 0, b = 0;
    for (const entry of index.pieces) {
      const notes: Note[] = new Array(entry.noteCount);
      for (let i = 0; i < entry.noteCount; i++, n++) {
        notes[i] = { pitch: pitch[n], startSec: start[n], endSec: end[n], velocity: velocity[n] };
      }
      const beatsSec = Array.from(beats.subarray(b, b + entry.beatCount));
      b += entry.beatCount;
      pieces.push({
        ...(entry.fields as Omit<Piece, "notes" | "beatsSec"> & { split: Split }),
        notes,
        beatsSec,
      });
    }
    return { pieces, skipped: index.skipped };
  },
};

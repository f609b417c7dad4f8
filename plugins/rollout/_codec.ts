/**
 * Codec of the `rollouts` artifact: `index.json` (sampling settings, the
 * tokenizer, sequence offsets and per-piece fields) next to raw blocks:
 *
 * | file | content |
 * | --- | --- |
 * | `tokens.i32` | every sequence's tokens, one after another |
 * | `logprobs.f32`, `sampling_logprobs.f32` | per sampled token, sequence after sequence |
 * | `notes.f64` | pitch, velocity, startSec, endSec of every decoded note, piece after piece |
 * | `beats.f64` | every piece's `beatsSec`, piece after piece |
 *
 * @module
 */

import {
  type ArtifactCodec,
  type BinaryFormat,
  blockReader,
  type Piece,
  readIndex,
  writeBlocks,
} from "../../mod.ts";
import type { Rollouts } from "../_music/artifacts.ts";

const FORMAT: BinaryFormat = {
  format: "harmonyrl/rollouts",
  version: 1,
  // The name rollouts were written under before every format was "harmonyrl/<thing>".
  aliases: ["harmonyrl-rollouts"],
};

interface RolloutsIndex {
  format: string;
  version: number;
  primerLen: number;
  sampling: Rollouts["sampling"];
  tokenizer: Rollouts["tokenizer"];
  modelStep: number;
  /** Sequence i is `tokens[tokenOffsets[i] .. tokenOffsets[i+1]]`; log-probs likewise. */
  tokenOffsets: number[];
  logProbOffsets: number[];
  pieces: {
    id: string;
    tempoBpm: number;
    beatsPerBar: number;
    source?: string;
    notes: number;
    beats: number;
  }[];
}

function concat<T extends Int32Array | Float32Array | Float64Array>(
  parts: ArrayLike<number>[],
  make: (n: number) => T,
): { data: T; offsets: number[] } {
  const offsets = [0];
  for (const part of parts) offsets.push(offsets[offsets.length - 1] + part.length);
  const data = make(offsets[offsets.length - 1]);
  parts.forEach((part, i) => data.set(part, offsets[i]));
  return { data, offsets };
}

/** True when `offsets` starts at 0 and never decreases. */
function validOffsets(offsets: number[]): boolean {
  if (offsets.length === 0 || offsets[0] !== 0) return false;
  for (let i = 1; i < offsets.length; i++) {
    if (!(offsets[i] >= offsets[i - 1])) return false;
  }
  return true;
}

/**
 * Codec of the `rollouts` artifact (see the module doc for the layout).
 *
 * @example
 * ```ts
 * import { rolloutsCodec } from "./_codec.ts";
 * const dir = await Deno.makeTempDir();
 * await rolloutsCodec.save({
 *   tokens: [Int32Array.of(1, 60, 2)], primerLen: 0,
 *   logProbs: [Float32Array.of(-0.5, -0.25)], samplingLogProbs: [Float32Array.of(-0.5, -0.25)],
 *   sampling: { temperature: 1, topK: 0, topP: 1 },
 *   pieces: [{ id: "a", tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5], notes: [] }],
 *   tokenizer: { use: "tokenizer/performance", with: {} }, modelStep: 3,
 * }, dir);
 * console.log((await rolloutsCodec.load(dir)).tokens[0][1]); // 60
 * ```
 */
export const rolloutsCodec: ArtifactCodec<Rollouts> = {
  async save(r, dir) {
    const tokens = concat(r.tokens, (n) => new Int32Array(n));
    const lp = concat(r.logProbs, (n) => new Float32Array(n));
    const slp = concat(r.samplingLogProbs, (n) => new Float32Array(n));
    const notes = concat(
      r.pieces.map((piece) =>
        piece.notes.flatMap((n) => [n.pitch, n.velocity, n.startSec, n.endSec])
      ),
      (n) => new Float64Array(n),
    );
    const beats = concat(r.pieces.map((piece) => piece.beatsSec), (n) => new Float64Array(n));
    const index: RolloutsIndex = {
      format: FORMAT.format,
      version: FORMAT.version,
      primerLen: r.primerLen,
      sampling: r.sampling,
      tokenizer: r.tokenizer,
      modelStep: r.modelStep,
      tokenOffsets: tokens.offsets,
      logProbOffsets: lp.offsets,
      pieces: r.pieces.map((piece) => ({
        id: piece.id,
        tempoBpm: piece.tempoBpm,
        beatsPerBar: piece.beatsPerBar,
        ...(piece.source === undefined ? {} : { source: piece.source }),
        notes: piece.notes.length,
        beats: piece.beatsSec.length,
      })),
    };
    await writeBlocks(dir, index, {
      "tokens.i32": tokens.data,
      "logprobs.f32": lp.data,
      "sampling_logprobs.f32": slp.data,
      "notes.f64": notes.data,
      "beats.f64": beats.data,
    });
  },
  async load(dir) {
    const where = `Cannot load rollouts from "${dir}"`;
    const index = await readIndex<RolloutsIndex>(dir, FORMAT, where);
    if (
      !Array.isArray(index.tokenOffsets) || !Array.isArray(index.logProbOffsets) ||
      !Array.isArray(index.pieces) || index.logProbOffsets.length !== index.tokenOffsets.length
    ) {
      throw new Error(
        `${where}: "index.json" lacks "tokenOffsets", "logProbOffsets" or "pieces", or they disagree`,
      );
    }
    const last = (o: number[]) => o[o.length - 1];
    const tokenTotal = last(index.tokenOffsets);
    const logProbTotal = last(index.logProbOffsets);
    const noteTotal = index.pieces.reduce((a, q) => a + q.notes, 0);
    const beatTotal = index.pieces.reduce((a, q) => a + q.beats, 0);
    if (!validOffsets(index.tokenOffsets) || !validOffsets(index.logProbOffsets)) {
      throw new Error(`${where}: "index.json" has offsets that do not start at 0 or decrease`);
    }
    const block = blockReader(dir, where);
    const tokens = await block("tokens.i32", Int32Array, tokenTotal);
    const lp = await block("logprobs.f32", Float32Array, logProbTotal);
    const slp = await block("sampling_logprobs.f32", Float32Array, logProbTotal);
    const notes = await block("notes.f64", Float64Array, noteTotal * 4);
    const beats = await block("beats.f64", Float64Array, beatTotal);
    const count = index.tokenOffsets.length - 1;
    let noteAt = 0, beatAt = 0;
    const pieces: Piece[] = index.pieces.map((q) => {
      const piece: Piece = {
        id: q.id,
        tempoBpm: q.tempoBpm,
        beatsPerBar: q.beatsPerBar,
        notes: Array.from({ length: q.notes }, (_, i) => {
          const o = (noteAt + i) * 4;
          return {
            pitch: notes[o],
            velocity: notes[o + 1],
            startSec: notes[o + 2],
            endSec: notes[o + 3],
          };
        }),
        beatsSec: Array.from(beats.subarray(beatAt, beatAt + q.beats)),
      };
      if (q.source !== undefined) piece.source = q.source;
      noteAt += q.notes;
      beatAt += q.beats;
      return piece;
    });
    const slices = <T extends Int32Array | Float32Array>(a: T, o: number[]) =>
      Array.from({ length: count }, (_, i) => a.slice(o[i], o[i + 1]) as T);
    return {
      tokens: slices(tokens, index.tokenOffsets),
      primerLen: index.primerLen,
      logProbs: slices(lp, index.logProbOffsets),
      samplingLogProbs: slices(slp, index.logProbOffsets),
      sampling: index.sampling,
      pieces,
      tokenizer: index.tokenizer,
      modelStep: index.modelStep,
    };
  },
};

/**
 * `load/synthetic`: a corpus of small generated piano pieces with real tonal
 * structure (key, metre, cadential progressions, a melody over an
 * accompaniment pattern). Needs no data on disk; see `plugins/_music/synthetic.ts`
 * for the rules.
 *
 * @module
 */

import { definePlugin, p } from "../../mod.ts";
import { midiCorpusCodec } from "../_music/corpus_codec.ts";
import { generateSyntheticPiece } from "./_synthetic.ts";
import type { MidiCorpus, Split } from "../_music/types.ts";

/**
 * True when piece `index` goes to validation: validation pieces are spread
 * evenly, exactly `floor(count * share)` of them, and the first `k` pieces
 * get the same splits whatever `count` is.
 */
export function isValidationIndex(index: number, share: number): boolean {
  // The small epsilon keeps products like 0.29 * 100 = 28.999999999999996 from losing a piece.
  return Math.floor((index + 1) * share + 1e-9) > Math.floor(index * share + 1e-9);
}

export default definePlugin({
  name: "load/synthetic",
  kind: "load",
  version: "1.0.0",
  description:
    "Generates a seeded corpus of small tonal piano pieces (key, metre, cadences, melody over Alberti, broken or block accompaniment)",
  params: {
    count: p.integer({ default: 200, min: 1, description: "Number of pieces to generate" }),
    bars: p.integer({ default: 8, min: 1, max: 256, description: "Bars per piece" }),
    validationShare: p.number({
      default: 0.1,
      min: 0,
      max: 1,
      description: "Share of pieces put in the validation split (spread evenly)",
    }),
    tempoMin: p.number({
      default: 80,
      min: 20,
      max: 400,
      description: "Lowest tempo in quarter-note beats per minute",
    }),
    tempoMax: p.number({
      default: 132,
      min: 20,
      max: 400,
      description: "Highest tempo in quarter-note beats per minute",
    }),
  },
  inputs: {},
  outputs: {
    corpus: { type: "midi-corpus", description: "The generated pieces", codec: midiCorpusCodec },
  },
  run(ctx, _inputs, params) {
    if (params.tempoMax < params.tempoMin) {
      throw new Error(
        `Cannot generate pieces: "tempoMax" (${params.tempoMax}) is below "tempoMin" (${params.tempoMin})`,
      );
    }
    const corpus: MidiCorpus = { pieces: [], skipped: [] };
    for (let i = 0; i < params.count; i++) {
      if (ctx.signal.aborted) {
        throw new Error("Cannot finish generating pieces: the run was aborted");
      }
      // Pieces are drawn one after another from ctx.rng, so piece i does not depend on `count`.
      const { piece } = generateSyntheticPiece(ctx.rng, {
        id: `synthetic-${String(i).padStart(5, "0")}`,
        bars: params.bars,
        tempoMinBpm: params.tempoMin,
        tempoMaxBpm: params.tempoMax,
      });
      const split: Split = isValidationIndex(i, params.validationShare) ? "validation" : "train";
      corpus.pieces.push({ ...piece, split });
      if (i % 50 === 49 || i === params.count - 1) {
        ctx.progress({ done: i + 1, total: params.count, unit: "pieces" });
      }
    }
    const validation = corpus.pieces.filter((piece) => piece.split === "validation").length;
    ctx.log.info(
      `Generated ${params.count} pieces of ${params.bars} bars (${validation} for validation)`,
    );
    return Promise.resolve({ corpus });
  },
});

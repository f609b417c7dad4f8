/**
 * `export/midi`: writes pieces as Standard MIDI Files, one `<id>.mid` per
 * piece, so that a graph `load → tokenize → export` gives one output file per
 * input file with the same base name.
 *
 * @module
 */

import { join } from "node:path";
import { definePlugin, p } from "../../mod.ts";
import type { TokenCorpus } from "../_music/components.ts";
import { writeMidi } from "../_music/midi.ts";
import { createTokenizerFromSpec } from "../_music/tokenizer_spec.ts";
import type { Piece } from "../_music/types.ts";

/** What the export writes: the directory and the paths of the files in it. */
export interface ExportedFiles {
  dir: string;
  /** Paths of the written files (`<dir>/<name>.mid`), in input order. */
  files: string[];
}

/**
 * Turns a piece id into a file base name: path separators and characters
 * that some file systems reject become `_`; an empty or dot-only id becomes `piece`.
 *
 * @param id A piece id.
 * @returns A name without directory parts, at most 200 characters long.
 */
export function safeFileName(id: string): string {
  // deno-lint-ignore no-control-regex
  let name = id.replace(/[\/\\:*?"<>|\x00-\x1f]/g, "_").trim().slice(0, 200);
  if (/^\.*$/.test(name)) name = "piece";
  return name;
}

/** Decodes every sequence of a token corpus into a piece named after its id. */
async function decodeTokenCorpus(corpus: TokenCorpus): Promise<Piece[]> {
  // The same lookup the tokenize stage used: built-in names, the registry, or a .ts path.
  const tokenizer = await createTokenizerFromSpec(corpus.tokenizer);
  const count = corpus.offsets.length - 1;
  if (count !== corpus.ids.length) {
    throw new Error(
      `Cannot decode tokens: the corpus has ${count} sequences but ${corpus.ids.length} ids`,
    );
  }
  const pieces: Piece[] = [];
  for (let i = 0; i < count; i++) {
    const tokens = corpus.tokens.subarray(corpus.offsets[i], corpus.offsets[i + 1]);
    pieces.push(tokenizer.decode(tokens, { id: corpus.ids[i] }));
  }
  return pieces;
}

export default definePlugin({
  name: "export/midi",
  kind: "export",
  version: "1.0.0",
  description:
    "Writes pieces (or decoded rollouts or token sequences) as MIDI files named after their ids",
  params: {
    dir: p.string({
      default: "",
      description: 'Output directory; "" writes to "<run directory>/midi"',
    }),
    programNumber: p.integer({
      default: 0,
      min: 0,
      max: 127,
      description: "General MIDI program of the track (0 = Acoustic Grand Piano)",
    }),
  },
  // Files outside the artifact store are a side effect: a cached result would leave a new
  // run directory (or a cleaned output folder) without them, so the stage always runs.
  cache: false,
  inputs: {
    pieces: { type: "pieces", description: "Pieces to write", optional: true },
    rollouts: {
      type: "rollouts",
      description: "Rollouts whose decoded pieces to write",
      optional: true,
    },
    tokens: {
      type: "token-corpus",
      description: "Token sequences to decode with their tokenizer and write",
      optional: true,
    },
  },
  outputs: {
    files: { type: "files", description: "The output directory and the files written" },
  },
  async run(ctx, inputs, params) {
    const pieces: Piece[] = [];
    if (inputs.pieces !== undefined) pieces.push(...(inputs.pieces as Piece[]));
    if (inputs.rollouts !== undefined) {
      pieces.push(...(inputs.rollouts as { pieces: Piece[] }).pieces);
    }
    if (inputs.tokens !== undefined) {
      pieces.push(...await decodeTokenCorpus(inputs.tokens as TokenCorpus));
    }
    if (
      inputs.pieces === undefined && inputs.rollouts === undefined && inputs.tokens === undefined
    ) {
      throw new Error(
        'Cannot export MIDI: connect at least one of the inputs "pieces", "rollouts" or "tokens"',
      );
    }

    const dir = params.dir === "" ? join(ctx.runDir, "midi") : params.dir;
    await Deno.mkdir(dir, { recursive: true });
    const used = new Set<string>();
    const files: string[] = [];
    for (const [i, piece] of pieces.entries()) {
      if (ctx.signal.aborted) throw new Error("Cannot finish exporting MIDI: the run was aborted");
      const base = safeFileName(piece.id);
      // Two pieces with the same id would overwrite each other: number the later ones.
      let name = base;
      for (let k = 2; used.has(name.toLowerCase()); k++) name = `${base}-${k}`;
      if (name !== base) {
        ctx.log.warn(`Renamed the export of "${piece.id}" to "${name}.mid": its name was taken`);
      }
      used.add(name.toLowerCase());

      const bytes = writeMidi(piece, { programNumber: params.programNumber });
      const path = join(dir, `${name}.mid`);
      // Write beside the target and rename, so a killed run never leaves half a file.
      const temp = join(dir, `.${name}.mid.${Deno.pid}.tmp`);
      await Deno.writeFile(temp, bytes);
      await Deno.rename(temp, path);
      files.push(path);
      if (i % 50 === 49 || i === pieces.length - 1) {
        ctx.progress({ done: i + 1, total: pieces.length, unit: "files" });
      }
    }
    ctx.log.info(`Wrote ${files.length} MIDI files to "${dir}"`);
    return { files: { dir, files } satisfies ExportedFiles };
  },
});

/**
 * `export/midi`: writes pieces as Standard MIDI Files, one `<id>.mid` per
 * piece, so that a graph `load → tokenize → export` gives one output file per
 * input file with the same base name.
 *
 * @module
 */

import { join } from "node:path";
import {
  definePlugin,
  p,
  port,
  type StageContext,
  systemFolder,
  writeFileAtomic,
} from "../../mod.ts";
import type { ExportedFiles, RolloutPieces } from "../_music/artifacts.ts";
import type { TokenCorpus, Tokenizer } from "../_music/components.ts";
import { safeFileName, writeMidi } from "../_music/midi.ts";
import type { Piece } from "../_music/types.ts";

/** The record, in an export folder, of the files this plugin wrote there: name to SHA-256. */
const RECORD = ".harmonyrl-export.json";

async function readExportRecord(dir: string): Promise<Record<string, string>> {
  try {
    const value = JSON.parse(await Deno.readTextFile(join(dir, RECORD)));
    return typeof value === "object" && value !== null ? value : {};
  } catch {
    return {};
  }
}

async function writeExportRecord(dir: string, record: Record<string, string>): Promise<void> {
  await writeFileAtomic(join(dir, RECORD), JSON.stringify(record, null, 1));
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Refuses to replace a file that this plugin did not write, or that was
 * changed since it wrote it (its hash differs from the record).
 */
async function checkOurs(path: string, name: string, written: Record<string, string>) {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  if (written[name] !== undefined && written[name] === await sha256(bytes)) return;
  throw new Error(
    `Cannot export MIDI to "${path}": the file is there already and HarmonyRL ${
      written[name] === undefined ? "did not write it" : "wrote it but it was changed since"
    }; move it away, choose another "dir", or set "overwrite: true"`,
  );
}

/** Decodes every sequence of a token corpus into a piece named after its id. */
async function decodeTokenCorpus(ctx: StageContext, corpus: TokenCorpus): Promise<Piece[]> {
  // The same lookup the tokenize stage used: built-in names through the registry, or a .ts path.
  const tokenizer = await ctx.component<Tokenizer>(corpus.tokenizer, "tokenizer");
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
  version: "1.1.0",
  description:
    "Writes pieces (or decoded rollouts or token sequences) as MIDI files named after their ids",
  params: {
    dir: p.string({
      path: "write",
      default: "",
      description: 'Output directory; "" writes to "<run directory>/midi"',
    }),
    overwrite: p.boolean({
      default: false,
      description:
        "Replace files in dir that HarmonyRL did not write, or that were changed since it wrote them",
    }),
    programNumber: p.integer({
      default: 0,
      min: 0,
      max: 127,
      description: "General MIDI program of the track (0 = Acoustic Grand Piano)",
    }),
    prefix: p.string({
      default: "",
      description:
        'Name the files "<prefix>-<n>.mid" (n = 0, 1, ... in input order) instead of after the piece ids; "" keeps the ids',
    }),
  },
  // Files outside the artifact store are a side effect: a cached result would leave a new
  // run directory (or a cleaned output folder) without them, so the stage always runs.
  cache: false,
  inputs: {
    pieces: port<Piece[]>({ type: "pieces", description: "Pieces to write", optional: true }),
    rollouts: port<RolloutPieces>({
      type: "rollouts",
      description: "Rollouts whose decoded pieces to write",
      optional: true,
    }),
    tokens: port<TokenCorpus>({
      type: "token-corpus",
      description: "Token sequences to decode with their tokenizer and write",
      optional: true,
    }),
  },
  outputs: {
    files: { type: "files", description: "The output directory and the files written" },
  },
  async run(ctx, inputs, params) {
    const pieces: Piece[] = [];
    if (inputs.pieces !== undefined) pieces.push(...inputs.pieces);
    if (inputs.rollouts !== undefined) pieces.push(...inputs.rollouts.pieces);
    if (inputs.tokens !== undefined) pieces.push(...await decodeTokenCorpus(ctx, inputs.tokens));
    if (
      inputs.pieces === undefined && inputs.rollouts === undefined && inputs.tokens === undefined
    ) {
      throw new Error(
        'Cannot export MIDI: connect at least one of the inputs "pieces", "rollouts" or "tokens"',
      );
    }

    const dir = params.dir === "" ? join(ctx.runDir, "midi") : params.dir;
    const system = systemFolder(dir);
    if (system !== undefined) {
      throw new Error(
        `Cannot export MIDI to "${dir}": it is in the system folder "${system}"; choose a folder of your own`,
      );
    }
    await Deno.mkdir(dir, { recursive: true });
    // A folder of the user's keeps a record of what was written there; the run's own is new.
    const ownFolder = params.dir !== "";
    const written = ownFolder ? await readExportRecord(dir) : {};
    const used = new Set<string>();
    const files: string[] = [];
    for (const [i, piece] of pieces.entries()) {
      if (ctx.signal.aborted) throw new Error("Cannot finish exporting MIDI: the run was aborted");
      const base = safeFileName(params.prefix !== "" ? `${params.prefix}-${i}` : piece.id);
      // Two pieces with the same id would overwrite each other: number the later ones.
      let name = base;
      for (let k = 2; used.has(name.toLowerCase()); k++) name = `${base}-${k}`;
      if (name !== base) {
        ctx.log.warn(`Renamed the export of "${piece.id}" to "${name}.mid": its name was taken`);
      }
      used.add(name.toLowerCase());

      const bytes = writeMidi(piece, { programNumber: params.programNumber });
      const path = join(dir, `${name}.mid`);
      if (ownFolder && !params.overwrite) await checkOurs(path, `${name}.mid`, written);
      // A killed run never leaves half a file.
      await writeFileAtomic(path, bytes);
      if (ownFolder) {
        written[`${name}.mid`] = await sha256(bytes);
        await writeExportRecord(dir, written);
      }
      files.push(path);
      if (i % 50 === 49 || i === pieces.length - 1) {
        ctx.progress({ done: i + 1, total: pieces.length, unit: "files" });
      }
    }
    ctx.log.info(`Wrote ${files.length} MIDI files to "${dir}"`);
    return { files: { dir, files } satisfies ExportedFiles };
  },
});

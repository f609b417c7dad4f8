/**
 * Shared by the MIDI loaders: read one file, or report it as skipped with a
 * one-line reason and let the rest of the corpus go on.
 *
 * @module
 */

import { errorMessage, type StageContext } from "../../mod.ts";
import { readMidi, type ReadMidiOptions } from "../_music/midi.ts";
import type { MidiCorpus, Piece } from "../_music/types.ts";

/**
 * Reads a MIDI file into a piece, or logs `Skipped "<file>": <reason>`, adds it
 * to `skipped` and returns undefined. Repairs the reader made are logged too.
 *
 * @param ctx The loader's context (for warnings).
 * @param file `path` to read, `label` to name it by, and (optionally) the reason to give when
 *   it is missing (otherwise `cannot open it (...)`).
 * @param options `readMidi` options (id, sustain, ...) and `skipped`, where skipped files go.
 */
export async function readPieceOrSkip(
  ctx: StageContext,
  file: { path: string; label: string; missingReason?: string },
  options: Omit<ReadMidiOptions, "source" | "onWarning"> & { skipped: MidiCorpus["skipped"] },
): Promise<Piece | undefined> {
  const { skipped, ...readOptions } = options;
  const skip = (reason: string): undefined => {
    ctx.log.warn(`Skipped "${file.label}": ${reason}`);
    skipped.push({ file: file.label, reason });
    return undefined;
  };
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(file.path);
  } catch (error) {
    return skip(
      error instanceof Deno.errors.NotFound && file.missingReason
        ? file.missingReason
        : `cannot open it (${errorMessage(error)})`,
    );
  }
  try {
    return readMidi(bytes, {
      ...readOptions,
      source: file.path,
      onWarning: (message) => ctx.log.warn(`Repaired "${file.label}": ${message}`),
    });
  } catch (error) {
    return skip(errorReason(error));
  }
}

/** A reader error without its `Cannot read "<path>": ` prefix (the skip line names the file). */
export function errorReason(error: unknown): string {
  const message = errorMessage(error);
  return message.replace(/^Cannot read "[^"]*": /, "");
}

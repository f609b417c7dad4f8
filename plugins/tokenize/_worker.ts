/**
 * The Deno worker behind `tokenize/events`: builds the tokenizer from its
 * `{use, with}` spec, then tokenizes batches of pieces (sent as transferable
 * typed arrays) or reads and tokenizes batches of MIDI files itself, so that
 * parsing runs in parallel too. The protocol is in `events.ts`
 * (`WorkerRequest`, `WorkerReply`).
 *
 * @module
 */

/// <reference no-default-lib="true" />
/// <reference lib="deno.worker" />

import { errorMessage } from "../../mod.ts";
import type { Tokenizer } from "../_music/components.ts";
import { readMidi } from "../_music/midi.ts";
import { type ItemResult, unpackPieces, type WorkerReply, type WorkerRequest } from "./events.ts";

let tokenizer: Tokenizer | undefined;

function reply(message: WorkerReply, transfer: Transferable[] = []): void {
  self.postMessage(message, transfer);
}

/** The token buffers of results, moved (not copied) to the main thread. */
function buffersOf(results: ItemResult[]): ArrayBuffer[] {
  return results.flatMap((r) => (r.tokens ? [r.tokens.buffer as ArrayBuffer] : []));
}

async function handle(request: WorkerRequest): Promise<void> {
  if (request.kind === "init") {
    try {
      // The main thread resolved and checked the spec; here the module is only imported.
      const { url, spec } = request.tokenizer;
      const plugin = (await import(url)).default as {
        kind?: string;
        create?: (params: Record<string, unknown>, self: typeof spec) => Tokenizer;
      };
      if (plugin?.kind !== "tokenizer" || typeof plugin.create !== "function") {
        throw new Error(`"${spec.use}" is not a tokenizer plugin`);
      }
      tokenizer = plugin.create(spec.with, spec);
      reply({ kind: "ready" });
    } catch (error) {
      reply({ kind: "failed", message: errorMessage(error) });
    }
    return;
  }
  if (!tokenizer) {
    reply({ kind: "failed", message: "Cannot tokenize: the worker has no tokenizer yet" });
    return;
  }
  if (request.kind === "pieces") {
    const pieces = unpackPieces(request.pieces);
    const results = pieces.map((piece): ItemResult => {
      try {
        return { tokens: tokenizer!.encode(piece), noteCount: piece.notes.length };
      } catch (error) {
        return { error: errorMessage(error), noteCount: piece.notes.length };
      }
    });
    reply({ kind: "done", job: request.job, results }, buffersOf(results));
    return;
  }
  if (request.kind === "files") {
    const results: ItemResult[] = [];
    for (const file of request.files) {
      try {
        const bytes = await Deno.readFile(file.path);
        const piece = readMidi(bytes, { ...request.readOptions, id: file.id, source: file.path });
        results.push({ tokens: tokenizer.encode(piece), noteCount: piece.notes.length });
      } catch (error) {
        results.push({ error: errorMessage(error), noteCount: 0 });
      }
    }
    reply({ kind: "done", job: request.job, results }, buffersOf(results));
  }
}

self.onmessage = (event: MessageEvent<WorkerRequest>) => {
  handle(event.data).catch((error) => reply({ kind: "failed", message: errorMessage(error) }));
};

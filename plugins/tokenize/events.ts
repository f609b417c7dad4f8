/**
 * `tokenize/events`: turns a MIDI corpus into a token corpus with any
 * tokenizer plugin, on several cores. Each Deno worker builds the tokenizer
 * itself from its `{use, with}` spec (`Tokenizer.spec`) and receives notes as
 * transferable typed arrays, so nothing but numbers crosses threads.
 *
 * {@linkcode tokenizeFiles} goes one step further for benchmarks and loaders:
 * the workers read and parse the MIDI files too, which is where most of the
 * time goes.
 *
 * @module
 */

import { definePlugin, errorMessage, type FullComponentRef, p, port } from "../../mod.ts";
import type { TokenCorpus, Tokenizer } from "../_music/components.ts";
import type { ReadMidiOptions } from "../_music/midi.ts";
import { buildTokenCorpus, tokenCorpusCodec } from "../_music/token_corpus.ts";
import type { MidiCorpus, Note, Piece, Split } from "../_music/types.ts";

/** Options of `readMidi` that `tokenizeFiles` passes on to workers (plain values only). */
export type ReadOptions = Omit<ReadMidiOptions, "id" | "source" | "onWarning">;

/** Options of {@linkcode tokenizeCorpus} and {@linkcode tokenizeFiles}. */
export interface TokenizeOptions {
  /** Deno workers to use (default 2); 1 tokenizes in this thread. */
  workers?: number;
  /** Called after each batch with the items done so far. */
  onProgress?: (done: number, total: number) => void;
  /** Stops between batches; the promise then rejects. */
  signal?: AbortSignal;
  /** Called when workers cannot be used and the work falls back to this thread. */
  onFallback?: (reason: string) => void;
  /**
   * How a worker rebuilds the tokenizer: its plugin module's URL and full spec
   * (what `ctx.componentSpec(tokenizer.spec, "tokenizer")` returns). Without
   * it, the work runs in this thread.
   */
  worker?: TokenizerModule;
}

/** A tokenizer plugin's module URL and full spec: what a worker needs to rebuild it. */
export interface TokenizerModule {
  url: string;
  spec: FullComponentRef;
}

/** What {@linkcode tokenizeCorpus} and {@linkcode tokenizeFiles} return. */
export interface TokenizeResult {
  corpus: TokenCorpus;
  /** Items that could not be read or encoded, with a one-line reason. */
  skipped: Array<{ file: string; reason: string }>;
  /** Notes in the pieces that were encoded. */
  noteCount: number;
}

// ---------------------------------------------------------------------------
// Worker protocol

/** Notes of several pieces as columns, cheap to transfer between threads. */
export interface PackedPieces {
  ids: string[];
  tempoBpm: number[];
  beatsPerBar: number[];
  /** Notes of piece i are `noteOffsets[i]..noteOffsets[i+1]`. */
  noteOffsets: Uint32Array;
  pitch: Uint8Array;
  velocity: Uint8Array;
  startSec: Float64Array;
  endSec: Float64Array;
  beatOffsets: Uint32Array;
  beatsSec: Float64Array;
}

/**
 * Packs pieces into columns (the inverse of {@linkcode unpackPieces}).
 *
 * @param pieces The pieces.
 * @returns Columns; pass `packedBuffers(packed)` as the transfer list.
 */
export function packPieces(pieces: readonly Piece[]): PackedPieces {
  let noteCount = 0, beatCount = 0;
  for (const piece of pieces) {
    noteCount += piece.notes.length;
    beatCount += piece.beatsSec.length;
  }
  const packed: PackedPieces = {
    ids: pieces.map((piece) => piece.id),
    tempoBpm: pieces.map((piece) => piece.tempoBpm),
    beatsPerBar: pieces.map((piece) => piece.beatsPerBar),
    noteOffsets: new Uint32Array(pieces.length + 1),
    pitch: new Uint8Array(noteCount),
    velocity: new Uint8Array(noteCount),
    startSec: new Float64Array(noteCount),
    endSec: new Float64Array(noteCount),
    beatOffsets: new Uint32Array(pieces.length + 1),
    beatsSec: new Float64Array(beatCount),
  };
  let n = 0, b = 0;
  pieces.forEach((piece, i) => {
    for (const note of piece.notes) {
      packed.pitch[n] = note.pitch;
      packed.velocity[n] = note.velocity;
      packed.startSec[n] = note.startSec;
      packed.endSec[n] = note.endSec;
      n++;
    }
    packed.beatsSec.set(piece.beatsSec, b);
    b += piece.beatsSec.length;
    packed.noteOffsets[i + 1] = n;
    packed.beatOffsets[i + 1] = b;
  });
  return packed;
}

/** The buffers of packed pieces, for a transfer list. */
function packedBuffers(packed: PackedPieces): ArrayBuffer[] {
  return [
    packed.noteOffsets,
    packed.pitch,
    packed.velocity,
    packed.startSec,
    packed.endSec,
    packed.beatOffsets,
    packed.beatsSec,
  ].map((array) => array.buffer as ArrayBuffer);
}

/**
 * Rebuilds pieces from columns.
 *
 * @param packed Output of {@linkcode packPieces}.
 * @returns The pieces.
 */
export function unpackPieces(packed: PackedPieces): Piece[] {
  return packed.ids.map((id, i) => {
    const notes: Note[] = [];
    for (let n = packed.noteOffsets[i]; n < packed.noteOffsets[i + 1]; n++) {
      notes.push({
        pitch: packed.pitch[n],
        startSec: packed.startSec[n],
        endSec: packed.endSec[n],
        velocity: packed.velocity[n],
      });
    }
    return {
      id,
      notes,
      tempoBpm: packed.tempoBpm[i],
      beatsPerBar: packed.beatsPerBar[i],
      beatsSec: Array.from(
        packed.beatsSec.subarray(packed.beatOffsets[i], packed.beatOffsets[i + 1]),
      ),
    };
  });
}

/** A message to a worker. */
export type WorkerRequest =
  | { kind: "init"; tokenizer: TokenizerModule }
  | { kind: "pieces"; job: number; pieces: PackedPieces }
  | {
    kind: "files";
    job: number;
    files: Array<{ path: string; id: string }>;
    readOptions: ReadOptions;
  };

/** One item's result: tokens, or why there are none. */
export interface ItemResult {
  tokens?: Int32Array;
  error?: string;
  noteCount: number;
}

/** A message from a worker. */
export type WorkerReply =
  | { kind: "ready" }
  | { kind: "failed"; message: string }
  | { kind: "done"; job: number; results: ItemResult[] };

/** A batch of work for {@linkcode runBatches}: what to send and how many items it holds. */
interface Batch {
  request: (job: number) => { message: WorkerRequest; transfer: ArrayBuffer[] };
  size: number;
}

/**
 * Runs batches on `workerCount` workers, handing the next batch to whichever
 * worker finishes first. Results come back in batch order.
 *
 * @throws {Error} When a worker fails to start or crashes.
 */
async function runBatches(
  module: TokenizerModule,
  workerCount: number,
  batches: Batch[],
  options: TokenizeOptions,
): Promise<ItemResult[][]> {
  const total = batches.reduce((sum, batch) => sum + batch.size, 0);
  const results: ItemResult[][] = new Array(batches.length);
  const workers: Worker[] = [];
  try {
    let next = 0;
    let done = 0;
    await new Promise<void>((resolve, reject) => {
      let active = 0;
      let failed = false;
      const fail = (message: string) => {
        if (failed) return;
        failed = true;
        reject(new Error(message));
      };
      const feed = (worker: Worker) => {
        if (failed) return;
        if (options.signal?.aborted) {
          fail("Cannot finish tokenizing: the run was aborted");
          return;
        }
        if (next >= batches.length) {
          if (active === 0) resolve();
          return;
        }
        const job = next++;
        active++;
        const { message, transfer } = batches[job].request(job);
        worker.postMessage(message, transfer);
      };
      for (let w = 0; w < Math.min(workerCount, batches.length); w++) {
        const worker = new Worker(new URL("./_worker.ts", import.meta.url).href, {
          type: "module",
        });
        workers.push(worker);
        worker.onerror = (event) => {
          event.preventDefault();
          fail(`Cannot tokenize in a worker: ${event.message}`);
        };
        worker.onmessage = (event: MessageEvent<WorkerReply>) => {
          const reply = event.data;
          if (reply.kind === "failed") fail(`Cannot tokenize in a worker: ${reply.message}`);
          else if (reply.kind === "ready") feed(worker);
          else {
            active--;
            results[reply.job] = reply.results;
            done += batches[reply.job].size;
            options.onProgress?.(done, total);
            feed(worker);
          }
        };
        worker.postMessage({ kind: "init", tokenizer: module } satisfies WorkerRequest);
      }
      if (batches.length === 0) resolve();
    });
  } finally {
    for (const worker of workers) worker.terminate();
  }
  return results;
}

/** Splits `items` into consecutive batches whose `weight` adds up to about `target`. */
function chunk<T>(items: readonly T[], weight: (item: T) => number, target: number): T[][] {
  const out: T[][] = [];
  let current: T[] = [];
  let sum = 0;
  for (const item of items) {
    current.push(item);
    sum += weight(item);
    if (sum >= target) {
      out.push(current);
      current = [];
      sum = 0;
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** Builds the corpus from per-item results, skipping failed items. */
function assemble(
  header: Pick<TokenCorpus, "tokenizer" | "vocabSize">,
  items: ReadonlyArray<{ id: string; split: Split; label: string }>,
  results: ItemResult[],
): TokenizeResult {
  const sequences: Array<{ id: string; split: Split; tokens: Int32Array }> = [];
  const skipped: TokenizeResult["skipped"] = [];
  let noteCount = 0;
  items.forEach((item, i) => {
    const result = results[i];
    if (result.tokens) {
      sequences.push({ id: item.id, split: item.split, tokens: result.tokens });
      noteCount += result.noteCount;
    } else {
      // Reader errors start with `Cannot read "<file>": `; the file is named already.
      const reason = (result.error ?? "unknown error").replace(/^Cannot read "[^"]*": /, "");
      skipped.push({ file: item.label, reason });
    }
  });
  return { corpus: buildTokenCorpus(header, sequences), skipped, noteCount };
}

// ---------------------------------------------------------------------------
// Public entry points

/**
 * Tokenizes pieces, on `workers` Deno workers (default 2) or in this thread.
 * Falls back to this thread (calling `onFallback`) when no `worker` module is
 * given or the workers cannot build it.
 *
 * @param pieces The pieces, each with its split.
 * @param tokenizer The tokenizer (`options.worker` says how workers rebuild it).
 * @param options Workers, progress callback, abort signal.
 * @returns The token corpus (same order, ids and splits) and the pieces that failed.
 * @throws {Error} When aborted, or when the tokenizer cannot be created at all.
 * @example
 * ```ts
 * import { tokenizeCorpus } from "./events.ts";
 * import { createPerformanceTokenizer } from "../tokenizer/performance.ts";
 * const piece = { id: "a", split: "train" as const, tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5],
 *   notes: [{ pitch: 60, startSec: 0, endSec: 0.5, velocity: 80 }] };
 * const tokenizer = createPerformanceTokenizer();
 * const { corpus } = await tokenizeCorpus([piece], tokenizer, { workers: 1 });
 * console.assert(corpus.ids[0] === "a");
 * ```
 */
export function tokenizeCorpus(
  pieces: ReadonlyArray<Piece & { split: Split }>,
  tokenizer: Tokenizer,
  options: TokenizeOptions = {},
): Promise<TokenizeResult> {
  const items = pieces.map((piece) => ({
    id: piece.id,
    split: piece.split,
    label: piece.source ?? piece.id,
  }));
  return tokenizeItems(tokenizer, items, options, {
    // Batches of about 20,000 notes: small enough to balance, large enough
    // that messages cost little.
    batches: () =>
      chunk(pieces.map((_, i) => i), (i) => pieces[i].notes.length + 1, 20_000).map((group) => ({
        size: group.length,
        request: (job) => {
          const packed = packPieces(group.map((i) => pieces[i]));
          return {
            message: { kind: "pieces", job, pieces: packed },
            transfer: packedBuffers(packed),
          };
        },
      })),
    encode: (instance, i) => ({
      tokens: instance.encode(pieces[i]),
      noteCount: pieces[i].notes.length,
    }),
    failedNoteCount: (i) => pieces[i].notes.length,
  });
}

/** A MIDI file for {@linkcode tokenizeFiles}: path, and optionally id and split. */
export interface MidiFileEntry {
  path: string;
  /** Default: the file name without extension. */
  id?: string;
  /** Default: `"train"`. */
  split?: Split;
}

/**
 * Reads MIDI files with `readMidi` and tokenizes them, both inside `workers`
 * Deno workers (default 2), so parsing runs in parallel too. Files that cannot
 * be read or encoded are returned in `skipped`; the rest keep their order.
 *
 * @param files Paths, or `{path, id, split}`.
 * @param tokenizer The tokenizer (`options.worker` says how workers rebuild it).
 * @param options Workers, progress, abort signal, and `readOptions` for `readMidi`
 *   (e.g. `{ sustain: true }`).
 * @returns The token corpus, skipped files and the number of notes encoded.
 * @throws {Error} When aborted, or when the tokenizer cannot be created.
 */
export async function tokenizeFiles(
  files: ReadonlyArray<string | MidiFileEntry>,
  tokenizer: Tokenizer,
  options: TokenizeOptions & { readOptions?: ReadOptions } = {},
): Promise<TokenizeResult> {
  const entries = files.map((file) => {
    const entry = typeof file === "string" ? { path: file } : file;
    const name = entry.path.split(/[\/\\]/).pop()!;
    return {
      path: entry.path,
      id: entry.id ?? name.replace(/\.midi?$/i, ""),
      split: entry.split ?? "train" as Split,
    };
  });
  const items = entries.map((entry) => ({ id: entry.id, split: entry.split, label: entry.path }));
  const readOptions = options.readOptions ?? {};
  const { readMidi } = await import("../_music/midi.ts");
  return tokenizeItems(tokenizer, items, options, {
    // Small batches (4 files): MAESTRO files vary tenfold in size, and the
    // last batches decide when the slowest worker finishes.
    batches: () =>
      chunk(entries, () => 1, 4).map((group) => ({
        size: group.length,
        request: (job) => ({
          message: {
            kind: "files",
            job,
            files: group.map(({ path, id }) => ({ path, id })),
            readOptions,
          },
          transfer: [],
        }),
      })),
    encode: async (instance, i) => {
      const entry = entries[i];
      const bytes = await Deno.readFile(entry.path);
      const piece = readMidi(bytes, { ...readOptions, id: entry.id, source: entry.path });
      return { tokens: instance.encode(piece), noteCount: piece.notes.length };
    },
    failedNoteCount: () => 0,
  });
}

/** How one kind of input is tokenized: in worker batches, or one item at a time here. */
interface TokenizePlan {
  /** Worker batches covering every item, in order. */
  batches: () => Batch[];
  /** Encodes item `i` in this thread (throws on a bad item). */
  encode: (instance: Tokenizer, i: number) => ItemResult | Promise<ItemResult>;
  /** Notes counted for item `i` when it fails. */
  failedNoteCount: (i: number) => number;
}

/**
 * Tokenizes items on `workers` Deno workers when `options.worker` says how
 * they rebuild the tokenizer, else (or when the workers fail) in this thread.
 */
async function tokenizeItems(
  instance: Tokenizer,
  items: { id: string; split: Split; label: string }[],
  options: TokenizeOptions,
  plan: TokenizePlan,
): Promise<TokenizeResult> {
  const header = {
    tokenizer: specAsRecord(options.worker?.spec ?? instance.spec ?? { use: instance.name }),
    vocabSize: instance.vocabSize,
  };
  const workers = Math.max(1, Math.floor(options.workers ?? 2));
  if (workers > 1 && items.length > 1) {
    if (!options.worker) {
      options.onFallback?.(
        instance.spec
          ? `no module was given for tokenizer "${instance.name}", so workers cannot rebuild it`
          : `tokenizer "${instance.name}" carries no spec, so workers cannot rebuild it`,
      );
    } else {
      try {
        const results = await runBatches(options.worker, workers, plan.batches(), options);
        return assemble(header, items, results.flat());
      } catch (error) {
        if (options.signal?.aborted) throw error;
        options.onFallback?.(errorMessage(error));
      }
    }
  }
  const results: ItemResult[] = [];
  for (let i = 0; i < items.length; i++) {
    if (options.signal?.aborted) throw new Error("Cannot finish tokenizing: the run was aborted");
    try {
      results.push(await plan.encode(instance, i));
    } catch (error) {
      results.push({ error: errorMessage(error), noteCount: plan.failedNoteCount(i) });
    }
    if (i % 25 === 24 || i === items.length - 1) options.onProgress?.(i + 1, items.length);
  }
  return assemble(header, items, results);
}

function specAsRecord(
  spec: { use: string; with?: Record<string, unknown> },
): TokenCorpus["tokenizer"] {
  return { use: spec.use, with: { ...(spec.with ?? {}) } };
}

export default definePlugin({
  name: "tokenize/events",
  kind: "tokenize",
  version: "1.0.0",
  description:
    "Encodes every piece of a MIDI corpus with a tokenizer plugin, on several Deno workers",
  params: {
    tokenizer: p.component({
      kind: "tokenizer",
      default: "tokenizer/performance",
      description: "The tokenizer plugin that encodes the pieces",
    }),
    workers: p.integer({
      default: 2,
      min: 1,
      description: "Deno workers that tokenize in parallel; 1 tokenizes in the stage's own thread",
    }),
  },
  inputs: {
    corpus: port<MidiCorpus>({
      type: "midi-corpus",
      description: "The pieces to encode, with their splits",
    }),
  },
  outputs: {
    tokens: {
      type: "token-corpus",
      description: "One token sequence per piece, with the piece's id and split",
      codec: tokenCorpusCodec,
    },
  },
  async run(ctx, inputs, params) {
    const corpus = inputs.corpus;
    const tokenizer = params.tokenizer as Tokenizer;
    const started = performance.now();
    // Workers rebuild the tokenizer from its plugin's module and full spec.
    const module = tokenizer.spec
      ? await ctx.componentSpec(tokenizer.spec, "tokenizer")
      : undefined;
    const result = await tokenizeCorpus(corpus.pieces, tokenizer, {
      worker: module?.url ? { url: module.url, spec: module.spec } : undefined,
      workers: params.workers,
      signal: ctx.signal,
      onProgress: (done, total) => ctx.progress({ done, total, unit: "pieces" }),
      onFallback: (reason) => ctx.log.warn(`Tokenizing in one thread: ${reason}`),
    });
    for (const { file, reason } of result.skipped) ctx.log.warn(`Skipped "${file}": ${reason}`);
    if (result.skipped.length > 0) ctx.note("skipped", result.skipped);
    if (corpus.pieces.length > 0 && result.corpus.ids.length === 0) {
      throw new Error(
        `Cannot tokenize the corpus: none of its ${corpus.pieces.length} pieces could be encoded ` +
          `(first: "${result.skipped[0].file}": ${result.skipped[0].reason})`,
      );
    }
    const seconds = (performance.now() - started) / 1000;
    ctx.log.info(
      `Tokenized ${result.corpus.ids.length} pieces (${result.noteCount} notes) into ` +
        `${result.corpus.tokens.length} tokens with "${tokenizer.name}" in ${seconds.toFixed(1)} s`,
    );
    return { tokens: result.corpus };
  },
});

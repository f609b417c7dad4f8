/**
 * Compact storage for `token-corpus` artifacts. The performance encoding of
 * MAESTRO is about 20 million tokens, so they are stored as raw typed arrays,
 * not JSON:
 *
 * | file | content |
 * | --- | --- |
 * | `tokens.i32` | every sequence's tokens, one after another, little-endian Int32 |
 * | `offsets.u32` | sequence i is `tokens[offsets[i]..offsets[i+1]]`; count + 1 entries, little-endian Uint32 |
 * | `index.json` | format, tokenizer `{use, with}`, vocabSize, counts, ids and splits |
 *
 * @module
 */

import { readBlock, readIndex, writeBlocks } from "../../mod.ts";
import type { ArtifactCodec, BinaryFormat } from "../../mod.ts";
import type { TokenCorpus } from "./components.ts";
import type { Split } from "./types.ts";

const FORMAT: BinaryFormat = { format: "harmonyrl/token-corpus", version: 1 };
const SPLITS: readonly Split[] = ["train", "validation", "test"];

/** What `index.json` holds. */
interface IndexFile {
  format: string;
  version: number;
  tokenizer: TokenCorpus["tokenizer"];
  vocabSize: number;
  /** Number of sequences. */
  sequenceCount: number;
  /** Number of tokens over all sequences. */
  tokenCount: number;
  /** Sequences per split, for people reading the file. */
  counts: Record<Split, number>;
  ids: string[];
  splits: Split[];
}

/** Sequences per split. */
export function splitCounts(splits: readonly Split[]): Record<Split, number> {
  const counts: Record<Split, number> = { train: 0, validation: 0, test: 0 };
  for (const split of splits) counts[split]++;
  return counts;
}

/**
 * Checks that a corpus is internally consistent: offsets start at 0, never
 * decrease and end at the token count; one id and split per sequence; every
 * token below `vocabSize`.
 *
 * @param corpus The corpus to check.
 * @param where The start of the error message, e.g. `Cannot load token corpus from "dir"`.
 * @throws {Error} Naming the first problem found.
 */
export function validateTokenCorpus(corpus: TokenCorpus, where: string): void {
  const { tokens, offsets, ids, splits, vocabSize } = corpus;
  const count = offsets.length - 1;
  if (count < 0) throw new Error(`${where}: "offsets.u32" is empty (it needs count + 1 entries)`);
  if (ids.length !== count || splits.length !== count) {
    throw new Error(
      `${where}: "offsets.u32" describes ${count} sequences but "index.json" has ${ids.length} ids and ${splits.length} splits`,
    );
  }
  if (offsets[0] !== 0 || offsets[count] !== tokens.length) {
    throw new Error(
      `${where}: "offsets.u32" must run from 0 to ${tokens.length} (the token count), found ${
        offsets[0]
      }..${offsets[count]}`,
    );
  }
  for (let i = 0; i < count; i++) {
    if (offsets[i + 1] < offsets[i]) {
      throw new Error(
        `${where}: "offsets.u32" decreases at sequence ${i} (${JSON.stringify(ids[i])})`,
      );
    }
    if (!SPLITS.includes(splits[i])) {
      throw new Error(`${where}: sequence ${i} has an invalid split ${JSON.stringify(splits[i])}`);
    }
  }
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i];
    if (token < 0 || token >= vocabSize) {
      throw new Error(
        `${where}: "tokens.i32" holds token ${token} at position ${i}, outside the vocabulary 0..${
          vocabSize - 1
        }`,
      );
    }
  }
}

/**
 * Stores a {@linkcode TokenCorpus} as `tokens.i32`, `offsets.u32` and
 * `index.json` (see the module doc). `load` checks every size and offset and
 * throws an error that names the directory and the file when they are corrupt.
 *
 * @example
 * ```ts
 * import { tokenCorpusCodec } from "./token_corpus.ts";
 *
 * const dir = await Deno.makeTempDir();
 * await tokenCorpusCodec.save({
 *   tokenizer: { use: "tokenizer/performance", with: {} }, vocabSize: 391,
 *   tokens: Int32Array.from([389, 60, 390]), offsets: Uint32Array.from([0, 3]),
 *   ids: ["a"], splits: ["train"],
 * }, dir);
 * const back = await tokenCorpusCodec.load(dir);
 * console.assert(back.tokens[1] === 60);
 * ```
 */
export const tokenCorpusCodec: ArtifactCodec<TokenCorpus> = {
  async save(corpus, dir) {
    validateTokenCorpus(corpus, `Cannot save token corpus to ${JSON.stringify(dir)}`);
    const index: IndexFile = {
      format: FORMAT.format,
      version: FORMAT.version,
      tokenizer: corpus.tokenizer,
      vocabSize: corpus.vocabSize,
      sequenceCount: corpus.ids.length,
      tokenCount: corpus.tokens.length,
      counts: splitCounts(corpus.splits),
      ids: corpus.ids,
      splits: corpus.splits,
    };
    await writeBlocks(dir, index, { "tokens.i32": corpus.tokens, "offsets.u32": corpus.offsets });
  },

  async load(dir) {
    const where = `Cannot load token corpus from ${JSON.stringify(dir)}`;
    const index = await readIndex<IndexFile>(dir, FORMAT, where);
    const isCount = (x: unknown) => Number.isInteger(x) && (x as number) >= 0;
    if (
      !isCount(index.sequenceCount) || !isCount(index.tokenCount) || !isCount(index.vocabSize) ||
      !Array.isArray(index.ids) || !Array.isArray(index.splits) ||
      typeof index.tokenizer?.use !== "string"
    ) {
      throw new Error(
        `${where}: "index.json" lacks valid "sequenceCount", "tokenCount", "vocabSize", "ids", "splits" or "tokenizer"`,
      );
    }
    const tokens = await readBlock(
      dir,
      { name: "tokens.i32", type: Int32Array, items: index.tokenCount },
      where,
    );
    const offsets = await readBlock(
      dir,
      { name: "offsets.u32", type: Uint32Array, items: index.sequenceCount + 1 },
      where,
    );
    const corpus: TokenCorpus = {
      tokenizer: { use: index.tokenizer.use, with: index.tokenizer.with ?? {} },
      vocabSize: index.vocabSize,
      tokens,
      offsets,
      ids: index.ids,
      splits: index.splits,
    };
    validateTokenCorpus(corpus, where);
    return corpus;
  },
};

/**
 * Concatenates sequences into a {@linkcode TokenCorpus}.
 *
 * @param header The tokenizer's `{use, with}` and its vocabulary size.
 * @param sequences One entry per sequence, in order.
 * @returns The corpus.
 */
export function buildTokenCorpus(
  header: Pick<TokenCorpus, "tokenizer" | "vocabSize">,
  sequences: ReadonlyArray<{ id: string; split: Split; tokens: ArrayLike<number> }>,
): TokenCorpus {
  let total = 0;
  for (const sequence of sequences) total += sequence.tokens.length;
  const tokens = new Int32Array(total);
  const offsets = new Uint32Array(sequences.length + 1);
  let at = 0;
  sequences.forEach((sequence, i) => {
    tokens.set(sequence.tokens, at);
    at += sequence.tokens.length;
    offsets[i + 1] = at;
  });
  return {
    tokenizer: header.tokenizer,
    vocabSize: header.vocabSize,
    tokens,
    offsets,
    ids: sequences.map((s) => s.id),
    splits: sequences.map((s) => s.split),
  };
}

/**
 * The token sequences of one split, as views into `corpus.tokens` (no copy).
 *
 * @param corpus The corpus.
 * @param split Which split; all sequences when omitted.
 * @returns One `Int32Array` view per sequence, in corpus order.
 * @example
 * ```ts
 * import { sequencesOf } from "./token_corpus.ts";
 * const corpus = {
 *   tokenizer: { use: "tokenizer/performance", with: {} }, vocabSize: 391,
 *   tokens: Int32Array.from([389, 60, 390, 389, 390]), offsets: Uint32Array.from([0, 3, 5]),
 *   ids: ["a", "b"], splits: ["train" as const, "test" as const],
 * };
 * console.assert(sequencesOf(corpus, "test")[0].length === 2);
 * ```
 */
export function sequencesOf(corpus: TokenCorpus, split?: Split): Int32Array[] {
  const out: Int32Array[] = [];
  for (let i = 0; i < corpus.ids.length; i++) {
    if (split === undefined || corpus.splits[i] === split) {
      out.push(corpus.tokens.subarray(corpus.offsets[i], corpus.offsets[i + 1]));
    }
  }
  return out;
}

/**
 * The sequences of one split laid end to end, in corpus order.
 *
 * @param corpus The corpus.
 * @param split Which split.
 * @returns A copy of the split's tokens.
 * @example
 * ```ts
 * import { splitStream } from "./token_corpus.ts";
 * const corpus = {
 *   tokenizer: { use: "tokenizer/performance", with: {} }, vocabSize: 391,
 *   tokens: Int32Array.from([389, 60, 390, 389, 390]), offsets: Uint32Array.from([0, 3, 5]),
 *   ids: ["a", "b"], splits: ["train" as const, "train" as const],
 * };
 * console.log(Array.from(splitStream(corpus, "train"))); // [ 389, 60, 390, 389, 390 ]
 * ```
 */
export function splitStream(corpus: TokenCorpus, split: Split): Int32Array {
  const parts = sequencesOf(corpus, split);
  const out = new Int32Array(parts.reduce((a, s) => a + s.length, 0));
  let at = 0;
  for (const s of parts) {
    out.set(s, at);
    at += s.length;
  }
  return out;
}

/**
 * Fixed scoring windows of `length` tokens, spread evenly over the whole of a
 * split's stream (see {@linkcode splitStream}): of its non-overlapping
 * windows, every one when there are at most `count`, otherwise `count` of them
 * at even strides. A validation NLL over these windows describes the whole
 * split, not only its first pieces.
 *
 * @param stream A split laid end to end.
 * @param length Tokens per window (a model's `seqLen + 1`: inputs and the next-token targets).
 * @param count How many windows at most.
 * @returns Views into `stream`, in stream order.
 * @example
 * ```ts
 * import { spreadWindows } from "./token_corpus.ts";
 * const windows = spreadWindows(Int32Array.from([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]), 2, 2);
 * console.log(windows.map((w) => Array.from(w))); // [ [ 0, 1 ], [ 6, 7 ] ]
 * ```
 */
export function spreadWindows(stream: Int32Array, length: number, count: number): Int32Array[] {
  const available = Math.floor(stream.length / length);
  const take = Math.min(available, Math.max(0, count));
  const out: Int32Array[] = [];
  for (let i = 0; i < take; i++) {
    const window = Math.floor((i * available) / take);
    out.push(stream.subarray(window * length, (window + 1) * length));
  }
  return out;
}

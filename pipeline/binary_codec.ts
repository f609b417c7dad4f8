/**
 * Helpers for binary artifact codecs (a large artifact's `codec`, such as the
 * built-in `midi-corpus`, `token-corpus`, `model` and `critic` codecs). Every
 * such artifact has one layout: an `index.json` header that names its format
 * (`"<project>/<thing>"`) and version and says how many items each block
 * holds, next to the blocks, typed arrays written raw in the machine's
 * (little-endian) byte order. Exported from `mod.ts`.
 *
 * @module
 */

import { errorMessage } from "./plugin.ts";

/** What every `index.json` starts with. */
export interface IndexHeader {
  /** The format's name, e.g. `"harmonyrl/token-corpus"`. */
  format: string;
  /** The layout's version; a reader accepts only the one it knows. */
  version: number;
}

/** The format a codec writes, and the older names of the same layout that it still reads. */
export interface BinaryFormat extends IndexHeader {
  /**
   * Names that files written before a rename carry (same layout, same
   * version): readers accept them so that caches and checkpoints on disk
   * stay readable.
   */
  aliases?: readonly string[];
}

/** A typed-array class whose views a block is read into (`Float32Array`, `Int32Array`, ...). */
export interface TypedArrayClass<T extends ArrayBufferView> {
  new (buffer: ArrayBuffer, byteOffset: number, length: number): T;
  readonly BYTES_PER_ELEMENT: number;
}

/**
 * Throws unless the machine is little-endian (the files are written raw).
 *
 * @param codec The codec's name for the message, e.g. `"token-corpus"`.
 * @throws {Error} `Cannot use the <codec> codec: it needs a little-endian machine`.
 */
export function assertLittleEndian(codec: string): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error(`Cannot use the ${codec} codec: it needs a little-endian machine`);
  }
}

/**
 * The bytes of a typed array (a view, not a copy).
 *
 * @param array The typed array.
 * @returns A byte view of the same memory.
 * @example
 * ```ts
 * import { asBytes } from "../mod.ts";
 * asBytes(new Uint16Array([1, 2])).length; // 4
 * ```
 */
export function asBytes(array: ArrayBufferView): Uint8Array {
  return new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
}

/**
 * Checks that a parsed index is of the expected format (its name or one of
 * its aliases) and version, and that this machine can read its raw blocks
 * (little-endian). For codecs that keep the index somewhere other than
 * `index.json` (such as a one-file checkpoint's header).
 *
 * @param index The parsed JSON.
 * @param expected The format the codec writes and the names it still reads.
 * @param where The start of error messages (`Cannot load token corpus from "dir"`).
 * @returns The index, typed.
 * @throws {Error} `<where>: the index is not a <format> index of version <n> (found ...)`,
 *   or on a big-endian machine.
 * @example
 * ```ts
 * import { checkIndex } from "../mod.ts";
 * const format = { format: "harmonyrl/thing", version: 1, aliases: ["harmonyrl-thing"] };
 * checkIndex({ format: "harmonyrl-thing", version: 1 }, format, "Cannot load thing"); // accepted
 * ```
 */
export function checkIndex<T extends IndexHeader>(
  index: unknown,
  expected: BinaryFormat,
  where: string,
): T {
  return checked<T>(index, expected, `${where}: the index`);
}

function checked<T extends IndexHeader>(index: unknown, expected: BinaryFormat, what: string): T {
  assertLittleEndian(expected.format);
  const header = index as Partial<IndexHeader> | null;
  const known = header?.format === expected.format ||
    (expected.aliases ?? []).includes(header?.format as string);
  if (!known || header?.version !== expected.version) {
    throw new Error(
      `${what} is not a ${expected.format} index of version ${expected.version} ` +
        `(found format ${JSON.stringify(header?.format)}, version ${
          JSON.stringify(header?.version)
        })`,
    );
  }
  return index as T;
}

/**
 * Reads `<dir>/index.json` and checks its `format` and `version` (see
 * {@linkcode checkIndex}).
 *
 * @param dir The artifact directory.
 * @param expected The format the codec writes and the names it still reads.
 * @param where The start of error messages (`Cannot load token corpus from "dir"`).
 * @returns The parsed index.
 * @throws {Error} `<where>: "index.json" is missing or not JSON (...)`, or is not
 *   an index of that format and version.
 */
export async function readIndex<T extends IndexHeader>(
  dir: string,
  expected: BinaryFormat,
  where: string,
): Promise<T> {
  let index: unknown;
  try {
    index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
  } catch (error) {
    throw new Error(`${where}: "index.json" is missing or not JSON (${errorMessage(error)})`);
  }
  return checked<T>(index, expected, `${where}: "index.json"`);
}

/**
 * Writes a binary artifact: each block raw under its file name, then
 * `<dir>/index.json`. The index goes last so that a directory with an index
 * has all its blocks.
 *
 * @param dir The artifact directory (it exists).
 * @param index The header and whatever else the codec's reader needs (block sizes, metadata).
 * @param blocks File name to typed array, e.g. `{ "tokens.i32": tokens }`.
 * @param options `space` indents `index.json` (as `JSON.stringify` does) for people reading it.
 * @throws {Error} On a big-endian machine, or when a file cannot be written.
 * @example
 * ```ts
 * import { readBlock, readIndex, writeBlocks } from "../mod.ts";
 * const dir = await Deno.makeTempDir();
 * const format = { format: "example/thing", version: 1 };
 * await writeBlocks(dir, { ...format, count: 2 }, { "values.f32": Float32Array.of(1, 2) });
 * const index = await readIndex<typeof format & { count: number }>(dir, format, "Cannot load");
 * const values = await readBlock(dir, { name: "values.f32", type: Float32Array, items: index.count }, "Cannot load");
 * console.log(values[1]); // 2
 * ```
 */
export async function writeBlocks<I extends IndexHeader>(
  dir: string,
  index: I,
  blocks: Record<string, ArrayBufferView>,
  options: { space?: number } = {},
): Promise<void> {
  assertLittleEndian(index.format);
  for (const [name, array] of Object.entries(blocks)) {
    await Deno.writeFile(`${dir}/${name}`, asBytes(array));
  }
  await Deno.writeTextFile(`${dir}/index.json`, JSON.stringify(index, null, options.space));
}

/**
 * Reads `<dir>/<name>` and checks that it holds exactly `items` items of
 * `bytesPerItem` bytes, as the index says. `Deno.readFile` returns a fresh
 * buffer at offset 0, so typed-array views of the result are aligned.
 *
 * @param dir The artifact directory.
 * @param file The block's file name, item width and item count.
 * @param where The start of error messages.
 * @returns The block's bytes.
 * @throws {Error} `<where>: cannot read "<name>" (...)` or
 *   `<where>: "<name>" holds N bytes, expected M (b x items)`.
 */
export async function readSized(
  dir: string,
  file: { name: string; bytesPerItem: number; items: number },
  where: string,
): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(`${dir}/${file.name}`);
  } catch (error) {
    throw new Error(`${where}: cannot read "${file.name}" (${errorMessage(error)})`);
  }
  const expected = file.bytesPerItem * file.items;
  if (bytes.byteLength !== expected) {
    throw new Error(
      `${where}: "${file.name}" holds ${bytes.byteLength} bytes, expected ${expected} ` +
        `(${file.bytesPerItem} x ${file.items}) as "index.json" says`,
    );
  }
  return bytes;
}

/**
 * Reads a block written by {@linkcode writeBlocks} as a typed array of
 * exactly `items` items (see {@linkcode readSized}).
 *
 * @param dir The artifact directory.
 * @param block The file name, the typed-array class and the item count the index gives.
 * @param where The start of error messages.
 * @returns A view of a fresh buffer.
 * @throws {Error} As {@linkcode readSized}.
 */
export async function readBlock<T extends ArrayBufferView>(
  dir: string,
  block: { name: string; type: TypedArrayClass<T>; items: number },
  where: string,
): Promise<T> {
  const bytesPerItem = block.type.BYTES_PER_ELEMENT;
  const bytes = await readSized(dir, { name: block.name, bytesPerItem, items: block.items }, where);
  return new block.type(bytes.buffer as ArrayBuffer, bytes.byteOffset, block.items);
}

/**
 * {@linkcode readBlock} bound to one artifact directory and error prefix, for
 * codecs that read several blocks.
 *
 * @example
 * ```ts
 * import { blockReader } from "../mod.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeFile(`${dir}/a.u8`, new Uint8Array([1, 2, 3]));
 * const block = blockReader(dir, "Cannot load");
 * const a = await block("a.u8", Uint8Array, 3);
 * ```
 */
export function blockReader(
  dir: string,
  where: string,
): <T extends ArrayBufferView>(
  name: string,
  type: TypedArrayClass<T>,
  items: number,
) => Promise<T> {
  return (name, type, items) => readBlock(dir, { name, type, items }, where);
}

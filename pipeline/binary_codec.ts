/**
 * Helpers for binary artifact codecs (a large artifact's `codec`, such as the
 * built-in `midi-corpus`, `token-corpus` and `critic` codecs): typed arrays
 * written raw in the machine's (little-endian) byte order next to an
 * `index.json` that says what they are. Exported from `mod.ts`.
 *
 * @module
 */

import { errorMessage } from "./plugin.ts";

/**
 * Throws unless the machine is little-endian (the files are written raw).
 *
 * @param codec The codec's name for the message, e.g. `"token-corpus"`.
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
 * Reads `<dir>/index.json` and checks its `format` and `version`.
 *
 * @param dir The artifact directory.
 * @param expected The format name and version the codec writes.
 * @param where The start of error messages (`Cannot load token corpus from "dir"`).
 * @returns The parsed index.
 * @throws {Error} `<where>: "index.json" is missing or not JSON (...)`, or is not
 *   an index of that format and version.
 */
export async function readIndex<T extends { format: string; version: number }>(
  dir: string,
  expected: { format: string; version: number },
  where: string,
): Promise<T> {
  let index: T;
  try {
    index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
  } catch (error) {
    throw new Error(`${where}: "index.json" is missing or not JSON (${errorMessage(error)})`);
  }
  if (index?.format !== expected.format || index.version !== expected.version) {
    throw new Error(
      `${where}: "index.json" is not a ${expected.format} index of version ${expected.version}`,
    );
  }
  return index;
}

/**
 * Reads `<dir>/<name>` and checks that it holds exactly `items` items of
 * `bytesPerItem` bytes, as the index says. `Deno.readFile` returns a fresh
 * buffer at offset 0, so typed-array views of the result are aligned.
 *
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

/**
 * Fingerprints of what a stage reads besides its inputs (files, folders), for
 * its cache key: a plugin's optional `fingerprint(params)` returns one, and the
 * runner re-runs the stage when it changes and says what changed
 * (`explainSources` in cache.ts).
 *
 * @module
 */

import { join } from "node:path";
import { listFiles } from "./cache.ts";

/**
 * Size and modification time of files, as `{ "a.mid": "1234:1700000000000" }`
 * (`"missing"` for a file that cannot be found). Cheap: files are not read.
 *
 * @param root The folder the paths are relative to.
 * @param files Relative paths; default every file under `root`, recursively.
 * @returns One entry per file, keys in sorted order.
 * @example
 * ```ts
 * import { fingerprintFiles } from "../mod.ts";
 * const dir = await Deno.makeTempDir();
 * await Deno.writeTextFile(`${dir}/a.txt`, "hello");
 * const print = await fingerprintFiles(dir);
 * console.log(print["a.txt"].startsWith("5:")); // true
 * ```
 */
export async function fingerprintFiles(
  root: string,
  files?: readonly string[],
): Promise<Record<string, string>> {
  const list = files ? [...files] : [...(await listFiles(root)).keys()];
  list.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const stat = async (file: string) => {
    try {
      const info = await Deno.stat(join(root, file));
      return `${info.size}:${info.mtime?.getTime() ?? 0}`;
    } catch {
      return "missing";
    }
  };
  const out: Record<string, string> = {};
  // A few dozen stats at a time: thousands of files take a fraction of a second.
  for (let i = 0; i < list.length; i += 64) {
    const chunk = list.slice(i, i + 64);
    const stats = await Promise.all(chunk.map(stat));
    chunk.forEach((file, j) => out[file] = stats[j]);
  }
  return out;
}

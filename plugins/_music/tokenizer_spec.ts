/**
 * Rebuilds a tokenizer from the `{use, with}` spec that token corpora and
 * model checkpoints record, so that any stage (and any worker) can decode
 * tokens with exactly the tokenizer that made them.
 *
 * Built-in tokenizers are `plugins/tokenizer/<name>.ts` by convention, so this
 * needs no registry (and the shared code does not depend on the list of every
 * plugin).
 *
 * @module
 */

import type { ParamsSchema } from "../../pipeline/schema.ts";
import type { Tokenizer } from "./components.ts";

/** A tokenizer plugin and its params, as written in YAML. */
export interface TokenizerSpec {
  use: string;
  with?: Record<string, unknown>;
}

interface TokenizerPlugin {
  kind?: string;
  params?: ParamsSchema;
  create?: (params: Record<string, unknown>) => Tokenizer;
}

/**
 * Imports a tokenizer plugin by built-in name (`"tokenizer/performance"`) or by
 * path or URL of a `.ts`/`.js` module (relative paths from the working
 * directory), and creates it with the spec's params over the plugin's defaults.
 *
 * @param spec `{use, with}` as a token corpus or checkpoint records it.
 * @returns The tokenizer.
 * @throws {Error} `Cannot create tokenizer "<use>": <reason>` when the spec is
 *   malformed or the plugin cannot be found or is not a tokenizer.
 */
export async function createTokenizerFromSpec(spec: unknown): Promise<Tokenizer> {
  const s = spec as TokenizerSpec;
  if (typeof s?.use !== "string" || s.use === "") {
    throw new Error(`Cannot create tokenizer: spec ${JSON.stringify(spec)} has no "use" name`);
  }
  const where = `Cannot create tokenizer ${JSON.stringify(s.use)}`;
  let url: string;
  if (/^tokenizer\/[a-z0-9][a-z0-9._-]*$/.test(s.use)) {
    url = new URL(`../${s.use}.ts`, import.meta.url).href;
  } else if (/^(file|https?):/.test(s.use)) {
    url = s.use;
  } else if (/\.(ts|js|mjs)$/.test(s.use)) {
    url = new URL(s.use, `file://${Deno.cwd()}/`).href;
  } else {
    throw new Error(`${where}: expected "tokenizer/<name>" or the path of a .ts module`);
  }
  let plugin: TokenizerPlugin | undefined;
  try {
    plugin = (await import(url)).default;
  } catch (error) {
    throw new Error(
      `${where}: the plugin module cannot be loaded (${(error as Error).message.split("\n")[0]})`,
    );
  }
  if (typeof plugin?.create !== "function" || plugin.kind !== "tokenizer") {
    throw new Error(`${where}: the module's default export is not a tokenizer plugin`);
  }
  const params: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(plugin.params ?? {})) {
    if (field.default !== undefined) params[key] = structuredClone(field.default);
  }
  return plugin.create({ ...params, ...s.with });
}

/**
 * Regenerates the generated parts of the docs from the built-in plugins: the
 * README's plugin reference and `configs/graph.schema.json`. Run with `deno task docs`;
 * `tests/docs_test.ts` fails when either is out of date.
 *
 * @module
 */

import { pluginRows, pluginsMarkdown } from "../pipeline/cli.ts";
import { graphJsonSchema } from "../pipeline/jsonschema.ts";
import { registry } from "./registry.ts";

const root = new URL("../", import.meta.url);
const readmeUrl = new URL("README.md", root);
const readme = await Deno.readTextFile(readmeUrl);
const start = "<!-- plugins:start -->\n";
const end = "<!-- plugins:end -->";
const a = readme.indexOf(start);
const b = readme.indexOf(end);
if (a < 0 || b < a) {
  throw new Error("Cannot update README.md: the plugins section markers are missing");
}
const markdown = pluginsMarkdown(await pluginRows(registry));
await Deno.writeTextFile(readmeUrl, readme.slice(0, a + start.length) + markdown + readme.slice(b));
const schema = JSON.stringify(await graphJsonSchema(registry), null, 2) + "\n";
await Deno.writeTextFile(new URL("configs/graph.schema.json", root), schema);
console.log("Updated README.md (built-in plugins) and configs/graph.schema.json");

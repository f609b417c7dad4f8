// Keeps the README's plugin reference and the editor schema true to the plugins' declarations.
import assert from "node:assert/strict";
import { pluginRows, pluginsMarkdown } from "../pipeline/cli.ts";
import { graphJsonSchema } from "../pipeline/jsonschema.ts";
import { registry } from "../plugins/registry.ts";

const root = new URL("../", import.meta.url);

Deno.test("the README's built-in plugin reference matches the plugins' declarations", async () => {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const section = readme.match(/<!-- plugins:start -->\n([\s\S]*?)<!-- plugins:end -->/);
  assert.ok(section, "README has the plugins section markers");
  const expected = pluginsMarkdown(await pluginRows(registry));
  assert.equal(
    section[1],
    expected,
    "README is out of date: run `deno task docs` to regenerate its plugin reference",
  );
});

Deno.test("configs/graph.schema.json matches the schema generated from the plugins", async () => {
  const committed = JSON.parse(await Deno.readTextFile(new URL("configs/graph.schema.json", root)));
  assert.deepEqual(
    committed,
    await graphJsonSchema(registry),
    "run `deno task docs` to regenerate it",
  );
});

Deno.test("every built-in plugin in the registry loads and declares its name as registered", async () => {
  for (const name of registry.names()) {
    const plugin = await registry.load(name);
    assert.equal(plugin?.name, name);
  }
});

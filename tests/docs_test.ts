// Keeps the README's plugin reference and the editor schema true to the plugins' declarations.
import assert from "node:assert/strict";
import { pluginRows, pluginsMarkdown } from "../pipeline/cli.ts";
import { graphJsonSchema } from "../pipeline/jsonschema.ts";
import { registry } from "../plugins/registry.ts";
import Ajv2020 from "ajv/dist/2020.js";
import { parse } from "yaml";

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

Deno.test("every shipped graph validates against configs/graph.schema.json, and a bad one does not", async () => {
  const schema = JSON.parse(await Deno.readTextFile(new URL("configs/graph.schema.json", root)));
  // Ajv is what editors' YAML language servers use to check files against a schema.
  const Ajv = Ajv2020 as unknown as new (options: object) => {
    compile(schema: object): ((data: unknown) => boolean) & { errors?: unknown[] };
  };
  const validate = new Ajv({ strict: false, allErrors: true }).compile(schema);
  const configs = [...Deno.readDirSync(new URL("configs/", root))]
    .map((e) => e.name)
    .filter((name) => name.endsWith(".yaml"));
  assert.ok(configs.length >= 5);
  for (const name of configs) {
    const graph = parse(await Deno.readTextFile(new URL(`configs/${name}`, root)));
    assert.ok(validate(graph), `${name}: ${JSON.stringify(validate.errors)}`);
  }
  const bad = "stages:\n  a: { use: load/synthetic, with: { count: -1, colour: 1 } }\n";
  assert.equal(validate(parse(bad)), false);
});

import assert from "node:assert/strict";
import { didYouMean, GraphError, loadGraph, parseGraph, toMermaid } from "./graph.ts";
import { toyRegistry } from "./testdata/toy_plugins.ts";
import { formatIssue } from "./yaml.ts";

const dir = new URL("./testdata/", import.meta.url).pathname;

async function issuesOf(file: string, overrides: string[] = []): Promise<string[]> {
  try {
    await loadGraph(`${dir}${file}`, { registry: toyRegistry, overrides });
  } catch (error) {
    assert.ok(error instanceof GraphError, String(error));
    return error.issues.map((issue) => formatIssue(issue).replace(dir, ""));
  }
  throw new Error(`${file} was accepted`);
}

Deno.test("loadGraph() reports every problem of a graph together, with line and column", async () => {
  const issues = await issuesOf("invalid.yaml");
  const expected = [
    "invalid.yaml:2:1 seed: Expected an integer >= 0, received -3",
    'invalid.yaml:3:1 colour: Unknown key "colour". Allowed keys: "name", "description", "seed", "backend", "stages"',
    'invalid.yaml:6:5 stages.load.use: Unknown plugin "toy/numbrs". Did you mean "toy/numbers"?',
    'invalid.yaml:10:7 stages.scale.with.factor: Expected a number >= 0, received "high"',
    'invalid.yaml:11:7 stages.scale.with.speed: Unknown param "speed" for "toy/scale". Allowed params: "factor"',
    'invalid.yaml:13:7 stages.scale.in.numbers: Unknown stage "lod" in "lod.numbers". Did you mean "load"?',
    'invalid.yaml:17:7 stages.total.in.numbers: Stage "scale" has no output "total".',
    "invalid.yaml:22:11 stages.total.with.terms[0].weight: Expected a number >= 0, received -1",
    'invalid.yaml:23:11 stages.total.with.terms[1].use: Expected a reward component plugin, but "toy/scale" is a tokenize stage',
  ];
  for (const want of expected) {
    assert.ok(
      issues.some((got) => got.startsWith(want)),
      `missing: ${want}\ngot:\n${issues.join("\n")}`,
    );
  }
  assert.equal(issues.length, expected.length, issues.join("\n"));
});

Deno.test("loadGraph() rejects a cycle and names its stages", async () => {
  const issues = await issuesOf("cycle.yaml");
  assert.equal(issues.length, 1, issues.join("\n"));
  assert.match(
    issues[0],
    /^cycle\.yaml:\d+:\d+ stages\.\w: Cycle between stages: "a" -> "c" -> "b" -> "a"|"/,
  );
  for (const stage of ['"a"', '"b"', '"c"']) assert.ok(issues[0].includes(stage));
});

Deno.test("loadGraph() rejects a port type mismatch and says both types", async () => {
  const issues = await issuesOf("types.yaml");
  assert.deepEqual(issues, [
    'types.yaml:10:11 stages.wrong.in.numbers: Type mismatch: input "numbers" of "toy/scale" expects "numbers", but "total.total" is "number"',
  ]);
});

Deno.test("loadGraph() reports a missing required input and an unknown input port", async () => {
  const text =
    "stages:\n  a: { use: toy/numbers }\n  b:\n    use: toy/scale\n    in: { numbrs: a.numbers }\n";
  try {
    await parseGraph(text, "inline.yaml", { registry: toyRegistry });
    assert.fail("accepted");
  } catch (error) {
    const issues = (error as GraphError).issues.map(formatIssue);
    assert.ok(
      issues.some((i) =>
        i.startsWith(
          'inline.yaml:5:11 stages.b.in.numbrs: Unknown input "numbrs" for "toy/scale". Did you mean "numbers"?',
        )
      ),
      issues.join("\n"),
    );
    assert.ok(
      issues.some((i) => i.includes('Missing input "numbers" (numbers) for "toy/scale"')),
      issues.join("\n"),
    );
  }
});

Deno.test("loadGraph() applies --set overrides and locates their errors at --set", async () => {
  const graph = await loadGraph(`${dir}chain.yaml`, {
    registry: toyRegistry,
    overrides: ["stages.scale.with.factor=5", "seed=9"],
  });
  assert.equal(graph.stages.find((s) => s.name === "scale")!.params.factor, 5);
  assert.equal(graph.seed, 9);
  const issues = await issuesOf("chain.yaml", ["stages.scale.with.factor=lots"]);
  assert.deepEqual(issues, [
    '--set stages.scale.with.factor=lots stages.scale.with.factor: Expected a number >= 0, received "lots"',
  ]);
});

Deno.test("loadGraph() fills in defaults, resolves components and loads a user plugin by path", async () => {
  const graph = await loadGraph(`${dir}chain.yaml`, { registry: toyRegistry });
  assert.deepEqual(graph.stages.map((s) => s.name), ["load", "scale", "total"]);
  const total = graph.stages[2];
  const terms = total.params.terms as {
    use: string;
    weight: number;
    params: unknown;
    sourceHash?: string;
  }[];
  assert.equal(terms[0].use, "toy/offset");
  assert.deepEqual(terms[0].params, { value: 10 });
  assert.equal(terms[1].use, "./user_offset.ts");
  assert.equal(terms[1].weight, 0.5);
  assert.deepEqual(terms[1].params, { factor: 2 });
  assert.match(terms[1].sourceHash!, /^[0-9a-f]{16}$/);
  assert.deepEqual(total.deps, ["scale", "load"]);
});

Deno.test("loadGraph() validates a loop block and its carried types", async () => {
  const graph = await loadGraph(`${dir}loop.yaml`, { registry: toyRegistry });
  const train = graph.stages.find((s) => s.name === "train")!;
  assert.equal(train.loop!.episodes, 5);
  assert.deepEqual(train.deps, ["start"]);
  assert.deepEqual(train.loop!.carry.value.next, { stage: "add", output: "value" });
  const text = await Deno.readTextFile(`${dir}loop.yaml`);
  const bad = text.replace("next: add.value", "next: add.nothing").replace(
    "episodes: 5",
    "episodes: 0",
  );
  try {
    await parseGraph(bad, `${dir}loop.yaml`, { registry: toyRegistry });
    assert.fail("accepted");
  } catch (error) {
    const issues = (error as GraphError).issues.map((i) => formatIssue(i).replace(dir, ""));
    assert.ok(
      issues.some((i) =>
        i.startsWith(
          "loop.yaml:11:7 stages.train.loop.episodes: Expected an integer >= 1, received 0",
        )
      ),
      issues.join("\n"),
    );
    assert.ok(
      issues.some((i) => i.includes('Stage "add" has no output "nothing"')),
      issues.join("\n"),
    );
  }
});

Deno.test("a stage cannot read a loop body's stages from outside the loop", async () => {
  const text = (await Deno.readTextFile(`${dir}loop.yaml`)).replace(
    "value: train.value }\n    with: { delta: 100 }",
    "value: add.value }\n    with: { delta: 100 }",
  );
  try {
    await parseGraph(text, "loop.yaml", { registry: toyRegistry });
    assert.fail("accepted");
  } catch (error) {
    const issues = (error as GraphError).issues.map(formatIssue);
    assert.ok(
      issues.some((i) => i.includes('Unknown stage "add" in "add.value"')),
      issues.join("\n"),
    );
  }
});

Deno.test("didYouMean() suggests only close names", () => {
  assert.equal(
    didYouMean("reward/harmoney", ["reward/harmony", "reward/rhythm"]),
    ' Did you mean "reward/harmony"?',
  );
  assert.equal(didYouMean("zzz", ["reward/harmony"]), "");
  assert.equal(didYouMean("hidden", ["embedDim", "hiddenDim"]), ' Did you mean "hiddenDim"?');
  assert.equal(didYouMean("d", ["dModel", "dropout"]), "");
});

Deno.test("toMermaid() draws stages, edges and the loop as a subgraph", async () => {
  const graph = await loadGraph(`${dir}loop.yaml`, { registry: toyRegistry });
  const mermaid = toMermaid(graph);
  assert.match(mermaid, /^flowchart TD/);
  assert.match(mermaid, /subgraph train\["train: loop × 5"\]/);
  assert.match(mermaid, /load -->\|numbers → numbers\| start/);
  assert.match(mermaid, /add -.->\|value\| train_in/);
});

Deno.test("one unknown plugin gives one problem, not one more per stage that reads it", async () => {
  // In a loop body: the carried value's "next" reads the broken stage.
  const loop = (await Deno.readTextFile(`${dir}loop.yaml`)).replace(
    "use: toy/step\n",
    "use: toy/stp\n",
  );
  try {
    await parseGraph(loop, "loop.yaml", { registry: toyRegistry });
    assert.fail("accepted");
  } catch (error) {
    const issues = (error as GraphError).issues.map(formatIssue);
    assert.equal(issues.length, 1, issues.join("\n"));
    assert.match(issues[0], /stages\.train\.loop\.stages\.add\.use: Unknown plugin "toy\/stp"/);
  }
  // At the top level: a component used as a stage, and a stage without "use", read by others.
  const text = [
    "stages:",
    "  a: { use: toy/offset }",
    "  b: { with: {} }",
    "  c: { use: toy/sum, in: { numbers: a.numbers, extra: b.numbers } }",
    "",
  ].join("\n");
  try {
    await parseGraph(text, "inline.yaml", { registry: toyRegistry });
    assert.fail("accepted");
  } catch (error) {
    const issues = (error as GraphError).issues.map(formatIssue);
    assert.equal(issues.length, 2, issues.join("\n"));
    assert.match(issues[0], /stages\.a\.use: "toy\/offset" is a reward component, not a stage/);
    assert.match(issues[1], /stages\.b: Missing "use"/);
  }
});

Deno.test("YAML errors: one tab gives one problem, and a duplicate key is named with its path", async () => {
  const tab = "name: x\nstages:\n  a:\n\tuse: toy/numbers\n  b: { use: toy/numbers }\n  c: 1\n";
  try {
    await parseGraph(tab, "tab.yaml", { registry: toyRegistry });
    assert.fail("accepted");
  } catch (error) {
    const issues = (error as GraphError).issues.map(formatIssue);
    assert.equal(issues.length, 1, issues.join("\n"));
    assert.match(issues[0], /^tab\.yaml:4:1: Invalid YAML: Tabs are not allowed as indentation/);
  }
  const dup =
    "name: x\nstages:\n  a: { use: toy/numbers }\n  a: { use: toy/numbers, with: { count: 2 } }\n";
  try {
    await parseGraph(dup, "dup.yaml", { registry: toyRegistry });
    assert.fail("accepted");
  } catch (error) {
    assert.deepEqual((error as GraphError).issues.map(formatIssue), [
      'dup.yaml:4:3 stages.a: Duplicate key "a": it is already defined at line 3 (YAML map keys must be unique)',
    ]);
  }
});

Deno.test("--set suggests the stage meant, and adds params to a component given by name", async () => {
  const issues = await issuesOf("loop.yaml", [
    "stages.lod.with.count=3",
    "stages.train.loop.stages.ad.with.delta=1",
  ]);
  assert.deepEqual(issues, [
    '--set stages.lod.with.count=3 stages.lod: Unknown stage "lod". Did you mean "load"? Stages: "load", "start", "train", "after"',
    '--set stages.train.loop.stages.ad.with.delta=1 stages.train.loop.stages.ad: Unknown stage "ad". Did you mean "add"? Stages: "add"',
  ]);
  // A whole new stage may still be added.
  const added = await loadGraph(`${dir}loop.yaml`, {
    registry: toyRegistry,
    overrides: ["stages.extra={use: toy/numbers}"],
  });
  assert.ok(added.stages.some((s) => s.name === "extra"));
  // `terms: [toy/offset]` by name, then --set terms.0.with.value: the name is kept.
  const text =
    "stages:\n  a: { use: toy/numbers }\n  s: { use: toy/sum, in: { numbers: a.numbers }, with: { terms: [toy/offset] } }\n";
  const graph = await parseGraph(text, "inline.yaml", {
    registry: toyRegistry,
    overrides: ["stages.s.with.terms.0.with.value=4"],
  });
  const terms = graph.stages[1].params.terms as { use: string; params: unknown }[];
  assert.equal(terms[0].use, "toy/offset");
  assert.deepEqual(terms[0].params, { value: 4 });
});

Deno.test("a user plugin cannot take the name of a built-in or of another user plugin", async () => {
  const text = (uses: string[]) =>
    `stages:\n  a: { use: toy/numbers }\n  s:\n    use: toy/sum\n    in: { numbers: a.numbers }\n    with:\n      terms: [${
      uses.join(", ")
    }]\n`;
  const problems = async (uses: string[]) => {
    try {
      await parseGraph(text(uses), `${dir}inline.yaml`, { registry: toyRegistry });
      return [];
    } catch (error) {
      return (error as GraphError).issues.map((i) => i.message);
    }
  };
  assert.deepEqual(await problems(["./user_shadow.ts"]), [
    'Cannot load plugin "./user_shadow.ts": it is named "toy/offset", the name of a built-in plugin; give it a name of its own, e.g. "user/offset"',
  ]);
  assert.deepEqual(await problems(["./user_offset.ts", "./user_offset_copy.ts"]), [
    'Cannot load plugin "./user_offset_copy.ts": it is named "user/offset", like "./user_offset.ts"; give each plugin a name of its own',
  ]);
  assert.deepEqual(await problems(["./user_offset.ts", "user_offset.ts"]), []);
});

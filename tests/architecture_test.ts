// The layering the README promises, read from the import statements of every source file:
// the core (pipeline/) imports no plugin; plugins reach the core only through mod.ts; and no
// plugin folder imports another plugin folder (plugins/<x>/ from plugins/<y>/), only the shared
// libraries whose folder starts with "_" (plugins/_music/, plugins/_tf/), which import no plugin
// folder themselves. Test files, their fixtures and test helpers (`*_test.ts`, `testdata/`,
// `fixtures/`, `_testing.ts`) may cross folders; the files at the top of plugins/ (the
// registry, the docs script, the test context) describe the built-in set as a whole and may
// use the core.
import assert from "node:assert/strict";
import { join, posix, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const SKIPPED = new Set(["node_modules", "runs", ".harmonyrl", ".git"]);

/** One import of one file: its specifier and, for a relative one, the path from the root. */
interface Import {
  specifier: string;
  /** Path of the imported file from the project root ("/"-separated); undefined if not relative. */
  target?: string;
  line: number;
}

const STATIC = new RegExp(
  String.raw`^[ \t]*(?:import|export)(?:\s+type)?\s*` +
    String.raw`(?:\{[^}]*\}|\*\s+as\s+\w+|\*|\w+(?:\s*,\s*(?:\{[^}]*\}|\*\s+as\s+\w+))?)\s*` +
    String.raw`from\s*["']([^"']+)["']`,
  "gm",
);
const SIDE_EFFECT = /^[ \t]*import\s*["']([^"']+)["']/gm;
const DYNAMIC = /\bimport\(\s*["'`]([^"'`$]+)["'`]\s*\)/g;
const WORKER_URL = /\bnew URL\(\s*["']([^"']+\.ts)["']\s*,\s*import\.meta\.url\s*\)/g;

/**
 * The imports of a TypeScript file: static imports and re-exports, side-effect imports, and
 * dynamic imports and worker URLs with a literal path (not inside comments).
 *
 * @param file The file's path from the project root ("/"-separated).
 * @param text The file's text.
 */
function importsOf(file: string, text: string): Import[] {
  const found: Import[] = [];
  const lineAt = (index: number) => text.slice(0, index).split("\n").length;
  const inComment = (index: number) => {
    const start = text.lastIndexOf("\n", index) + 1;
    return /^\s*(\*|\/\/|\/\*)/.test(text.slice(start, index));
  };
  for (const pattern of [STATIC, SIDE_EFFECT, DYNAMIC, WORKER_URL]) {
    for (const match of text.matchAll(pattern)) {
      if (inComment(match.index)) continue;
      const specifier = match[1];
      const target = specifier.startsWith(".")
        ? posix.join(posix.dirname(file), specifier)
        : undefined;
      found.push({ specifier, target, line: lineAt(match.index) });
    }
  }
  return found;
}

/** True for tests, their fixtures and test helpers, which may import across folders. */
function isTestFile(file: string): boolean {
  const parts = file.split("/");
  const name = parts.at(-1)!;
  return name.endsWith("_test.ts") || name === "_testing.ts" ||
    parts.includes("testdata") || parts.includes("fixtures");
}

/** The plugin folder of a file under plugins/ (`reward`, `_music`), or undefined. */
function pluginFolder(file: string): string | undefined {
  const parts = file.split("/");
  return parts[0] === "plugins" && parts.length > 2 ? parts[1] : undefined;
}

/**
 * What breaks the layering in a set of files.
 *
 * @param files Each file's text by its path from the project root ("/"-separated).
 * @returns One message per offending import: `file:line imports "specifier": why`.
 */
function violations(files: Map<string, string>): string[] {
  const problems: string[] = [];
  for (const [file, text] of files) {
    const from = file.split("/")[0];
    const folder = pluginFolder(file);
    const test = isTestFile(file);
    for (const { specifier, target, line } of importsOf(file, text)) {
      if (target === undefined) continue;
      const to = target.split("/")[0];
      const toFolder = pluginFolder(target);
      const where = `${file}:${line} imports "${specifier}"`;
      if (from === "pipeline" && to === "plugins") {
        problems.push(`${where}: the core (pipeline/) must not import plugins`);
      }
      if (test) continue;
      if (folder !== undefined && to === "pipeline") {
        problems.push(`${where}: plugins reach the core only through mod.ts`);
      }
      // A shared library may not import a plugin folder either: that would make it depend
      // upward on one plugin.
      if (
        folder !== undefined && toFolder !== undefined && folder !== toFolder &&
        !toFolder.startsWith("_")
      ) {
        problems.push(
          `${where}: plugins/${folder}/ must not import the plugin folder plugins/${toFolder}/ (move shared code to a plugins/_*/ library)`,
        );
      }
    }
  }
  return problems;
}

/** Every .ts file of the project, by its path from the root ("/"-separated). */
async function sourceFiles(): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(dir)) {
      const path = join(dir, entry.name);
      if (entry.isDirectory && !SKIPPED.has(entry.name)) await walk(path);
      else if (entry.isFile && entry.name.endsWith(".ts")) {
        files.set(relative(root, path).split(sep).join("/"), await Deno.readTextFile(path));
      }
    }
  };
  await walk(resolve(root));
  return files;
}

Deno.test("the core imports no plugin, plugins import the core only through mod.ts, and no plugin folder imports another", async () => {
  const files = await sourceFiles();
  // The walk found the code it checks (a broken walk would pass with nothing to check).
  assert.ok(files.has("pipeline/cli.ts") && files.has("plugins/reward/composite.ts"));
  assert.deepEqual(violations(files), []);
});

Deno.test("violations() reports each kind of bad import with its file and line", () => {
  const files = new Map([
    [
      "pipeline/cli.ts",
      'import { x } from "./plugin.ts";\nawait import("../plugins/registry.ts");\n',
    ],
    ["pipeline/graph_test.ts", 'import { registry } from "../plugins/registry.ts";\n'],
    [
      "plugins/eval/score.ts",
      [
        'import { definePlugin } from "../../mod.ts";',
        'import { createRng } from "../../pipeline/rng.ts";',
        "import {",
        "  stageContext,",
        '} from "../reward/_calibrated.ts";',
        'import type { Piece } from "../_music/types.ts";',
        '// import { no } from "../reward/_critic.ts";',
        ' * import { alsoNo } from "../../pipeline/cache.ts";',
      ].join("\n"),
    ],
    ["plugins/_music/scoring.ts", 'export * from "../_tf/model.ts";\n'],
    ["plugins/_tf/sampler.ts", 'import { x } from "../rollout/sample.ts";\n'],
    ["plugins/reward/_testing.ts", 'import { a } from "../load/_synthetic.ts";\n'],
    ["plugins/registry.ts", 'import type { Plugin } from "../mod.ts";\n'],
  ]);
  assert.deepEqual(violations(files), [
    'pipeline/cli.ts:2 imports "../plugins/registry.ts": the core (pipeline/) must not import plugins',
    'pipeline/graph_test.ts:1 imports "../plugins/registry.ts": the core (pipeline/) must not import plugins',
    'plugins/eval/score.ts:2 imports "../../pipeline/rng.ts": plugins reach the core only through mod.ts',
    'plugins/eval/score.ts:3 imports "../reward/_calibrated.ts": plugins/eval/ must not import the plugin folder plugins/reward/ (move shared code to a plugins/_*/ library)',
    'plugins/_tf/sampler.ts:1 imports "../rollout/sample.ts": plugins/_tf/ must not import the plugin folder plugins/rollout/ (move shared code to a plugins/_*/ library)',
  ]);
});

// Tests that need something a machine may lack (shared data, OpenBLAS, a WebGPU adapter,
// FluidSynth, Chromium) say "(needs ...)" in their names. Without it they must be reported as
// ignored, never as passed: each must be declared as Deno.test({ name, ignore, fn }).
import assert from "node:assert/strict";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

async function testFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(join(root, dir))) {
    const path = join(dir, entry.name);
    if (entry.isDirectory && entry.name !== "node_modules") out.push(...await testFiles(path));
    else if (entry.isFile && entry.name.endsWith("_test.ts")) out.push(path);
  }
  return out;
}

/** Each `Deno.test(` call's text up to its `fn` (or its first 600 characters). */
export function testHeads(source: string): string[] {
  return source.split(/\bDeno\.test\(/).slice(1).map((chunk) => {
    const fn = chunk.search(/\bfn\s*[:(]/);
    return chunk.slice(0, fn >= 0 && fn < 600 ? fn : 600);
  });
}

/** Problems with tests that need something: each must be an object with `ignore`. */
export function needsProblems(source: string): string[] {
  const problems: string[] = [];
  for (const head of testHeads(source)) {
    if (!/\(needs /.test(head) && !/\$\{[^}]*note\}/.test(head)) {
      continue;
    }
    const name = head.match(/["'`]([^"'`]*)["'`]/)?.[1] ?? head.slice(0, 60);
    if (!head.trimStart().startsWith("{")) {
      problems.push(`"${name}" needs something but is not declared as { name, ignore, fn }`);
    } else if (!/\bignore\s*:/.test(head)) {
      problems.push(`"${name}" needs something but has no "ignore" condition`);
    }
  }
  return problems;
}

Deno.test("needsProblems() finds a test that needs something and cannot be ignored", () => {
  assert.deepEqual(needsProblems('Deno.test("x (needs OpenBLAS)", () => {});'), [
    '"x (needs OpenBLAS)" needs something but is not declared as { name, ignore, fn }',
  ]);
  assert.deepEqual(needsProblems('Deno.test({ name: "y (needs chromium)", fn: () => {} });'), [
    '"y (needs chromium)" needs something but has no "ignore" condition',
  ]);
  assert.deepEqual(
    needsProblems('Deno.test({ name: "z (needs chromium)", ignore: !has, fn: () => {} });'),
    [],
  );
  assert.deepEqual(needsProblems('Deno.test("plain", () => {});'), []);
});

Deno.test("every test that needs something is ignored when it is missing, never passed", async () => {
  const files = [
    ...await testFiles("pipeline"),
    ...await testFiles("plugins"),
    ...await testFiles("tests"),
    ...await testFiles("bench").catch(() => []),
  ];
  assert.ok(files.length > 20, `only ${files.length} test files found`);
  const problems: string[] = [];
  let needing = 0;
  // This file's own examples are not tests that need anything.
  for (const file of files.filter((f) => !f.endsWith("needs_test.ts"))) {
    const source = await Deno.readTextFile(join(root, file));
    needing += testHeads(source).filter((h) => /\(needs /.test(h)).length;
    for (const problem of needsProblems(source)) {
      problems.push(`${file}: ${problem}`);
    }
  }
  assert.ok(needing >= 10, `only ${needing} tests say what they need`);
  assert.deepEqual(problems, []);
});

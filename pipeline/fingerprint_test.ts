import assert from "node:assert/strict";
import { explainChange, explainSources, type KeyParts } from "./cache.ts";
import { fingerprintFiles } from "./fingerprint.ts";

Deno.test("fingerprintFiles() gives size and modification time per file, sorted, and marks missing ones", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/sub`);
    await Deno.writeTextFile(`${dir}/sub/b.txt`, "abc");
    await Deno.writeTextFile(`${dir}/a.txt`, "hello");
    const when = new Date(1_700_000_000_000);
    await Deno.utime(`${dir}/a.txt`, when, when);
    const all = await fingerprintFiles(dir);
    assert.deepEqual(Object.keys(all), ["a.txt", "sub/b.txt"]);
    assert.equal(all["a.txt"], "5:1700000000000");
    assert.match(all["sub/b.txt"], /^3:\d+$/);
    assert.deepEqual(await fingerprintFiles(dir, ["gone.txt", "a.txt"]), {
      "a.txt": "5:1700000000000",
      "gone.txt": "missing",
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("explainSources() names added, changed and removed files, three by name", () => {
  assert.equal(explainSources({ a: "1:1" }, { a: "1:1" }), "");
  assert.equal(
    explainSources({ a: "1:1", b: "2:2" }, { a: "1:5", c: "3:3" }),
    'files changed: added "c"; changed "a"; removed "b"',
  );
  const many = Object.fromEntries(["1", "2", "3", "4", "5"].map((k) => [k, "0:0"]));
  assert.equal(explainSources({}, many), 'files changed: added "1", "2", "3" and 2 more');
  assert.equal(explainSources({ a: [1] }, { a: [2] }), "what the stage reads changed");
  const parts: KeyParts = { plugin: "p", version: "1", params: {}, inputs: {}, seed: 1 };
  assert.equal(
    explainChange({ ...parts, sources: { a: "1:1" } }, { ...parts, sources: {} }),
    'files changed: removed "a"',
  );
});

import assert from "node:assert/strict";
import { checkIndex, readBlock, readIndex, writeBlocks } from "./binary_codec.ts";

const FORMAT = { format: "harmonyrl/thing", version: 1, aliases: ["harmonyrl-thing"] };

Deno.test("writeBlocks() and readBlock() round-trip typed arrays next to their index", async () => {
  const dir = await Deno.makeTempDir();
  const values = Float64Array.of(0.1, -2, 1e300);
  const bytes = Uint8Array.of(1, 2, 255);
  await writeBlocks(dir, { ...FORMAT, count: 3 }, { "values.f64": values, "bytes.u8": bytes });
  const index = await readIndex<typeof FORMAT & { count: number }>(dir, FORMAT, "Cannot load");
  assert.equal(index.count, 3);
  const where = "Cannot load thing";
  const back = await readBlock(dir, { name: "values.f64", type: Float64Array, items: 3 }, where);
  assert.ok(back instanceof Float64Array);
  assert.deepEqual(Array.from(back), Array.from(values));
  assert.deepEqual(
    await readBlock(dir, { name: "bytes.u8", type: Uint8Array, items: 3 }, where),
    bytes,
  );
  await assert.rejects(
    () => readBlock(dir, { name: "values.f64", type: Float64Array, items: 4 }, where),
    /^Error: Cannot load thing: "values.f64" holds 24 bytes, expected 32 \(8 x 4\) as "index.json" says$/,
  );
  await assert.rejects(
    () => readBlock(dir, { name: "gone.f32", type: Float32Array, items: 0 }, where),
    /^Error: Cannot load thing: cannot read "gone.f32"/,
  );
  await Deno.remove(dir, { recursive: true });
});

Deno.test("readIndex() accepts a format's old names and refuses other formats and versions", async () => {
  const dir = await Deno.makeTempDir();
  const where = "Cannot load thing";
  await Deno.writeTextFile(
    `${dir}/index.json`,
    JSON.stringify({ format: "harmonyrl-thing", version: 1 }),
  );
  assert.equal((await readIndex(dir, FORMAT, where)).format, "harmonyrl-thing");
  await Deno.writeTextFile(
    `${dir}/index.json`,
    JSON.stringify({ format: "harmonyrl-other", version: 1 }),
  );
  await assert.rejects(
    () => readIndex(dir, FORMAT, where),
    /^Error: Cannot load thing: "index.json" is not a harmonyrl\/thing index of version 1 \(found format "harmonyrl-other", version 1\)$/,
  );
  await Deno.writeTextFile(`${dir}/index.json`, "not json");
  await assert.rejects(() => readIndex(dir, FORMAT, where), /"index.json" is missing or not JSON/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("checkIndex() refuses a known name at another version", () => {
  assert.equal(checkIndex({ format: "harmonyrl/thing", version: 1 }, FORMAT, "x").version, 1);
  assert.throws(
    () => checkIndex({ format: "harmonyrl-thing", version: 2 }, FORMAT, 'Cannot read "a.ckpt"'),
    /^Error: Cannot read "a.ckpt": the index is not a harmonyrl\/thing index of version 1 \(found format "harmonyrl-thing", version 2\)$/,
  );
  assert.throws(() => checkIndex(null, FORMAT, "x"), /found format undefined, version undefined/);
});

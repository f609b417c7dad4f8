import assert from "node:assert/strict";
import type { TokenCorpus } from "./components.ts";
import { buildTokenCorpus, sequencesOf, splitCounts, tokenCorpusCodec } from "./token_corpus.ts";

function sample(): TokenCorpus {
  return buildTokenCorpus(
    { tokenizer: { use: "tokenizer/performance", with: { timeShiftMs: 10 } }, vocabSize: 391 },
    [
      { id: "a", split: "train", tokens: [389, 60, 300, 188, 390] },
      { id: "b", split: "validation", tokens: [389, 390] },
      { id: "c", split: "train", tokens: Int32Array.from([389, 62, 256, 190, 390]) },
    ],
  );
}

Deno.test("buildTokenCorpus() concatenates sequences and sequencesOf() splits them again", () => {
  const corpus = sample();
  assert.deepEqual(Array.from(corpus.offsets), [0, 5, 7, 12]);
  assert.equal(corpus.tokens.length, 12);
  assert.deepEqual(sequencesOf(corpus, "train").map((s) => Array.from(s)), [
    [389, 60, 300, 188, 390],
    [389, 62, 256, 190, 390],
  ]);
  assert.deepEqual(sequencesOf(corpus, "validation").map((s) => s.length), [2]);
  assert.deepEqual(sequencesOf(corpus, "test"), []);
  assert.equal(sequencesOf(corpus).length, 3);
  assert.deepEqual(splitCounts(corpus.splits), { train: 2, validation: 1, test: 0 });
});

Deno.test("tokenCorpusCodec saves raw little-endian arrays and loads them back", async () => {
  const dir = await Deno.makeTempDir();
  const corpus = sample();
  await tokenCorpusCodec.save(corpus, dir);
  const bytes = await Deno.readFile(`${dir}/tokens.i32`);
  assert.equal(bytes.length, 48);
  assert.deepEqual(Array.from(bytes.subarray(0, 8)), [0x85, 0x01, 0, 0, 60, 0, 0, 0]); // 389, 60
  assert.equal((await Deno.readFile(`${dir}/offsets.u32`)).length, 16);
  const index = JSON.parse(await Deno.readTextFile(`${dir}/index.json`));
  assert.deepEqual(index.counts, { train: 2, validation: 1, test: 0 });
  assert.equal(index.vocabSize, 391);
  const back = await tokenCorpusCodec.load(dir);
  assert.deepEqual(back.tokenizer, corpus.tokenizer);
  assert.deepEqual(Array.from(back.tokens), Array.from(corpus.tokens));
  assert.deepEqual(Array.from(back.offsets), Array.from(corpus.offsets));
  assert.deepEqual(back.ids, ["a", "b", "c"]);
  assert.deepEqual(back.splits, ["train", "validation", "train"]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("tokenCorpusCodec.load() names the corrupt file", async () => {
  const dir = await Deno.makeTempDir();
  await tokenCorpusCodec.save(sample(), dir);
  const tokens = await Deno.readFile(`${dir}/tokens.i32`);
  await Deno.writeFile(`${dir}/tokens.i32`, tokens.subarray(0, 46));
  await assert.rejects(
    tokenCorpusCodec.load(dir),
    new RegExp(`Cannot load token corpus from "${dir}": "tokens.i32" holds 46 bytes, expected 48`),
  );
  await Deno.writeFile(`${dir}/tokens.i32`, tokens);

  const offsets = await Deno.readFile(`${dir}/offsets.u32`);
  const bad = new Uint32Array([0, 7, 5, 12]);
  await Deno.writeFile(`${dir}/offsets.u32`, new Uint8Array(bad.buffer));
  await assert.rejects(tokenCorpusCodec.load(dir), /"offsets.u32" decreases at sequence 1 \("b"\)/);
  await Deno.writeFile(`${dir}/offsets.u32`, offsets);

  const outside = new Int32Array(tokens.buffer.slice(0));
  outside[3] = 391;
  await Deno.writeFile(`${dir}/tokens.i32`, new Uint8Array(outside.buffer));
  await assert.rejects(
    tokenCorpusCodec.load(dir),
    /"tokens.i32" holds token 391 at position 3, outside the vocabulary 0..390/,
  );

  await Deno.writeTextFile(`${dir}/index.json`, "{");
  await assert.rejects(tokenCorpusCodec.load(dir), /"index.json" is missing or not JSON/);
  await Deno.remove(`${dir}/index.json`);
  await assert.rejects(tokenCorpusCodec.load(dir), /"index.json" is missing or not JSON/);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("tokenCorpusCodec.save() refuses an inconsistent corpus", async () => {
  const corpus = { ...sample(), ids: ["a", "b"] };
  await assert.rejects(
    tokenCorpusCodec.save(corpus, "/nonexistent"),
    /Cannot save token corpus to "\/nonexistent": "offsets.u32" describes 3 sequences but "index.json" has 2 ids and 3 splits/,
  );
});

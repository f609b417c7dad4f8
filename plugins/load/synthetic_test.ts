import assert from "node:assert/strict";
import { defaultParams, testContext } from "../_testing.ts";
import { checkValue } from "../../pipeline/schema.ts";
import type { MidiCorpus } from "../_music/types.ts";
import { midiCorpusCodec } from "../_music/corpus_codec.ts";
import plugin, { isValidationIndex } from "./synthetic.ts";

async function generate(seed: number, overrides: Record<string, unknown> = {}) {
  const out = await plugin.run(
    testContext({ seed }),
    {},
    defaultParams(plugin, overrides) as never,
  );
  return out.corpus as MidiCorpus;
}

Deno.test("load/synthetic gives the same pieces for the same seed and others for another", async () => {
  const a = await generate(3, { count: 12 });
  const b = await generate(3, { count: 12 });
  const c = await generate(4, { count: 12 });
  assert.deepEqual(a, b);
  assert.notDeepEqual(a.pieces.map((p) => p.notes), c.pieces.map((p) => p.notes));
  // Pieces are drawn in order, so a smaller count gives a prefix of the same corpus.
  const short = await generate(3, { count: 5 });
  assert.deepEqual(short.pieces.map((p) => p.notes), a.pieces.slice(0, 5).map((p) => p.notes));
});

Deno.test("load/synthetic splits as requested and honours bars and tempo", async () => {
  const corpus = await generate(1, {
    count: 40,
    bars: 4,
    validationShare: 0.25,
    tempoMin: 100,
    tempoMax: 100,
  });
  assert.equal(corpus.pieces.length, 40);
  assert.equal(corpus.pieces.filter((p) => p.split === "validation").length, 10);
  assert.equal(corpus.pieces.filter((p) => p.split === "train").length, 30);
  assert.deepEqual(corpus.skipped, []);
  assert.equal(new Set(corpus.pieces.map((p) => p.id)).size, 40);
  assert.equal(corpus.pieces[7].id, "synthetic-00007");
  for (const piece of corpus.pieces) {
    assert.equal(piece.tempoBpm, 100);
    assert.equal(piece.beatsSec.length, 4 * piece.beatsPerBar);
    assert.equal(piece.beatsSec[1], 0.6);
  }
});

Deno.test("isValidationIndex() picks floor(count * share) evenly spread indices", () => {
  const pick = (count: number, share: number) =>
    Array.from({ length: count }, (_, i) => i).filter((i) => isValidationIndex(i, share));
  assert.deepEqual(pick(20, 0.1), [9, 19]);
  assert.deepEqual(pick(10, 0), []);
  assert.equal(pick(10, 1).length, 10);
  assert.equal(pick(100, 0.29).length, 29);
});

Deno.test("load/synthetic output survives the midi-corpus codec", async () => {
  const corpus = await generate(2, { count: 6 });
  const dir = await Deno.makeTempDir();
  try {
    await plugin.outputs.corpus.codec!.save(corpus, dir);
    assert.deepEqual(await midiCorpusCodec.load(dir), corpus);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("load/synthetic rejects invalid params", async () => {
  assert.notDeepEqual(checkValue(plugin.params.count, 0), []);
  assert.notDeepEqual(checkValue(plugin.params.validationShare, 1.5), []);
  await assert.rejects(
    () => generate(1, { tempoMin: 140, tempoMax: 90 }),
    /"tempoMax" \(90\) is below "tempoMin" \(140\)/,
  );
});

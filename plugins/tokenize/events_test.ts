import assert from "node:assert/strict";
import { createRng } from "../../pipeline/rng.ts";
import { defaultParams, testContext } from "../_testing.ts";
import type { TokenCorpus, Tokenizer } from "../_music/components.ts";
import { writeMidi } from "../_music/midi.ts";
import { generateSyntheticPiece } from "../load/_synthetic.ts";
import { sequencesOf, tokenCorpusCodec } from "../_music/token_corpus.ts";
import type { MidiCorpus, Split } from "../_music/types.ts";
import { createPerformanceTokenizer } from "../tokenizer/performance.ts";
import { createRemiTokenizer } from "../tokenizer/remi.ts";
import plugin, { packPieces, tokenizeCorpus, tokenizeFiles, unpackPieces } from "./events.ts";

const SPLITS: Split[] = ["train", "validation", "test"];

function syntheticCorpus(count: number, bars = 8): MidiCorpus {
  const rng = createRng(11);
  const pieces = Array.from({ length: count }, (_, i) => ({
    ...generateSyntheticPiece(rng, { id: `piece-${i}`, bars }).piece,
    split: SPLITS[i % 3],
  }));
  return { pieces, skipped: [] };
}

Deno.test("tokenize/events encodes every piece and keeps its id and split, with or without workers", async () => {
  // Enough notes for several batches, so both workers get work.
  const corpus = syntheticCorpus(40, 64);
  const tokenizer = createPerformanceTokenizer();
  const inThread = testContext();
  const one = await plugin.run(
    inThread,
    { corpus },
    defaultParams(plugin, { tokenizer, workers: 1 }) as never,
  );
  const progress: number[] = [];
  const twoContext = { ...testContext(), progress: (u: { done: number }) => progress.push(u.done) };
  const two = await plugin.run(
    twoContext,
    { corpus },
    defaultParams(plugin, { tokenizer, workers: 2 }) as never,
  );
  const a = one.tokens as TokenCorpus;
  const b = two.tokens as TokenCorpus;
  assert.deepEqual(a.ids, corpus.pieces.map((piece) => piece.id));
  assert.deepEqual(a.splits, corpus.pieces.map((piece) => piece.split));
  assert.deepEqual(a.tokenizer, { use: "tokenizer/performance", with: tokenizer.spec!.with });
  assert.equal(a.vocabSize, 391);
  // Each sequence is exactly the tokenizer's encoding of its piece.
  corpus.pieces.forEach((piece, i) => {
    assert.deepEqual(sequencesOf(a)[i], tokenizer.encode(piece));
  });
  assert.deepEqual(b.ids, a.ids);
  assert.deepEqual(b.splits, a.splits);
  assert.deepEqual(b.offsets, a.offsets);
  assert.deepEqual(b.tokens, a.tokens);
  assert.ok(progress.length >= 2 && progress[progress.length - 1] === 40, `progress ${progress}`);
  assert.ok(!inThread.logs.some((log) => log.level === "warn"));
  assert.equal(plugin.outputs.tokens.codec, tokenCorpusCodec);
});

Deno.test("tokenize/events falls back to one thread for a tokenizer without spec and skips pieces it cannot encode", async () => {
  const inner = createRemiTokenizer();
  const fussy: Tokenizer = {
    name: "test/fussy",
    vocabSize: inner.vocabSize,
    special: inner.special,
    encode(piece) {
      if (piece.id === "piece-1") throw new Error("Cannot encode: too fussy");
      return inner.encode(piece);
    },
    decode: inner.decode,
    tokenName: inner.tokenName,
  };
  const ctx = testContext();
  const out = await plugin.run(
    ctx,
    { corpus: syntheticCorpus(3) },
    { tokenizer: fussy, workers: 2 } as never,
  );
  const tokens = out.tokens as TokenCorpus;
  assert.deepEqual(tokens.ids, ["piece-0", "piece-2"]);
  assert.deepEqual(tokens.tokenizer, { use: "test/fussy", with: {} });
  const warnings = ctx.logs.filter((log) => log.level === "warn").map((log) => log.message);
  assert.deepEqual(warnings, [
    'Tokenizing in one thread: tokenizer "test/fussy" carries no spec, so workers cannot rebuild it',
    'Skipped "piece-1": Cannot encode: too fussy',
  ]);
});

Deno.test("tokenizeFiles() reads and tokenizes in workers and reports unreadable files", async () => {
  const dir = await Deno.makeTempDir();
  const corpus = syntheticCorpus(6);
  const paths: string[] = [];
  for (const piece of corpus.pieces) {
    const path = `${dir}/${piece.id}.mid`;
    await Deno.writeFile(path, writeMidi(piece));
    paths.push(path);
  }
  await Deno.writeFile(`${dir}/broken.mid`, new TextEncoder().encode("not a MIDI file at all"));
  paths.splice(2, 0, `${dir}/broken.mid`);
  const spec = { use: "tokenizer/remi", with: { stepsPerBeat: 8 } };
  const ctx = testContext();
  const tokenizer = await ctx.component<Tokenizer>(spec, "tokenizer");
  const module = await ctx.componentSpec(spec, "tokenizer");
  const fallbacks: string[] = [];
  const two = await tokenizeFiles(
    paths.map((path, i) => ({ path, split: i === 0 ? "test" as const : undefined })),
    tokenizer,
    {
      workers: 2,
      worker: { url: module.url!, spec: module.spec },
      onFallback: (reason) => fallbacks.push(reason),
    },
  );
  const one = await tokenizeFiles(paths, tokenizer, { workers: 1 });
  assert.deepEqual(fallbacks, []);
  assert.deepEqual(two.corpus.ids, corpus.pieces.map((piece) => piece.id));
  assert.deepEqual(two.corpus.splits, ["test", "train", "train", "train", "train", "train"]);
  assert.equal(two.skipped.length, 1);
  assert.equal(two.skipped[0].file, `${dir}/broken.mid`);
  assert.match(two.skipped[0].reason, /^not a Standard MIDI File/);
  assert.equal(two.noteCount, corpus.pieces.reduce((sum, piece) => sum + piece.notes.length, 0));
  assert.deepEqual(two.corpus.tokens, one.corpus.tokens);
  assert.equal(two.corpus.tokenizer.with.stepsPerBeat, 8);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("tokenizeCorpus() stops when aborted", async () => {
  const controller = new AbortController();
  controller.abort();
  await assert.rejects(
    tokenizeCorpus(syntheticCorpus(3).pieces, createPerformanceTokenizer(), {
      workers: 1,
      signal: controller.signal,
    }),
    /Cannot finish tokenizing: the run was aborted/,
  );
});

Deno.test("ctx.component() builds tokenizers by name with defaults filled in and rejects wrong specs", async () => {
  const ctx = testContext();
  const remi = await ctx.component<Tokenizer>(
    { use: "tokenizer/remi", with: { stepsPerBeat: 2 } },
    "tokenizer",
  );
  assert.equal(remi.vocabSize, createRemiTokenizer({ stepsPerBeat: 2 }).vocabSize);
  const standard = await ctx.component<Tokenizer>("tokenizer/performance", "tokenizer");
  assert.equal(standard.vocabSize, createPerformanceTokenizer().vocabSize);
  const { spec } = await ctx.componentSpec({ use: "tokenizer/remi" }, "tokenizer");
  assert.equal(spec.with.stepsPerBeat, createRemiTokenizer().params.stepsPerBeat);
  await assert.rejects(
    ctx.component({ use: "tokenizer/nope" }, "tokenizer"),
    /^Error: Cannot create tokenizer "tokenizer\/nope": Unknown plugin "tokenizer\/nope"$/,
  );
  await assert.rejects(
    ctx.component({ use: "model/lstm" }, "tokenizer"),
    /Cannot create tokenizer "model\/lstm": it is a model component, not a tokenizer component/,
  );
  await assert.rejects(
    ctx.component({ use: "tokenizer/remi", with: { stepsPerBeat: "many" } }, "tokenizer"),
    /Cannot create tokenizer "tokenizer\/remi": stepsPerBeat: Expected an integer/,
  );
  await assert.rejects(
    ctx.component({ use: "tokenizer/remi", with: { steps: 2 } }, "tokenizer"),
    /Cannot create tokenizer "tokenizer\/remi": unknown param "steps"/,
  );
});

Deno.test("packPieces() and unpackPieces() keep notes and beats", () => {
  const pieces = syntheticCorpus(2).pieces.map(({ split: _split, ...piece }) => piece);
  const back = unpackPieces(packPieces(pieces));
  assert.deepEqual(back, pieces.map(({ source: _source, ...piece }) => piece));
});

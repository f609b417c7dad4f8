/**
 * Reward sanity table: mean score of every reward term (default graph's terms,
 * calibrated on a reference corpus) for held-out real excerpts, copies of
 * train excerpts, degenerate pieces and uniform random tokens.
 *
 *   deno run -A bench/score_table.ts synthetic
 *   deno run -A bench/score_table.ts maestro ../shared/data/maestro-v3.0.0
 *
 * @module
 */

import { createRng } from "../pipeline/rng.ts";
import { defaultParams, testContext } from "../plugins/_testing.ts";
import type { RewardTerm } from "../plugins/_music/components.ts";
import type { MidiCorpus, Piece } from "../plugins/_music/types.ts";
import { cropPiece, pieceEndSec } from "../plugins/_music/theory.ts";
import { corpusContext, scoreWithTerms } from "../plugins/_music/scoring.ts";
import { registry } from "../plugins/registry.ts";
import { DEGENERATE_KINDS, degeneratePiece } from "../tests/_degenerate.ts";
import type { ComponentPlugin } from "../mod.ts";

const TERMS = [
  "reward/harmony",
  "reward/rhythm",
  "reward/novelty",
  "reward/smoothness",
  "reward/corpus-match",
];

async function term(name: string): Promise<RewardTerm> {
  const plugin = (await registry.load(name)) as ComponentPlugin;
  return plugin.create(defaultParams(plugin) as never) as RewardTerm;
}

async function loadCorpus(kind: string, dir?: string): Promise<MidiCorpus> {
  const name = kind === "maestro" ? "load/maestro" : "load/synthetic";
  const plugin = (await registry.load(name))!;
  const params = kind === "maestro"
    ? defaultParams(plugin, { dir, limit: Number(Deno.env.get("LIMIT") ?? 200) })
    : defaultParams(plugin, { count: 160, bars: 8, tempoMin: 120, tempoMax: 120 });
  const ctx = testContext({ seed: 42 });
  // deno-lint-ignore no-explicit-any
  const out = await (plugin as any).run(ctx, {}, params);
  return out.corpus as MidiCorpus;
}

function excerpts(pieces: readonly Piece[], count: number, sec: number, seed: number): Piece[] {
  const rng = createRng(seed);
  // Each piece once before any twice, so a set is as varied as the corpus allows.
  const order = pieces.map((_, i) => i).sort(() => rng.next() - 0.5);
  return Array.from({ length: count }, (_, i) => {
    const p = pieces[order[i % order.length]];
    const start = rng.next() * Math.max(0, pieceEndSec(p.notes) - sec);
    return { ...cropPiece(p, { startSec: start, durationSec: sec }), id: `x${i}` };
  });
}

const [kind = "synthetic", dir] = Deno.args;
const sec = Number(Deno.env.get("SEC") ?? 8);
const corpus = await loadCorpus(kind, dir);
const terms = await Promise.all(
  TERMS.map(async (name) => ({ name, weight: 1, component: await term(name) })),
);
const context = corpusContext(corpus);
const train = corpus.pieces.filter((p) => p.split === "train");
const held = corpus.pieces.filter((p) => p.split !== "train");
const sets: Record<string, Piece[]> = {
  "real (held out)": excerpts(held, 32, sec, 1),
  "copies of train": excerpts(train, 32, sec, 2),
};
const rng = createRng(3);
for (const k of DEGENERATE_KINDS) {
  sets[k] = Array.from(
    { length: 32 },
    (_, i) => degeneratePiece(k, { rng, durationSec: sec, id: `${k}-${i}` }),
  );
}
const rows: string[] = [];
const t0 = performance.now();
for (const [name, pieces] of Object.entries(sets)) {
  const r = scoreWithTerms(pieces, terms, context, { minNotes: 16 });
  const m = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  rows.push(
    `| ${name} | ${m(r.total).toFixed(3)} | ${
      Object.values(r.terms).map((v) => m(v).toFixed(3)).join(" | ")
    } |`,
  );
}
console.log(`| set | total | ${TERMS.map((t) => t.split("/")[1]).join(" | ")} |`);
console.log(`| --- | --- | ${TERMS.map(() => "---").join(" | ")} |`);
console.log(rows.join("\n"));
console.log(`scored in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

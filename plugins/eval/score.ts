/**
 * `eval/score` stage: scores every piece of a corpus (any split) with the
 * reward terms, calibrated on a reference corpus, and writes `scores.json`
 * into the run directory: one entry per piece, `{id, total, <term>: score}`,
 * plus `scores.md`, the mean of every term.
 *
 * It is the reward's sanity check: run it on real music and on music you
 * suspect (a policy's samples, loops, noise) and see which ranks first. The
 * terms, weights and length guard are those of `reward/composite`, so the same
 * list in YAML gives the same scores a policy is trained on.
 *
 * @module
 */

import { join } from "node:path";
import { definePlugin, p, port } from "../../mod.ts";
import { writeFileAtomic } from "../../mod.ts";
import type { Critic } from "../_music/artifacts.ts";
import type { MidiCorpus } from "../_music/types.ts";
import { DEFAULT_TERMS, scoreWithTerms, stageContext } from "../_music/scoring.ts";

/** One entry of `scores.json`. */
export type PieceScore = { id: string; total: number } & Record<string, number | string>;

export default definePlugin({
  name: "eval/score",
  kind: "eval",
  version: "1.0.0",
  description:
    "Scores every piece of a corpus with calibrated reward terms and writes scores.json (per piece: id, total, each term)",
  params: {
    terms: p.components({
      kind: "reward",
      default: DEFAULT_TERMS,
      minItems: 1,
      description: "Reward terms and their weights (>= 0), as in reward/composite",
    }),
    minNotes: p.integer({
      default: 16,
      min: 0,
      description:
        "Length guard, as in reward/composite: fewer notes scale the total by notes / minNotes",
    }),
    excerptsPerBucket: p.integer({
      default: 192,
      min: 16,
      description: "Real excerpts per length bucket that the terms are calibrated on",
    }),
    batchSize: p.integer({
      default: 32,
      min: 1,
      description:
        "Pieces scored together (batch-level parts such as novelty's variety compare pieces within a batch)",
    }),
  },
  inputs: {
    pieces: port<MidiCorpus>({
      type: "midi-corpus",
      description: "The pieces to score (every split)",
    }),
    corpus: port<MidiCorpus>({
      type: "midi-corpus",
      description: "The reference corpus the terms are calibrated on",
    }),
    critic: port<Critic>({
      type: "critic",
      description: "A trained critic for learned reward terms",
      optional: true,
    }),
  },
  outputs: {
    scores: { type: "metrics", description: "Mean of the total and of each term" },
  },
  async run(ctx, inputs, params) {
    const pieces = inputs.pieces.pieces;
    if (pieces.length === 0) throw new Error('Cannot score pieces: input "pieces" is empty');
    const context = stageContext(ctx, inputs, params.excerptsPerBucket);
    const entries: PieceScore[] = [];
    for (let start = 0; start < pieces.length; start += params.batchSize) {
      if (ctx.signal.aborted) throw new Error("Interrupted");
      const batch = pieces.slice(start, start + params.batchSize);
      const rewards = scoreWithTerms(batch, params.terms, context, { minNotes: params.minNotes });
      batch.forEach((piece, i) => {
        const entry: PieceScore = { id: piece.id, total: rewards.total[i] };
        for (const [key, scores] of Object.entries(rewards.terms)) entry[key] = scores[i];
        entries.push(entry);
      });
      ctx.progress({ done: start + batch.length, total: pieces.length, unit: "pieces" });
    }
    const keys = Object.keys(entries[0]).filter((key) => key !== "id");
    const means: Record<string, number> = {};
    for (const key of keys) {
      means[key] = entries.reduce((sum, e) => sum + (e[key] as number), 0) / entries.length;
    }
    const table = [
      `| pieces | ${keys.join(" | ")} |`,
      `| --- | ${keys.map(() => "---").join(" | ")} |`,
      `| ${entries.length} | ${keys.map((key) => means[key].toFixed(3)).join(" | ")} |`,
    ].join("\n");
    await writeFileAtomic(join(ctx.runDir, "scores.json"), JSON.stringify(entries, null, 2));
    await writeFileAtomic(join(ctx.runDir, "scores.md"), `${table}\n`);
    ctx.log.info(`Scored ${entries.length} pieces; means:\n${table}`);
    return { scores: means };
  },
});

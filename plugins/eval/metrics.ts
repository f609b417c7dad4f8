/**
 * `eval/metrics` stage: objective metrics of real and generated music.
 *
 * For each set given (real validation pieces, pretrained, finetuned and
 * refined samples) it reports the mean of the per-piece metrics of
 * `plugins/_music/metrics.ts` (MusPy and RL Tuner metrics) and the distinct
 * 4-gram ratio of the set. For each generated set it reports the Yang & Lerch
 * (2018) comparison with the real set: per feature, the overlapped area and
 * KL divergence between the real set's intra-set distances and the real–
 * generated inter-set distances.
 *
 * Real performances run for minutes while samples run for seconds, and most
 * features (note count, pitch range) grow with length. So every piece is cut
 * to `cropSec` seconds first: generated pieces from their start, real pieces
 * at a random offset (seeded), since a sample is not the opening of a piece.
 *
 * Writes `eval_metrics.json` and a readable `eval_metrics.md` into the run directory.
 *
 * @module
 */

import { definePlugin, p, port, type StageContext } from "../../mod.ts";
import { compareSets, setMetrics, YANG_LERCH_FEATURES } from "../_music/metrics.ts";
import { cropPiece, pieceEndSec } from "../_music/theory.ts";
import type { MidiCorpus, Piece } from "../_music/types.ts";

/** What the `metrics` output holds. */
export interface MetricsReport {
  /** Per set (`real`, `pretrained`, ...): metric name to value. */
  sets: Record<string, Record<string, number>>;
  /** Per comparison (`realVsPretrained`, ...): feature to overlapped area and KL divergence. */
  comparisons: Record<string, Record<string, { overlap: number; kl: number }>>;
}

const GENERATED_SETS = ["pretrained", "finetuned", "refined"] as const;

function isPiece(value: unknown): value is Piece {
  const piece = value as Piece;
  return typeof piece === "object" && piece !== null && Array.isArray(piece.notes) &&
    Array.isArray(piece.beatsSec) &&
    piece.notes.every((n) =>
      Number.isFinite(n?.pitch) && Number.isFinite(n?.startSec) && Number.isFinite(n?.endSec)
    );
}

/** Valid pieces of an input; each invalid one is reported and skipped. */
function validPieces(ctx: StageContext, input: string, values: unknown): Piece[] {
  if (!Array.isArray(values)) {
    throw new Error(`Cannot evaluate input "${input}": expected a list of pieces`);
  }
  return values.filter((value, i) => {
    if (isPiece(value)) return true;
    const id = (value as Piece)?.id ?? `#${i}`;
    ctx.log.warn(
      `Skipping piece ${JSON.stringify(id)} of input "${input}": it has no valid notes or beats`,
    );
    return false;
  });
}

/** At most `max` pieces, a seeded random choice kept in input order. */
function subset(ctx: StageContext, pieces: Piece[], max: number): Piece[] {
  if (pieces.length <= max) return pieces;
  const index = pieces.map((_, i) => i);
  for (let i = 0; i < max; i++) {
    const j = i + ctx.rng.int(index.length - i);
    [index[i], index[j]] = [index[j], index[i]];
  }
  return index.slice(0, max).sort((a, b) => a - b).map((i) => pieces[i]);
}

function crop(ctx: StageContext, piece: Piece, cropSec: number, randomStart: boolean): Piece {
  if (cropSec <= 0) return piece;
  const spare = Math.max(0, pieceEndSec(piece.notes) - cropSec);
  const startSec = randomStart ? ctx.rng.next() * spare : 0;
  return cropPiece(piece, { startSec, durationSec: cropSec });
}

function capitalise(name: string): string {
  return name[0].toUpperCase() + name.slice(1);
}

function format(value: number | undefined): string {
  if (value === undefined || !Number.isFinite(value)) return "–";
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(1) : value.toFixed(3);
}

/** The report as Markdown tables: metrics by set, then the Yang & Lerch comparisons. */
export function metricsMarkdown(report: MetricsReport): string {
  const setNames = Object.keys(report.sets);
  const metricNames = [...new Set(setNames.flatMap((s) => Object.keys(report.sets[s])))];
  const lines = ["# Evaluation metrics", ""];
  if (setNames.length > 0) {
    lines.push(`| metric | ${setNames.join(" | ")} |`);
    lines.push(`| --- |${setNames.map(() => " ---: |").join("")}`);
    for (const metric of metricNames) {
      lines.push(
        `| ${metric} | ${setNames.map((s) => format(report.sets[s][metric])).join(" | ")} |`,
      );
    }
  } else {
    lines.push("No sets were given.");
  }
  const comparisons = Object.keys(report.comparisons);
  if (comparisons.length > 0) {
    lines.push(
      "",
      "## Yang & Lerch comparison with real music",
      "",
      "Overlapped area (OA, higher is closer to real, 1 at most) and KL divergence (lower is closer)",
      "between the real set's intra-set distances and the real-to-generated inter-set distances.",
      "",
      `| feature | ${comparisons.map((c) => `${c} OA | ${c} KL`).join(" | ")} |`,
      `| --- |${comparisons.map(() => " ---: | ---: |").join("")}`,
    );
    for (const feature of YANG_LERCH_FEATURES) {
      const cells = comparisons.map((c) => {
        const entry = report.comparisons[c][feature];
        return `${format(entry?.overlap)} | ${format(entry?.kl)}`;
      });
      lines.push(`| ${feature} | ${cells.join(" | ")} |`);
    }
  }
  return lines.join("\n") + "\n";
}

export default definePlugin({
  name: "eval/metrics",
  kind: "eval",
  version: "1.0.0",
  description:
    "Objective metrics (MusPy, RL Tuner) of real and generated sets and their Yang & Lerch comparison",
  params: {
    maxPieces: p.integer({
      default: 100,
      min: 2,
      description: "Most pieces measured per set; larger sets are subsampled with the seeded RNG",
    }),
    cropSec: p.number({
      default: 30,
      min: 0,
      description:
        "Seconds of each piece measured (real pieces at a random offset, generated from the start); 0 measures whole pieces",
    }),
    ngramLength: p.integer({
      default: 4,
      min: 1,
      description: "Length of the pitch n-grams of the distinct n-gram ratio",
    }),
  },
  inputs: {
    real: port<MidiCorpus>({
      type: "midi-corpus",
      description: "Real music; its validation pieces are measured",
      optional: true,
    }),
    pretrained: port<Piece[]>({
      type: "pieces",
      description: "Samples of the pretrained model",
      optional: true,
    }),
    finetuned: port<Piece[]>({
      type: "pieces",
      description: "Samples of the RL-finetuned model",
      optional: true,
    }),
    refined: port<Piece[]>({
      type: "pieces",
      description: "Samples after diffusion refinement",
      optional: true,
    }),
  },
  outputs: {
    metrics: { type: "metrics", description: "Metrics per set and comparisons with the real set" },
  },
  async run(ctx, inputs, params) {
    const sets: Record<string, Piece[]> = {};
    const real = inputs.real;
    if (real !== undefined) {
      if (!Array.isArray(real?.pieces)) {
        throw new Error(
          'Cannot evaluate input "real": expected a midi-corpus with a "pieces" list',
        );
      }
      const validation = validPieces(ctx, "real", real.pieces)
        .filter((piece) => (piece as Piece & { split?: string }).split === "validation");
      if (validation.length === 0) {
        ctx.log.warn('Input "real" has no validation pieces: leaving the real set out');
      } else {
        sets.real = subset(ctx, validation, params.maxPieces)
          .map((piece) => crop(ctx, piece, params.cropSec, true));
      }
    }
    for (const name of GENERATED_SETS) {
      if (inputs[name] === undefined) continue;
      const pieces = validPieces(ctx, name, inputs[name]);
      sets[name] = subset(ctx, pieces, params.maxPieces)
        .map((piece) => crop(ctx, piece, params.cropSec, false));
    }

    const report: MetricsReport = { sets: {}, comparisons: {} };
    const names = Object.keys(sets);
    const total = names.length + (sets.real === undefined ? 0 : names.length - 1);
    let done = 0;
    for (const name of names) {
      if (ctx.signal.aborted) throw new Error("Cannot finish evaluation: the run was aborted");
      report.sets[name] = setMetrics(sets[name], { ngramLength: params.ngramLength });
      ctx.progress({ done: ++done, total, unit: "steps", info: { set: name } });
    }
    for (const name of names) {
      if (name === "real" || sets.real === undefined) continue;
      if (ctx.signal.aborted) throw new Error("Cannot finish evaluation: the run was aborted");
      const comparison: Record<string, { overlap: number; kl: number }> = {};
      for (const [feature, value] of Object.entries(compareSets(sets.real, sets[name]))) {
        // NaN (too few pieces to form distances) is left out: JSON has no NaN.
        if (Number.isFinite(value.overlap) && Number.isFinite(value.kl)) {
          comparison[feature] = value;
        }
      }
      report.comparisons[`realVs${capitalise(name)}`] = comparison;
      ctx.progress({ done: ++done, total, unit: "steps", info: { set: name } });
    }
    if (sets.real !== undefined && sets.real.length < 2) {
      ctx.log.warn("The real set has fewer than 2 pieces: no Yang & Lerch comparison is possible");
    }

    await Deno.writeTextFile(
      `${ctx.runDir}/eval_metrics.json`,
      JSON.stringify(report, null, 2) + "\n",
    );
    await Deno.writeTextFile(`${ctx.runDir}/eval_metrics.md`, metricsMarkdown(report));
    ctx.log.info(`Wrote metrics of ${names.length} set(s) to ${ctx.runDir}/eval_metrics.md`);
    return { metrics: report };
  },
});

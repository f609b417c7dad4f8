/**
 * `report/html`: one self-contained HTML page that shows what a run did and
 * what it made, to open from disk with no network: the pipeline graph with the
 * status of each stage, every recorded metric as curves (grouped by stage and
 * by namespace, the part of a metric name before "/"), the evaluation tables,
 * and a piano roll and an audio player for each piece. Pictures are inline
 * SVG and are also written to `<run>/figures/` as `.svg` files; audio is
 * rendered with FluidSynth into `<run>/audio/<id>.wav` and linked relatively.
 * The page has no scripts and no external resources.
 *
 * The stage runs last and every time (`cache: false`): it reads the run
 * directory as it is when it runs (`manifest.json`, `metrics.json`,
 * `events.jsonl`).
 *
 * @module
 */

import { join } from "node:path";
import { definePlugin, p, port, writeFileAtomic } from "../../mod.ts";
import type { ExportedFiles, Metrics } from "../_music/artifacts.ts";
import type { Piece } from "../_music/types.ts";
import { SOUNDFONT_CANDIDATES, soundFontFromEnv } from "./_audio.ts";
import { isObject, readJsonFile } from "./_run_files.ts";
import {
  curvesSection,
  evaluationSection,
  piecesSection,
  pipelineSection,
  reportPage,
  type Section,
  warningsSection,
} from "./_sections.ts";

/** What the `report` output holds. */
export interface ReportOutput {
  /** Path of `report.html`. */
  path: string;
  /** Paths of the `.svg` files written to `<run>/figures/`. */
  figures: string[];
  /** Paths of the `.wav` files rendered into `<run>/audio/`. */
  audio: string[];
}

export { formatNumber, tablesHtml } from "./_tables.ts";
export { groupMetrics } from "./_run_files.ts";

export default definePlugin({
  name: "report/html",
  kind: "report",
  version: "1.0.0",
  description:
    "Writes report.html into the run directory: pipeline graph, metric curves, evaluation tables, piano rolls and audio of the pieces",
  cache: false,
  // Audio: FluidSynth, and a SoundFont from $HARMONYRL_SOUNDFONT or the system's.
  permissions: (params) =>
    params.audio
      ? {
        run: ["fluidsynth"],
        env: ["HARMONYRL_SOUNDFONT"],
        read: [...SOUNDFONT_CANDIDATES, ...soundFontFromEnv()],
      }
      : {},
  params: {
    title: p.string({
      default: "",
      description: 'Title of the page; "" gives "HarmonyRL run: <graph name>"',
    }),
    audio: p.boolean({
      default: true,
      description: "Render each shown piece to WAV with FluidSynth and add an audio player",
    }),
    maxPieces: p.integer({
      default: 8,
      min: 0,
      description: "Most pieces shown (piano roll and audio), the first ones in input order",
    }),
    pianoRollSec: p.number({
      default: 60,
      min: 1,
      description: "Seconds of each piece drawn in its piano roll (the audio plays all of it)",
    }),
    soundFont: p.string({
      path: "read",
      default: "",
      description:
        'SoundFont (.sf2) for audio; "" uses $HARMONYRL_SOUNDFONT or a system General MIDI SoundFont',
    }),
  },
  inputs: {
    pieces: port<Piece[]>({
      type: "pieces",
      description: "The final pieces to show and play",
      optional: true,
    }),
    files: port<ExportedFiles>({
      type: "files",
      description:
        "MIDI files written by export/midi (played as audio; shown when no pieces are given)",
      optional: true,
    }),
    metrics: port<Metrics>({
      type: "metrics",
      description: "Evaluation metrics of eval/metrics: per-set values and comparisons",
      optional: true,
    }),
    evaluation: port<Metrics>({
      type: "metrics",
      description:
        "RL evaluation table, e.g. { policies: { pretrained: {...}, finetuned: {...} } }",
      optional: true,
    }),
    refinement: port<Metrics>({
      type: "metrics",
      description: "Refinement figures, e.g. dissonance before and after and notes kept",
      optional: true,
    }),
  },
  outputs: {
    report: {
      type: "report",
      description: "{ path, figures, audio }: report.html and the files it uses",
    },
  },
  async run(ctx, inputs, params) {
    const runDir = ctx.runDir;
    for (const name of ["metrics", "evaluation", "refinement"] as const) {
      if (inputs[name] !== undefined && !isObject(inputs[name])) {
        throw new Error(`Cannot build the report: input "${name}" is not an object of metrics`);
      }
    }
    if (inputs.pieces !== undefined && !Array.isArray(inputs.pieces)) {
      throw new Error('Cannot build the report: input "pieces" is not a list of pieces');
    }
    const filesInput = inputs.files;
    if (
      filesInput !== undefined &&
      !(isObject(filesInput) && Array.isArray(filesInput.files) &&
        filesInput.files.every((f) => typeof f === "string"))
    ) {
      throw new Error('Cannot build the report: input "files" is not {dir, files: string[]}');
    }
    const midiFiles = filesInput?.files ?? [];

    const figuresDir = join(runDir, "figures");
    await Deno.mkdir(figuresDir, { recursive: true });
    const figures: string[] = [];
    const usedFigureNames = new Set<string>();
    const saveFigure = async (base: string, svg: string): Promise<string> => {
      let name = base;
      for (let k = 2; usedFigureNames.has(name); k++) name = `${base}-${k}`;
      usedFigureNames.add(name);
      const path = join(figuresDir, `${name}.svg`);
      await Deno.writeTextFile(path, `<?xml version="1.0" encoding="UTF-8"?>\n${svg}\n`);
      figures.push(path);
      return path;
    };

    // The run as recorded so far.
    let manifest: Record<string, unknown> = {};
    try {
      const value = await readJsonFile(join(runDir, "manifest.json"));
      if (isObject(value)) manifest = value;
      else ctx.log.warn(`No manifest.json in "${runDir}": the report has no graph or stage table`);
    } catch (error) {
      ctx.log.warn((error as Error).message);
    }
    const graphName = typeof manifest.graph === "string" ? manifest.graph : "";
    const title = params.title || (graphName ? `HarmonyRL run: ${graphName}` : "HarmonyRL run");
    const stages = isObject(manifest.stages)
      ? manifest.stages as Record<string, Record<string, unknown>>
      : {};
    // This stage is still "pending" in the manifest while it writes the report.
    const statusOf = (name: string, record: Record<string, unknown>) =>
      name === ctx.stage && record.status === "pending" ? "running" : String(record.status ?? "");

    const sections: Section[] = [await pipelineSection(manifest, { stages, statusOf, saveFigure })];
    sections.push(await curvesSection(ctx, saveFigure));
    const evaluation = evaluationSection(inputs);
    if (evaluation) sections.push(evaluation);
    const { section: piecesPart, audio } = await piecesSection(ctx, {
      pieces: inputs.pieces,
      midiFiles,
      maxPieces: params.maxPieces,
      pianoRollSec: params.pianoRollSec,
      audio: params.audio,
      soundFont: params.soundFont,
      saveFigure,
    });
    if (piecesPart) sections.push(piecesPart);
    const warnings = await warningsSection(ctx);
    if (warnings) sections.push(warnings);
    const html = reportPage(manifest, { title, graphName, sections, runDir });
    const path = join(runDir, "report.html");
    await writeFileAtomic(path, html);
    ctx.log.info(
      `Wrote "${path}" with ${figures.length} figures and ${audio.length} audio files`,
    );
    return { report: { path, figures, audio } satisfies ReportOutput };
  },
});

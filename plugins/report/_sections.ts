/**
 * The sections of the HTML report, each built from what the run recorded and
 * the report's inputs, and the page that holds them.
 *
 * @module
 */

import { isAbsolute, join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import type { Metrics, Piece, StageContext } from "../../mod.ts";
import { readMidiFile, safeFileName, writeMidi } from "../_music/midi.ts";
import { renderWav } from "./_audio.ts";
import { graphSvg } from "./_dag.ts";
import { pianoRollSvg } from "./_pianoroll.ts";
import { linePlot } from "./_plot.ts";
import { groupMetrics, isObject, readEvents, readRunMetrics } from "./_run_files.ts";
import { escapeXml, svgSize } from "./_svg.ts";
import { isNumericMap, matrixTable, rewardTermTable, tablesHtml, truncateText } from "./_tables.ts";

/** One section of the report: its anchor, heading and HTML. */
export interface Section {
  id: string;
  title: string;
  html: string;
}

/** Saves an SVG figure under `figures/` (a unique name from `base`) and returns its path. */
export type SaveFigure = (base: string, svg: string) => Promise<string>;

/** A file-name-safe slug: lowercase letters, digits, ".", "_" and "-". */
export function slug(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "") || "x";
}

function isPiece(value: unknown): value is Piece {
  const piece = value as Piece;
  return isObject(piece) && typeof piece.id === "string" && Array.isArray(piece.notes) &&
    Array.isArray(piece.beatsSec) &&
    piece.notes.every((n) =>
      Number.isFinite(n?.pitch) && Number.isFinite(n?.startSec) && Number.isFinite(n?.endSec)
    );
}

/** Relative link from the report to a file, or a file:// URL when it lies outside the run directory. */
function linkTo(runDir: string, path: string): string {
  const rel = relative(runDir, path);
  if (rel.startsWith("..") || isAbsolute(rel)) return pathToFileURL(resolve(path)).href;
  return rel.split(/[\\/]/).map(encodeURIComponent).join("/");
}

/** A duration as "4.21 s", "12.5 s", "5 min 0 s" or "2 h 3 min" (rounded before it is split, never "4 min 60 s"). */
export function durationText(seconds: unknown): string {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
  if (seconds < 59.95) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const whole = Math.round(seconds);
  const minutes = Math.floor(whole / 60);
  if (minutes < 60) return `${minutes} min ${whole % 60} s`;
  const wholeMinutes = Math.round(seconds / 60);
  return `${Math.floor(wholeMinutes / 60)} h ${wholeMinutes % 60} min`;
}

function pieceEndSec(piece: Piece): number {
  return piece.notes.reduce((end, n) => Math.max(end, n.endSec), 0);
}

const STYLE = `
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --bg: #f5f7fa; --accent: #3b6fb6; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
header { background: #fff; border-bottom: 1px solid var(--line); padding: 24px 32px 16px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
.meta { color: var(--muted); margin: 0; font-size: 14px; }
.meta span + span::before { content: " · "; }
nav { margin-top: 12px; font-size: 14px; }
nav a { color: var(--accent); text-decoration: none; margin-right: 16px; }
main { max-width: 1180px; margin: 0 auto; padding: 8px 24px 48px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px;
  padding: 8px 24px 20px; margin: 20px 0; }
h2 { font-size: 20px; margin: 14px 0 10px; }
h3 { font-size: 16px; margin: 18px 0 8px; }
h4, h5, h6 { font-size: 14px; margin: 14px 0 6px; color: var(--muted); }
figure { margin: 0; }
figure svg { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 4px; }
.graph { overflow-x: auto; padding: 4px 0 8px; }
.graph svg { max-width: none; margin: 0 auto; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(460px, 1fr)); gap: 16px; }
.plots figure { border: 1px solid var(--line); border-radius: 8px; padding: 6px; }
table { border-collapse: collapse; margin: 8px 0 12px; font-size: 14px; }
th, td { padding: 4px 12px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { border-bottom: 2px solid #cbd2d9; }
tbody tr:nth-child(even) { background: #fafbfc; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
.delta { color: var(--muted); }
.status { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 12px; background: #eef1f4; }
.status-done { background: #e6f4ea; color: #276c40; }
.status-cached { background: #e3effb; color: #245b9e; }
.status-failed { background: #fdecea; color: #a12d2d; }
.status-running, .status-pending { background: #fff8d6; color: #7a6312; }
.pieces { display: grid; gap: 16px; }
.piece { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; }
.piece h3 { margin: 4px 0; font-size: 15px; }
.piece .row { display: flex; align-items: center; gap: 16px; flex-wrap: wrap; margin-top: 6px; }
.piece audio { height: 36px; width: 360px; max-width: 100%; }
a { color: var(--accent); }
.notice { border-left: 4px solid #e0a526; background: #fff8e6; padding: 8px 14px; margin: 10px 0;
  border-radius: 4px; font-size: 14px; }
.notice code, code { background: #eef1f4; padding: 1px 5px; border-radius: 4px; font-size: 13px; }
.muted { color: var(--muted); }
.warnings li { font-size: 13px; margin: 2px 0; }
.warnings .level-error { color: #a12d2d; }
pre { background: #f5f7fa; padding: 8px; overflow-x: auto; font-size: 12px; }
footer { text-align: center; color: var(--muted); font-size: 12px; padding: 0 0 24px; }
`;

/** The pipeline section: the graph diagram (from the manifest's outline) and the stage table. */
export async function pipelineSection(
  manifest: Record<string, unknown>,
  options: {
    stages: Record<string, Record<string, unknown>>;
    statusOf: (name: string, record: Record<string, unknown>) => string;
    saveFigure: SaveFigure;
  },
): Promise<Section> {
  const { stages, statusOf, saveFigure } = options;
  const parts: string[] = [];
  if (isObject(manifest.outline)) {
    const status = Object.fromEntries(
      Object.entries(stages).map(([name, record]) => [name, statusOf(name, record)]),
    );
    let svg = graphSvg(manifest.outline, { direction: "LR", status });
    if (svgSize(svg).width > 1100) {
      svg = graphSvg(manifest.outline, { direction: "TB", status });
    }
    await saveFigure("graph", svg);
    parts.push(`<figure class="graph">${svg}</figure>`);
  }
  const rows = Object.entries(stages).map(([name, record]) => {
    const status = statusOf(name, record);
    const note = record.error ?? record.reason ?? "";
    return `<tr><th>${escapeXml(name)}</th><td><code>${
      escapeXml(String(record.plugin ?? ""))
    }</code></td>` +
      `<td><span class="status status-${escapeXml(slug(status))}">${
        escapeXml(status)
      }</span></td>` +
      `<td class="num">${escapeXml(durationText(record.durationSec))}</td>` +
      `<td class="muted">${escapeXml(truncateText(String(note), 300))}</td></tr>`;
  });
  if (rows.length > 0) {
    parts.push(
      `<table class="stages"><thead><tr><th>stage</th><th>plugin</th><th>status</th>` +
        `<th class="num">time</th><th>note</th></tr></thead><tbody>${
          rows.join("")
        }</tbody></table>`,
    );
  }
  if (parts.length === 0) {
    parts.push(`<p class="muted">No manifest.json in the run directory.</p>`);
  }
  return { id: "pipeline", title: "Pipeline", html: parts.join("") };
}

/** The training curves section: one plot per stage label and metric namespace. */
export async function curvesSection(ctx: StageContext, saveFigure: SaveFigure): Promise<Section> {
  const groups = groupMetrics(await readRunMetrics(ctx));
  const parts: string[] = [];
  let currentLabel = "";
  for (const group of groups) {
    if (ctx.signal.aborted) throw new Error("Cannot finish the report: the run was aborted");
    if (group.label !== currentLabel) {
      if (currentLabel) parts.push(`</div>`);
      parts.push(`<h3>${escapeXml(group.label)}</h3><div class="plots">`);
      currentLabel = group.label;
    }
    const series = [...group.series].map(([name, points]) => ({
      // "loss/train" in the "loss" plot is just "train".
      name: name.startsWith(`${group.namespace}/`) ? name.slice(group.namespace.length + 1) : name,
      points,
    }));
    const longest = Math.max(...series.map((s) => s.points.length));
    const svg = linePlot({
      title: `${group.namespace} · ${group.label}`,
      xLabel: "step",
      yLabel: group.namespace,
      series,
      width: 540,
      height: 300,
      // Noisy per-step curves (RL rewards, minibatch losses) read better smoothed.
      smoothing: longest > 40 ? 0.6 : 0,
    });
    await saveFigure(`curve-${slug(group.label)}-${slug(group.namespace)}`, svg);
    parts.push(
      `<figure>${svg}${
        longest > 40
          ? `<figcaption>Smoothed (EMA 0.6); the raw values are drawn faint.</figcaption>`
          : ""
      }</figure>`,
    );
  }
  if (currentLabel) parts.push(`</div>`);
  return {
    id: "curves",
    title: "Training curves",
    html: parts.length > 0
      ? parts.join("")
      : `<p class="muted">No metrics were recorded in this run.</p>`,
  };
}

/**
 * The evaluation section: eval/metrics, eval/policies and refinement tables; none without them.
 *
 * @param inputs report/html's `metrics`, `evaluation` and `refinement` inputs, those given.
 */
export function evaluationSection(
  inputs: { metrics?: Metrics; evaluation?: Metrics; refinement?: Metrics },
): Section | undefined {
  const parts: string[] = [];
  const blocks: Array<[string, string, Metrics | undefined]> = [
    ["metrics", "Objective metrics", inputs.metrics],
    ["evaluation", "RL evaluation", inputs.evaluation],
    ["refinement", "Refinement", inputs.refinement],
  ];
  const termTable = rewardTermTable(inputs.evaluation);
  if (termTable) parts.push(termTable);
  for (const [, heading, metrics] of blocks) {
    if (metrics === undefined) continue;
    // eval/metrics' two parts get readable headings; anything else is shown generically.
    if (isObject(metrics.sets) || isObject(metrics.comparisons)) {
      parts.push(`<h3>${escapeXml(heading)}</h3>`);
      const { sets, comparisons, ...rest } = metrics;
      if (isObject(sets)) parts.push(`<h4>Per set</h4>${tablesHtml(sets, 1)}`);
      if (isObject(comparisons)) {
        parts.push(
          `<h4>Compared with the real set</h4><p class="muted">Overlapped area (higher is closer) and KL divergence (lower is closer) of intra-set and inter-set distances, per feature.</p>`,
        );
        for (const [name, table] of Object.entries(comparisons)) {
          // Features down the rows, {overlap, kl} across, however many features there are.
          const features = isObject(table) ? Object.entries(table) : [];
          parts.push(
            `<h5>${escapeXml(name)}</h5>${
              features.length > 0 && features.every(([, v]) => isNumericMap(v))
                ? matrixTable(features as Array<[string, Record<string, number>]>, "outer")
                : tablesHtml(table, 2)
            }`,
          );
        }
      }
      if (Object.keys(rest).length > 0) parts.push(tablesHtml(rest, 1));
    } else {
      parts.push(`<h3>${escapeXml(heading)}</h3>${tablesHtml(metrics, 0)}`);
    }
  }
  return parts.length > 0
    ? { id: "evaluation", title: "Evaluation", html: parts.join("") }
    : undefined;
}

/** Settings of {@linkcode piecesSection}: report/html's params and inputs it reads. */
export interface PiecesOptions {
  /** The `pieces` input, when given (else the pieces are read from `midiFiles`). */
  pieces?: unknown[];
  midiFiles: string[];
  maxPieces: number;
  pianoRollSec: number;
  audio: boolean;
  soundFont: string;
  saveFigure: SaveFigure;
}

/** The pieces section: a piano roll of each piece, its MIDI file and its audio when it renders. */
export async function piecesSection(
  ctx: StageContext,
  options: PiecesOptions,
): Promise<{ section?: Section; audio: string[] }> {
  const { midiFiles, saveFigure } = options;
  const runDir = ctx.runDir;
  const audioDir = join(runDir, "audio");
  const audio: string[] = [];
  let pieces: Piece[] = [];
  let total = 0;
  if (options.pieces !== undefined) {
    const all = options.pieces as unknown[];
    total = all.length;
    all.forEach((value, i) => {
      if (isPiece(value)) pieces.push(value);
      else {
        ctx.log.warn(
          `Skipping piece ${
            JSON.stringify((value as Piece)?.id ?? `#${i}`)
          }: it has no valid id, notes or beats`,
        );
      }
    });
    pieces = pieces.slice(0, options.maxPieces);
  } else if (midiFiles.length > 0) {
    total = midiFiles.length;
    for (const file of midiFiles) {
      if (pieces.length >= options.maxPieces) break;
      try {
        pieces.push(readMidiFile(file));
      } catch (error) {
        ctx.log.warn(`Skipping "${file}" in the report: ${(error as Error).message}`);
      }
    }
  }
  const fileByName = new Map<string, string>();
  for (const file of midiFiles) {
    const base = file.replace(/^.*[\\/]/, "").replace(/\.midi?$/i, "");
    if (!fileByName.has(base)) fileByName.set(base, file);
  }

  const parts: string[] = [];
  let audioUnavailable = "";
  const usedNames = new Set<string>();
  for (const [i, piece] of pieces.entries()) {
    if (ctx.signal.aborted) throw new Error("Cannot finish the report: the run was aborted");
    const base = safeFileName(piece.id);
    let name = base;
    for (let k = 2; usedNames.has(name.toLowerCase()); k++) name = `${base}-${k}`;
    usedNames.add(name.toLowerCase());
    const endSec = pieceEndSec(piece);
    const svg = pianoRollSvg(piece, { width: 1060, height: 220, maxSec: options.pianoRollSec });
    await saveFigure(`pianoroll-${slug(name)}`, svg);

    const midiFile = fileByName.get(base) ??
      (options.pieces === undefined ? midiFiles.find((f) => f === piece.source) : undefined);
    let player = "";
    let midiLink = midiFile;
    if (options.audio && !audioUnavailable) {
      let midiPath = midiFile;
      let problem = "";
      if (!midiPath) {
        // No exported file for this piece: write one for the synthesizer.
        midiPath = join(audioDir, `${name}.mid`);
        try {
          await Deno.mkdir(audioDir, { recursive: true });
          await Deno.writeFile(midiPath, writeMidi(piece));
          midiLink = midiPath;
        } catch (error) {
          problem = (error as Error).message;
        }
      }
      if (!problem) {
        const wavPath = join(audioDir, `${name}.wav`);
        const result = await renderWav(midiPath, wavPath, {
          soundFont: options.soundFont || undefined,
        });
        if (result.ok) {
          audio.push(wavPath);
          player = `<audio controls preload="metadata" src="${
            escapeXml(linkTo(runDir, wavPath))
          }"></audio>`;
        } else if (result.reason.startsWith("Cannot render audio:")) {
          // FluidSynth or the SoundFont is missing: the same for every piece.
          audioUnavailable = result.reason;
          ctx.log.warn(result.reason);
        } else problem = result.reason;
      }
      if (problem) {
        ctx.log.warn(`No audio for "${piece.id}": ${problem}`);
        player = `<span class="muted">No audio: ${escapeXml(problem)}</span>`;
      }
    }
    const facts = [
      `${piece.notes.length} notes`,
      `${endSec.toFixed(1)} s`,
      Number.isFinite(piece.tempoBpm) ? `${Math.round(piece.tempoBpm)} bpm` : "",
      Number.isFinite(piece.beatsPerBar) ? `${piece.beatsPerBar} beats per bar` : "",
      endSec > options.pianoRollSec ? `first ${options.pianoRollSec} s drawn` : "",
    ].filter(Boolean);
    const link = midiLink ? `<a href="${escapeXml(linkTo(runDir, midiLink))}">MIDI file</a>` : "";
    parts.push(
      `<article class="piece" id="piece-${i + 1}"><h3>${escapeXml(piece.id)}</h3>` +
        `<p class="meta">${facts.map((f) => `<span>${escapeXml(f)}</span>`).join("")}</p>` +
        `<figure>${svg}</figure>` +
        (player || link ? `<div class="row">${player}${link}</div>` : "") +
        `</article>`,
    );
    ctx.progress({ done: i + 1, total: pieces.length, unit: "pieces" });
  }
  if (pieces.length > 0 || total > 0) {
    const intro = total > pieces.length
      ? `<p class="muted">Showing ${pieces.length} of ${total} pieces.</p>`
      : "";
    const notice = audioUnavailable
      ? `<div class="notice"><strong>No audio.</strong> ${
        escapeXml(audioUnavailable).replace(/`([^`]+)`/g, "<code>$1</code>")
      }. ` +
        `Then run the graph again: only this report stage re-runs.</div>`
      : "";
    return {
      section: {
        id: "pieces",
        title: "Pieces",
        html: `${intro}${notice}<div class="pieces">${parts.join("")}</div>`,
      },
      audio,
    };
  }
  return { audio };
}

/** The warnings section: warnings and errors logged during the run (the first 50); none without them. */
export async function warningsSection(ctx: StageContext): Promise<Section | undefined> {
  const logged = (await readEvents(ctx)).filter((e) =>
    e.type === "log" && (e.level === "warn" || e.level === "error")
  );
  if (logged.length > 0) {
    const items = logged.slice(0, 50).map((e) =>
      `<li class="level-${escapeXml(String(e.level))}"><strong>${
        escapeXml(String(e.stage ?? "run"))
      }</strong>: ${escapeXml(truncateText(String(e.message), 400))}</li>`
    );
    return {
      id: "warnings",
      title: "Warnings",
      html: `<ul class="warnings">${items.join("")}</ul>${
        logged.length > 50
          ? `<p class="muted">… and ${logged.length - 50} more in events.jsonl</p>`
          : ""
      }`,
    };
  }
  return undefined;
}

/** The whole report page: header with the run's facts, navigation, sections, footer. */
export function reportPage(
  manifest: Record<string, unknown>,
  options: { title: string; graphName: string; sections: Section[]; runDir: string },
): string {
  const { title, graphName, sections, runDir } = options;
  const backend = isObject(manifest.backend) ? manifest.backend : undefined;
  const meta = [
    graphName ? `graph ${graphName}` : "",
    typeof manifest.runId === "string" ? `run ${manifest.runId}` : "",
    typeof manifest.seed === "number" ? `seed ${manifest.seed}` : "",
    backend && typeof backend.name === "string" ? `backend ${backend.name}` : "",
    typeof manifest.startedAt === "string"
      ? `started ${manifest.startedAt.replace("T", " ").replace(/\..*$/, "")} UTC`
      : "",
  ].filter(Boolean);
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeXml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>${escapeXml(title)}</h1>
<p class="meta">${meta.map((m) => `<span>${escapeXml(m)}</span>`).join("")}</p>
<nav>${sections.map((s) => `<a href="#${s.id}">${escapeXml(s.title)}</a>`).join("")}</nav>
</header>
<main>
${
    sections.map((s) => `<section id="${s.id}"><h2>${escapeXml(s.title)}</h2>${s.html}</section>`)
      .join("\n")
  }
</main>
<footer>Made by report/html from ${
    escapeXml(runDir.replace(/^.*[\\/](?=[^\\/]+[\\/][^\\/]+$)/, ""))
  } on ${escapeXml(new Date().toISOString().replace("T", " ").replace(/\..*$/, ""))} UTC</footer>
</body>
</html>
`;
  return html;
}

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

import { isAbsolute, join, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { definePlugin, p, type StageContext, writeFileAtomic } from "../../mod.ts";
import { renderWav, SOUNDFONT_CANDIDATES, soundFontFromEnv } from "./_audio.ts";
import { readMidiFile, writeMidi } from "../_music/midi.ts";
import { escapeXml, svgSize } from "./_svg.ts";
import { linePlot } from "./_plot.ts";
import { pianoRollSvg } from "./_pianoroll.ts";
import { graphSvg } from "./_dag.ts";
import type { Piece } from "../_music/types.ts";
import { safeFileName } from "../export/midi.ts";

/** What the `report` output holds. */
export interface ReportOutput {
  /** Path of `report.html`. */
  path: string;
  /** Paths of the `.svg` files written to `<run>/figures/`. */
  figures: string[];
  /** Paths of the `.wav` files rendered into `<run>/audio/`. */
  audio: string[];
}

/** Metrics of a run as the runner writes `metrics.json`: stage label to steps. */
export type RunMetrics = Record<string, Array<{ step: number; values: Record<string, number> }>>;

/** One plot's worth of metrics: one stage label, one namespace, one line per metric. */
export interface MetricGroup {
  /** Stage label, e.g. `pretrain` or `finetune/update`. */
  label: string;
  /** Part of the metric names before "/", e.g. `loss`, `reward`. */
  namespace: string;
  /** Metric name to `[step, value]` points, in first-appearance order. */
  series: Map<string, Array<[number, number]>>;
}

/**
 * Groups a run's metrics for plotting: per stage label, per namespace (the
 * part before the first "/"; a name without "/" is its own namespace), with
 * namespaces in the order they first appear.
 *
 * @param metrics The run's metrics.
 * @returns One group per stage label and namespace.
 * @example
 * ```ts
 * import { groupMetrics } from "./html.ts";
 * const groups = groupMetrics({
 *   pretrain: [{ step: 1, values: { "loss/train": 2, "nll/validation": 2.5 } }],
 * });
 * console.log(groups.map((g) => g.namespace)); // ["loss", "nll"]
 * ```
 */
export function groupMetrics(metrics: RunMetrics): MetricGroup[] {
  const groups: MetricGroup[] = [];
  for (const [label, entries] of Object.entries(metrics)) {
    const byNamespace = new Map<string, MetricGroup>();
    for (const entry of entries) {
      for (const [name, value] of Object.entries(entry.values ?? {})) {
        const slash = name.indexOf("/");
        const namespace = slash > 0 ? name.slice(0, slash) : name;
        let group = byNamespace.get(namespace);
        if (!group) {
          group = { label, namespace, series: new Map() };
          byNamespace.set(namespace, group);
          groups.push(group);
        }
        let points = group.series.get(name);
        if (!points) group.series.set(name, points = []);
        points.push([entry.step, typeof value === "number" ? value : NaN]);
      }
    }
  }
  return groups;
}

/** True when a value has the shape the runner gives `metrics.json`. */
function isRunMetrics(value: unknown): value is RunMetrics {
  return isObject(value) && Object.values(value).every((list) =>
    Array.isArray(list) &&
    list.every((e) => isObject(e) && typeof e.step === "number" && isObject(e.values))
  );
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Formats a number for a table: 4 significant digits, exponents for tiny and
 * huge values, "—" for NaN.
 *
 * @param value The number.
 * @returns Short text.
 */
export function formatNumber(value: number): string {
  if (Number.isNaN(value)) return "—";
  if (!Number.isFinite(value)) return value > 0 ? "∞" : "−∞";
  if (Number.isInteger(value) && Math.abs(value) < 1e9) return String(value);
  const magnitude = Math.abs(value);
  if (magnitude >= 1e6 || magnitude < 1e-3) return value.toExponential(2);
  return String(Number(value.toPrecision(4)));
}

function formatDelta(value: number): string {
  if (!Number.isFinite(value)) return "";
  if (value === 0) return "0";
  return `${value > 0 ? "+" : "−"}${formatNumber(Math.abs(value))}`;
}

function isNumericMap(value: unknown): value is Record<string, number | null> {
  return isObject(value) && Object.keys(value).length > 0 &&
    Object.values(value).every((v) => typeof v === "number" || v === null);
}

function cell(value: unknown): string {
  if (typeof value === "number") return `<td class="num">${escapeXml(formatNumber(value))}</td>`;
  if (value === null || value === undefined) return `<td class="num">—</td>`;
  return `<td>${escapeXml(String(value))}</td>`;
}

/**
 * A table of several numeric maps. Two maps are two versions of the same
 * figures (pretrained/finetuned, before/after): side by side, with a change
 * column. Otherwise the longer key list runs down the rows, unless `rows` says.
 */
function matrixTable(
  maps: Array<[string, Record<string, number | null>]>,
  rows?: "outer" | "inner",
): string {
  const inner: string[] = [];
  for (const [, map] of maps) {
    for (const key of Object.keys(map)) if (!inner.includes(key)) inner.push(key);
  }
  const outer = maps.map(([name]) => name);
  const byOuter = new Map(maps);
  const rowsAreInner = rows ? rows === "inner" : outer.length === 2 || inner.length >= outer.length;
  const rowKeys = rowsAreInner ? inner : outer;
  const columns = rowsAreInner ? outer : inner;
  const get = (row: string, column: string) =>
    rowsAreInner ? byOuter.get(column)?.[row] : byOuter.get(row)?.[column];
  const delta = rowsAreInner && columns.length === 2;
  const head = `<tr><th></th>${
    columns.map((c) => `<th class="num">${escapeXml(c)}</th>`).join("")
  }${
    delta
      ? `<th class="num delta" title="${escapeXml(columns[1])} − ${
        escapeXml(columns[0])
      }">change</th>`
      : ""
  }</tr>`;
  const body = rowKeys.map((row) => {
    const values = columns.map((c) => get(row, c));
    const change = delta && typeof values[0] === "number" && typeof values[1] === "number"
      ? formatDelta(values[1] - values[0])
      : "";
    return `<tr><th>${escapeXml(row)}</th>${values.map(cell).join("")}${
      delta ? `<td class="num delta">${escapeXml(change)}</td>` : ""
    }</tr>`;
  }).join("");
  return `<table class="matrix"><thead>${head}</thead><tbody>${body}</tbody></table>`;
}

/**
 * Renders any JSON value as HTML tables, generically: scalars of an object in
 * a two-column table; sibling objects of numbers together in one table (the
 * longer key list down the rows, and a "change" column when there are two of
 * them, e.g. pretrained and finetuned); other nested objects under a heading
 * each; lists of numbers summarised; anything else as JSON.
 *
 * @param value A metrics object, e.g. `{ policies: { pretrained: {...}, finetuned: {...} } }`.
 * @param depth Nesting depth (picks the heading level).
 * @returns HTML.
 * @example
 * ```ts
 * import { tablesHtml } from "./html.ts";
 * const html = tablesHtml({ before: { dissonance: 0.3 }, after: { dissonance: 0.1 } });
 * console.log(html.includes("−0.2")); // true
 * ```
 */
export function tablesHtml(value: unknown, depth = 0): string {
  if (typeof value === "number") return `<p class="num">${escapeXml(formatNumber(value))}</p>`;
  if (typeof value !== "object" || value === null) {
    return `<p>${escapeXml(String(value))}</p>`;
  }
  if (Array.isArray(value)) {
    if (value.length > 0 && value.every((v) => typeof v === "number")) {
      const shown = value.slice(0, 12).map(formatNumber).join(", ");
      return `<p class="list">${escapeXml(shown)}${
        value.length > 12 ? ` … (${value.length} values)` : ""
      }</p>`;
    }
    return `<pre>${escapeXml(truncateText(JSON.stringify(value, null, 1), 2000))}</pre>`;
  }
  if (depth > 5) {
    return `<pre>${escapeXml(truncateText(JSON.stringify(value, null, 1), 2000))}</pre>`;
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return `<p class="muted">(empty)</p>`;
  const scalars = entries.filter(([, v]) => typeof v !== "object" || v === null);
  const maps = entries.filter(([, v]) => isNumericMap(v)) as Array<
    [string, Record<string, number>]
  >;
  const others = entries.filter(([, v]) => typeof v === "object" && v !== null && !isNumericMap(v));
  const parts: string[] = [];
  if (scalars.length > 0) {
    parts.push(
      `<table class="kv"><tbody>${
        scalars.map(([k, v]) => `<tr><th>${escapeXml(k)}</th>${cell(v)}</tr>`).join("")
      }</tbody></table>`,
    );
  }
  if (maps.length > 0) parts.push(matrixTable(maps));
  const level = Math.min(6, depth + 4);
  for (const [key, nested] of others) {
    parts.push(`<h${level}>${escapeXml(key)}</h${level}>${tablesHtml(nested, depth + 1)}`);
  }
  return parts.join("");
}

function truncateText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

/** A file-name-safe slug: lowercase letters, digits, ".", "_" and "-". */
function slug(text: string): string {
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

async function readJsonFile(path: string): Promise<unknown> {
  try {
    return JSON.parse(await Deno.readTextFile(path));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot read "${path}": ${error instanceof Error ? error.message : error}`);
  }
}

/** The run's metrics: `metrics.json`, or the metric events of `events.jsonl` when it is unusable. */
async function readRunMetrics(ctx: StageContext): Promise<RunMetrics> {
  const path = join(ctx.runDir, "metrics.json");
  let value: unknown;
  try {
    value = await readJsonFile(path);
  } catch (error) {
    ctx.log.warn((error as Error).message);
  }
  if (isRunMetrics(value)) return value;
  if (value !== undefined) {
    ctx.log.warn(
      `Cannot plot "${path}": it does not map stage labels to lists of {step, values}; plotting the metrics of events.jsonl instead`,
    );
  }
  const fromEvents: RunMetrics = {};
  for (const event of await readEvents(ctx)) {
    if (event.type !== "metric" || typeof event.stage !== "string") continue;
    if (typeof event.step !== "number" || !isObject(event.values)) continue;
    (fromEvents[event.stage] ??= []).push({
      step: event.step,
      values: event.values as Record<string, number>,
    });
  }
  return fromEvents;
}

/** Lines of `events.jsonl` that parse as objects. */
async function readEvents(ctx: StageContext): Promise<Array<Record<string, unknown>>> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(ctx.runDir, "events.jsonl"));
  } catch {
    return [];
  }
  const events: Array<Record<string, unknown>> = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    try {
      const event = JSON.parse(line);
      if (isObject(event)) events.push(event);
    } catch {
      // A line cut off by a killed run: skip it.
    }
  }
  return events;
}

/** Relative link from the report to a file, or a file:// URL when it lies outside the run directory. */
function linkTo(runDir: string, path: string): string {
  const rel = relative(runDir, path);
  if (rel.startsWith("..") || isAbsolute(rel)) return pathToFileURL(resolve(path)).href;
  return rel.split(/[\\/]/).map(encodeURIComponent).join("/");
}

function durationText(seconds: unknown): string {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  return minutes < 60
    ? `${minutes} min ${Math.round(seconds % 60)} s`
    : `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
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

/**
 * Per reward term: real held-out excerpts vs pretrained vs fine-tuned samples
 * (from eval/policies' `real` row), with a flag where the fine-tuned policy
 * scores a term well above real music (it may be gaming the term) or falls
 * below the pretrained policy. Undefined without a `real` row.
 */
export function rewardTermTable(evaluation: unknown): string | undefined {
  const value = evaluation as {
    real?: Record<string, number>;
    policies?: Record<string, Record<string, number>>;
  } | undefined;
  const real = value?.real, pre = value?.policies?.pretrained, fine = value?.policies?.finetuned;
  const collapse = (evaluation as { collapse?: unknown } | undefined)?.collapse;
  const warning = typeof collapse === "string"
    ? `<p><strong>The fine-tuned policy looks collapsed: ${escapeXml(collapse)}.</strong></p>`
    : "";
  if (!isObject(real) || !isObject(pre) || !isObject(fine)) return warning || undefined;
  const terms = Object.keys(real).filter((k) => k.startsWith("reward/"));
  if (terms.length === 0) return undefined;
  const show = (v: number | undefined) =>
    typeof v === "number" && Number.isFinite(v) ? v.toFixed(3) : "n/a";
  const rows = terms.map((term) => {
    const r = real[term], a = pre[term], b = fine[term];
    const flags: string[] = [];
    if (b > r + 0.05) flags.push("fine-tuned above real music: check the samples for gaming");
    if (b < a - 0.02) flags.push("fine-tuned below pretrained");
    const note = flags.length > 0 ? `<strong>${escapeXml(flags.join("; "))}</strong>` : "";
    return `<tr><td>${escapeXml(term)}</td><td>${show(r)}</td><td>${show(a)}</td><td>${
      show(b)
    }</td><td>${note}</td></tr>`;
  });
  return `${warning}<h3>Reward terms: real vs pretrained vs fine-tuned</h3><p class="muted">Mean score of each term on real held-out excerpts of the samples' length and on each policy's samples. A policy that beats real music on a term by far is more likely gaming it than making better music.</p><table><thead><tr><th>term</th><th>real</th><th>pretrained</th><th>fine-tuned</th><th></th></tr></thead><tbody>${
    rows.join("")
  }</tbody></table>`;
}

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
    pieces: { type: "pieces", description: "The final pieces to show and play", optional: true },
    files: {
      type: "files",
      description:
        "MIDI files written by export/midi (played as audio; shown when no pieces are given)",
      optional: true,
    },
    metrics: {
      type: "metrics",
      description: "Evaluation metrics of eval/metrics: per-set values and comparisons",
      optional: true,
    },
    evaluation: {
      type: "metrics",
      description:
        "RL evaluation table, e.g. { policies: { pretrained: {...}, finetuned: {...} } }",
      optional: true,
    },
    refinement: {
      type: "metrics",
      description: "Refinement figures, e.g. dissonance before and after and notes kept",
      optional: true,
    },
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
    const filesInput = inputs.files as { dir?: unknown; files?: unknown } | undefined;
    if (
      filesInput !== undefined &&
      !(isObject(filesInput) && Array.isArray(filesInput.files) &&
        filesInput.files.every((f) => typeof f === "string"))
    ) {
      throw new Error('Cannot build the report: input "files" is not {dir, files: string[]}');
    }
    const midiFiles = (filesInput?.files ?? []) as string[];

    const figuresDir = join(runDir, "figures");
    const audioDir = join(runDir, "audio");
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
    const sections: Array<{ id: string; title: string; html: string }> = [];

    // Pipeline: graph diagram and stage table.
    {
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
      sections.push({ id: "pipeline", title: "Pipeline", html: parts.join("") });
    }

    // Curves: one plot per stage label and namespace.
    {
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
          name: name.startsWith(`${group.namespace}/`)
            ? name.slice(group.namespace.length + 1)
            : name,
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
      sections.push({
        id: "curves",
        title: "Training curves",
        html: parts.length > 0
          ? parts.join("")
          : `<p class="muted">No metrics were recorded in this run.</p>`,
      });
    }

    // Evaluation tables.
    {
      const parts: string[] = [];
      const blocks: Array<[string, string, unknown]> = [
        ["metrics", "Objective metrics", inputs.metrics],
        ["evaluation", "RL evaluation", inputs.evaluation],
        ["refinement", "Refinement", inputs.refinement],
      ];
      const termTable = rewardTermTable(inputs.evaluation);
      if (termTable) parts.push(termTable);
      for (const [, heading, value] of blocks) {
        if (value === undefined) continue;
        const metrics = value as Record<string, unknown>;
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
      if (parts.length > 0) {
        sections.push({ id: "evaluation", title: "Evaluation", html: parts.join("") });
      }
    }

    // Pieces: piano rolls and audio.
    const audio: string[] = [];
    {
      let pieces: Piece[] = [];
      let total = 0;
      if (inputs.pieces !== undefined) {
        const all = inputs.pieces as unknown[];
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
        pieces = pieces.slice(0, params.maxPieces);
      } else if (midiFiles.length > 0) {
        total = midiFiles.length;
        for (const file of midiFiles) {
          if (pieces.length >= params.maxPieces) break;
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
        const svg = pianoRollSvg(piece, { width: 1060, height: 220, maxSec: params.pianoRollSec });
        await saveFigure(`pianoroll-${slug(name)}`, svg);

        const midiFile = fileByName.get(base) ??
          (inputs.pieces === undefined ? midiFiles.find((f) => f === piece.source) : undefined);
        let player = "";
        let midiLink = midiFile;
        if (params.audio && !audioUnavailable) {
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
              soundFont: params.soundFont || undefined,
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
          endSec > params.pianoRollSec ? `first ${params.pianoRollSec} s drawn` : "",
        ].filter(Boolean);
        const link = midiLink
          ? `<a href="${escapeXml(linkTo(runDir, midiLink))}">MIDI file</a>`
          : "";
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
        sections.push({
          id: "pieces",
          title: "Pieces",
          html: `${intro}${notice}<div class="pieces">${parts.join("")}</div>`,
        });
      }
    }

    // Warnings and errors logged during the run.
    {
      const logged = (await readEvents(ctx)).filter((e) =>
        e.type === "log" && (e.level === "warn" || e.level === "error")
      );
      if (logged.length > 0) {
        const items = logged.slice(0, 50).map((e) =>
          `<li class="level-${escapeXml(String(e.level))}"><strong>${
            escapeXml(String(e.stage ?? "run"))
          }</strong>: ${escapeXml(truncateText(String(e.message), 400))}</li>`
        );
        sections.push({
          id: "warnings",
          title: "Warnings",
          html: `<ul class="warnings">${items.join("")}</ul>${
            logged.length > 50
              ? `<p class="muted">… and ${logged.length - 50} more in events.jsonl</p>`
              : ""
          }`,
        });
      }
    }

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
    const path = join(runDir, "report.html");
    await writeFileAtomic(path, html);
    ctx.log.info(
      `Wrote "${path}" with ${figures.length} figures and ${audio.length} audio files`,
    );
    return { report: { path, figures, audio } satisfies ReportOutput };
  },
});

/**
 * Pictures for reports as standalone SVG strings, with no dependencies: line
 * plots of training curves, piano rolls of pieces, and the diagram of a
 * pipeline graph. Every picture carries its own `xmlns`, sizes and fonts, so
 * the same string can be embedded inline in HTML or written to a `.svg` file.
 * None uses element ids, so any number of them can share one HTML page.
 *
 * The smoothing of line plots is TensorBoard's debiased exponential moving
 * average (`tensorboard/plugins/scalar/vz_line_chart2/line-chart.ts`).
 *
 * @module
 */

import type { Piece } from "./types.ts";

/** Colours of series, in order (Tableau 10: distinct, readable on white). */
export const PALETTE = [
  "#4e79a7",
  "#f28e2b",
  "#e15759",
  "#76b7b2",
  "#59a14f",
  "#edc948",
  "#b07aa1",
  "#ff9da7",
  "#9c755f",
  "#bab0ac",
] as const;

const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif";

/**
 * Escapes text for use in XML content and attribute values.
 *
 * @param text Any text.
 * @returns The text with `& < > " '` replaced by entities.
 */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => XML_ENTITIES[c]);
}

const XML_ENTITIES: Record<string, string> = {
  "&": "&amp;",
  "<": "&lt;",
  ">": "&gt;",
  '"': "&quot;",
  "'": "&#39;",
};

/** Rounds a coordinate to 0.1 px: the SVG stays small and exact enough. */
function r(x: number): number {
  return Math.round(x * 10) / 10;
}

/** Estimated width in px of a text at a font size (no measuring without a browser). */
function textWidth(text: string, fontSizePx: number): number {
  return text.length * fontSizePx * 0.58;
}

/** A grey panel with a centred message, drawn where a figure has nothing to show. */
function emptyPanel(
  box: { left: number; top: number; right: number; bottom: number },
  message: string,
): string {
  const { left, top, right, bottom } = box;
  return `<rect x="${left}" y="${top}" width="${right - left}" height="${
    bottom - top
  }" fill="#f8f9fb" stroke="#c5ccd6"/>` +
    `<text x="${(left + right) / 2}" y="${
      (top + bottom) / 2
    }" text-anchor="middle" fill="#7b8794">${message}</text>`;
}

function svgOpen(width: number, height: number, title: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" role="img" font-family="${FONT}" font-size="12">` +
    `<title>${escapeXml(title)}</title>` +
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`;
}

/**
 * "Nice" tick values (multiples of 1, 2 or 5 times a power of ten) covering a range.
 *
 * @param min Lower end of the range.
 * @param max Upper end (equal ends are widened so there is always a range).
 * @param count About how many ticks to make.
 * @returns The ticks in increasing order, and their step.
 * @example
 * ```ts
 * import { niceTicks } from "./svg.ts";
 * console.log(niceTicks(0, 9.5, 5).ticks); // [0, 2, 4, 6, 8, 10]
 * ```
 */
export function niceTicks(min: number, max: number, count = 5): { ticks: number[]; step: number } {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return { ticks: [0, 1], step: 1 };
  if (max < min) [min, max] = [max, min];
  if (max === min) {
    const pad = min === 0 ? 1 : Math.abs(min) * 0.1;
    min -= pad;
    max += pad;
  }
  const raw = (max - min) / Math.max(1, count);
  const power = 10 ** Math.floor(Math.log10(raw));
  const fraction = raw / power;
  const step = (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * power;
  const first = Math.floor(min / step + 1e-9);
  const last = Math.ceil(max / step - 1e-9);
  const ticks: number[] = [];
  for (let i = first; i <= last; i++) ticks.push(Number((i * step).toPrecision(12)));
  return { ticks, step };
}

/**
 * Formats a tick value with as many decimals as its step needs.
 *
 * @param value The tick.
 * @param step The distance between ticks.
 * @returns Short text: `"0.25"`, `"1200"`, `"1e-5"`, `"2.5e+6"`.
 */
export function formatTick(value: number, step: number): string {
  if (value === 0) return "0";
  const magnitude = Math.max(Math.abs(value), step);
  if (magnitude >= 1e6 || step < 1e-4) return Number(value.toPrecision(4)).toExponential();
  return value.toFixed(Math.max(0, -Math.floor(Math.log10(step) + 1e-9)));
}

/** One named line of a plot. */
export interface PlotSeries {
  name: string;
  /** `[x, y]` points; non-finite `y` breaks the line, non-finite `x` is dropped. */
  points: Array<[number, number]>;
}

/** Options of {@linkcode linePlot}. */
export interface LinePlotOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  series: PlotSeries[];
  /** Width in px (default 560). */
  width?: number;
  /** Height in px of the plot without its legend (default 300); the legend adds rows below. */
  height?: number;
  /**
   * Exponential-moving-average weight in [0, 1) for noisy curves (RL rewards):
   * 0 (default) draws the data as is; above 0 draws the smoothed line over a
   * faint line of the raw data.
   */
  smoothing?: number;
  /** Most points drawn per line: longer series are averaged in equal buckets (default 1000). */
  maxPoints?: number;
}

/**
 * TensorBoard's debiased exponential moving average: a running average that
 * starts at the first value instead of being pulled towards 0.
 *
 * @param values Values; non-finite ones are skipped and stay non-finite.
 * @param weight Smoothing weight in [0, 1); 0 returns the values unchanged.
 * @returns The smoothed values, same length.
 * @example
 * ```ts
 * import { smoothEma } from "./svg.ts";
 * console.log(smoothEma([1, 3], 0.5)); // [1, 2.333333333333333]
 * ```
 */
export function smoothEma(values: number[], weight: number): number[] {
  const w = Math.min(Math.max(weight, 0), 0.999);
  let last = 0;
  let count = 0;
  return values.map((v) => {
    if (!Number.isFinite(v)) return v;
    last = last * w + (1 - w) * v;
    count++;
    return last / (1 - w ** count);
  });
}

/** Averages consecutive points in `max` equal buckets (a NaN in a bucket makes the bucket NaN). */
function downsample(points: Array<[number, number]>, max: number): Array<[number, number]> {
  if (points.length <= max) return points;
  const out: Array<[number, number]> = [];
  for (let b = 0; b < max; b++) {
    const from = Math.floor((b * points.length) / max);
    const to = Math.floor(((b + 1) * points.length) / max);
    let sx = 0;
    let sy = 0;
    for (let i = from; i < to; i++) {
      sx += points[i][0];
      sy += points[i][1];
    }
    out.push([sx / (to - from), sy / (to - from)]);
  }
  return out;
}

/** Splits points into runs of finite y (the line breaks at NaN and infinities). */
function segments(points: Array<[number, number]>): Array<Array<[number, number]>> {
  const out: Array<Array<[number, number]>> = [];
  let current: Array<[number, number]> = [];
  for (const point of points) {
    if (Number.isFinite(point[1])) current.push(point);
    else if (current.length > 0) {
      out.push(current);
      current = [];
    }
  }
  if (current.length > 0) out.push(current);
  return out;
}

/**
 * Draws a line plot: axes with nice ticks and grid lines, one line per series
 * in {@linkcode PALETTE} colours, a legend below, optional smoothing. Lines are
 * `<path class="line">` elements (with `class="line raw"` for the faint raw
 * data under a smoothed line); points of short series (25 or fewer) are also
 * marked with circles. A plot without any finite value says "No data".
 *
 * @param options Title, axis labels, series, size, smoothing.
 * @returns A standalone SVG document.
 * @example
 * ```ts
 * import { linePlot } from "./svg.ts";
 * const svg = linePlot({
 *   title: "Training loss",
 *   xLabel: "step",
 *   yLabel: "loss",
 *   series: [{ name: "train", points: [[0, 2.1], [1, 1.7], [2, 1.5]] }],
 * });
 * console.log(svg.startsWith("<svg")); // true
 * ```
 */
export function linePlot(options: LinePlotOptions): string {
  const width = options.width ?? 560;
  const plotHeight = options.height ?? 300;
  const smoothing = options.smoothing ?? 0;
  const maxPoints = Math.max(2, options.maxPoints ?? 1000);
  const series = options.series.map((s, i) => {
    const points = s.points
      .filter((p) => Array.isArray(p) && Number.isFinite(p[0]))
      .map((p): [number, number] => [p[0], typeof p[1] === "number" ? p[1] : NaN])
      .sort((a, b) => a[0] - b[0]);
    return {
      name: s.name,
      color: PALETTE[i % PALETTE.length],
      // Past the palette, lines repeat colours with a dash pattern.
      dash: i >= PALETTE.length
        ? ["6 3", "2 2", "8 3 2 3"][Math.floor(i / PALETTE.length - 1) % 3]
        : "",
      points: downsample(points, maxPoints),
      finite: points.filter((p) => Number.isFinite(p[1])).length,
    };
  });
  const finite = series.flatMap((s) => s.points.filter((p) => Number.isFinite(p[1])));

  // Legend rows: entries flow left to right and wrap.
  const legendRows: Array<Array<{ text: string; color: string; dash: string; x: number }>> = [[]];
  let legendX = 0;
  for (const s of series) {
    const text = s.finite === 0 ? `${s.name} (no data)` : s.name;
    const itemWidth = 28 + textWidth(text, 12) + 18;
    if (legendX > 0 && legendX + itemWidth > width - 24) {
      legendRows.push([]);
      legendX = 0;
    }
    legendRows[legendRows.length - 1].push({ text, color: s.color, dash: s.dash, x: legendX });
    legendX += itemWidth;
  }
  const legendHeight = series.length > 0 ? legendRows.length * 18 + 6 : 0;
  const height = plotHeight + legendHeight;

  const parts: string[] = [svgOpen(width, height, options.title)];
  parts.push(
    `<text x="${
      width / 2
    }" y="20" text-anchor="middle" font-size="14" font-weight="600" fill="#1f2933">${
      escapeXml(options.title)
    }</text>`,
  );

  const xs = finite.map((p) => p[0]);
  const ys = finite.map((p) => p[1]);
  const xTicks = niceTicks(Math.min(...xs), Math.max(...xs), Math.max(2, Math.round(width / 110)));
  const yTicks = niceTicks(
    Math.min(...ys),
    Math.max(...ys),
    Math.max(2, Math.round(plotHeight / 60)),
  );
  const yLabels = yTicks.ticks.map((t) => formatTick(t, yTicks.step));
  const left = 30 + Math.max(...yLabels.map((t) => textWidth(t, 11)), 10);
  const top = 34;
  const right = width - 16;
  const bottom = plotHeight - 44;

  if (finite.length === 0) {
    parts.push(emptyPanel({ left, top, right, bottom }, "No data"));
  } else {
    // The x axis spans the data; the y axis spans whole ticks, so every point is inside.
    const x0 = xs.length > 0 && Math.min(...xs) < Math.max(...xs)
      ? Math.min(...xs)
      : xTicks.ticks[0];
    const x1 = xs.length > 0 && Math.min(...xs) < Math.max(...xs)
      ? Math.max(...xs)
      : xTicks.ticks[xTicks.ticks.length - 1];
    const y0 = yTicks.ticks[0];
    const y1 = yTicks.ticks[yTicks.ticks.length - 1];
    const sx = (x: number) => left + ((x - x0) / (x1 - x0)) * (right - left);
    const sy = (y: number) => bottom - ((y - y0) / (y1 - y0)) * (bottom - top);

    parts.push(`<g class="grid" stroke="#e4e7eb" stroke-width="1">`);
    for (const t of yTicks.ticks) {
      parts.push(`<line x1="${r(left)}" x2="${r(right)}" y1="${r(sy(t))}" y2="${r(sy(t))}"/>`);
    }
    for (const t of xTicks.ticks) {
      if (t < x0 - 1e-12 || t > x1 + 1e-12) continue;
      parts.push(`<line x1="${r(sx(t))}" x2="${r(sx(t))}" y1="${r(top)}" y2="${r(bottom)}"/>`);
    }
    parts.push(`</g>`);
    parts.push(`<g class="ticks" fill="#52606d" font-size="11">`);
    yTicks.ticks.forEach((t, i) => {
      parts.push(
        `<text x="${r(left - 6)}" y="${r(sy(t) + 4)}" text-anchor="end">${
          escapeXml(yLabels[i])
        }</text>`,
      );
    });
    for (const t of xTicks.ticks) {
      if (t < x0 - 1e-12 || t > x1 + 1e-12) continue;
      parts.push(
        `<text x="${r(sx(t))}" y="${r(bottom + 16)}" text-anchor="middle">${
          escapeXml(formatTick(t, xTicks.step))
        }</text>`,
      );
    }
    parts.push(`</g>`);

    const pathOf = (points: Array<[number, number]>) =>
      segments(points)
        .map((seg) =>
          seg.map((p, i) => `${i === 0 ? "M" : "L"}${r(sx(p[0]))},${r(sy(p[1]))}`).join("")
        )
        .join("");
    parts.push(`<g class="series" fill="none" stroke-linejoin="round" stroke-linecap="round">`);
    for (const s of series) {
      if (s.finite === 0) continue;
      const dash = s.dash ? ` stroke-dasharray="${s.dash}"` : "";
      const name = escapeXml(s.name);
      if (smoothing > 0 && s.points.length > 2) {
        const smoothed = smoothEma(s.points.map((p) => p[1]), smoothing);
        parts.push(
          `<path class="line raw" d="${
            pathOf(s.points)
          }" stroke="${s.color}" stroke-width="1" stroke-opacity="0.3"${dash}/>`,
          `<path class="line" data-series="${name}" d="${
            pathOf(s.points.map((p, i) => [p[0], smoothed[i]]))
          }" stroke="${s.color}" stroke-width="2"${dash}/>`,
        );
      } else {
        parts.push(
          `<path class="line" data-series="${name}" d="${
            pathOf(s.points)
          }" stroke="${s.color}" stroke-width="2"${dash}/>`,
        );
      }
      // A single point draws no line; short series show their points.
      const lonely = segments(s.points).filter((seg) => seg.length === 1).flat();
      const marked = s.points.length <= 25 ? s.points.filter((p) => Number.isFinite(p[1])) : lonely;
      for (const p of marked) {
        parts.push(
          `<circle cx="${r(sx(p[0]))}" cy="${
            r(sy(p[1]))
          }" r="2.5" fill="${s.color}" stroke="none"/>`,
        );
      }
    }
    parts.push(`</g>`);
  }

  // Axes and their labels.
  parts.push(
    `<g class="axes" stroke="#7b8794" stroke-width="1">` +
      `<line x1="${r(left)}" x2="${r(right)}" y1="${r(bottom)}" y2="${r(bottom)}"/>` +
      `<line x1="${r(left)}" x2="${r(left)}" y1="${r(top)}" y2="${r(bottom)}"/></g>`,
    `<text x="${r((left + right) / 2)}" y="${r(bottom + 34)}" text-anchor="middle" fill="#323f4b">${
      escapeXml(options.xLabel)
    }</text>`,
    `<text transform="translate(14 ${
      r((top + bottom) / 2)
    }) rotate(-90)" text-anchor="middle" fill="#323f4b">${escapeXml(options.yLabel)}</text>`,
  );

  if (series.length > 0) {
    parts.push(`<g class="legend">`);
    legendRows.forEach((row, rowIndex) => {
      const rowWidth = row.length === 0 ? 0 : row[row.length - 1].x +
        28 + textWidth(row[row.length - 1].text, 12);
      const offset = Math.max(8, (width - rowWidth) / 2);
      const y = plotHeight + rowIndex * 18 + 6;
      for (const item of row) {
        const x = offset + item.x;
        const dash = item.dash ? ` stroke-dasharray="${item.dash}"` : "";
        parts.push(
          `<line x1="${r(x)}" x2="${
            r(x + 22)
          }" y1="${y}" y2="${y}" stroke="${item.color}" stroke-width="3"${dash}/>`,
          `<text x="${r(x + 28)}" y="${y + 4}" fill="#323f4b">${escapeXml(item.text)}</text>`,
        );
      }
    });
    parts.push(`</g>`);
  }
  parts.push(`</svg>`);
  return parts.join("");
}

/** Options of {@linkcode pianoRollSvg}. */
export interface PianoRollOptions {
  /** Width in px (default 800). */
  width?: number;
  /** Height in px (default 240). */
  height?: number;
  /** Draw only the first `maxSec` seconds (default: the whole piece). */
  maxSec?: number;
}

const PITCH_NAMES = ["C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B"];

/**
 * Name of a MIDI pitch, with middle C (60) as C4.
 *
 * @param pitch MIDI pitch 0..127.
 * @returns E.g. `"C4"`, `"F♯2"`.
 */
export function pitchName(pitch: number): string {
  return `${PITCH_NAMES[((pitch % 12) + 12) % 12]}${Math.floor(pitch / 12) - 1}`;
}

/** True for the pitch classes of the black piano keys. */
function isBlackKey(pitch: number): boolean {
  return [1, 3, 6, 8, 10].includes(((pitch % 12) + 12) % 12);
}

/**
 * Draws a piano roll: one `<rect class="note">` per note (time across, pitch
 * up), velocity as opacity, black-key rows shaded, beat lines and darker bar
 * lines from `piece.beatsSec` and `piece.beatsPerBar`, C labels on the pitch
 * axis and seconds on the time axis. Notes cut by `maxSec` end at the edge;
 * notes that start after it are left out.
 *
 * @param piece The piece.
 * @param options Size and how many seconds to draw.
 * @returns A standalone SVG document.
 * @example
 * ```ts
 * import { pianoRollSvg } from "./svg.ts";
 * const svg = pianoRollSvg({
 *   id: "arpeggio",
 *   notes: [{ pitch: 60, startSec: 0, endSec: 0.5, velocity: 100 }],
 *   tempoBpm: 120,
 *   beatsPerBar: 4,
 *   beatsSec: [0, 0.5],
 * });
 * console.log(svg.includes('class="note"')); // true
 * ```
 */
export function pianoRollSvg(piece: Piece, options: PianoRollOptions = {}): string {
  const width = options.width ?? 800;
  const height = options.height ?? 240;
  const notes = piece.notes.filter((n) =>
    Number.isFinite(n.pitch) && Number.isFinite(n.startSec) && Number.isFinite(n.endSec) &&
    n.endSec > n.startSec
  );
  const pieceEndSec = notes.reduce((end, n) => Math.max(end, n.endSec), 0);
  const endSec = Math.max(
    options.maxSec !== undefined ? Math.min(options.maxSec, pieceEndSec) : pieceEndSec,
    1e-3,
  );
  const shown = notes.filter((n) => n.startSec < endSec);
  const parts: string[] = [svgOpen(width, height, `Piano roll of ${piece.id}`)];

  const left = 38;
  const right = width - 8;
  const top = 6;
  const bottom = height - 22;
  if (shown.length === 0) {
    parts.push(emptyPanel({ left, top, right, bottom }, "No notes"), `</svg>`);
    return parts.join("");
  }

  // At least an octave tall, with one empty row above and below the notes.
  let low = Math.min(...shown.map((n) => n.pitch)) - 1;
  let high = Math.max(...shown.map((n) => n.pitch)) + 1;
  if (high - low < 12) {
    const extra = 12 - (high - low);
    low -= Math.floor(extra / 2);
    high += Math.ceil(extra / 2);
  }
  low = Math.max(0, low);
  high = Math.min(127, Math.max(high, low + 1));
  const rowHeight = (bottom - top) / (high - low + 1);
  const sx = (sec: number) => left + (sec / endSec) * (right - left);
  const rowY = (pitch: number) => top + (high - pitch) * rowHeight;

  parts.push(`<g class="keys">`);
  parts.push(
    `<rect x="${left}" y="${top}" width="${r(right - left)}" height="${
      r(bottom - top)
    }" fill="#ffffff" stroke="#c5ccd6"/>`,
  );
  for (let pitch = low; pitch <= high; pitch++) {
    if (isBlackKey(pitch)) {
      parts.push(
        `<rect x="${left}" y="${r(rowY(pitch))}" width="${r(right - left)}" height="${
          r(rowHeight)
        }" fill="#f0f2f5"/>`,
      );
    }
  }
  parts.push(`</g>`);

  // Beat lines when beats are at least 4 px apart, bar lines when bars are.
  const beats = piece.beatsSec.filter((t) => Number.isFinite(t) && t >= 0 && t <= endSec);
  const beatsPerBar = Math.max(1, Math.round(piece.beatsPerBar) || 4);
  const beatPx = beats.length > 1 ? (right - left) / beats.length : Infinity;
  parts.push(`<g class="beats">`);
  piece.beatsSec.forEach((t, i) => {
    if (!(Number.isFinite(t) && t >= 0 && t <= endSec)) return;
    const isBar = i % beatsPerBar === 0;
    if (!isBar && beatPx < 4) return;
    if (isBar && beatPx * beatsPerBar < 4) return;
    parts.push(
      `<line class="${isBar ? "bar" : "beat"}" x1="${r(sx(t))}" x2="${
        r(sx(t))
      }" y1="${top}" y2="${bottom}" stroke="${isBar ? "#9aa5b1" : "#e4e7eb"}" stroke-width="1"/>`,
    );
  });
  parts.push(`</g>`);

  // C rows get a label and a line under them, so octaves read at a glance.
  parts.push(`<g class="pitch-axis" font-size="10" fill="#52606d">`);
  for (let pitch = low; pitch <= high; pitch++) {
    if (pitch % 12 !== 0) continue;
    const y = rowY(pitch) + rowHeight;
    parts.push(
      `<line x1="${left}" x2="${r(right)}" y1="${r(y)}" y2="${
        r(y)
      }" stroke="#cbd2d9" stroke-width="1"/>`,
      `<text x="${left - 4}" y="${r(y - Math.max(0, rowHeight / 2 - 3.5))}" text-anchor="end">${
        pitchName(pitch)
      }</text>`,
    );
  }
  parts.push(`</g>`);

  const timeTicks = niceTicks(0, endSec, Math.max(2, Math.round(width / 90)));
  parts.push(`<g class="time-axis" font-size="10" fill="#52606d">`);
  for (const t of timeTicks.ticks) {
    if (t < 0 || t > endSec + 1e-9) continue;
    parts.push(
      `<text x="${r(sx(t))}" y="${bottom + 14}" text-anchor="middle">${
        formatTick(t, timeTicks.step)
      } s</text>`,
    );
  }
  parts.push(`</g>`);

  parts.push(`<g class="notes" fill="#3b6fb6" stroke="#1f4a85" stroke-width="0.5">`);
  for (const note of shown) {
    const velocity = Math.min(
      127,
      Math.max(1, Number.isFinite(note.velocity) ? note.velocity : 80),
    );
    const x = sx(note.startSec);
    const w = Math.max(1, sx(Math.min(note.endSec, endSec)) - x);
    parts.push(
      `<rect class="note" x="${r(x)}" y="${r(rowY(note.pitch) + 0.5)}" width="${r(w)}" height="${
        r(Math.max(1, rowHeight - 1))
      }" rx="1" fill-opacity="${(0.3 + 0.7 * (velocity / 127)).toFixed(2)}"><title>${
        pitchName(note.pitch)
      } at ${note.startSec.toFixed(2)} s, velocity ${velocity}</title></rect>`,
    );
  }
  parts.push(`</g></svg>`);
  return parts.join("");
}

/** A stage of a graph config as written in YAML (only what the diagram reads). */
interface StageConfig {
  use?: unknown;
  in?: unknown;
  loop?: { episodes?: unknown; carry?: unknown; stages?: unknown };
}

/** Options of {@linkcode graphSvg}. */
export interface GraphSvgOptions {
  /** Layers run left to right (`"LR"`, default) or top to bottom (`"TB"`). */
  direction?: "LR" | "TB";
  /** Status per top-level stage (from `manifest.json`): colours the boxes. */
  status?: Record<string, string>;
}

const STATUS_COLOURS: Record<string, { fill: string; stroke: string }> = {
  done: { fill: "#e6f4ea", stroke: "#3c9a5f" },
  cached: { fill: "#e3effb", stroke: "#3b7dd8" },
  failed: { fill: "#fdecea", stroke: "#d64545" },
  interrupted: { fill: "#fff4e5", stroke: "#e08a1e" },
  running: { fill: "#fff8d6", stroke: "#c9a227" },
  pending: { fill: "#fff8d6", stroke: "#c9a227" },
};
const DEFAULT_COLOURS = { fill: "#f5f7fa", stroke: "#8a94a6" };

interface Box {
  id: string;
  /** `dummy`: an invisible point that a long edge passes through. */
  kind: "stage" | "loop" | "carry" | "dummy";
  title: string;
  subtitle: string;
  w: number;
  h: number;
  x: number;
  y: number;
  inner?: Level;
}

interface Edge {
  from: string;
  to: string;
  label: string;
  /** A carried value going back to the start of a loop body. */
  back?: boolean;
  /** Dummy boxes the edge passes through, one per layer it skips. */
  via?: string[];
}

interface Level {
  boxes: Box[];
  edges: Edge[];
  width: number;
  height: number;
}

function parseRef(value: unknown): { stage: string; output: string } | undefined {
  if (typeof value !== "string") return undefined;
  const match = /^([^.]+)\.([^.]+)$/.exec(value);
  return match ? { stage: match[1], output: match[2] } : undefined;
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : {};
}

/** Every input reference of a body (recursively), as [port, ref] pairs. */
function refsOf(stages: Record<string, unknown>): Array<{ stage: string; output: string }> {
  const out: Array<{ stage: string; output: string }> = [];
  for (const raw of Object.values(stages)) {
    const stage = asRecord(raw) as StageConfig;
    for (const value of Object.values(asRecord(stage.in))) {
      const ref = parseRef(value);
      if (ref) out.push(ref);
    }
    if (stage.loop) {
      for (const carry of Object.values(asRecord(stage.loop.carry))) {
        const ref = parseRef(asRecord(carry).init);
        if (ref) out.push(ref);
      }
      out.push(...refsOf(asRecord(stage.loop.stages)));
    }
  }
  return out;
}

function edgeLabel(output: string, port: string): string {
  return output === port ? output : `${output} → ${port}`;
}

/** Lays out one level of stages (a graph, or a loop body) in layers. */
function layoutLevel(
  stages: Record<string, unknown>,
  direction: "LR" | "TB",
  loopName?: string,
  carry?: Record<string, unknown>,
): Level {
  const boxes: Box[] = [];
  const edges: Edge[] = [];
  const names = new Set(Object.keys(stages));
  const carryId = loopName !== undefined ? `${loopName}/carry` : "";
  if (loopName !== undefined) {
    const carried = Object.keys(carry ?? {});
    const title = "carry";
    const subtitle = carried.join(", ") || "(nothing)";
    boxes.push({
      id: carryId,
      kind: "carry",
      title,
      subtitle,
      w: Math.max(textWidth(title, 12), textWidth(subtitle, 11)) + 28,
      h: 40,
      x: 0,
      y: 0,
    });
  }
  const addEdge = (from: string, to: string, label: string, back = false) => {
    const same = edges.find((e) => e.from === from && e.to === to && e.back === back);
    if (same) {
      if (!same.label.split(", ").includes(label)) same.label += `, ${label}`;
    } else edges.push({ from, to, label, back });
  };
  for (const [name, raw] of Object.entries(stages)) {
    const stage = asRecord(raw) as StageConfig;
    if (stage.loop) {
      const loop = stage.loop;
      const body = asRecord(loop.stages);
      const inner = layoutLevel(body, direction, name, asRecord(loop.carry));
      const episodes = typeof loop.episodes === "number" ? ` × ${loop.episodes}` : "";
      const title = `${name}: loop${episodes}`;
      boxes.push({
        id: name,
        kind: "loop",
        title,
        subtitle: "",
        w: Math.max(inner.width + 24, textWidth(title, 13) + 24),
        h: inner.height + 24 + 22,
        x: 0,
        y: 0,
        inner,
      });
      // The loop reads its carry inits and whatever outer stage its body reads.
      const bodyNames = new Set(Object.keys(body));
      for (const [carryName, carryValue] of Object.entries(asRecord(loop.carry))) {
        const init = parseRef(asRecord(carryValue).init);
        if (init && names.has(init.stage)) {
          addEdge(init.stage, name, edgeLabel(init.output, carryName));
        }
      }
      for (const ref of refsOf(body)) {
        if (!bodyNames.has(ref.stage) && ref.stage !== name && names.has(ref.stage)) {
          addEdge(ref.stage, name, ref.output);
        }
      }
    } else {
      const title = name;
      const subtitle = typeof stage.use === "string" ? truncate(stage.use, 32) : "";
      boxes.push({
        id: name,
        kind: "stage",
        title,
        subtitle,
        w: Math.max(textWidth(title, 13), textWidth(subtitle, 11)) + 28,
        h: subtitle ? 42 : 30,
        x: 0,
        y: 0,
      });
      for (const [port, value] of Object.entries(asRecord(stage.in))) {
        const ref = parseRef(value);
        if (!ref) continue;
        if (names.has(ref.stage) && ref.stage !== name) {
          addEdge(ref.stage, name, edgeLabel(ref.output, port));
        } else if (loopName !== undefined && ref.stage === loopName) {
          addEdge(carryId, name, edgeLabel(ref.output, port));
        }
      }
    }
  }
  if (loopName !== undefined) {
    for (const [carryName, carryValue] of Object.entries(carry ?? {})) {
      const next = parseRef(asRecord(carryValue).next);
      if (next && names.has(next.stage)) addEdge(next.stage, carryId, carryName, true);
    }
  }

  // Layer = longest path from a source (Sugiyama et al. 1981, "Methods for visual
  // understanding of hierarchical system structures").
  const byId = new Map(boxes.map((b) => [b.id, b]));
  const forward = edges.filter((e) => !e.back && byId.has(e.from) && byId.has(e.to));
  const layer = new Map<string, number>();
  const visiting = new Set<string>();
  const layerOf = (id: string): number => {
    const known = layer.get(id);
    if (known !== undefined) return known;
    if (visiting.has(id)) return 0; // A cycle (the runner rejects these): break it anywhere.
    visiting.add(id);
    const preds = forward.filter((e) => e.to === id).map((e) => layerOf(e.from) + 1);
    const value = Math.max(0, ...preds);
    visiting.delete(id);
    layer.set(id, value);
    return value;
  };
  for (const box of boxes) layerOf(box.id);
  // An edge that skips layers runs through a small invisible box in each layer it
  // crosses, so it is routed around the stages in between instead of through them.
  const links: Array<[string, string]> = [];
  forward.forEach((edge, e) => {
    const from = layer.get(edge.from)!;
    const to = layer.get(edge.to)!;
    edge.via = [];
    let previous = edge.from;
    for (let l = from + 1; l < to; l++) {
      const id = `#${e}.${l}`;
      boxes.push({ id, kind: "dummy", title: "", subtitle: "", w: 10, h: 10, x: 0, y: 0 });
      layer.set(id, l);
      edge.via.push(id);
      links.push([previous, id]);
      previous = id;
    }
    links.push([previous, edge.to]);
  });
  const layerCount = Math.max(0, ...layer.values()) + 1;
  const layers: Box[][] = Array.from({ length: layerCount }, () => []);
  for (const box of boxes) layers[layer.get(box.id)!].push(box);

  // Order within layers: barycentre sweeps down and up to reduce crossings.
  const order = new Map<string, number>();
  layers.forEach((boxesOfLayer) => boxesOfLayer.forEach((b, i) => order.set(b.id, i)));
  const sortLayer = (l: number, neighbours: (id: string) => string[]) => {
    layers[l] = layers[l]
      .map((b, i) => {
        const positions = neighbours(b.id).map((n) => order.get(n) ?? 0);
        const centre = positions.length > 0
          ? positions.reduce((a, c) => a + c, 0) / positions.length
          : i;
        return { b, i, centre };
      })
      .sort((a, z) => a.centre - z.centre || a.i - z.i)
      .map((e) => e.b);
    layers[l].forEach((b, i) => order.set(b.id, i));
  };
  const preds = (id: string) => links.filter(([, to]) => to === id).map(([from]) => from);
  const succs = (id: string) => links.filter(([from]) => from === id).map(([, to]) => to);
  for (let sweep = 0; sweep < 3; sweep++) {
    for (let l = 1; l < layerCount; l++) sortLayer(l, preds);
    for (let l = layerCount - 2; l >= 0; l--) sortLayer(l, succs);
  }
  for (let l = 1; l < layerCount; l++) sortLayer(l, preds);

  // Positions: along = the direction of flow, across = perpendicular to it.
  const gapAlong = 56;
  const gapAcross = 22;
  // Left to right, labels lie along the gaps between layers: make each gap fit its labels.
  const gaps = layers.map(() => gapAlong);
  if (direction === "LR") {
    for (const edge of forward) {
      const l = layer.get(edge.from)!;
      gaps[l] = Math.max(gaps[l], textWidth(edge.label, 10) + 24);
    }
  }
  const along = (b: Box) => (direction === "LR" ? b.w : b.h);
  const across = (b: Box) => (direction === "LR" ? b.h : b.w);
  const layerAcross = layers.map((boxesOfLayer) =>
    boxesOfLayer.reduce((sum, b) => sum + across(b), 0) + gapAcross * (boxesOfLayer.length - 1)
  );
  const maxAcross = Math.max(0, ...layerAcross);
  let position = 0;
  layers.forEach((boxesOfLayer, l) => {
    const size = Math.max(0, ...boxesOfLayer.map(along));
    let offset = (maxAcross - layerAcross[l]) / 2;
    for (const b of boxesOfLayer) {
      // A long edge runs straight through the whole depth of a layer it crosses.
      if (b.kind === "dummy") {
        if (direction === "LR") b.w = size;
        else b.h = size;
      }
      const a = position + (size - along(b)) / 2;
      if (direction === "LR") {
        b.x = a;
        b.y = offset;
      } else {
        b.x = offset;
        b.y = a;
      }
      offset += across(b) + gapAcross;
    }
    position += size + gaps[l];
  });
  const extent = Math.max(0, position - gaps[layerCount - 1]);
  // Back edges (carried values) run around the far side: leave room for them.
  const backRoom = edges.some((e) => e.back) ? 34 : 0;
  return {
    boxes,
    edges,
    width: direction === "LR" ? extent : maxAcross + backRoom,
    height: direction === "LR" ? maxAcross + backRoom : extent,
  };
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `…${text.slice(text.length - max + 1)}`;
}

/** Arrowhead at (x, y) pointing along (dx, dy). */
function arrowHead(x: number, y: number, dx: number, dy: number, color: string): string {
  const length = Math.hypot(dx, dy) || 1;
  const ux = dx / length;
  const uy = dy / length;
  const size = 7;
  const bx = x - ux * size;
  const by = y - uy * size;
  return `<path d="M${r(x)},${r(y)}L${r(bx - uy * size * 0.45)},${r(by + ux * size * 0.45)}L${
    r(bx + uy * size * 0.45)
  },${r(by - ux * size * 0.45)}Z" fill="${color}"/>`;
}

function drawLevel(
  level: Level,
  ox: number,
  oy: number,
  direction: "LR" | "TB",
  status: Record<string, string>,
  top: boolean,
  parts: string[],
): void {
  const byId = new Map(level.boxes.map((b) => [b.id, b]));
  for (const box of level.boxes) {
    if (box.kind === "dummy") continue;
    const x = ox + box.x;
    const y = oy + box.y;
    const colours = (top ? STATUS_COLOURS[status[box.id]] : undefined) ?? DEFAULT_COLOURS;
    if (box.kind === "loop") {
      parts.push(
        `<g class="loop" data-stage="${escapeXml(box.id)}"><rect x="${r(x)}" y="${r(y)}" width="${
          r(box.w)
        }" height="${r(box.h)}" rx="10" fill="${
          top && status[box.id] ? colours.fill : "#fbfcfd"
        }" fill-opacity="0.6" stroke="${colours.stroke}" stroke-dasharray="5 3"/>` +
          `<text x="${r(x + 12)}" y="${
            r(y + 18)
          }" font-size="13" font-weight="600" fill="#323f4b">${escapeXml(box.title)}</text></g>`,
      );
      drawLevel(box.inner!, x + 12, y + 34, direction, status, false, parts);
    } else if (box.kind === "carry") {
      parts.push(
        `<g class="carry"><rect x="${r(x)}" y="${r(y)}" width="${r(box.w)}" height="${
          r(box.h)
        }" rx="${box.h / 2}" fill="#fff" stroke="#8a94a6"/>` +
          `<text x="${r(x + box.w / 2)}" y="${
            r(y + 16)
          }" text-anchor="middle" font-size="12" fill="#52606d">${
            escapeXml(box.title)
          }</text><text x="${r(x + box.w / 2)}" y="${
            r(y + 31)
          }" text-anchor="middle" font-size="11" font-weight="600" fill="#323f4b">${
            escapeXml(box.subtitle)
          }</text></g>`,
      );
    } else {
      const statusText = top && status[box.id] ? ` (${status[box.id]})` : "";
      parts.push(
        `<g class="node" data-stage="${escapeXml(box.id)}"><title>${
          escapeXml(box.id + statusText)
        }</title><rect x="${r(x)}" y="${r(y)}" width="${r(box.w)}" height="${
          r(box.h)
        }" rx="6" fill="${colours.fill}" stroke="${colours.stroke}" stroke-width="1.5"/>` +
          `<text x="${r(x + box.w / 2)}" y="${
            r(y + (box.subtitle ? 18 : 19))
          }" text-anchor="middle" font-size="13" font-weight="600" fill="#1f2933">${
            escapeXml(box.title)
          }</text>` +
          (box.subtitle
            ? `<text x="${r(x + box.w / 2)}" y="${
              r(y + 34)
            }" text-anchor="middle" font-size="11" fill="#52606d">${escapeXml(box.subtitle)}</text>`
            : "") +
          `</g>`,
      );
    }
  }
  const farSide = direction === "LR" ? oy + level.height - 6 : ox + level.width - 6;
  // Where an edge leaves and enters a box: flow goes right (LR) or down (TB).
  const exit = (b: Box) =>
    direction === "LR"
      ? [ox + b.x + b.w, oy + b.y + b.h / 2]
      : [ox + b.x + b.w / 2, oy + b.y + b.h];
  const entry = (b: Box) =>
    direction === "LR" ? [ox + b.x, oy + b.y + b.h / 2] : [ox + b.x + b.w / 2, oy + b.y];
  /** A cubic from one layer to the next, leaving and arriving along the flow. */
  const link = ([x0, y0]: number[], [x3, y3]: number[]): number[] => {
    if (direction === "LR") {
      const bend = Math.max(20, (x3 - x0) / 2);
      return [x0, y0, x0 + bend, y0, x3 - bend, y3, x3, y3];
    }
    const bend = Math.max(16, (y3 - y0) / 2);
    return [x0, y0, x0, y0 + bend, x3, y3 - bend, x3, y3];
  };
  // Labels go where they overlap no box and no other label.
  const obstacles = level.boxes.filter((b) => b.kind !== "dummy").map((b) => ({
    x: ox + b.x,
    y: oy + b.y,
    w: b.w,
    h: b.h,
  }));
  const placed: Array<{ x: number; y: number; w: number; h: number }> = [];
  const overlaps = (a: { x: number; y: number; w: number; h: number }) =>
    [...obstacles, ...placed].some((b) =>
      a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h
    );
  for (const edge of level.edges) {
    const a = byId.get(edge.from);
    const b = byId.get(edge.to);
    if (!a || !b) continue;
    const color = edge.back ? "#9aa5b1" : "#7b8794";
    let curves: number[][];
    if (edge.back) {
      // From the body stage around the far side into the carry box.
      const [ax, ay, bx, by] = [ox + a.x, oy + a.y, ox + b.x, oy + b.y];
      curves = [
        direction === "LR"
          ? [
            ax + a.w / 2,
            ay + a.h,
            ax + a.w / 2,
            farSide,
            bx + b.w / 2,
            farSide,
            bx + b.w / 2,
            by + b.h,
          ]
          : [
            ax + a.w,
            ay + a.h / 2,
            farSide,
            ay + a.h / 2,
            farSide,
            by + b.h / 2,
            bx + b.w,
            by + b.h / 2,
          ],
      ];
    } else {
      const chain = [a, ...(edge.via ?? []).map((id) => byId.get(id)!), b];
      curves = chain.slice(1).map((next, i) => link(exit(chain[i]), entry(next)));
    }
    // Consecutive curves meet at dummies: a straight line runs through each.
    let d = "";
    for (const c of curves) {
      d += d === "" ? `M${r(c[0])},${r(c[1])}` : `L${r(c[0])},${r(c[1])}`;
      d += `C${r(c[2])},${r(c[3])} ${r(c[4])},${r(c[5])} ${r(c[6])},${r(c[7])}`;
    }
    const last = curves[curves.length - 1];
    const labelWidth = textWidth(edge.label, 10) + 6;
    let label = { x: 0, y: 0, w: labelWidth, h: 13 };
    let found = false;
    const order = [curves[0], ...curves.slice(1).reverse()];
    for (const t of [0.5, 0.35, 0.65, 0.2, 0.8]) {
      for (const c of order) {
        const u = 1 - t;
        const px = u ** 3 * c[0] + 3 * u * u * t * c[2] + 3 * u * t * t * c[4] + t ** 3 * c[6];
        const py = u ** 3 * c[1] + 3 * u * u * t * c[3] + 3 * u * t * t * c[5] + t ** 3 * c[7];
        // Left to right, the label sits just above its line; top down, across it.
        const candidate = {
          x: px - labelWidth / 2,
          y: py - (direction === "LR" ? 14 : 10),
          w: labelWidth,
          h: 13,
        };
        if (!found && !overlaps(candidate)) {
          label = candidate;
          found = true;
        }
        if (!found && t === 0.5 && c === order[0]) label = candidate;
      }
    }
    placed.push(label);
    parts.push(
      `<g class="edge"><path d="${d}" fill="none" stroke="${color}" stroke-width="1.4"${
        edge.back ? ' stroke-dasharray="5 3"' : ""
      }/>${arrowHead(last[6], last[7], last[6] - last[4], last[7] - last[5], color)}` +
        `<text x="${r(label.x + label.w / 2)}" y="${
          r(label.y + 10)
        }" text-anchor="middle" font-size="10" fill="#52606d" stroke="#ffffff" stroke-width="3" paint-order="stroke">${
          escapeXml(edge.label)
        }</text></g>`,
    );
  }
}

/**
 * Draws a pipeline graph from its config (as written in YAML and stored in
 * `manifest.json`'s `config`): one box per stage with its name and `use`,
 * arrows for `in` references labelled with the output (and port, when it has
 * another name), loop blocks as dashed frames holding their body, a "carry"
 * box and dashed arrows for the values carried from one episode to the next.
 * Stages are placed in layers by longest path from the sources.
 *
 * @param config The graph config: `{ stages: { name: { use, in } | { loop: { episodes, carry, stages } } } }`.
 * @param options Direction and stage statuses.
 * @returns A standalone SVG document; a config without stages draws "No stages".
 * @example
 * ```ts
 * import { graphSvg } from "./svg.ts";
 * const svg = graphSvg({
 *   stages: {
 *     load: { use: "load/synthetic" },
 *     export: { use: "export/midi", in: { pieces: "load.pieces" } },
 *   },
 * });
 * console.log(svg.match(/class="node"/g)?.length); // 2
 * ```
 */
export function graphSvg(config: unknown, options: GraphSvgOptions = {}): string {
  const direction = options.direction ?? "LR";
  const stages = asRecord(asRecord(config).stages);
  const level = layoutLevel(stages, direction);
  const margin = 12;
  const statuses = Object.values(options.status ?? {}).filter((s) => s in STATUS_COLOURS);
  const legend = [...new Set(statuses)];
  const legendHeight = legend.length > 0 ? 26 : 0;
  const width = Math.ceil(Math.max(level.width + 2 * margin, 160));
  const height = Math.ceil(Math.max(level.height + 2 * margin, 60) + legendHeight);
  const parts = [svgOpen(width, height, "Pipeline graph")];
  if (level.boxes.length === 0) {
    parts.push(
      `<text x="${width / 2}" y="${
        height / 2
      }" text-anchor="middle" fill="#7b8794">No stages</text></svg>`,
    );
    return parts.join("");
  }
  drawLevel(level, margin, margin, direction, options.status ?? {}, true, parts);
  if (legend.length > 0) {
    let x = margin;
    const y = height - 18;
    parts.push(`<g class="status-legend" font-size="11" fill="#52606d">`);
    for (const status of legend) {
      const c = STATUS_COLOURS[status];
      parts.push(
        `<rect x="${x}" y="${y}" width="14" height="12" rx="3" fill="${c.fill}" stroke="${c.stroke}"/>`,
        `<text x="${x + 19}" y="${y + 10}">${escapeXml(status)}</text>`,
      );
      x += 19 + textWidth(status, 11) + 16;
    }
    parts.push(`</g>`);
  }
  parts.push(`</svg>`);
  return parts.join("");
}

/**
 * Width and height of an SVG string made here, read from its root element.
 *
 * @param svg An SVG document from this module.
 * @returns The `width` and `height` attributes, or 0 when missing.
 */
export function svgSize(svg: string): { width: number; height: number } {
  const root = /^<svg[^>]*>/.exec(svg)?.[0] ?? "";
  const read = (name: string) => Number(new RegExp(` ${name}="([\\d.]+)"`).exec(root)?.[1] ?? 0);
  return { width: read("width"), height: read("height") };
}

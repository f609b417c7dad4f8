/**
 * Line plots of training curves as standalone SVG. The smoothing is
 * TensorBoard's debiased exponential moving average
 * (`tensorboard/plugins/scalar/vz_line_chart2/line-chart.ts`).
 *
 * @module
 */

import { emptyPanel, escapeXml, PALETTE, r, svgOpen, textWidth } from "./_svg.ts";

/**
 * "Nice" tick values (multiples of 1, 2 or 5 times a power of ten) covering a range.
 *
 * @param min Lower end of the range.
 * @param max Upper end (equal ends are widened so there is always a range).
 * @param count About how many ticks to make.
 * @returns The ticks in increasing order, and their step.
 * @example
 * ```ts
 * import { niceTicks } from "./_plot.ts";
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
 * import { smoothEma } from "./_plot.ts";
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
 * import { linePlot } from "./_plot.ts";
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

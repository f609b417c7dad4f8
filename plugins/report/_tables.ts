/**
 * HTML tables of metrics: numbers formatted for reading, nested metric
 * objects as tables, and the per-reward-term comparison of eval/policies.
 *
 * @module
 */

import type { Metrics } from "../../mod.ts";
import { escapeXml } from "./_svg.ts";
import { isObject } from "./_run_files.ts";

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

export function isNumericMap(value: unknown): value is Record<string, number | null> {
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
export function matrixTable(
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

/**
 * Per reward term: real held-out excerpts vs pretrained vs fine-tuned samples
 * (from eval/policies' `real` row), with a flag where the fine-tuned policy
 * scores a term well above real music (it may be gaming the term) or falls
 * below the pretrained policy. Undefined without a `real` row.
 */
export function rewardTermTable(evaluation: Metrics | undefined): string | undefined {
  const value = evaluation as {
    real?: Record<string, number>;
    policies?: Record<string, Record<string, number>>;
  } | undefined;
  const real = value?.real, pre = value?.policies?.pretrained, fine = value?.policies?.finetuned;
  const collapse = evaluation?.collapse;
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

/** Text cut to `max` characters, with an ellipsis when cut. */
export function truncateText(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

/**
 * What every picture of the report shares, as standalone SVG strings with no
 * dependencies: the palette and font, XML escaping, the root element and an
 * empty panel. Every picture carries its own `xmlns`, sizes and fonts, so the
 * same string can be embedded inline in HTML or written to a `.svg` file; none
 * uses element ids, so any number of them can share one HTML page.
 *
 * @module
 */

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

export const FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif";

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
export function r(x: number): number {
  return Math.round(x * 10) / 10;
}

/** Estimated width in px of a text at a font size (no measuring without a browser). */
export function textWidth(text: string, fontSizePx: number): number {
  return text.length * fontSizePx * 0.58;
}

/** A grey panel with a centred message, drawn where a figure has nothing to show. */
export function emptyPanel(
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

export function svgOpen(width: number, height: number, title: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" role="img" font-family="${FONT}" font-size="12">` +
    `<title>${escapeXml(title)}</title>` +
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`;
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

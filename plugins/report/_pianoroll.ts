/**
 * Piano rolls of pieces as standalone SVG: one bar per note, pitch up,
 * time right, with the beat grid of the piece.
 *
 * @module
 */

import type { Piece } from "../../mod.ts";
import { emptyPanel, r, svgOpen } from "./_svg.ts";
import { formatTick, niceTicks } from "./_plot.ts";

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
 * import { pianoRollSvg } from "./_pianoroll.ts";
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

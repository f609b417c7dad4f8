/**
 * Round-trip fidelity of a tokenizer: how many notes of a piece come back
 * after encoding and decoding. Notes are matched one to one, greedily in
 * order of onset, in the spirit of `mir_eval.transcription`'s note matching
 * (which uses an optimal bipartite matching; greedy is enough here because
 * tolerances are below the spacing of repeated notes of one pitch).
 *
 * @module
 */

import type { Note, Piece } from "../_music/types.ts";

/** Options of {@linkcode matchNotes} and {@linkcode measureFidelity}. */
export interface FidelityOptions {
  /** Also require offsets within the tolerance (default true). False scores onsets only. */
  offsets?: boolean;
}

/** Counts of a note matching. */
export interface NoteMatch {
  /** Notes of the original piece. */
  total: number;
  /** Original notes matched by a decoded note of the same pitch. */
  matched: number;
  /** Decoded notes that matched none. */
  extra: number;
}

/**
 * Matches the notes of `decoded` to those of `original`: same pitch, onset
 * within `toleranceSec` and (unless `offsets: false`) offset within
 * `toleranceSec`. Each decoded note matches at most one original note; each
 * original note takes the unmatched candidate with the nearest onset.
 *
 * @param original The reference notes.
 * @param decoded The notes that came back.
 * @param toleranceSec Largest accepted time difference in seconds (inclusive).
 * @returns Counts of original notes, matched notes and unmatched decoded notes.
 */
export function matchNotes(
  original: readonly Note[],
  decoded: readonly Note[],
  toleranceSec: number,
  options: FidelityOptions = {},
): NoteMatch {
  const checkOffsets = options.offsets ?? true;
  // Decoded notes by pitch, sorted by onset, for a binary search per original note.
  const byPitch = new Map<number, Note[]>();
  for (const note of decoded) {
    const list = byPitch.get(note.pitch);
    if (list) list.push(note);
    else byPitch.set(note.pitch, [note]);
  }
  const used = new Map<number, Uint8Array>();
  for (const [pitch, list] of byPitch) {
    list.sort((a, b) => a.startSec - b.startSec);
    used.set(pitch, new Uint8Array(list.length));
  }
  // A tiny slack so that a difference of exactly the tolerance, computed in
  // floating point from quantised times, still counts.
  const tol = toleranceSec + 1e-9;
  const order = [...original].sort((a, b) => a.startSec - b.startSec);
  let matched = 0;
  for (const note of order) {
    const list = byPitch.get(note.pitch);
    if (!list) continue;
    const taken = used.get(note.pitch)!;
    let lo = 0, hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (list[mid].startSec < note.startSec - tol) lo = mid + 1;
      else hi = mid;
    }
    let best = -1;
    let bestDistance = Infinity;
    for (let i = lo; i < list.length && list[i].startSec <= note.startSec + tol; i++) {
      if (taken[i]) continue;
      if (checkOffsets && Math.abs(list[i].endSec - note.endSec) > tol) continue;
      const distance = Math.abs(list[i].startSec - note.startSec);
      if (distance < bestDistance) {
        best = i;
        bestDistance = distance;
      }
    }
    if (best >= 0) {
      taken[best] = 1;
      matched++;
    }
  }
  return { total: original.length, matched, extra: decoded.length - matched };
}

/**
 * Share of the original piece's notes that come back in `decoded` with the
 * same pitch and with onset and offset within `toleranceSec` (greedy
 * one-to-one matching, see {@linkcode matchNotes}).
 *
 * @param original The piece before encoding.
 * @param decoded The piece after encoding and decoding.
 * @param toleranceSec Largest accepted onset and offset difference in seconds.
 * @param options `offsets: false` scores onsets only.
 * @returns A share in [0, 1]; 1 for an original without notes.
 * @example
 * ```ts
 * import { measureFidelity } from "./_fidelity.ts";
 * const piece = {
 *   id: "a", tempoBpm: 120, beatsPerBar: 4, beatsSec: [0, 0.5],
 *   notes: [{ pitch: 60, startSec: 0, endSec: 0.5, velocity: 80 }],
 * };
 * const moved = { ...piece, notes: [{ pitch: 60, startSec: 0.004, endSec: 0.5, velocity: 80 }] };
 * console.assert(measureFidelity(piece, moved, 0.005) === 1);
 * ```
 */
export function measureFidelity(
  original: Piece,
  decoded: Piece,
  toleranceSec: number,
  options: FidelityOptions = {},
): number {
  const { total, matched } = matchNotes(original.notes, decoded.notes, toleranceSec, options);
  return total === 0 ? 1 : matched / total;
}

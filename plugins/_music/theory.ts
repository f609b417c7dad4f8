/**
 * Music theory shared by reward terms and evaluation metrics: scales and key
 * finding, interval classes, the beat grid, the top line, sounding segments
 * and leaps (pitch n-grams and repeats are in `ngrams.ts`). Pure functions on {@linkcode Piece}s and {@linkcode Note}s.
 *
 * References:
 * - Scales as in MusPy (Dong et al., "MusPy: A Toolkit for Symbolic Music
 *   Generation", ISMIR 2020): major `[0,2,4,5,7,9,11]` and natural minor
 *   `[0,2,3,5,7,8,10]` above a tonic.
 * - Key finding: Krumhansl–Schmuckler (Krumhansl, "Cognitive Foundations of
 *   Musical Pitch", 1990): the key whose Krumhansl–Kessler profile correlates
 *   best with the duration-weighted pitch-class histogram.
 *
 * @module
 */

import type { Note, Piece } from "./types.ts";

/** Names of the twelve pitch classes, C = 0. */
export const PITCH_CLASS_NAMES = [
  "C",
  "C#",
  "D",
  "Eb",
  "E",
  "F",
  "F#",
  "G",
  "Ab",
  "A",
  "Bb",
  "B",
] as const;

/** Scale steps above the tonic in semitones. Minor is the natural minor, as in MusPy. */
export const SCALE_STEPS = {
  major: [0, 2, 4, 5, 7, 9, 11],
  minor: [0, 2, 3, 5, 7, 8, 10],
} as const;

/** A scale mode. */
export type Mode = keyof typeof SCALE_STEPS;

/** A major or natural-minor scale on a tonic pitch class. */
export interface Scale {
  /** Pitch class of the tonic, 0 (C) .. 11 (B). */
  tonic: number;
  mode: Mode;
  /** `inScale[pc]` is true when pitch class `pc` belongs to the scale (length 12). */
  inScale: boolean[];
}

/**
 * Builds a scale.
 *
 * @param tonic Tonic pitch class 0..11 (other integers are taken modulo 12).
 * @param mode `"major"` or `"minor"` (natural minor).
 * @returns The scale with its membership mask.
 * @example
 * ```ts
 * import { makeScale } from "./theory.ts";
 * makeScale(0, "major").inScale[4]; // true: E is in C major
 * ```
 */
export function makeScale(tonic: number, mode: Mode): Scale {
  const root = ((tonic % 12) + 12) % 12;
  const inScale = new Array<boolean>(12).fill(false);
  for (const step of SCALE_STEPS[mode]) inScale[(root + step) % 12] = true;
  return { tonic: root, mode, inScale };
}

/** All 24 major and minor scales, majors first, each in tonic order C..B. */
export const ALL_SCALES: readonly Scale[] = (["major", "minor"] as const).flatMap((mode) =>
  Array.from({ length: 12 }, (_, tonic) => makeScale(tonic, mode))
);

/** Human-readable scale name, e.g. `"C major"`, `"A minor"`. */
export function scaleName(scale: Scale): string {
  return `${PITCH_CLASS_NAMES[scale.tonic]} ${scale.mode}`;
}

/** Pitch class 0..11 of a MIDI pitch. */
export function pitchClass(pitch: number): number {
  return ((pitch % 12) + 12) % 12;
}

/**
 * Pitch-class histogram of notes.
 *
 * @param notes The notes.
 * @param weighting `"count"` adds 1 per note, `"duration"` adds each note's length in seconds.
 * @returns 12 totals, C first (not normalised).
 */
export function pitchClassHistogram(
  notes: readonly Note[],
  weighting: "count" | "duration",
): number[] {
  const hist = new Array<number>(12).fill(0);
  for (const note of notes) {
    hist[pitchClass(note.pitch)] += weighting === "count" ? 1 : noteLengthSec(note);
  }
  return hist;
}

/** Length of a note in seconds, never negative. */
export function noteLengthSec(note: Note): number {
  return Math.max(0, note.endSec - note.startSec);
}

/**
 * Share of a pitch-class histogram that falls in a scale.
 *
 * @param histogram 12 non-negative weights.
 * @param scale The scale.
 * @returns In [0, 1]; NaN when the histogram is all zero.
 */
export function inScaleShare(histogram: readonly number[], scale: Scale): number {
  let inside = 0, total = 0;
  for (let pc = 0; pc < 12; pc++) {
    total += histogram[pc];
    if (scale.inScale[pc]) inside += histogram[pc];
  }
  return total > 0 ? inside / total : NaN;
}

/**
 * The major or minor scale that holds the largest share of a histogram
 * (MusPy `scale_consistency` takes this maximum). Ties go to the first scale
 * in {@linkcode ALL_SCALES} order, so a relative major wins over its minor.
 *
 * @param histogram 12 non-negative weights (see {@linkcode pitchClassHistogram}).
 * @returns The scale and its share; share is NaN for an all-zero histogram.
 * @example
 * ```ts
 * import { bestFittingScale } from "./theory.ts";
 * // C, E, G each once: C major holds all of it.
 * bestFittingScale([1, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0]).share; // 1
 * ```
 */
export function bestFittingScale(histogram: readonly number[]): { scale: Scale; share: number } {
  let best = ALL_SCALES[0];
  let bestShare = -Infinity;
  for (const scale of ALL_SCALES) {
    const share = inScaleShare(histogram, scale);
    if (share > bestShare) {
      best = scale;
      bestShare = share;
    }
  }
  return { scale: best, share: bestShare === -Infinity ? NaN : bestShare };
}

/** Krumhansl–Kessler key profiles, tonic first. */
const KK_PROFILES: Record<Mode, readonly number[]> = {
  major: [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88],
  minor: [6.33, 2.68, 3.52, 5.38, 2.6, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17],
};

function pearson(a: readonly number[], b: readonly number[]): number {
  const n = a.length;
  let meanA = 0, meanB = 0;
  for (let i = 0; i < n; i++) {
    meanA += a[i] / n;
    meanB += b[i] / n;
  }
  let cov = 0, varA = 0, varB = 0;
  for (let i = 0; i < n; i++) {
    cov += (a[i] - meanA) * (b[i] - meanB);
    varA += (a[i] - meanA) ** 2;
    varB += (b[i] - meanB) ** 2;
  }
  return varA > 0 && varB > 0 ? cov / Math.sqrt(varA * varB) : NaN;
}

/**
 * Estimates the key with the Krumhansl–Schmuckler algorithm: the scale whose
 * rotated Krumhansl–Kessler profile has the highest Pearson correlation with
 * the duration-weighted pitch-class histogram.
 *
 * @param notes The notes.
 * @returns The key as a scale and the correlation (NaN, with C major, when the
 *   histogram is flat or empty, where no key can be told).
 * @example
 * ```ts
 * import { findKey, scaleName } from "./theory.ts";
 * const notes = [60, 64, 67].map((pitch) => ({ pitch, startSec: 0, endSec: 1, velocity: 80 }));
 * scaleName(findKey(notes).scale); // "C major"
 * ```
 */
export function findKey(notes: readonly Note[]): { scale: Scale; correlation: number } {
  const hist = pitchClassHistogram(notes, "duration");
  let best = ALL_SCALES[0];
  let bestR = NaN;
  for (const scale of ALL_SCALES) {
    const profile = KK_PROFILES[scale.mode];
    const rotated = Array.from({ length: 12 }, (_, pc) => profile[(pc - scale.tonic + 12) % 12]);
    const r = pearson(hist, rotated);
    if (Number.isFinite(r) && !(r <= bestR)) {
      best = scale;
      bestR = r;
    }
  }
  return { scale: best, correlation: bestR };
}

/** Interval class 0..6 of the interval between two pitches (0 unison/octave, 6 tritone). */
export function intervalClass(pitchA: number, pitchB: number): number {
  const d = pitchClass(pitchA - pitchB);
  return Math.min(d, 12 - d);
}

/**
 * True for the sharp dissonances: minor second, major seventh and tritone
 * (and their compounds), i.e. interval classes 1 and 6.
 */
export function isDissonantInterval(pitchA: number, pitchB: number): boolean {
  const ic = intervalClass(pitchA, pitchB);
  return ic === 1 || ic === 6;
}

/**
 * Consonance of two pitches sounding together, by interval class: unison,
 * octave, fifth, fourth, thirds and sixths (classes 0, 3, 4, 5) are 1; minor
 * second, major seventh and tritone (classes 1, 6) are 0; major second and
 * minor seventh (class 2), mild dissonances, are 0.5.
 *
 * @returns 1, 0.5 or 0.
 */
export function intervalConsonance(pitchA: number, pitchB: number): number {
  const ic = intervalClass(pitchA, pitchB);
  if (ic === 1 || ic === 6) return 0;
  if (ic === 2) return 0.5;
  return 1;
}

/**
 * Maps times to beat positions and back for one piece. Beat `k` starts at
 * `beatsSec[k]`; between beats time is interpolated linearly, and before the
 * first or after the last beat the nearest beat length is extended. A piece
 * with fewer than two usable beats gets a grid from `tempoBpm` (120 when that
 * is not a positive number) starting at its first beat or at 0.
 */
export interface BeatGrid {
  /** Fractional beat index of a time, e.g. 2.5 is halfway through beat 2 (0-based). */
  position(timeSec: number): number;
  /** Time of a fractional beat index (the inverse of `position`). */
  time(beat: number): number;
}

/**
 * Builds the beat grid of a piece (see {@linkcode BeatGrid}).
 *
 * @param piece The piece; only `beatsSec` and `tempoBpm` are read.
 * @returns The grid.
 * @example
 * ```ts
 * import { beatGrid } from "./theory.ts";
 * const grid = beatGrid({ tempoBpm: 120, beatsSec: [0, 0.5, 1] });
 * grid.position(0.75); // 1.5
 * grid.position(2); // 4 (extended past the last beat)
 * ```
 */
export function beatGrid(piece: Pick<Piece, "beatsSec" | "tempoBpm">): BeatGrid {
  // Keep only finite, strictly increasing beat times so that searches are valid.
  const beats: number[] = [];
  for (const t of piece.beatsSec ?? []) {
    if (Number.isFinite(t) && (beats.length === 0 || t > beats[beats.length - 1])) beats.push(t);
  }
  if (beats.length < 2) {
    const secPerBeat = piece.tempoBpm > 0 && Number.isFinite(piece.tempoBpm)
      ? 60 / piece.tempoBpm
      : 0.5;
    const origin = beats[0] ?? 0;
    return {
      position: (t) => (t - origin) / secPerBeat,
      time: (b) => origin + b * secPerBeat,
    };
  }
  const last = beats.length - 1;
  return {
    position(t) {
      if (t < beats[0]) return (t - beats[0]) / (beats[1] - beats[0]);
      if (t >= beats[last]) return last + (t - beats[last]) / (beats[last] - beats[last - 1]);
      let lo = 0, hi = last; // beats[lo] <= t < beats[hi]
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (beats[mid] <= t) lo = mid;
        else hi = mid;
      }
      return lo + (t - beats[lo]) / (beats[lo + 1] - beats[lo]);
    },
    time(b) {
      if (b < 0) return beats[0] + b * (beats[1] - beats[0]);
      if (b >= last) return beats[last] + (b - last) * (beats[last] - beats[last - 1]);
      const k = Math.floor(b);
      return beats[k] + (b - k) * (beats[k + 1] - beats[k]);
    },
  };
}

/** Beats per bar of a piece, falling back to 4 when it is not a positive integer. */
export function beatsPerBarOf(piece: Pick<Piece, "beatsPerBar">): number {
  const n = piece.beatsPerBar;
  return Number.isInteger(n) && n > 0 ? n : 4;
}

/** Notes sorted by (startSec, pitch); returns the input itself when already sorted. */
export function sortedNotes(notes: readonly Note[]): readonly Note[] {
  for (let i = 1; i < notes.length; i++) {
    const a = notes[i - 1], b = notes[i];
    if (a.startSec > b.startSec || (a.startSec === b.startSec && a.pitch > b.pitch)) {
      return [...notes].sort((x, y) => x.startSec - y.startSec || x.pitch - y.pitch);
    }
  }
  return notes;
}

/** Latest note end in seconds; 0 for no notes. */
export function pieceEndSec(notes: readonly Note[]): number {
  let end = 0;
  for (const note of notes) end = Math.max(end, note.endSec);
  return end;
}

/**
 * The top line (skyline melody): notes whose onsets lie within
 * `chordToleranceSec` of the first onset of a group form one chord, and the
 * highest note of each chord is kept.
 *
 * @param notes The notes, in any order.
 * @param options `chordToleranceSec` (default 0.03 s, wide enough for rolled
 *   chords in performed MIDI).
 * @returns One note per chord, in time order.
 */
export function topLine(
  notes: readonly Note[],
  options: { chordToleranceSec?: number } = {},
): Note[] {
  const tolerance = options.chordToleranceSec ?? 0.03;
  const sorted = sortedNotes(notes);
  const line: Note[] = [];
  let groupStart = -Infinity;
  for (const note of sorted) {
    if (note.startSec - groupStart > tolerance) {
      line.push(note);
      groupStart = note.startSec;
    } else if (note.pitch > line[line.length - 1].pitch) {
      line[line.length - 1] = note;
    }
  }
  return line;
}

/** A stretch of time during which the same notes sound. */
export interface SoundingSegment {
  startSec: number;
  endSec: number;
  /** Pitches sounding, ascending; a pitch played twice at once appears twice. */
  pitches: number[];
}

/**
 * Cuts a piece's time at every note start and end and lists what sounds in
 * each piece of time. Silent stretches are left out.
 *
 * @param notes The notes, in any order.
 * @returns Segments in time order.
 */
export function soundingSegments(notes: readonly Note[]): SoundingSegment[] {
  const sorted = sortedNotes(notes.filter((n) => n.endSec > n.startSec));
  const times = [...new Set(sorted.flatMap((n) => [n.startSec, n.endSec]))].sort((a, b) => a - b);
  const segments: SoundingSegment[] = [];
  let active: Note[] = [];
  let next = 0;
  for (let i = 0; i + 1 < times.length; i++) {
    const t0 = times[i], t1 = times[i + 1];
    active = active.filter((n) => n.endSec > t0);
    while (next < sorted.length && sorted[next].startSec <= t0) active.push(sorted[next++]);
    if (active.length > 0) {
      segments.push({
        startSec: t0,
        endSec: t1,
        pitches: active.map((n) => n.pitch).sort((a, b) => a - b),
      });
    }
  }
  return segments;
}

/**
 * Calls `visit` once for every pair of notes that sound together, with the
 * length of time they overlap.
 *
 * @param notes The notes, in any order.
 * @param visit Called with the two notes (the earlier-starting first) and the overlap in seconds (> 0).
 */
export function forEachOverlappingPair(
  notes: readonly Note[],
  visit: (a: Note, b: Note, overlapSec: number) => void,
): void {
  const sorted = sortedNotes(notes);
  let active: Note[] = [];
  for (const note of sorted) {
    active = active.filter((a) => a.endSec > note.startSec);
    for (const a of active) {
      const overlapSec = Math.min(a.endSec, note.endSec) - note.startSec;
      if (overlapSec > 0) visit(a, note, overlapSec);
    }
    if (note.endSec > note.startSec) active.push(note);
  }
}

/**
 * Cuts a window out of a piece: notes that start inside it, clipped at its
 * end, with times shifted so that the window starts at 0; beats inside it,
 * shifted the same way.
 *
 * @param piece The piece.
 * @param window `startSec` and `durationSec` of the window.
 * @returns A new piece (same id and metre).
 */
export function cropPiece(
  piece: Piece,
  window: { startSec: number; durationSec: number },
): Piece {
  const from = window.startSec, to = window.startSec + window.durationSec;
  const notes = piece.notes
    .filter((n) => n.startSec >= from && n.startSec < to)
    .map((n) => ({ ...n, startSec: n.startSec - from, endSec: Math.min(n.endSec, to) - from }));
  return {
    ...piece,
    notes,
    beatsSec: piece.beatsSec.filter((t) => t >= from && t < to).map((t) => t - from),
  };
}

/**
 * Counts leaps and how many of them are resolved, after RL Tuner's rule: a
 * leap of `minLeapSemitones` (a fifth) or more is resolved when the next
 * interval is a step (1 or 2 semitones) in the opposite direction. A leap
 * into the last note cannot be resolved inside the sequence and is not counted.
 *
 * @param pitches The melody (usually a top line).
 * @param options `minLeapSemitones` (default 7).
 * @returns `leaps` counted and `resolved` among them.
 */
export function countLeapResolutions(
  pitches: readonly number[],
  options: { minLeapSemitones?: number } = {},
): { leaps: number; resolved: number } {
  const minLeap = options.minLeapSemitones ?? 7;
  let leaps = 0, resolved = 0;
  for (let i = 1; i + 1 < pitches.length; i++) {
    const leap = pitches[i] - pitches[i - 1];
    if (Math.abs(leap) < minLeap) continue;
    leaps++;
    const next = pitches[i + 1] - pitches[i];
    if (Math.sign(next) === -Math.sign(leap) && Math.abs(next) <= 2) resolved++;
  }
  return { leaps, resolved };
}

/**
 * Weighted mean of the parts whose value is finite; parts with NaN values
 * (undefined for this piece) are left out and the other weights renormalised.
 *
 * @param parts Weight (>= 0) and value of each part.
 * @param whenNone Returned when no part with a positive weight has a value.
 * @returns The mean.
 * @example
 * ```ts
 * import { weightedMean } from "./theory.ts";
 * weightedMean([{ weight: 1, value: 1 }, { weight: 3, value: 0 }, { weight: 5, value: NaN }], 0.5); // 0.25
 * ```
 */
export function weightedMean(
  parts: ReadonlyArray<{ weight: number; value: number }>,
  whenNone: number,
): number {
  let sum = 0, weights = 0;
  for (const { weight, value } of parts) {
    if (weight > 0 && Number.isFinite(value)) {
      sum += weight * value;
      weights += weight;
    }
  }
  return weights > 0 ? sum / weights : whenNone;
}

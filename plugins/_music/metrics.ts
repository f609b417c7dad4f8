/**
 * Objective evaluation metrics for symbolic music.
 *
 * Per-piece metrics follow MusPy (Dong et al., "MusPy: A Toolkit for Symbolic
 * Music Generation", ISMIR 2020, `muspy/metrics/metrics.py`) and the table
 * metrics of RL Tuner (Jaques et al., "Sequence Tutor: Conservative
 * Fine-Tuning of Sequence Generation Models with KL-control", ICML 2017).
 * Set comparison follows Yang & Lerch, "On the evaluation of generative
 * models in music" (Neural Computing and Applications, 2018) and its
 * reference code `mgeval`: per-feature distances within a set and between two
 * sets, smoothed with a Gaussian KDE, compared by overlapped area and KL
 * divergence.
 *
 * Differences from the references, all because pieces here are timed in
 * seconds with a beat grid rather than in ticks:
 * - polyphony integrates over time in seconds, not over tick steps;
 * - beats and bars come from {@linkcode beatGrid} (the piece's `beatsSec`);
 * - a beat is empty when no note sounds during any of it (notes that only
 *   touch its boundary do not count).
 *
 * Metrics that are undefined for a piece (pitch range of a piece without
 * notes, groove consistency of a single bar) return NaN; set summaries average
 * the finite values only.
 *
 * @module
 */

import {
  beatGrid,
  beatsPerBarOf,
  bestFittingScale,
  countLeapResolutions,
  findKey,
  forEachOverlappingPair,
  inScaleShare,
  intervalClass,
  isDissonantInterval,
  pieceEndSec,
  pitchClass,
  pitchClassHistogram,
  type Scale,
  soundingSegments,
  topLine,
} from "./theory.ts";
import { excessRepeatFlags, pitchNgramKeys, pitchSequence } from "./ngrams.ts";
import type { Piece } from "./types.ts";

/** Highest minus lowest pitch in semitones (MusPy `pitch_range`); NaN without notes. */
export function pitchRange(piece: Piece): number {
  if (piece.notes.length === 0) return NaN;
  let lo = Infinity, hi = -Infinity;
  for (const note of piece.notes) {
    lo = Math.min(lo, note.pitch);
    hi = Math.max(hi, note.pitch);
  }
  return hi - lo;
}

/** Number of distinct pitch classes used (MusPy `n_pitch_classes_used`). */
export function pitchClassesUsed(piece: Piece): number {
  return new Set(piece.notes.map((n) => pitchClass(n.pitch))).size;
}

/**
 * Mean number of notes sounding while any note sounds (MusPy `polyphony`,
 * integrated over time in seconds). NaN when nothing sounds.
 */
export function polyphony(piece: Piece): number {
  let weighted = 0, sounding = 0;
  for (const seg of soundingSegments(piece.notes)) {
    const dur = seg.endSec - seg.startSec;
    weighted += dur * seg.pitches.length;
    sounding += dur;
  }
  return sounding > 0 ? weighted / sounding : NaN;
}

/**
 * Share of notes (by count) whose pitch class is in a scale (MusPy
 * `pitch_in_scale_rate`). NaN without notes.
 */
export function pitchInScaleRate(piece: Piece, scale: Scale): number {
  return inScaleShare(pitchClassHistogram(piece.notes, "count"), scale);
}

/**
 * Largest pitch-in-scale rate over the 24 major and natural-minor scales
 * (MusPy `scale_consistency`). NaN without notes.
 */
export function scaleConsistency(piece: Piece): number {
  return bestFittingScale(pitchClassHistogram(piece.notes, "count")).share;
}

/**
 * Shannon entropy in bits of the normalised pitch-class histogram by note
 * count (MusPy `pitch_class_entropy`). 0 for one pitch class, log2(12) at
 * most. NaN without notes.
 */
export function pitchClassEntropy(piece: Piece): number {
  const hist = pitchClassHistogram(piece.notes, "count");
  const total = hist.reduce((a, b) => a + b, 0);
  if (total === 0) return NaN;
  let entropy = 0;
  for (const count of hist) {
    if (count > 0) entropy -= (count / total) * Math.log2(count / total);
  }
  return entropy;
}

/**
 * Share of beats during which no note sounds (MusPy `empty_beat_rate`). Beats
 * run from beat 0 (or the first note, if earlier) to the beat in which the last
 * note ends. NaN without notes.
 */
export function emptyBeatRate(piece: Piece): number {
  const notes = piece.notes.filter((n) => n.endSec > n.startSec);
  if (notes.length === 0) return NaN;
  const grid = beatGrid(piece);
  let first = 0, last = 0;
  const spans = notes.map((n) => {
    // The 1e-9 keeps float noise in the grid from spilling a note into a neighbouring beat.
    const from = Math.floor(grid.position(n.startSec) + 1e-9);
    const to = Math.max(from + 1, Math.ceil(grid.position(n.endSec) - 1e-9)); // exclusive
    first = Math.min(first, from);
    last = Math.max(last, to);
    return [from, to] as const;
  });
  const filled = new Uint8Array(last - first);
  for (const [from, to] of spans) filled.fill(1, from - first, to - first);
  let empty = 0;
  for (const f of filled) empty += f === 0 ? 1 : 0;
  return empty / filled.length;
}

/**
 * Onset patterns of a piece's bars on a grid of `stepsPerBeat` steps per
 * beat: each onset is rounded to the nearest step. Bars run from the bar of
 * the first onset to the bar of the last onset.
 *
 * @returns One 0/1 array of `beatsPerBar * stepsPerBeat` steps per bar.
 */
export function barOnsetPatterns(
  piece: Piece,
  options: { stepsPerBeat?: number } = {},
): Uint8Array[] {
  const stepsPerBeat = options.stepsPerBeat ?? 4;
  const stepsPerBar = beatsPerBarOf(piece) * stepsPerBeat;
  if (piece.notes.length === 0) return [];
  const grid = beatGrid(piece);
  const steps = piece.notes.map((n) => Math.round(grid.position(n.startSec) * stepsPerBeat));
  // A loop, not Math.min(...steps): spreading a long performance's notes overflows the stack.
  let firstStep = Infinity, lastStep = -Infinity;
  for (const step of steps) {
    firstStep = Math.min(firstStep, step);
    lastStep = Math.max(lastStep, step);
  }
  const firstBar = Math.floor(firstStep / stepsPerBar);
  const lastBar = Math.floor(lastStep / stepsPerBar);
  const bars = Array.from({ length: lastBar - firstBar + 1 }, () => new Uint8Array(stepsPerBar));
  for (const step of steps) {
    const bar = Math.floor(step / stepsPerBar);
    bars[bar - firstBar][step - bar * stepsPerBar] = 1;
  }
  return bars;
}

/**
 * Groove consistency (MusPy `groove_consistency`, Wu & Yang 2020): one minus
 * the mean Hamming distance between the onset patterns of neighbouring bars,
 * each distance divided by the steps per bar. 1 when every bar has the same
 * rhythm. NaN with fewer than two bars.
 *
 * @param piece The piece.
 * @param options `stepsPerBeat` of the grid (default 4, sixteenths in 4/4).
 */
export function grooveConsistency(piece: Piece, options: { stepsPerBeat?: number } = {}): number {
  const bars = barOnsetPatterns(piece, options);
  if (bars.length < 2) return NaN;
  let distance = 0;
  for (let i = 1; i < bars.length; i++) {
    let differ = 0;
    for (let s = 0; s < bars[i].length; s++) differ += bars[i][s] !== bars[i - 1][s] ? 1 : 0;
    distance += differ / bars[i].length;
  }
  return 1 - distance / (bars.length - 1);
}

/**
 * Share of notes (by count) in the key found by Krumhansl–Schmuckler
 * ({@linkcode findKey}), as in RL Tuner's "notes in key" table. NaN without notes.
 */
export function notesInKeyRate(piece: Piece): number {
  return inScaleShare(pitchClassHistogram(piece.notes, "count"), findKey(piece.notes).scale);
}

/**
 * Share of note time outside the key found by Krumhansl–Schmuckler. NaN
 * without notes.
 */
export function outOfKeyTimeRate(piece: Piece): number {
  const hist = pitchClassHistogram(piece.notes, "duration");
  return 1 - inScaleShare(hist, findKey(piece.notes).scale);
}

/**
 * Share of top-line notes that repeat one pitch more than `maxRepeats` times
 * in a row (RL Tuner's "notes excessively repeated"). NaN without notes.
 */
export function excessiveRepeatRate(piece: Piece, options: { maxRepeats?: number } = {}): number {
  const line = topLine(piece.notes).map((n) => n.pitch);
  if (line.length === 0) return NaN;
  const flags = excessRepeatFlags(line, { patternLength: 1, maxRepeats: options.maxRepeats ?? 4 });
  return flags.filter(Boolean).length / line.length;
}

/**
 * Share of top-line leaps of a fifth or more that are resolved by a step back
 * (RL Tuner's "leaps resolved", see {@linkcode countLeapResolutions}). NaN when
 * there is no such leap.
 */
export function leapResolutionRate(piece: Piece): number {
  const { leaps, resolved } = countLeapResolutions(topLine(piece.notes).map((n) => n.pitch));
  return leaps > 0 ? resolved / leaps : NaN;
}

/**
 * Share of pairs of notes sounding together that form a minor second, major
 * seventh or tritone (or a compound of one). Each overlapping pair counts
 * once, however long it overlaps. NaN when no two notes overlap.
 */
export function dissonantPairRate(piece: Piece): number {
  let pairs = 0, dissonant = 0;
  forEachOverlappingPair(piece.notes, (a, b) => {
    pairs++;
    if (isDissonantInterval(a.pitch, b.pitch)) dissonant++;
  });
  return pairs > 0 ? dissonant / pairs : NaN;
}

/**
 * Share of notes that sound together with another note a minor second or
 * major seventh away (interval class 1, in any octave): the clashes a wrong
 * note a semitone off makes. Notes sound from onset to release as the piece
 * holds them (with the pedal applied if it was applied when reading). NaN
 * without notes.
 *
 * @example
 * ```ts
 * import { clashRate } from "./metrics.ts";
 * const note = (pitch: number) => ({ pitch, startSec: 0, endSec: 1, velocity: 80 });
 * const piece = { id: "a", tempoBpm: 120, beatsPerBar: 4, beatsSec: [0], notes: [60, 64, 65].map(note) };
 * clashRate(piece); // 2 / 3: E and F clash, C does not
 * ```
 */
export function clashRate(piece: Piece): number {
  if (piece.notes.length === 0) return NaN;
  const clashing = new Set<Piece["notes"][number]>();
  forEachOverlappingPair(piece.notes, (a, b) => {
    if (intervalClass(a.pitch, b.pitch) === 1) {
      clashing.add(a);
      clashing.add(b);
    }
  });
  return clashing.size / piece.notes.length;
}

/**
 * Distinct pitch n-grams divided by all pitch n-grams over a set of pieces
 * (n-grams of each piece's pitch sequence in (startSec, pitch) order). 1 when
 * nothing repeats, 1/count when every n-gram is the same. NaN when no piece has
 * `ngramLength` notes.
 *
 * @param pieces The set.
 * @param options `ngramLength` (default 4).
 */
export function distinctNgramRatio(
  pieces: readonly Piece[],
  options: { ngramLength?: number } = {},
): number {
  const n = options.ngramLength ?? 4;
  const distinct = new Set<number>();
  let total = 0;
  for (const piece of pieces) {
    for (const key of pitchNgramKeys(pitchSequence(piece.notes), n)) {
      distinct.add(key);
      total++;
    }
  }
  return total > 0 ? distinct.size / total : NaN;
}

/** Names of the per-piece metrics {@linkcode pieceMetrics} returns. */
export const PIECE_METRICS = [
  "noteCount",
  "durationSec",
  "pitchRange",
  "pitchClassesUsed",
  "polyphony",
  "scaleConsistency",
  "pitchClassEntropy",
  "emptyBeatRate",
  "grooveConsistency",
  "notesInKeyRate",
  "outOfKeyTimeRate",
  "excessiveRepeatRate",
  "leapResolutionRate",
  "dissonantPairRate",
] as const;

/** One of {@linkcode PIECE_METRICS}. */
export type PieceMetric = typeof PIECE_METRICS[number];

/**
 * All per-piece metrics of one piece.
 *
 * @param piece The piece.
 * @returns Each of {@linkcode PIECE_METRICS}; NaN where undefined for this piece.
 */
export function pieceMetrics(piece: Piece): Record<PieceMetric, number> {
  return {
    noteCount: piece.notes.length,
    durationSec: pieceEndSec(piece.notes),
    pitchRange: pitchRange(piece),
    pitchClassesUsed: pitchClassesUsed(piece),
    polyphony: polyphony(piece),
    scaleConsistency: scaleConsistency(piece),
    pitchClassEntropy: pitchClassEntropy(piece),
    emptyBeatRate: emptyBeatRate(piece),
    grooveConsistency: grooveConsistency(piece),
    notesInKeyRate: notesInKeyRate(piece),
    outOfKeyTimeRate: outOfKeyTimeRate(piece),
    excessiveRepeatRate: excessiveRepeatRate(piece),
    leapResolutionRate: leapResolutionRate(piece),
    dissonantPairRate: dissonantPairRate(piece),
  };
}

/**
 * Set summary: the mean of each per-piece metric over the pieces where it is
 * finite (left out when it is finite for none), plus `pieces` (the count) and
 * `distinctNgramRatio` (over the whole set, 4-grams).
 *
 * @param pieces The set.
 * @returns Metric name to value; every value is finite.
 */
export function setMetrics(
  pieces: readonly Piece[],
  options: { ngramLength?: number } = {},
): Record<string, number> {
  const out: Record<string, number> = { pieces: pieces.length };
  const all = pieces.map(pieceMetrics);
  for (const name of PIECE_METRICS) {
    const values = all.map((m) => m[name]).filter(Number.isFinite);
    if (values.length > 0) out[name] = values.reduce((a, b) => a + b, 0) / values.length;
  }
  const ratio = distinctNgramRatio(pieces, options);
  if (Number.isFinite(ratio)) out.distinctNgramRatio = ratio;
  return out;
}

// ---------------------------------------------------------------------------
// Yang & Lerch (2018) set comparison.

/** Features compared between sets, as in Yang & Lerch (2018) / mgeval. */
export const YANG_LERCH_FEATURES = [
  "pitchClassHistogram",
  "pitchRange",
  "avgPitchInterval",
  "noteCount",
  "avgInterOnsetSec",
  "noteLengthHistogram",
] as const;

/** One of {@linkcode YANG_LERCH_FEATURES}. */
export type YangLerchFeature = typeof YANG_LERCH_FEATURES[number];

/**
 * Note-length classes in beats (mgeval's 12 classes): whole, half, quarter,
 * eighth, sixteenth; dotted half, quarter, eighth, sixteenth; half-, quarter-
 * and eighth-note triplets.
 */
export const NOTE_LENGTH_CLASSES_BEATS = [
  4,
  2,
  1,
  0.5,
  0.25,
  3,
  1.5,
  0.75,
  0.375,
  4 / 3,
  2 / 3,
  1 / 3,
] as const;

/**
 * Feature vectors of one piece for the set comparison:
 * - `pitchClassHistogram`: 12 shares of notes by pitch class (sum 1);
 * - `pitchRange`: highest minus lowest pitch;
 * - `avgPitchInterval`: mean absolute interval between consecutive notes in
 *   (startSec, pitch) order;
 * - `noteCount`: number of notes;
 * - `avgInterOnsetSec`: mean time between consecutive distinct onsets;
 * - `noteLengthHistogram`: 12 shares of notes by the nearest (in log
 *   duration) class of {@linkcode NOTE_LENGTH_CLASSES_BEATS}, lengths in beats.
 *
 * @returns Each feature as a vector; null where undefined (too few notes).
 */
export function yangLerchFeatures(piece: Piece): Record<YangLerchFeature, number[] | null> {
  const notes = piece.notes;
  const n = notes.length;
  const pitches = pitchSequence(notes);
  const onsets = [...new Set(notes.map((x) => x.startSec))].sort((a, b) => a - b);
  const pch = pitchClassHistogram(notes, "count").map((c) => c / n);
  let intervalSum = 0;
  for (let i = 1; i < pitches.length; i++) intervalSum += Math.abs(pitches[i] - pitches[i - 1]);
  const grid = beatGrid(piece);
  const nlh = new Array<number>(12).fill(0);
  for (const note of notes) {
    const beats = grid.position(note.endSec) - grid.position(note.startSec);
    let best = 0, bestDist = Infinity;
    for (let k = 0; k < 12; k++) {
      const dist = Math.abs(Math.log2(Math.max(beats, 1e-6) / NOTE_LENGTH_CLASSES_BEATS[k]));
      if (dist < bestDist) {
        best = k;
        bestDist = dist;
      }
    }
    nlh[best] += 1 / n;
  }
  return {
    pitchClassHistogram: n > 0 ? pch : null,
    pitchRange: n > 0 ? [pitchRange(piece)] : null,
    avgPitchInterval: n > 1 ? [intervalSum / (n - 1)] : null,
    noteCount: [n],
    avgInterOnsetSec: onsets.length > 1
      ? [(onsets[onsets.length - 1] - onsets[0]) / (onsets.length - 1)]
      : null,
    noteLengthHistogram: n > 0 ? nlh : null,
  };
}

function euclidean(a: readonly number[], b: readonly number[]): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2;
  return Math.sqrt(sum);
}

/** Euclidean distances between all pairs i < j of a set's vectors (nulls skipped). */
export function intraSetDistances(vectors: readonly (readonly number[] | null)[]): number[] {
  const present = vectors.filter((v): v is number[] => v !== null);
  const out: number[] = [];
  for (let i = 0; i < present.length; i++) {
    for (let j = i + 1; j < present.length; j++) out.push(euclidean(present[i], present[j]));
  }
  return out;
}

/** Euclidean distances between every vector of one set and every vector of another (nulls skipped). */
export function interSetDistances(
  a: readonly (readonly number[] | null)[],
  b: readonly (readonly number[] | null)[],
): number[] {
  const out: number[] = [];
  for (const x of a) {
    if (x === null) continue;
    for (const y of b) if (y !== null) out.push(euclidean(x, y));
  }
  return out;
}

/**
 * Gaussian kernel density estimate with Scott's rule (as scipy's
 * `gaussian_kde`): bandwidth = sample standard deviation × n^(−1/5). When the
 * samples have no spread, `fallbackBandwidth` is used.
 *
 * @returns The bandwidth and the density function.
 */
export function gaussianKde(
  samples: readonly number[],
  fallbackBandwidth: number,
): { bandwidth: number; density(x: number): number } {
  const n = samples.length;
  const mean = samples.reduce((a, b) => a + b, 0) / n;
  const variance = n > 1 ? samples.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1) : 0;
  const scott = Math.sqrt(variance) * n ** (-1 / 5);
  const bandwidth = scott > 1e-12 ? scott : fallbackBandwidth;
  const norm = 1 / (n * bandwidth * Math.sqrt(2 * Math.PI));
  return {
    bandwidth,
    density(x) {
      let sum = 0;
      for (const s of samples) sum += Math.exp(-0.5 * ((x - s) / bandwidth) ** 2);
      return sum * norm;
    },
  };
}

/**
 * Compares two samples of distances as Yang & Lerch do: each is smoothed into
 * a density with {@linkcode gaussianKde}, and on a common grid of
 * `gridPoints` points reaching 4 bandwidths past both samples:
 * - `overlap` = ∫ min(p, q) dx (trapezoid rule), 1 for identical samples;
 * - `kl` = KL(p ‖ q) = Σ p log(p / q) over the grid with p and q normalised to
 *   sum 1 and floored at 1e-12 (natural log, nats).
 *
 * When both samples have no spread, each is given a bandwidth of 1% of the
 * grid's span (or 1 when they coincide), so two identical constant samples
 * overlap fully.
 *
 * @param p Distances of the reference (intra-set) distribution.
 * @param q Distances of the compared (inter-set) distribution.
 * @returns `{overlap, kl}`; both NaN when a sample is empty.
 */
export function compareDistributions(
  p: readonly number[],
  q: readonly number[],
  options: { gridPoints?: number } = {},
): { overlap: number; kl: number } {
  if (p.length === 0 || q.length === 0) return { overlap: NaN, kl: NaN };
  const gridPoints = options.gridPoints ?? 512;
  let lo = Infinity, hi = -Infinity;
  for (const x of [...p, ...q]) {
    lo = Math.min(lo, x);
    hi = Math.max(hi, x);
  }
  const fallback = hi > lo ? 0.01 * (hi - lo) : 1;
  const kdeP = gaussianKde(p, fallback);
  const kdeQ = gaussianKde(q, fallback);
  const pad = 4 * Math.max(kdeP.bandwidth, kdeQ.bandwidth);
  const from = lo - pad, step = (hi - lo + 2 * pad) / (gridPoints - 1);
  const densP: number[] = [], densQ: number[] = [];
  for (let i = 0; i < gridPoints; i++) {
    densP.push(kdeP.density(from + i * step));
    densQ.push(kdeQ.density(from + i * step));
  }
  let overlap = 0, sumP = 0, sumQ = 0;
  for (let i = 0; i < gridPoints; i++) {
    const weight = i === 0 || i === gridPoints - 1 ? 0.5 : 1;
    overlap += weight * step * Math.min(densP[i], densQ[i]);
    sumP += densP[i];
    sumQ += densQ[i];
  }
  let kl = 0;
  for (let i = 0; i < gridPoints; i++) {
    const pi = Math.max(densP[i] / sumP, 1e-12);
    const qi = Math.max(densQ[i] / sumQ, 1e-12);
    kl += pi * Math.log(pi / qi);
  }
  return { overlap: Math.min(1, overlap), kl: Math.max(0, kl) };
}

/**
 * Yang & Lerch comparison of set B against reference set A: for each feature,
 * the intra-set distances of A against the inter-set distances A–B (see
 * {@linkcode compareDistributions}). High overlap and low KL mean B's pieces
 * lie as close to A's as A's lie to each other.
 *
 * @param setA The reference set (e.g. real music).
 * @param setB The compared set (e.g. generated music).
 * @returns Per feature `{overlap, kl}`; NaN when A has fewer than two usable pieces.
 */
export function compareSets(
  setA: readonly Piece[],
  setB: readonly Piece[],
): Record<YangLerchFeature, { overlap: number; kl: number }> {
  const featA = setA.map(yangLerchFeatures);
  const featB = setB.map(yangLerchFeatures);
  const out = {} as Record<YangLerchFeature, { overlap: number; kl: number }>;
  for (const feature of YANG_LERCH_FEATURES) {
    const a = featA.map((f) => f[feature]);
    const b = featB.map((f) => f[feature]);
    out[feature] = compareDistributions(intraSetDistances(a), interSetDistances(a, b));
  }
  return out;
}
